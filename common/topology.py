"""Every exchange, queue and binding the system uses, declared in one place.

    api ──publish──▶ images.jobs (direct) ──"job"──▶ images.jobs.work ──▶ workers
                       │   (at most MAX_QUEUED_JOBS waiting; past it the broker refuses the publish)
                       └──"retried"──▶ images.jobs.retried ──▶ workers (jobs back from a delay)
                                                        │ rejected / failed for good
                                                        ▼
                           images.dlx (fanout) ──▶ images.jobs.dead
    workers, transient failure ──▶ images.retry (direct) ──"retry.<delay>"──▶ images.jobs.retry.<delay>
                                   (message TTL, then dead-lettered to images.jobs as "retried")
    workers ──▶ images.events (topic) ──"job.*"──▶ images.notifications ──▶ notifier
                     │                                  │ unreadable, or delivered too often
                     │                                  ▼
                     │            (default exchange) ──▶ images.notifications.dead
                     └──"job.*", "progress.*"──▶ amq.gen-… (one per API replica, exclusive) ──▶ live streams
    api, workers ──"progress.<status>"──▶ images.events (queued, processing, retrying: not the notifier's)
    notifier, webhook to try again ──▶ images.retry ──"notify.<delay>"──▶ images.notifications.retry.<delay>
                                   (message TTL, then dead-lettered straight to images.notifications)

Jobs coming back from a delay have a queue of their own: the length limit of the work queue must
never drop a job that was already accepted (the broker drops dead-lettered messages that a full
queue refuses). Workers consume both queues.

Declaring is idempotent: every service declares the whole topology when it connects, so whichever
starts first creates it.

Quorum queues (QUEUE_TYPE=quorum) count deliveries: from RabbitMQ 4.0 each has a delivery limit of
20 unless declared with one, past which a message is dead-lettered or, without a dead-letter
exchange, dropped — and a message read and handed back (as /dlq/stats reads the dead letters)
counts. So every quorum queue states its limit, the same on RabbitMQ 3 and 4: the job queues
MAX_ATTEMPTS, the notifications queue NOTIFICATION_DELIVERY_LIMIT (then its dead-letter queue), the
dead-letter queues UNLIMITED_DELIVERIES.
"""

import logging
from dataclasses import dataclass
from typing import Final

from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

from common import backoff
from common.settings import RetryPolicy, TopologySettings

logger = logging.getLogger(__name__)

JOBS_EXCHANGE = "images.jobs"
JOBS_ROUTING_KEY = "job"
WORK_QUEUE = "images.jobs.work"
RETRIED_ROUTING_KEY = "retried"
RETRIED_QUEUE = "images.jobs.retried"
JOB_QUEUES = (WORK_QUEUE, RETRIED_QUEUE)

DEAD_LETTER_EXCHANGE = "images.dlx"
DEAD_LETTER_QUEUE = "images.jobs.dead"

RETRY_EXCHANGE = "images.retry"
RETRY_QUEUE_PREFIX = "images.jobs.retry"

EVENTS_EXCHANGE = "images.events"
NOTIFICATIONS_QUEUE = "images.notifications"
NOTIFICATIONS_DEAD_LETTER_QUEUE = "images.notifications.dead"
NOTIFICATION_RETRY_QUEUE_PREFIX = "images.notifications.retry"
EVENT_COMPLETED: Final = "job.completed"
EVENT_FAILED: Final = "job.failed"
EVENT_CANCELLED: Final = "job.cancelled"
PROGRESS_ROUTING_PREFIX = "progress"
FINAL_EVENTS = (EVENT_COMPLETED, EVENT_FAILED, EVENT_CANCELLED)
# An API replica's feed of live events holds at most this many; past it the oldest go first.
EVENT_FEED_MAX_LENGTH = 10_000

