"""The system's queues as the RabbitMQ management HTTP API sees them.

Figures are the broker's own: messages ready and unacknowledged, consumers, publish / deliver /
ack rates (messages per second, averaged by the broker over its last sampling period) and
`consumer_utilisation` (the fraction of time the queue could hand a message to a consumer at
once; not how busy the workers are). The management API refreshes them every few seconds
(`collect_statistics_interval`, 5 s by default), so they lag the queue by up to that much.

`read_queues` never raises: an unreachable API or a missing queue is reported as such.

With several broker nodes (RABBITMQ_HOSTS) every node serves the same API for the whole cluster;
the client asks the node that answered last and moves to the next one when it cannot connect.
"""

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from common.settings import BrokerNode, BrokerSettings, TopologySettings
from common.topology import (
    DEAD_LETTER_QUEUE,
    NOTIFICATION_RETRY_QUEUE_PREFIX,
    NOTIFICATIONS_DEAD_LETTER_QUEUE,
    NOTIFICATIONS_QUEUE,
    RETRIED_QUEUE,
    RETRY_QUEUE_PREFIX,
    WORK_QUEUE,
    notification_retry_steps,
    retry_steps,
)

ROLE_WORK = "work"
ROLE_RETRY = "retry"
ROLE_DEAD_LETTER = "dead_letter"
ROLE_NOTIFICATIONS = "notifications"


class FailoverTransport(httpx.BaseTransport):
    """Sends each request to one node of a list, starting with the one that answered last.

    Only a failure to connect moves on to the next node: a node that answers, even with an error
    status, has answered. When no node can be reached the last connection error is raised.
    """

    def __init__(self, nodes: list[BrokerNode], transport: httpx.BaseTransport | None = None) -> None:
        if not nodes:
            raise ValueError("no management API node to send requests to")
        self.nodes = list(nodes)
        self._transport = transport or httpx.HTTPTransport()
        self._lock = threading.Lock()
        self._preferred = 0

    @property
    def current(self) -> BrokerNode:
        return self.nodes[self._preferred]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            first = self._preferred
        error: httpx.TransportError | None = None
        for offset in range(len(self.nodes)):
            index = (first + offset) % len(self.nodes)
            node = self.nodes[index]
            url = request.url.copy_with(host=node.host, port=node.port)
            headers = [(b"Host", url.netloc), *((k, v) for k, v in request.headers.raw if k.lower() != b"host")]
            attempt = httpx.Request(
                request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
            )
            try:
                response = self._transport.handle_request(attempt)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = exc
                continue
            with self._lock:
                self._preferred = index
            return response
        assert error is not None
        raise error

    def close(self) -> None:
        self._transport.close()


