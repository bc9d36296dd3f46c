"""A RabbitMQ node of the test's own, on free ports, that a test may stop and start again.

The machine's broker on 5672 is shared with everything else and must stay up; this node runs from
the same installation with its own name, data directory and ports, and keeps its data across a
restart (durable queues and persistent messages survive, as they would on a real broker restart).

Given a `root` (a Debian root holding another RabbitMQ, built by tools/rabbitmq4_root.sh), the node
runs from that root instead, under chroot, in a mount and PID namespace of its own: /proc is
mounted for it alone and vanishes with it, and when the node's first process ends (a clean stop, a
failed boot, a kill) every process it started ends too, its own epmd included. That epmd listens on
a port of its own, on loopback: the node never registers with the machine's epmd, so it cannot
clash with the machine's nodes.
"""

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from harness.broker import BrokerEndpoint
from harness.processes import PROJECT_DIR, GiveUp, free_port, port_open, wait_for

ROOT_SCRIPT = PROJECT_DIR / "tools" / "rabbitmq4_root.sh"
# Inside a root, where the nodes' data directories go.
ROOT_NODES_DIR = Path("var/lib/imgpipe-nodes")
# Features RabbitMQ 4 deprecates, refused by the nodes run from a root: the system must not need them.
DENIED_DEPRECATED_FEATURES = ("transient_nonexcl_queues", "global_qos", "ram_node_type")


