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
from urllib.parse import quote

import httpx

from common.settings import BrokerNode, Settings
from common.topology import (
    DEAD_LETTER_QUEUE,
    NOTIFICATION_RETRY_QUEUE_PREFIX,
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


def management_client(settings: Settings, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(
        base_url=settings.management_url,
        auth=(settings.rabbitmq_user, settings.rabbitmq_password),
        timeout=timeout,
        transport=FailoverTransport(settings.management_nodes),
    )


def queue_role(name: str) -> str | None:
    if name == WORK_QUEUE:
        return ROLE_WORK
    if name == DEAD_LETTER_QUEUE:
        return ROLE_DEAD_LETTER
    if name == NOTIFICATIONS_QUEUE:
        return ROLE_NOTIFICATIONS
    if name == RETRIED_QUEUE or name.startswith(RETRY_QUEUE_PREFIX + "."):
        return ROLE_RETRY
    if name.startswith(NOTIFICATION_RETRY_QUEUE_PREFIX + "."):
        return ROLE_NOTIFICATIONS
    return None


def expected_queues(settings: Settings) -> list[str]:
    retries = [step.queue for step in retry_steps(settings)]
    notification_retries = [step.queue for step in notification_retry_steps(settings)]
    return [WORK_QUEUE, RETRIED_QUEUE, *retries, DEAD_LETTER_QUEUE, NOTIFICATIONS_QUEUE, *notification_retries]


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
        return sum(getattr(q, attribute) for q in self.by_role(role))

    def as_dict(self) -> dict:
        return {
            "available": self.available,
            "error": self.error,
            "fetched_at": self.fetched_at,
            "queues": {q.name: {k: v for k, v in asdict(q).items() if k != "name"} for q in self.queues},
            "dead_letter_messages": self.total(ROLE_DEAD_LETTER, "messages") if self.available else None,
        }


def _rate(queue: dict, stat: str) -> float:
    return float(((queue.get("message_stats") or {}).get(f"{stat}_details") or {}).get("rate") or 0.0)


def _queue_stats(name: str, raw: dict | None) -> QueueStats:
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


def read_queues(settings: Settings, client: httpx.Client | None = None) -> BrokerStats:
    """The system's queues (the expected ones, plus retry queues of earlier delay settings)."""
    owned = client is None
    client = client or management_client(settings)
    try:
        response = client.get(f"/queues/{quote(settings.rabbitmq_vhost, safe='')}")
        if response.status_code == 404:
            return BrokerStats(True, queues=[_queue_stats(n, None) for n in expected_queues(settings)])
        response.raise_for_status()
        found = {q["name"]: q for q in response.json() if queue_role(q.get("name", ""))}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        where = ", ".join(str(node) for node in settings.management_nodes)
        error = f"management API at {where} unavailable: {_describe(exc)}"
        return BrokerStats(False, error=error)
    finally:
        if owned:
            client.close()
    names = expected_queues(settings)
    names += sorted(set(found) - set(names))
    return BrokerStats(True, queues=[_queue_stats(name, found.get(name)) for name in names])


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
