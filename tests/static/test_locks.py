"""Static checks of the lock files against the requirements files they are compiled from (make lock).

requirements-dev.lock is what `make venv` and CI install; requirements-services.lock is what the
services' images install. Both must pin every requirement, with hashes, and agree with each other.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SERVICE_FILES = ["common/requirements.txt", "api/requirements.txt", "worker/requirements.txt",
                 "notification/requirements.txt"]
LOCKS = {
    "requirements-dev.lock": ["requirements-dev.txt"],
    "requirements-services.lock": SERVICE_FILES,
}
# Options pip-compile would copy from this machine's pip configuration; a lock must not send another
# machine to them.
MACHINE_OPTIONS = re.compile(r"^\s*(-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host)\b", re.M)


@dataclass
class Pin:
    requirement: Requirement
    hashes: list[str] = field(default_factory=list)
    via_files: set[str] = field(default_factory=set)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version


def pins(lock: Path) -> dict[str, Pin]:
    """The packages of a pip-compile lock by canonical name, with their hashes and the requirements
    files that ask for them directly (`# via -r FILE`)."""
    result: dict[str, Pin] = {}
    current: Pin | None = None
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = Pin(Requirement(line.rstrip("\\").strip()))
            result[canonicalize_name(current.requirement.name)] = current
        elif current is not None:
            current.hashes += re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)
            current.via_files.update(re.findall(r"-r (\S+)", line))
    return result


def requirements(path: str) -> dict[str, Requirement]:
    """The requirements a file names itself (not those of the files it includes), by canonical name."""
    result: dict[str, Requirement] = {}
    for raw in (ROOT / path).read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            result[canonicalize_name(requirement.name)] = requirement
    return result


def included(path: str) -> list[str]:
    """The file and every file it includes with `-r`, in order."""
    files = [path]
    for raw in (ROOT / path).read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line.startswith("-r "):
            files += included(line.split(maxsplit=1)[1])
    return files


@pytest.fixture(params=sorted(LOCKS))
def lock(request: pytest.FixtureRequest) -> str:
    return request.param


def test_lock_pins_every_package_exactly_with_hashes(lock: str) -> None:
    locked = pins(ROOT / lock)
    assert locked, f"{lock} pins nothing"
    loose = [str(pin.requirement) for pin in locked.values()
             if [spec.operator for spec in pin.requirement.specifier] != ["=="]]
    unhashed = [name for name, pin in locked.items() if not pin.hashes]
    assert loose == []
    assert unhashed == []


def test_lock_names_no_index_or_local_file(lock: str) -> None:
    text = (ROOT / lock).read_text()
    assert MACHINE_OPTIONS.findall(text) == []
    assert "file://" not in text and " @ " not in text


def test_lock_pins_every_requirement_within_its_range(lock: str) -> None:
    locked = pins(ROOT / lock)
    files = [path for source in LOCKS[lock] for path in included(source)]
    missing, outside = [], []
    for path in files:
        for name, requirement in requirements(path).items():
            pin = locked.get(name)
            if pin is None:
                missing.append(f"{path}: {requirement}")
            elif not requirement.specifier.contains(pin.version, prereleases=True):
                outside.append(f"{path}: {requirement} locked at {pin.version}")
    assert missing == [], f"not in {lock}: run make lock"
    assert outside == [], f"{lock} is older than its requirements: run make lock"


def test_lock_asks_for_nothing_its_requirements_dropped(lock: str) -> None:
    locked = pins(ROOT / lock)
    files = [path for source in LOCKS[lock] for path in included(source)]
    wanted = {(path, name) for path in files for name in requirements(path)}
    stale = sorted((path, name) for name, pin in locked.items() for path in pin.via_files
                   if (path, name) not in wanted and path in files)
    assert stale == [], f"{lock} still pins these for files that no longer ask for them: run make lock"


def test_services_lock_installs_what_the_tests_ran() -> None:
    dev = pins(ROOT / "requirements-dev.lock")
    services = pins(ROOT / "requirements-services.lock")
    differ = {name: (pin.version, dev[name].version if name in dev else None)
              for name, pin in services.items() if name not in dev or dev[name].version != pin.version}
    assert differ == {}, "requirements-services.lock (image) vs requirements-dev.lock (tests)"


def test_services_lock_holds_no_development_tool() -> None:
    services = pins(ROOT / "requirements-services.lock")
    dev_only = set(requirements("requirements-dev.txt")) | set(requirements("bench/requirements.txt"))
    needed = {name for path in SERVICE_FILES for name in requirements(path)}
    assert sorted((dev_only - needed) & set(services)) == []


def test_service_requirements_pin_each_package_once() -> None:
    """Every image installs common/requirements.txt with its own file, and the dev file includes
    them all: a package pinned in two of the files that install together is pinned once too many."""
    common = set(requirements("common/requirements.txt"))
    repeated = {path: sorted(common & set(requirements(path))) for path in SERVICE_FILES[1:]}
    dev_own = set(requirements("requirements-dev.txt")) | set(requirements("bench/requirements.txt"))
    service_names = {name for path in SERVICE_FILES for name in requirements(path)}
    repeated["requirements-dev.txt"] = sorted(dev_own & service_names)
    assert {path: names for path, names in repeated.items() if names} == {}
