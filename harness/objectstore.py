"""A private SeaweedFS for tests, started with the same launcher as `make run` (tools/objectstore.py)."""

import os
import random
import subprocess
import sys
from pathlib import Path

from common.settings import Settings
from common.storage import ObjectStore
from harness.processes import PROJECT_DIR, GiveUp, ephemeral_port_floor, port_open, wait_for
from tools.objectstore import GRPC_OFFSET, MAX_VOLUME_SERVERS, VOLUME_OFFSET, ports_used, volume_port

S3_KEYS = {"S3_ACCESS_KEY": "imgpipe-test", "S3_SECRET_KEY": "imgpipe-test-secret"}
# The suite makes a bucket per test module and per own system, hundreds in one run; SeaweedFS's
# default (free disk / volume size) allowed only 78 on a machine with 80 GB free. Volumes are
# sparse files, so a high cap costs nothing.
TEST_MAX_VOLUMES = 5000


def free_s3_port(volume_servers: int = 0) -> int:
    """An S3 port whose derived SeaweedFS ports are all free, and all below the ephemeral range (a
    volume server once failed to start: its gRPC port was some connection's local port)."""
    highest = ephemeral_port_floor() - GRPC_OFFSET - VOLUME_OFFSET - MAX_VOLUME_SERVERS
    rng = random.Random()
    for _ in range(50):
        candidate = rng.randrange(10000, highest)
        if not any(port_open(port) for port in ports_used(candidate, volume_servers)):
            return candidate
    raise RuntimeError("no free port range for SeaweedFS")


class PrivateObjectStore:
    """Can be stopped and started again on the same port and data, like an outage."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, max_volumes: int = TEST_MAX_VOLUMES,
        cpu_profile: Path | None = None,
    ) -> None:
        """`env`: more settings for the launcher (S3_PRESIGN_* for a read-only second key);
        `cpu_profile`: where SeaweedFS writes its CPU profile when stopped."""
        self.data_dir = data_dir
        self.env = env or {}
        self.max_volumes = max_volumes
        self.cpu_profile = cpu_profile
        self.port = free_s3_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> "PrivateObjectStore":
        with open(self.data_dir.parent / f"seaweedfs-{self.port}.log", "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tools.objectstore", "--dir", str(self.data_dir), "--port", str(self.port),
                 "--max-volumes", str(self.max_volumes),
                 *(["--cpu-profile", str(self.cpu_profile)] if self.cpu_profile else [])],
                cwd=PROJECT_DIR, env={**os.environ, **S3_KEYS, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: port_open(self.port), 60, "SeaweedFS to listen")
        return self

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        wait_for(lambda: not any(port_open(p) for p in ports_used(self.port)), 30, "SeaweedFS to stop")


def object_store(endpoint: str, bucket: str) -> ObjectStore:
    """The system's own storage access, pointed at a test's bucket."""
    return ObjectStore(
        Settings(
            _env_file=None,
            s3_endpoint=endpoint,
            s3_bucket=bucket,
            s3_access_key=S3_KEYS["S3_ACCESS_KEY"],
            s3_secret_key=S3_KEYS["S3_SECRET_KEY"],
        ).storage
    )


class PrivateStorageCluster:
    """A SeaweedFS cluster of the test's own (master, volume servers, filer + S3 gateway), started
    with the same launcher as `make run STORAGE=cluster`; any member can be killed and restarted."""

    def __init__(self, data_dir: Path, volume_servers: int = 3) -> None:
        self.data_dir = data_dir
        self.volume_servers = volume_servers
        self.port = free_s3_port(volume_servers)
        self.endpoint = f"127.0.0.1:{self.port}"
        self._processes: dict[str, subprocess.Popen] = {}

    def members(self) -> list[str]:
        return ["master", *(f"volume-{i}" for i in range(self.volume_servers)), "filer"]

    def start(self) -> "PrivateStorageCluster":
        """All members, or none left running: a member that fails stops the ones started before it."""
        try:
            for member in self.members():
                self.start_member(member)
            wait_for(lambda: port_open(self.port), 60, "the cluster's S3 gateway to listen")
        except BaseException:
            self.stop()
            raise
        return self

    def start_member(self, member: str) -> None:
        role, _, index = member.partition("-")
        with open(self.data_dir.parent / f"seaweedfs-{self.port}-{member}.log", "ab") as log:
            self._processes[member] = subprocess.Popen(
                [sys.executable, "-m", "tools.objectstore", "--dir", str(self.data_dir), "--port", str(self.port),
                 "--role", role, "--index", index or "0"],
                cwd=PROJECT_DIR, env={**os.environ, **S3_KEYS}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if role == "volume":
            process = self._processes[member]

            def listening() -> bool:
                if process.poll() is not None:
                    raise GiveUp(f"{member} exited with code {process.returncode}; see {log.name}")
                return port_open(volume_port(self.port, int(index)))

            wait_for(listening, 90, f"{member} to listen")

    def kill_member(self, member: str) -> None:
        """SIGKILL: the member vanishes without telling the master."""
        process = self._processes.pop(member)
        process.kill()
        process.wait(10)

    def stop(self) -> None:
        for member in reversed(list(self._processes)):
            process = self._processes.pop(member)
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        wait_for(
            lambda: not any(port_open(p) for p in ports_used(self.port, self.volume_servers)), 30,
            "the SeaweedFS cluster to stop",
        )
