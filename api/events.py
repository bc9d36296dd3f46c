"""Live job events: what the API's streams (`GET /jobs/{id}/events`, `GET /events`) and long polls
(`GET /status/{id}?wait=S`) are told.

Each replica follows the events exchange on a queue of its own (`common.topology.declare_event_feed`),
on a thread of its own (`EventFeed`), and hands every event to the streams that want it on the event
loop (`EventHub`). Storage is read when a stream opens and when the feed comes back after losing
the broker (the changes made meanwhile were never delivered to this replica), never in between.
"""

import asyncio
import logging
import threading
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties
from pydantic import ValidationError

from api.errors import RateLimited
from common import backoff
from common.amqp import close_quietly, connect, prepare_topology
from common.messages import JobEvent
from common.settings import BrokerSettings
from common.topology import declare_event_feed

logger = logging.getLogger("api")

# What one stream may have waiting; a stream that falls this far behind is ended (it reconnects).
SUBSCRIBER_BUFFER = 256
# Events every replica remembers, so that `GET /events` can resume after a short disconnection.
RECENT_EVENTS = 1000
# Streams and long polls one client may hold open at once on one replica.
MAX_STREAMS_PER_CLIENT = 16
# The longest `GET /status/{id}?wait=S` may hold a request.
MAX_WAIT_S = 60
FEED_RETRY_BASE_S = 0.5
FEED_RETRY_CAP_S = 10.0


@dataclass(frozen=True)
class FeedState:
    """The feed lost the broker (`lost`) or has it back (`restored`: catch up from storage)."""

    state: Literal["lost", "restored"]


Signal = JobEvent | FeedState


@dataclass(eq=False)
class Subscription:
    """One stream's view of the hub: every event of `job_id` (or of every job, for None)."""

    job_id: str | None
    queue: asyncio.Queue[Signal] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_BUFFER))
    overflowed: bool = False

    async def next(self) -> Signal:
        return await self.queue.get()


class EventHub:
    """Fans events out to subscriptions. Its methods run on the event loop, except `deliver` and
    `feed_changed`, which the feed's thread calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._by_job: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self.recent: deque[JobEvent] = deque(maxlen=RECENT_EVENTS)
        self.connected = False

    def deliver(self, event: JobEvent) -> None:
        self._from_thread(event)

    def feed_changed(self, state: FeedState) -> None:
        self._from_thread(state)

    def _from_thread(self, signal: Signal) -> None:
        with suppress(RuntimeError):  # the loop is closed: the API is stopping
            self._loop.call_soon_threadsafe(self._dispatch, signal)

    @contextmanager
    def subscribe(self, job_id: str | None) -> Iterator[Subscription]:
        subscription = Subscription(job_id)
        group = self._everything if job_id is None else self._by_job.setdefault(job_id, set())
        group.add(subscription)
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)

    @property
    def subscriptions(self) -> int:
        return len(self._everything) + sum(len(group) for group in self._by_job.values())

    def _dispatch(self, signal: Signal) -> None:
        if isinstance(signal, FeedState):
            self.connected = signal.state == "restored"
            targets = [*self._everything, *(s for group in self._by_job.values() for s in group)]
        else:
            self.recent.append(signal)
            targets = [*self._everything, *self._by_job.get(signal.job_id, ())]
        for subscription in targets:
            try:
                subscription.queue.put_nowait(signal)
            except asyncio.QueueFull:
                subscription.overflowed = True


class StreamSlots:
    """At most `limit` streams and long polls open at once per client identity, on this replica."""

    def __init__(self, limit: int = MAX_STREAMS_PER_CLIENT) -> None:
        self._limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, identity: str) -> None:
        if self._open[identity] >= self._limit:
            raise RateLimited(
                f"too many open event streams: at most {self._limit} per client; close one first", retry_after_s=5
            )
        self._open[identity] += 1

    def release(self, identity: str) -> None:
        self._open[identity] -= 1
        if self._open[identity] <= 0:
            del self._open[identity]


class EventFeed:
    """Follows the events exchange on a thread of its own and hands every event to the hub;
    reconnects with a capped backoff when the broker goes."""

    def __init__(self, broker: BrokerSettings, name: str, hub: EventHub) -> None:
        self._broker = broker
        self._name = name
        self._hub = hub
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        retry = backoff.Backoff(base=FEED_RETRY_BASE_S, cap=FEED_RETRY_CAP_S)
        while not self._stopping.is_set():
            try:
                self._follow(retry)
            except (AMQPError, OSError) as exc:
                delay = retry.next_delay()
                logger.warning(
                    "event feed lost the broker (%s: %s); reconnecting in %.1fs", type(exc).__name__, exc, delay
                )
                self._stopping.wait(delay)

    def _follow(self, retry: backoff.Backoff) -> None:
        connection = connect(self._broker, self._name)
        try:
            channel = connection.channel()
            prepare_topology(channel, self._broker)
            queue = declare_event_feed(channel)
            channel.basic_consume(queue, self._on_message, auto_ack=True)
            retry.reset()
            self._hub.feed_changed(FeedState("restored"))
            logger.info("event feed: following job events on %s", queue)
            try:
                while not self._stopping.is_set():
                    connection.process_data_events(time_limit=0.5)
            finally:
                self._hub.feed_changed(FeedState("lost"))
        finally:
            close_quietly(connection)

    def _on_message(
        self, _channel: BlockingChannel, _method: Basic.Deliver, _properties: BasicProperties, body: bytes
    ) -> None:
        try:
            event = JobEvent.model_validate_json(body)
        except ValidationError as exc:
            logger.warning("event feed: ignored a message that is not a job event (%s)", exc.errors()[:1])
            return
        self._hub.deliver(event)


@dataclass
class LiveEvents:
    """What the event routes share in one API process: the hub, the feed that fills it, the slots."""

    hub: EventHub
    feed: EventFeed
    slots: StreamSlots

    @classmethod
    def start(cls, broker: BrokerSettings, instance: str, loop: asyncio.AbstractEventLoop) -> "LiveEvents":
        hub = EventHub(loop)
        live = cls(hub, EventFeed(broker, f"api {instance} events", hub), StreamSlots())
        live.feed.start()
        return live

    def close(self) -> None:
        self.feed.close()
