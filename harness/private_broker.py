"""A RabbitMQ node of the test's own, on free ports, that a test may stop and start again.

The machine's broker on 5672 is shared with everything else and must stay up; this node runs from
the same installation with its own name, data directory and ports, and keeps its data across a
restart (durable queues and persistent messages survive, as they would on a real broker restart).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from harness.broker import BrokerEndpoint
from harness.processes import free_port, port_open, wait_for


class PrivateBroker:
    def __init__(
        self,
        cookie: str | None = None,
        host: str = "127.0.0.1",
        ports: tuple[int, int] | None = None,
        config: str = "",
    ) -> None:
        """`host` is a loopback address to listen on; `ports` (AMQP, management) default to free ones;
        `config` is added to the node's rabbitmq.conf."""
        self.node = f"imgtest-{uuid.uuid4().hex[:6]}@localhost"
        self.config = config
        # Nodes that cluster share a cookie of their own, unknown to the machine's broker.
        self.cookie = cookie
        # Not under pytest's tmp_path: its parents are private to root, and the node runs as the
        # rabbitmq user, which must own every directory it writes.
        self.base_dir = Path(tempfile.mkdtemp(prefix="imgpipe-rabbitmq-"))
        amqp_port, management_port = ports or (free_port(), free_port())
        self.endpoint = BrokerEndpoint(host=host, port=amqp_port, management_port=management_port)
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
            f"listeners.tcp.local = {self.endpoint.host}:{self.endpoint.port}\n"
            f"management.tcp.ip = {self.endpoint.host}\n"
            f"management.tcp.port = {self.endpoint.management_port}\n{self.config}\n"
        )
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base_dir)], check=False)
        cookie = {"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-setcookie {self.cookie}"} if self.cookie else {}
        return {
            **os.environ,
            **cookie,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.endpoint.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base_dir / "pid"),
        }

    def ctl(self, *args: str, check: bool = True, tool: str = "rabbitmqctl") -> str:
        """Runs a RabbitMQ CLI command against this node; returns its output."""
        cookie = ["--erlang-cookie", self.cookie] if self.cookie else []
        result = subprocess.run(
            [tool, "-n", self.node, *cookie, *args], env=self._env, check=False, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.node} failed: {result.stderr or result.stdout}")
        return result.stdout

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        """Starts the node in the background (several can boot at once); `wait_started` waits for it."""
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env, check=True, capture_output=True)

    def wait_started(self) -> None:
        self.ctl("wait", str(self.base_dir / "pid"), "--timeout", "120")
        wait_for(
            lambda: port_open(self.endpoint.management_port, self.endpoint.host), 30,
            "the private broker's management API",
        )

    def stop(self) -> None:
        self.ctl("stop", check=False)
        wait_for(lambda: not self.running(), 30, "the private broker to stop")

    def running(self) -> bool:
        return port_open(self.endpoint.port, self.endpoint.host)

    def kill(self) -> None:
        """Kills the node outright (SIGKILL to the Erlang VM): no goodbye to clients or peers."""
        pid = int((self.base_dir / "pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.running(), 30, "the killed broker's port to close")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log(self) -> str:
        logs = sorted((self.base_dir / "log").glob("*.log"))
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in logs)
