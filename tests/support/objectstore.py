"""A private SeaweedFS for tests, started with the same launcher as `make run` (tools/objectstore.py)."""

import os
import random
import subprocess
import sys
from pathlib import Path

from common.settings import Settings
from common.storage import ObjectStore
from tests.support.processes import PROJECT_DIR, port_open, wait_for
from tools.objectstore import ports_used

S3_KEYS = {"S3_ACCESS_KEY": "imgpipe-test", "S3_SECRET_KEY": "imgpipe-test-secret"}


def free_s3_port() -> int:
    """An S3 port whose derived SeaweedFS ports are all free."""
    rng = random.Random()
    for _ in range(50):
        candidate = rng.randrange(20000, 29000)
        if not any(port_open(port) for port in ports_used(candidate)):
            return candidate
    raise RuntimeError("no free port range for SeaweedFS")


class PrivateObjectStore:
    """Can be stopped and started again on the same port and data, like an outage."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_s3_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> "PrivateObjectStore":
        with open(self.data_dir.parent / f"seaweedfs-{self.port}.log", "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tools.objectstore", "--dir", str(self.data_dir), "--port", str(self.port)],
                cwd=PROJECT_DIR, env={**os.environ, **S3_KEYS}, stdout=log, stderr=subprocess.STDOUT,
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
        )
    )