# No limit in effect. Not -1: RabbitMQ 4 reads it as "no limit", but 3.x as "no redelivery at all"
# (measured on 3.10.8: a message handed back once is dropped).
UNLIMITED_DELIVERIES = 2**31 - 1
# An event that keeps killing the notifier, or that it keeps handing back, goes to its dead-letter
# queue after this many deliveries (RabbitMQ 4's default, stated so 3.x behaves the same).
NOTIFICATION_DELIVERY_LIMIT = 20
PRECONDITION_FAILED = 406

# What was already said about queues an earlier release declared: every connection declares the topology.
_warned_earlier_release: set[str] = set()


@dataclass(frozen=True)
class RetryStep:
    attempt: int
    delay_ms: int
    queue_prefix: str = RETRY_QUEUE_PREFIX
    routing_prefix: str = "retry"

    # Named by delay, not by attempt: a changed delay setting declares new queues instead of
    # clashing with the arguments of existing ones.
    @property
    def queue(self) -> str:
        return f"{self.queue_prefix}.{self.delay_ms}ms"

    @property
    def routing_key(self) -> str:
        return f"{self.routing_prefix}.{self.delay_ms}ms"


def retry_steps(policy: RetryPolicy) -> list[RetryStep]:
    """One delay queue per retry, the delay doubling each time (1 s, 2 s, 4 s, ... by default).

    Separate queues rather than per-message TTL on one queue: RabbitMQ only expires messages at
    the head of a queue, so a long delay would hold back a short one behind it.
    """
    return [
        RetryStep(attempt=n, delay_ms=round(backoff.delay(n, policy.base_delay_ms)))
        for n in range(1, policy.attempts)
    ]


def notification_retry_steps(policy: RetryPolicy) -> list[RetryStep]:
    """The webhook's delays between attempts: WEBHOOK_BACKOFF_S, doubling."""
    return [
        RetryStep(n, round(backoff.delay(n, policy.base_delay_ms)), NOTIFICATION_RETRY_QUEUE_PREFIX, "notify")
        for n in range(1, max(2, policy.attempts))
    ]


def _queue_arguments(
    topology: TopologySettings, delivery_limit: int | None = None, **extra: object
) -> dict[str, object]:
    """`delivery_limit` is given to quorum queues only (classic queues refuse the argument)."""
    quorum = delivery_limit is not None and topology.queue_type == "quorum"
    return {"x-queue-type": topology.queue_type, **extra, **({"x-delivery-limit": delivery_limit} if quorum else {})}


def declare_topology(channel: BlockingChannel, topology: TopologySettings) -> None:
    channel.exchange_declare(JOBS_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "fanout", durable=True)
    channel.exchange_declare(RETRY_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)

    # A message redelivered MAX_ATTEMPTS times (a worker crashing on it each time) is dead-lettered.
    attempts = topology.job_retries.attempts
    dead_lettered = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    limited = {"x-max-length": topology.max_queued_jobs, "x-overflow": "reject-publish"}
    channel.queue_declare(
        WORK_QUEUE, durable=True, arguments=_queue_arguments(topology, attempts, **dead_lettered, **limited)
    )
    channel.queue_bind(WORK_QUEUE, JOBS_EXCHANGE, routing_key=JOBS_ROUTING_KEY)
    channel.queue_declare(RETRIED_QUEUE, durable=True, arguments=_queue_arguments(topology, attempts, **dead_lettered))
    channel.queue_bind(RETRIED_QUEUE, JOBS_EXCHANGE, routing_key=RETRIED_ROUTING_KEY)

    # Read and handed back by /dlq/stats and /dlq/replay as often as they are asked.
    _declare_grown(channel, DEAD_LETTER_QUEUE, _queue_arguments(topology, UNLIMITED_DELIVERIES), "x-delivery-limit")
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)

    for step in retry_steps(topology.job_retries):
        _declare_delay(channel, topology, step, JOBS_EXCHANGE, RETRIED_ROUTING_KEY)

    channel.queue_declare(
        NOTIFICATIONS_DEAD_LETTER_QUEUE, durable=True, arguments=_queue_arguments(topology, UNLIMITED_DELIVERIES)
    )
    notification_arguments = _queue_arguments(
        topology,
        NOTIFICATION_DELIVERY_LIMIT,
        **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": NOTIFICATIONS_DEAD_LETTER_QUEUE},
    )
    _declare_grown(
        channel, NOTIFICATIONS_QUEUE, notification_arguments,
        "x-delivery-limit", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    )
    channel.queue_bind(NOTIFICATIONS_QUEUE, EVENTS_EXCHANGE, routing_key="job.*")
    for step in notification_retry_steps(topology.webhook_retries):
        # Back through the default exchange, to the notifications queue alone: through the events
        # exchange, every other subscriber of job events would see the event again.
        _declare_delay(channel, topology, step, "", NOTIFICATIONS_QUEUE)


