"""Starting and stopping the system's services as real processes for tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import procs

PROJECT_DIR = Path(__file__).resolve().parents[1]


def ephemeral_port_floor() -> int:
    """The lowest port the kernel hands to outgoing connections. A fixed port chosen at or above it
    can be taken by some connection's local end between the check that it is free and the bind."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GiveUp(Exception):
    """Raised by a predicate when waiting longer cannot help (a process it waits for has exited)."""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Polls `predicate` until it returns something truthy; fails the test after `timeout` s, or at
    once if the predicate raises GiveUp."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as exc:  # reported below if it never succeeds
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


def family_peak_rss_mb(pid: int) -> float:
    """The largest peak resident set (VmHWM, MB) of the process and its children."""
    return max(procs.peak_rss_mb(p) for p in (pid, *procs.children(pid)))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ServiceProcess:
    """One service started as `args` with `env`, output in `log_path`."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "ServiceProcess":
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.args, cwd=PROJECT_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 45) -> int | None:
        if not self.running:
            return self.process.returncode if self.process else None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.process.wait(10)

    def kill(self) -> None:
        if self.running:
            self.signal(signal.SIGKILL)
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def python_service(name: str, module_args: list[str], env: dict[str, str], log_dir: Path) -> ServiceProcess:
    return ServiceProcess(name, [sys.executable, *module_args], env, log_dir / f"{name}.log")


def start_api(
    env: dict[str, str], log_dir: Path, name: str = "api", port: int | None = None
) -> tuple[ServiceProcess, str]:
    port = port or free_port()
    service = python_service(
        name, ["-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)], env, log_dir
    ).start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if not service.running:
            raise GiveUp(f"{name} exited:\n{service.log()[-3000:]}")
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200

    wait_for(ready, 60, f"{name} to be ready")
    return service, url


def start_worker(env: dict[str, str], log_dir: Path, name: str) -> ServiceProcess:
    return python_service(name, ["-m", "worker"], {**env, "WORKER_NAME": name}, log_dir).start()


def start_notifier(env: dict[str, str], log_dir: Path, name: str = "notifier") -> ServiceProcess:
    return python_service(name, ["-m", "notification"], env, log_dir).start()