def management_client(broker: BrokerSettings, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(
        base_url=broker.management_url,
        auth=(broker.user, broker.password),
        timeout=timeout,
        transport=FailoverTransport(broker.management_nodes),
    )


class ManagementApi:
    """The RabbitMQ management HTTP API, as every part of the system uses it: the API's /stats and
    /metrics, the monitors, the load tools, `make clean`, and the tests' private virtual hosts."""

    def __init__(self, client: httpx.Client, vhost: str) -> None:
        self.client = client
        self.vhost = vhost

    @classmethod
    def from_settings(cls, broker: BrokerSettings, timeout: float = 5.0) -> "ManagementApi":
        return cls(management_client(broker, timeout), broker.vhost)

    @classmethod
    def at(cls, host: str, port: int, user: str, password: str, vhost: str, timeout: float = 10.0) -> "ManagementApi":
        """One node at a known address (the tests' brokers)."""
        return cls(httpx.Client(base_url=f"http://{host}:{port}/api", auth=(user, password), timeout=timeout), vhost)

    @property
    def _vhost(self) -> str:
        return quote(self.vhost, safe="")

    def queues(self) -> list[dict[str, Any]]:
        """Every queue of the virtual host; HTTPStatusError (404) if the virtual host does not exist."""
        queues: list[dict[str, Any]] = self.client.get(f"/queues/{self._vhost}").raise_for_status().json()
        return queues

    def queue(self, name: str) -> dict[str, Any]:
        response = self.client.get(f"/queues/{self._vhost}/{quote(name, safe='')}").raise_for_status()
        queue: dict[str, Any] = response.json()
        return queue

    def connections(self) -> list[dict[str, Any]]:
        """The virtual host's client connections (the soak checks that their number stays put)."""
        response = self.client.get(f"/vhosts/{self._vhost}/connections").raise_for_status()
        connections: list[dict[str, Any]] = response.json()
        return connections

    def channels(self) -> list[dict[str, Any]]:
        channels: list[dict[str, Any]] = self.client.get(f"/vhosts/{self._vhost}/channels").raise_for_status().json()
        return channels

    def delete_queue(self, name: str) -> None:
        self.client.delete(f"/queues/{self._vhost}/{quote(name, safe='')}").raise_for_status()

    def delete_exchange(self, name: str) -> None:
        response = self.client.delete(f"/exchanges/{self._vhost}/{quote(name, safe='')}")
        if response.status_code != 404:
            response.raise_for_status()

    def create_vhost(self, user: str) -> None:
        """Creates the virtual host and gives `user` every permission on it."""
        self.client.put(f"/vhosts/{self._vhost}").raise_for_status()
        self.client.put(
            f"/permissions/{self._vhost}/{quote(user, safe='')}", json={"configure": ".*", "write": ".*", "read": ".*"}
        ).raise_for_status()

    def import_definitions(self, definitions: dict[str, Any]) -> None:
        """Imports users, permissions and virtual hosts (RabbitMQ's definitions format); existing
        ones are updated, nothing is removed."""
        self.client.post("/definitions", json=definitions).raise_for_status()

    def delete_vhost(self) -> None:
        self.client.delete(f"/vhosts/{self._vhost}")

    def close(self) -> None:
        self.client.close()


def queue_role(name: str) -> str | None:
    if name == WORK_QUEUE:
        return ROLE_WORK
    if name in (DEAD_LETTER_QUEUE, NOTIFICATIONS_DEAD_LETTER_QUEUE):
        return ROLE_DEAD_LETTER
    if name == NOTIFICATIONS_QUEUE:
        return ROLE_NOTIFICATIONS
    if name == RETRIED_QUEUE or name.startswith(RETRY_QUEUE_PREFIX + "."):
        return ROLE_RETRY
    if name.startswith(NOTIFICATION_RETRY_QUEUE_PREFIX + "."):
        return ROLE_NOTIFICATIONS
    return None


def expected_queues(topology: TopologySettings) -> list[str]:
    retries = [step.queue for step in retry_steps(topology.job_retries)]
    notification_retries = [step.queue for step in notification_retry_steps(topology.webhook_retries)]
    return [
        WORK_QUEUE, RETRIED_QUEUE, *retries, DEAD_LETTER_QUEUE,
        NOTIFICATIONS_QUEUE, *notification_retries, NOTIFICATIONS_DEAD_LETTER_QUEUE,
    ]


@dataclass
class QueueStats:
    name: str
    role: str
    exists: bool = True
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    publish_rate: float = 0.0
    deliver_rate: float = 0.0
    ack_rate: float = 0.0
    consumer_utilisation: float | None = None

    @property
    def messages(self) -> int:
        return self.ready + self.unacked


@dataclass
class BrokerStats:
    available: bool
    error: str | None = None
    queues: list[QueueStats] = field(default_factory=list)
    fetched_at: float = field(default_factory=time.time)

    def queue(self, name: str) -> QueueStats | None:
        return next((q for q in self.queues if q.name == name), None)

    def by_role(self, role: str) -> list[QueueStats]:
        return [q for q in self.queues if q.role == role and q.exists]

    def total(self, role: str, attribute: str) -> float:
        total: float = sum(getattr(q, attribute) for q in self.by_role(role))
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "error": self.error,
            "fetched_at": self.fetched_at,
            "queues": {q.name: {k: v for k, v in asdict(q).items() if k != "name"} for q in self.queues},
            "dead_letter_messages": self.total(ROLE_DEAD_LETTER, "messages") if self.available else None,
        }


def _rate(queue: dict[str, Any], stat: str) -> float:
    return float(((queue.get("message_stats") or {}).get(f"{stat}_details") or {}).get("rate") or 0.0)


def _queue_stats(name: str, raw: dict[str, Any] | None) -> QueueStats:
    role = queue_role(name) or "other"
    if raw is None:
        return QueueStats(name=name, role=role, exists=False)
    utilisation = raw.get("consumer_utilisation", raw.get("consumer_capacity"))
    return QueueStats(
        name=name,
        role=role,
        ready=int(raw.get("messages_ready") or 0),
        unacked=int(raw.get("messages_unacknowledged") or 0),
        consumers=int(raw.get("consumers") or 0),
        publish_rate=_rate(raw, "publish"),
        deliver_rate=_rate(raw, "deliver_get"),
        ack_rate=_rate(raw, "ack"),
        consumer_utilisation=float(utilisation) if isinstance(utilisation, (int, float)) else None,
    )


def read_queues(broker: BrokerSettings, api: ManagementApi | None = None) -> BrokerStats:
    """The system's queues (the expected ones, plus retry queues of earlier delay settings)."""
    owned = api is None
    api = api or ManagementApi.from_settings(broker)
    try:
        found = {q["name"]: q for q in api.queues() if queue_role(q.get("name", ""))}
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:  # no virtual host yet: nothing has run
            return BrokerStats(True, queues=[_queue_stats(n, None) for n in expected_queues(broker.topology)])
        return _unavailable(broker, exc)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return _unavailable(broker, exc)
    finally:
        if owned:
            api.close()
    names = expected_queues(broker.topology)
    names += sorted(set(found) - set(names))
    return BrokerStats(True, queues=[_queue_stats(name, found.get(name)) for name in names])


def _unavailable(broker: BrokerSettings, exc: Exception) -> BrokerStats:
    where = ", ".join(str(node) for node in broker.management_nodes)
    return BrokerStats(False, error=f"management API at {where} unavailable: {_describe(exc)}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
