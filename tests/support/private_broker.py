"""A RabbitMQ node of the test's own, on free ports, that a test may stop and start again.

The machine's broker on 5672 is shared with everything else and must stay up; this node runs from
the same installation with its own name, data directory and ports, and keeps its data across a
restart (durable queues and persistent messages survive, as they would on a real broker restart).
"""

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.broker import BrokerEndpoint
from tests.support.processes import free_port, port_open, wait_for


class PrivateBroker:
    def __init__(self) -> None:
        self.node = f"imgtest-{uuid.uuid4().hex[:6]}@localhost"
        # Not under pytest's tmp_path: its parents are private to root, and the node runs as the
        # rabbitmq user, which must own every directory it writes.
        self.base_dir = Path(tempfile.mkdtemp(prefix="imgpipe-rabbitmq-"))
        self.endpoint = BrokerEndpoint(port=free_port(), management_port=free_port())
        self._dist_port = free_port()
        self._env = self._environment()

    @staticmethod
    def available() -> bool:
        return shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None

    def _environment(self) -> dict[str, str]:
        for sub in ("mnesia", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # A config file of its own: the machine's may pin listeners to 5672.
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.endpoint.port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.endpoint.management_port}\n"
        )
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base_dir)], check=False)
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.endpoint.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base_dir / "pid"),
        }

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env, check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, "wait", str(self.base_dir / "pid"), "--timeout", "90"],
            env=self._env, check=True, capture_output=True,
        )
        wait_for(lambda: port_open(self.endpoint.management_port), 30, "the private broker's management API")

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self._env, check=False, capture_output=True)
        wait_for(lambda: not port_open(self.endpoint.port), 30, "the private broker to stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log(self) -> str:
        logs = sorted((self.base_dir / "log").glob("*.log"))
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in logs)