def _declare_grown(channel: BlockingChannel, queue: str, arguments: dict[str, object], *added: str) -> None:
    """Declares a queue given the `added` arguments after its first release.

    RabbitMQ refuses (PRECONDITION_FAILED, closing the channel) to redeclare an existing queue with
    other arguments, so a queue an earlier release declared is tried on a channel of its own; if that
    is refused, the queue is declared as the earlier release did — any other difference is still
    refused, as before — and used as it is, with a warning (once per queue and vhost): a policy
    gives it what it lacks (README, "Queues declared by an earlier release").
    """
    trial = channel.connection.channel()
    try:
        trial.queue_declare(queue, durable=True, arguments=arguments)
    except ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        earlier = {key: value for key, value in arguments.items() if key not in added}
        channel.queue_declare(queue, durable=True, arguments=earlier)
        # The broker's reply names the queue and its vhost.
        if exc.reply_text in _warned_earlier_release:
            return
        _warned_earlier_release.add(exc.reply_text)
        logger.warning(
            "queue %s was declared by an earlier release, without %s; using it as it is (%s). "
            "A policy gives it what it lacks: see the README, 'Queues declared by an earlier release'",
            queue, ", ".join(key for key in added if key in arguments), exc.reply_text,
        )
    finally:
        if trial.is_open:
            trial.close()


def event_routing_key(status: str) -> str:
    """`job.completed` / `job.failed` / `job.cancelled` reach the notifier; the other changes only the live streams."""
    final = f"job.{status}"
    return final if final in FINAL_EVENTS else f"{PROGRESS_ROUTING_PREFIX}.{status}"


def declare_event_feed(channel: BlockingChannel) -> str:
    """A queue of this connection's own that receives every job event; returns its name.

    Exclusive (RabbitMQ deletes it with the connection, and RabbitMQ 4 deprecates transient queues
    that are not), classic (the only type that may be exclusive), bounded and dropping its oldest:
    a replica that falls behind loses old changes, never the broker's memory. A reconnecting
    replica gets a new one and catches up from the job records.
    """
    declared = channel.queue_declare(
        "", exclusive=True, auto_delete=True,
        arguments={"x-max-length": EVENT_FEED_MAX_LENGTH, "x-overflow": "drop-head"},
    )
    queue: str = declared.method.queue
    for pattern in ("job.*", f"{PROGRESS_ROUTING_PREFIX}.*"):
        channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key=pattern)
    return queue


def _declare_delay(
    channel: BlockingChannel, topology: TopologySettings, step: RetryStep, exchange: str, routing_key: str
) -> None:
    channel.queue_declare(
        step.queue,
        durable=True,
        arguments=_queue_arguments(
            topology,
            None,  # nobody consumes a delay queue: its messages leave by expiring
            **{
                "x-message-ttl": step.delay_ms,
                "x-dead-letter-exchange": exchange,
                "x-dead-letter-routing-key": routing_key,
            },
        ),
    )
    channel.queue_bind(step.queue, RETRY_EXCHANGE, routing_key=step.routing_key)
