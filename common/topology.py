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
    notifier, webhook to try again ──▶ images.retry ──"notify.<delay>"──▶ images.notifications.retry.<delay>
                                   (message TTL, then dead-lettered straight to images.notifications)

Jobs coming back from a delay have a queue of their own: the length limit of the work queue must
never drop a job that was already accepted (the broker drops dead-lettered messages that a full
queue refuses). Workers consume both queues.

Declaring is idempotent: every service declares the whole topology when it connects, so whichever
starts first creates it.
"""

from dataclasses import dataclass
from typing import Final

from pika.adapters.blocking_connection import BlockingChannel

from common import backoff
from common.settings import RetryPolicy, TopologySettings

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
NOTIFICATION_RETRY_QUEUE_PREFIX = "images.notifications.retry"
EVENT_COMPLETED: Final = "job.completed"
EVENT_FAILED: Final = "job.failed"


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


def _queue_arguments(topology: TopologySettings, **extra: object) -> dict[str, object]:
    return {"x-queue-type": topology.queue_type, **extra}


def declare_topology(channel: BlockingChannel, topology: TopologySettings) -> None:
    channel.exchange_declare(JOBS_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "fanout", durable=True)
    channel.exchange_declare(RETRY_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)

    job_arguments: dict[str, object] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    if topology.queue_type == "quorum":
        # A message redelivered this often (a worker crashing on it each time) is dead-lettered.
        job_arguments["x-delivery-limit"] = topology.job_retries.attempts
    limited = {"x-max-length": topology.max_queued_jobs, "x-overflow": "reject-publish"}
    channel.queue_declare(WORK_QUEUE, durable=True, arguments=_queue_arguments(topology, **job_arguments, **limited))
    channel.queue_bind(WORK_QUEUE, JOBS_EXCHANGE, routing_key=JOBS_ROUTING_KEY)
    channel.queue_declare(RETRIED_QUEUE, durable=True, arguments=_queue_arguments(topology, **job_arguments))
    channel.queue_bind(RETRIED_QUEUE, JOBS_EXCHANGE, routing_key=RETRIED_ROUTING_KEY)

    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=_queue_arguments(topology))
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)

    for step in retry_steps(topology.job_retries):
        _declare_delay(channel, topology, step, JOBS_EXCHANGE, RETRIED_ROUTING_KEY)

    channel.queue_declare(NOTIFICATIONS_QUEUE, durable=True, arguments=_queue_arguments(topology))
    channel.queue_bind(NOTIFICATIONS_QUEUE, EVENTS_EXCHANGE, routing_key="job.*")
    for step in notification_retry_steps(topology.webhook_retries):
        # Back through the default exchange, to the notifications queue alone: through the events
        # exchange, every other subscriber of job events would see the event again.
        _declare_delay(channel, topology, step, "", NOTIFICATIONS_QUEUE)


def _declare_delay(
    channel: BlockingChannel, topology: TopologySettings, step: RetryStep, exchange: str, routing_key: str
) -> None:
    channel.queue_declare(
        step.queue,
        durable=True,
        arguments=_queue_arguments(
            topology,
            **{
                "x-message-ttl": step.delay_ms,
                "x-dead-letter-exchange": exchange,
                "x-dead-letter-routing-key": routing_key,
            },
        ),
    )
    channel.queue_bind(step.queue, RETRY_EXCHANGE, routing_key=step.routing_key)
