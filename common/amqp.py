"""RabbitMQ connections: a confirming publisher and a reconnecting consumer.

The consumer keeps AMQP I/O on one thread and runs the handler on another, so heartbeats keep
flowing while a large image is processed; the handler's verdict goes back to the I/O thread with
`add_callback_threadsafe`. Connection losses are retried with a capped backoff that resets after a
good run; a channel closed by the broker (a topology mismatch, a missing queue) and refused
credentials are configuration errors and stop the consumer instead of looping.

A delivery whose connection is lost while its handler runs is marked `lost`: the broker has
already given the message back to the queue for another consumer, so the handler stops before it
commits anything further (see `Delivery.lost`) instead of finishing a job that now runs twice.
"""

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import (
    AMQPChannelError,
    AMQPError,
    NackError,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
    UnroutableError,
)
from pika.spec import Basic, BasicProperties

from common import backoff
from common.settings import BrokerSettings
from common.topology import declare_topology

logger = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent
PUBLISH_RETRY_BASE_S = 0.2
PUBLISH_RETRY_CAP_S = 2.0


def connection_parameters(broker: BrokerSettings, name: str) -> list[pika.ConnectionParameters]:
    """One set of parameters per broker node; pika tries them in order and keeps the first that
    answers, so a connection lost with its node is re-established on the next one."""
    credentials = pika.PlainCredentials(broker.user, broker.password)
    return [
        pika.ConnectionParameters(
            host=node.host,
            port=node.port,
            virtual_host=broker.vhost,
            credentials=credentials,
            heartbeat=broker.heartbeat_s,
            blocked_connection_timeout=30,
            socket_timeout=5,
            stack_timeout=10,
            connection_attempts=1,
            client_properties={"connection_name": name},
        )
        for node in broker.nodes
    ]


def prepare_topology(channel: BlockingChannel, broker: BrokerSettings) -> None:
    """Declares the topology, unless it was declared beforehand by a user allowed to (RABBITMQ_DECLARE_TOPOLOGY)."""
    if broker.declare_topology:
        declare_topology(channel, broker.topology)


