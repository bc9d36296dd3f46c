"""The seed's commands (`python monitoring/queue_monitor.py`, `python load_test/bulk_upload.py ...`)
run with whichever `python` comes first on the PATH. Each script calls `use_project_python()` before
its other imports: a python without the project's packages starts the script again with the
project's virtualenv (`.venv`, made by `make venv` or `make run`), or says in one line what to run.
Only the standard library here: this module runs under any python 3."""

import importlib.util
import os
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
VENV_PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
PROJECT_MODULES = ("pydantic_settings", "pika", "httpx", "rich")
# Set on the second start, so a virtualenv that lacks a package too is reported, not re-entered.
RESTARTED = "IMGPIPE_RESTARTED_IN_VENV"


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    return [module for module in modules if importlib.util.find_spec(module) is None]


def use_project_python(*extra: str) -> None:
    missing = missing_modules(PROJECT_MODULES + extra)
    if not missing:
        return
    if VENV_PYTHON.exists() and not os.environ.get(RESTARTED):
        os.environ[RESTARTED] = "1"
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])
    script = os.path.relpath(sys.argv[0])
    print(
        f"{script}: this python ({sys.executable}) lacks {', '.join(missing)}; run `make venv` in "
        f"{PROJECT_DIR} once, then this command again (or `.venv/bin/python {script} ...`)",
        file=sys.stderr,
    )
    sys.exit(2)
