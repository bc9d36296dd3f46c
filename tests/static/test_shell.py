"""The shell helpers shared by tools/stack.sh and .ci/run (tools/lib.sh): defined once, and they
tell an open port from a closed one."""

import re
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "tools" / "lib.sh"
USERS = [ROOT / "tools" / "stack.sh", ROOT / ".ci" / "run"]
HELPERS = ("port_open", "wait_for_port")


def shell_scripts() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    paths = [ROOT / name for name in tracked.splitlines()]
    return [path for path in paths if path.is_file() and (path.suffix == ".sh" or path in USERS)]


def run_with_lib(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f". {LIB}; {script}"], capture_output=True, text=True, timeout=30)


def test_port_helpers_are_defined_once_and_sourced_by_their_users() -> None:
    definitions = {
        str(path.relative_to(ROOT)): name
        for path in shell_scripts()
        for name in HELPERS
        if re.search(rf"^\s*{name}\s*\(\)", path.read_text(), re.M)
    }
    assert set(definitions) == {"tools/lib.sh"}, definitions
    assert [path.name for path in USERS if "tools/lib.sh" not in path.read_text()] == []


def test_port_open_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert run_with_lib(f"port_open 127.0.0.1 {port}").returncode == 0
    assert run_with_lib(f"port_open 127.0.0.1 {port}").returncode == 1


def test_wait_for_port_gives_up_naming_what_did_not_open() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refuses connections
        result = run_with_lib(f"wait_for_port 127.0.0.1 {port} 1 'the test service'")
    assert result.returncode == 1
    assert f"the test service did not open 127.0.0.1:{port} within 1 s" in result.stderr