def connect(broker: BrokerSettings, name: str) -> pika.BlockingConnection:
    """A connection to the first broker node that answers (logged, so a move to another node shows)."""
    connection = pika.BlockingConnection(connection_parameters(broker, name))
    params = getattr(connection._impl, "params", None)  # pika keeps the node it chose only here
    if params is not None and len(broker.nodes) > 1:
        logger.info("%s: connected to broker node %s:%s", name, params.host, params.port)
    return connection


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Closes a connection that may already be gone."""
    if connection.is_open:
        with suppress(AMQPError, OSError):
            connection.close()


class PublishFailed(Exception):
    """The broker did not confirm a message after every attempt."""


class QueueFull(PublishFailed):
    """The broker refused the message: the queue it routes to holds as many as it may."""


class DeliveryLost(Exception):
    """The connection that delivered the message being handled is gone: the broker redelivers it."""


class Publisher:
    """Publishes persistent messages with publisher confirms, on a connection of its own.

    Reconnects on demand and tries a bounded number of times. Safe to share between threads.
    """

    def __init__(self, broker: BrokerSettings, name: str) -> None:
        self._broker = broker
        self._name = name
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
        content_type: str = "application/json",
        cancel: threading.Event | None = None,
    ) -> None:
        """Publishes and waits for the broker's confirm; retries on a lost connection.

        `cancel` (a delivery's `lost` flag) is checked before each attempt: once it is set, the
        message is not sent and DeliveryLost is raised.
        """
        properties = BasicProperties(
            content_type=content_type,
            delivery_mode=PERSISTENT,
            message_id=message_id,
            headers=headers,
            timestamp=int(time.time()),
            app_id=self._name,
        )
        attempts = self._broker.publish_attempts
        last_error: Exception | None = None
        with self._lock:
            for attempt in range(1, attempts + 1):
                if cancel is not None and cancel.is_set():
                    raise DeliveryLost(f"not publishing to {exchange}/{routing_key}: the delivery was lost")
                try:
                    channel = self._ensure_channel()
                    channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
                    return
                except NackError as exc:
                    # x-overflow=reject-publish: asking again at once would be refused the same way.
                    raise QueueFull(f"the broker refused {exchange}/{routing_key}: the queue is full") from exc
                except UnroutableError as exc:
                    # The message reached no queue: the topology is redeclared on reconnect.
                    last_error = exc
                    self._close()
                except (AMQPError, OSError) as exc:
                    last_error = exc
                    self._close()
                if attempt < attempts:
                    time.sleep(backoff.delay(attempt, PUBLISH_RETRY_BASE_S, PUBLISH_RETRY_CAP_S))
        raise PublishFailed(
            f"broker did not confirm {exchange}/{routing_key} after {attempts} attempts: "
            f"{type(last_error).__name__}: {last_error}"
        )

    def is_reachable(self) -> bool:
        with self._lock:
            try:
                self._ensure_channel().connection.process_data_events(time_limit=0)
                return True
            except (AMQPError, OSError):
                self._close()
                return False

    def close(self) -> None:
        with self._lock:
            self._close()

    def _ensure_channel(self) -> BlockingChannel:
        if (
            self._connection is None
            or self._channel is None
            or not self._connection.is_open
            or not self._channel.is_open
        ):
            self._close()
            self._connection = connect(self._broker, self._name)
            channel = self._connection.channel()
            prepare_topology(channel, self._broker)
            channel.confirm_delivery()
            self._channel = channel
        return self._channel

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with suppress(AMQPError, OSError):
                connection.close()


class BrokerUnavailable(Exception):
    """The broker could not be reached or dropped the connection."""


@dataclass(frozen=True)
class QueuedMessage:
    """A message read from a queue without being consumed: it stays until `remove`d."""

    tag: int
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    content_type: str | None


class QueueInspector:
    """Reads a queue's messages on a connection of its own, leaving them unacked: closing the
    connection puts every one not explicitly removed back in its place."""

    def __init__(self, channel: BlockingChannel, queue: str) -> None:
        self._channel = channel
        self._queue = queue

    def depth(self) -> int:
        return int(self._channel.queue_declare(self._queue, passive=True).method.message_count)

    def messages(self, limit: int) -> Iterator[QueuedMessage]:
        """Up to `limit` messages in queue order (as many as were there when asked)."""
        for _ in range(min(self.depth(), limit)):
            method, properties, body = self._channel.basic_get(self._queue, auto_ack=False)
            if method is None:
                return
            yield QueuedMessage(
                method.delivery_tag, body, dict(properties.headers or {}), properties.message_id,
                properties.content_type,
            )

    def remove(self, message: QueuedMessage) -> None:
        self._channel.basic_ack(message.tag)


@contextmanager
def inspect_queue(broker: BrokerSettings, queue: str, name: str) -> Iterator[QueueInspector]:
    try:
        connection = connect(broker, name)
    except (AMQPError, OSError) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        channel = connection.channel()
        prepare_topology(channel, broker)
        yield QueueInspector(channel, queue)
    except (AMQPError, OSError) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        close_quietly(connection)


class Outcome(enum.Enum):
    ACK = "ack"
    DEAD_LETTER = "dead-letter"  # nack without requeue: the queue's dead-letter exchange takes it
    REQUEUE = "requeue"
    ABANDON = "abandon"  # the delivery was lost with its connection: nothing left to settle


@dataclass
class Delivery:
    body: bytes
    properties: BasicProperties
    delivery_tag: int
    redelivered: bool
    routing_key: str
    channel: BlockingChannel = field(repr=False)
    # Set by the consumer when the connection goes while the message is unsettled.
    lost: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers or {}


Handler = Callable[[Delivery], Outcome]


class Consumer:
    """Consumes one or more queues, handing each message to `handler` on one of `concurrency`
    handler threads.

    `prefetch` messages per queue are taken from the broker at a time. `stop()` (e.g. from a
    SIGTERM handler) cancels the subscriptions, hands back messages that were prefetched but not
    started, lets the running ones finish for up to `grace_s`, then closes the connection; anything
    still unacked then goes back to the queue for another consumer.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        queues: str | tuple[str, ...],
        handler: Handler,
        name: str,
        *,
        prefetch: int,
        grace_s: float,
        concurrency: int = 1,
    ) -> None:
        self._broker = broker
        self._queues = (queues,) if isinstance(queues, str) else tuple(queues)
        self._handler = handler
        self._name = name
        self._prefetch = prefetch
        self._grace_s = grace_s
        self._stopping = threading.Event()
        self._finished = False
        self._cond = threading.Condition()
        self._pending: deque[Delivery] = deque()
        self._running: dict[int, Delivery] = {}  # being handled, by id
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-handler-{n}", daemon=True)
            for n in range(concurrency)
        ]

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        for worker in self._workers:
            worker.start()
        reconnect = backoff.Backoff(base=0.5, cap=30.0)
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    self._consume_until_stopped()
                except (ProbableAuthenticationError, ProbableAccessDeniedError, AMQPChannelError):
                    logger.exception("%s: broker refused us; not retrying", self._name)
                    raise
                except (AMQPError, OSError) as exc:
                    if time.monotonic() - started > 60:
                        reconnect.reset()
                    delay = reconnect.next_delay()
                    logger.warning(
                        "%s: lost the broker (%s: %s); reconnecting in %.1fs",
                        self._name, type(exc).__name__, exc, delay,
                    )
                    self._stopping.wait(delay)
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()
        logger.info("%s: stopped", self._name)

    def _consume_until_stopped(self) -> None:
        connection = connect(self._broker, self._name)
        try:
            channel = connection.channel()
            prepare_topology(channel, self._broker)
            # Per consumer (RabbitMQ's default; global QoS is deprecated).
            channel.basic_qos(prefetch_count=self._prefetch)

            def on_message(
                ch: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
            ) -> None:
                delivery = Delivery(body, properties, method.delivery_tag, method.redelivered, method.routing_key, ch)
                with self._cond:
                    self._pending.append(delivery)
                    self._cond.notify_all()

            tags = [channel.basic_consume(queue, on_message) for queue in self._queues]
            logger.info(
                "%s: consuming %s (prefetch %d, %d at a time)",
                self._name, ", ".join(self._queues), self._prefetch, len(self._workers),
            )
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=0.5)
            self._drain(connection, channel, tags)
        finally:
            self._mark_unsettled_lost()  # the broker redelivers them once the connection is gone
            if connection.is_open:
                with suppress(AMQPError, OSError):
                    connection.close()

    def _drain(self, connection: pika.BlockingConnection, channel: BlockingChannel, tags: list[str]) -> None:
        for tag in tags:
            channel.basic_cancel(tag)
        for delivery in self._take_pending():
            channel.basic_nack(delivery.delivery_tag, requeue=True)
        deadline = time.monotonic() + self._grace_s
        while self._running and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        connection.process_data_events(time_limit=0)
        if self._running:
            logger.warning(
                "%s: %d message(s) still being handled after %.0fs; handing them back to the queue",
                self._name, len(self._running), self._grace_s,
            )

    def _mark_unsettled_lost(self) -> None:
        with self._cond:
            unsettled = [*self._pending, *self._running.values()]
            self._pending.clear()
        for delivery in unsettled:
            delivery.lost.set()

    def _take_pending(self) -> list[Delivery]:
        with self._cond:
            taken = list(self._pending)
            self._pending.clear()
            return taken

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._finished:
                    self._cond.wait()
                if not self._pending:
                    return
                delivery = self._pending.popleft()
                self._running[id(delivery)] = delivery
            try:
                outcome = self._run_handler(delivery)
                if outcome is Outcome.ABANDON or delivery.lost.is_set():
                    logger.warning(
                        "%s: delivery %d was lost with its connection; the broker redelivers it",
                        self._name, delivery.delivery_tag,
                    )
                    continue
                try:
                    # partial, not a lambda: the loop rebinds delivery before the callback runs.
                    delivery.channel.connection.add_callback_threadsafe(partial(_settle, delivery, outcome))
                except (AMQPError, OSError, AttributeError):
                    logger.warning(
                        "%s: connection gone before settling delivery %d; the broker will redeliver it",
                        self._name, delivery.delivery_tag,
                    )
            finally:
                with self._cond:
                    self._running.pop(id(delivery), None)

    def _run_handler(self, delivery: Delivery) -> Outcome:
        try:
            return self._handler(delivery)
        except Exception:
            logger.exception("%s: handler crashed; dead-lettering the message", self._name)
            return Outcome.DEAD_LETTER


def _settle(delivery: Delivery, outcome: Outcome) -> None:
    """Runs on the I/O thread."""
    channel = delivery.channel
    if not channel.is_open:
        return
    if outcome is Outcome.ACK:
        channel.basic_ack(delivery.delivery_tag)
    else:
        channel.basic_nack(delivery.delivery_tag, requeue=outcome is Outcome.REQUEUE)