def rabbitmq4_root() -> Path:
    """The Debian 13 root holding RabbitMQ 4, built on first use (about a minute) and cached."""
    result = subprocess.run([str(ROOT_SCRIPT)], cwd=PROJECT_DIR, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{ROOT_SCRIPT.name} could not build the RabbitMQ 4 root:\n{result.stderr[-3000:]}")
    return PROJECT_DIR / result.stdout.strip().splitlines()[-1]


class PrivateBroker:
    def __init__(
        self,
        cookie: str | None = None,
        host: str = "127.0.0.1",
        ports: tuple[int, int] | None = None,
        root: Path | None = None,
        config: str = "",
    ) -> None:
        """`host` is a loopback address to listen on; `ports` (AMQP, management) default to free ones;
        `root` runs the node from another RabbitMQ installation (see the module's docstring); `config`
        is added to the node's rabbitmq.conf."""
        self.node = f"imgtest-{uuid.uuid4().hex[:6]}@localhost"
        self.root = root.resolve() if root else None
        self.config = config
        # Nodes that cluster share a cookie of their own, unknown to the machine's broker. A node in a
        # root always has one: the root's default cookie belongs to nobody.
        self.cookie = cookie or (secrets.token_hex(16) if root else None)
        # Not under pytest's tmp_path: its parents are private to root, and the node runs as the
        # rabbitmq user, which must own every directory it writes.
        if self.root:
            (self.root / ROOT_NODES_DIR).mkdir(parents=True, exist_ok=True)
        self.base_dir = Path(
            tempfile.mkdtemp(prefix="imgpipe-rabbitmq-", dir=self.root / ROOT_NODES_DIR if self.root else None)
        )
        amqp_port, management_port = ports or (free_port(), free_port())
        self.endpoint = BrokerEndpoint(host=host, port=amqp_port, management_port=management_port)
        self._dist_port = free_port()
        self._epmd_port = free_port() if self.root else None
        self._server: subprocess.Popen[bytes] | None = None
        self._env = self._environment()

    @staticmethod
    def available() -> bool:
        return shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None

    def _node_path(self, path: Path) -> str:
        """`path` as the node sees it (inside its root, if it has one)."""
        return f"/{path.relative_to(self.root)}" if self.root else str(path)

    def _command(self, *args: str) -> list[str]:
        if not self.root:
            return list(args)
        return [
            "unshare", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={self.root / 'proc'}",
            "chroot", str(self.root), *args,
        ]

    def _environment(self) -> dict[str, str]:
        for sub in ("mnesia", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # A config file of its own: the machine's may pin listeners to 5672.
        config = (
            f"listeners.tcp.local = {self.endpoint.host}:{self.endpoint.port}\n"
            f"management.tcp.ip = {self.endpoint.host}\n"
            f"management.tcp.port = {self.endpoint.management_port}\n{self.config}\n"
        )
        if self.root:
            config += "".join(f"deprecated_features.permit.{name} = false\n" for name in DENIED_DEPRECATED_FEATURES)
        (self.base_dir / "rabbitmq.conf").write_text(config)
        # The rabbitmq user of the installation that runs the node (a root has its own user ids).
        subprocess.run(self._command("chown", "-R", "rabbitmq:rabbitmq", self._node_path(self.base_dir)), check=False)
        erl_args = [f"-setcookie {self.cookie}"] if self.cookie else []
        epmd: dict[str, str] = {}
        if self._epmd_port:
            erl_args.append("-kernel inet_dist_use_interface {127,0,0,1}")
            epmd = {"ERL_EPMD_PORT": str(self._epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1"}
        base = self._node_path(self.base_dir)
        return {
            **os.environ,
            **({"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": " ".join(erl_args)} if erl_args else {}),
            **epmd,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.endpoint.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_CONFIG_FILE": f"{base}/rabbitmq.conf",
            "RABBITMQ_MNESIA_BASE": f"{base}/mnesia",
            "RABBITMQ_LOG_BASE": f"{base}/log",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{base}/enabled_plugins",
            "RABBITMQ_PID_FILE": f"{base}/pid",
        }

    def ctl(self, *args: str, check: bool = True, tool: str = "rabbitmqctl") -> str:
        """Runs a RabbitMQ CLI command against this node; returns its output."""
        cookie = ["--erlang-cookie", self.cookie] if self.cookie else []
        result = subprocess.run(
            self._command(tool, "-n", self.node, *cookie, *args),
            env=self._env, check=False, capture_output=True, text=True,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.node} failed: {result.stderr or result.stdout}")
        return result.stdout

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        """Starts the node in the background (several can boot at once); `wait_started` waits for it."""
        if not self.root:
            subprocess.run(["rabbitmq-server", "-detached"], env=self._env, check=True, capture_output=True)
            return
        # In the foreground: the namespace lives as long as the node's first process.
        with open(self.base_dir / "server.out", "ab") as output:
            self._server = subprocess.Popen(
                self._command("rabbitmq-server"), env=self._env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_started(self) -> None:
        if self.root:
            # Not `rabbitmqctl wait`: it checks the node's OS pid, which is another PID namespace's.
            wait_for(
                lambda: self._alive() and port_open(self.endpoint.port, self.endpoint.host), 120,
                "the private broker's AMQP port",
            )
            # The port might be another's: the node itself says it has booted (through its own epmd).
            self.ctl("await_startup", "--timeout", "60")
        else:
            self.ctl("wait", str(self.base_dir / "pid"), "--timeout", "120")
        wait_for(
            lambda: self._alive() and port_open(self.endpoint.management_port, self.endpoint.host), 30,
            "the private broker's management API",
        )

    def _alive(self) -> bool:
        """False while it runs, GiveUp once a node run from a root has exited (a failed boot)."""
        if self._server is not None and self._server.poll() is not None:
            raise GiveUp(f"the node {self.node} exited with {self._server.returncode}:\n{self.log()}")
        return True

    def stop(self) -> None:
        self.ctl("stop", check=False)
        try:
            wait_for(lambda: not self.running(), 30, "the private broker to stop")
        finally:
            self._end_namespace()

    def running(self) -> bool:
        if self.root and (self._server is None or self._server.poll() is not None):
            return False
        return port_open(self.endpoint.port, self.endpoint.host)

    def kill(self) -> None:
        """Kills the node outright (SIGKILL to the Erlang VM): no goodbye to clients or peers."""
        if self._server is not None:
            # unshare --kill-child: its death kills the namespace's first process, and with it every other.
            self._server.send_signal(signal.SIGKILL)
        else:
            pid = int((self.base_dir / "pid").read_text().strip())
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.running(), 30, "the killed broker's port to close")
        self._end_namespace()

    def _end_namespace(self) -> None:
        if self._server is None:
            return
        try:
            self._server.wait(30)
        except subprocess.TimeoutExpired:
            self._server.send_signal(signal.SIGKILL)
            self._server.wait(10)
        self._server = None

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log(self) -> str:
        logs = sorted((self.base_dir / "log").glob("*.log")) + sorted(self.base_dir.glob("server.out"))
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in logs)
