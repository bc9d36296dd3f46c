"""Three RabbitMQ nodes of the test's own on this machine, clustered: private names, data
directories and Erlang cookie (see private_broker.py), so the machine's broker is never touched.

Each node listens on a loopback address of its own (127.0.0.2, .3, .4) with the same AMQP and
management ports, as three machines would: the services get `RABBITMQ_HOSTS` with one port and
one `RABBITMQ_MANAGEMENT_PORT`, exactly as on a real cluster.
"""

import random
import secrets
import socket
from urllib.parse import quote

import httpx

from harness.broker import BrokerEndpoint
from harness.private_broker import PrivateBroker
from harness.processes import ephemeral_port_floor, wait_for

NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def _free_everywhere(port: int, hosts: tuple[str, ...]) -> bool:
    for host in hosts:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_shared_ports(hosts: tuple[str, ...], count: int) -> list[int]:
    """`count` ports free on every one of `hosts`, below the ephemeral range (see ephemeral_port_floor)."""
    rng = random.Random()
    found: list[int] = []
    for _ in range(200):
        candidate = rng.randrange(10000, ephemeral_port_floor())
        if candidate not in found and _free_everywhere(candidate, hosts):
            found.append(candidate)
            if len(found) == count:
                return found
    raise RuntimeError(f"no {count} ports free on {hosts}")


class BrokerCluster:
    def __init__(self, addresses: tuple[str, ...] = NODE_ADDRESSES) -> None:
        cookie = secrets.token_hex(16)
        amqp_port, management_port = free_shared_ports(addresses, 2)
        self.nodes = [PrivateBroker(cookie, host, (amqp_port, management_port)) for host in addresses]

    @property
    def amqp_port(self) -> int:
        return self.seed.endpoint.port

    @property
    def management_port(self) -> int:
        return self.seed.endpoint.management_port

    @property
    def seed(self) -> PrivateBroker:
        return self.nodes[0]

    def hosts(self) -> str:
        """The cluster as RABBITMQ_HOSTS: every node's AMQP address, in order."""
        return ",".join(f"{node.endpoint.host}:{node.endpoint.port}" for node in self.nodes)

    def start(self) -> "BrokerCluster":
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_started()
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", self.seed.node)
            node.ctl("start_app")
        wait_for(lambda: set(self.running_nodes()) == {n.node for n in self.nodes}, 60, "every node to be running")
        return self

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()

    def node(self, name: str) -> PrivateBroker:
        return next(node for node in self.nodes if node.node == name)

    def alive(self) -> list[PrivateBroker]:
        return [node for node in self.nodes if node.running()]

    def endpoint(self) -> BrokerEndpoint:
        """A node that is up (its AMQP and management ports), for the test's own reads."""
        return self.alive()[0].endpoint

    def management(self, path: str) -> httpx.Response:
        """GET from the management API of the first node that answers (every node serves the whole cluster)."""
        error: Exception | None = None
        for node in self.alive():
            endpoint = node.endpoint
            try:
                return httpx.get(
                    f"http://{endpoint.host}:{endpoint.management_port}/api{path}",
                    auth=(endpoint.user, endpoint.password), timeout=5,
                ).raise_for_status()
            except httpx.HTTPError as exc:
                error = exc
        raise RuntimeError(f"no management API answered: {error!r}")

    def running_nodes(self) -> list[str]:
        return [n["name"] for n in self.management("/nodes").json() if n.get("running")]

    def queue(self, vhost: str, name: str) -> dict:
        return self.management(f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}").json()

    def leader(self, vhost: str, name: str) -> str:
        """The node that leads a quorum queue (its Raft leader), as the management API reports it."""
        queue = self.queue(vhost, name)
        assert queue.get("type") == "quorum", f"{name} is a {queue.get('type')} queue"
        return queue["leader"]
