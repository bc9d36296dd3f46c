"""The worker's decisions for one message, with in-memory fakes for storage and the broker.

The integration tests show the same paths end to end; these pin down the decision logic itself:
what is retried, when, what is dead-lettered with which headers, what is not processed twice.
"""

import io
from types import SimpleNamespace

import pytest
from pika.spec import BasicProperties
from PIL import Image

from common.amqp import Delivery, Outcome, PublishFailed
from common.jobs import JobRecord, JobStatus, JobStore, OriginalInfo, original_key
from common.messages import Header, JobEvent
from common.operations import Resize, parse_operations
from common.settings import Settings
from common.variants import Variant
from tests.support.memory import InProcessPipeline, MemoryObjectStore, MemoryPublisher
from worker.handler import JobHandler
from worker.stats import WorkerStats

JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def world():
    settings = Settings(_env_file=None, max_attempts=3, retry_base_delay_ms=1000)
    store, publisher = MemoryObjectStore(), MemoryPublisher()
    store.failing_prefix = "results/"  # storage fails where the tests say, for results only
    jobs = JobStore(store)
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), "navy").save(buffer, "JPEG")
    store.objects[original_key(JOB_ID)] = buffer.getvalue()
    record = JobRecord(
        job_id=JOB_ID, status=JobStatus.QUEUED, operations=[Resize(width=100)], quality=85,
        original=OriginalInfo(key=original_key(JOB_ID), format="jpeg", width=400, height=300, bytes=1),
    )
    jobs.save(record)
    stats = WorkerStats("worker-t", store, settings.stats_interval_s)
    handler = JobHandler(settings.worker, store, jobs, publisher, "worker-t", stats, InProcessPipeline())
    return SimpleNamespace(handler=handler, store=store, jobs=jobs, publisher=publisher, record=record)


def delivery(body: bytes, headers: dict | None = None) -> Delivery:
    return Delivery(body, BasicProperties(headers=headers, message_id=JOB_ID), 1, False, "job", channel=None)


def message(world) -> bytes:
    return world.record.to_message().model_dump_json().encode()


def final_events(world) -> list[str]:
    """The events the notifier receives (`progress.*` ones reach the live streams only)."""
    return [p.routing_key for p in world.publisher.to("images.events") if p.routing_key.startswith("job.")]


def announced(world) -> list[tuple[str, str, int]]:
    published = world.publisher.to("images.events")
    return [(p.routing_key, (e := JobEvent.model_validate_json(p.body)).status, e.revision) for p in published]


def test_handler_completes_and_publishes_the_event(world) -> None:
    assert world.handler(delivery(message(world))) is Outcome.ACK
    record = world.jobs.get(JOB_ID)
    assert record.status is JobStatus.COMPLETED
    assert (record.result.width, record.result.height, record.attempts, record.worker) == (100, 75, 1, "worker-t")
    assert final_events(world) == ["job.completed"]


def test_handler_retries_a_transient_failure_through_the_delay_queue(world) -> None:
    world.store.failing_puts = 1
    assert world.handler(delivery(message(world))) is Outcome.ACK
    (retry,) = world.publisher.to("images.retry")
    assert retry.routing_key == "retry.1000ms"
    assert retry.headers[Header.RETRY_ATTEMPT] == 1
    assert "storage down" in retry.headers["x-last-error"]
    record = world.jobs.get(JOB_ID)
    assert record.status is JobStatus.RETRYING
    assert record.attempts == 1 and record.next_attempt_at is not None

    # Back from the delay queue: the second attempt succeeds.
    assert world.handler(delivery(retry.body, retry.headers)) is Outcome.ACK
    record = world.jobs.get(JOB_ID)
    assert record.status is JobStatus.COMPLETED and record.attempts == 2


def test_handler_doubles_the_delay_and_gives_up_after_max_attempts(world) -> None:
    world.store.failing_puts = 10
    headers = None
    for expected_key in ("retry.1000ms", "retry.2000ms"):
        assert world.handler(delivery(message(world), headers)) is Outcome.ACK
        headers = world.publisher.to("images.retry")[-1].headers
        assert world.publisher.to("images.retry")[-1].routing_key == expected_key
    assert world.handler(delivery(message(world), headers)) is Outcome.ACK
    (dead,) = world.publisher.to("images.dlx")
    assert dead.headers["x-failure-reason"] == "attempts_exhausted"
    assert "gave up after 3 attempts" in dead.headers["x-failure-error"]
    record = world.jobs.get(JOB_ID)
    assert record.status is JobStatus.FAILED and record.error_reason == "attempts_exhausted"
    assert final_events(world) == ["job.failed"]


def test_handler_dead_letters_a_missing_original_without_retrying(world) -> None:
    del world.store.objects[original_key(JOB_ID)]
    assert world.handler(delivery(message(world))) is Outcome.ACK
    assert world.publisher.to("images.retry") == []
    (dead,) = world.publisher.to("images.dlx")
    assert (dead.headers["x-failure-reason"], dead.headers["x-job-id"]) == ("original_missing", JOB_ID)
    assert world.jobs.get(JOB_ID).status is JobStatus.FAILED


def test_handler_does_not_process_a_completed_job_again(world) -> None:
    world.handler(delivery(message(world)))
    result_key = world.jobs.get(JOB_ID).result.key
    del world.store.objects[result_key]
    assert world.handler(delivery(message(world))) is Outcome.ACK
    assert result_key not in world.store.objects  # not written a second time
    assert final_events(world) == ["job.completed", "job.completed"]


def test_handler_nacks_to_the_queue_dead_letter_exchange_when_it_cannot_publish(world) -> None:
    world.publisher.fail = True
    assert world.handler(delivery(b"{not json")) is Outcome.DEAD_LETTER


def test_handler_hands_the_message_back_when_no_retry_can_be_scheduled(world) -> None:
    world.store.failing_puts = 1
    world.publisher.fail = True
    assert world.handler(delivery(message(world))) is Outcome.REQUEUE


# --- a delivery lost with its connection (a broker node going away mid-job) ---------------------


def test_handler_lost_delivery_stops_before_storing_anything(world) -> None:
    lost = delivery(message(world))
    lost.lost.set()  # the connection went while the image was processed
    assert world.handler(lost) is Outcome.ABANDON
    assert [key for key in world.store.objects if key.startswith("results/")] == []
    assert world.jobs.get(JOB_ID).status is JobStatus.PROCESSING
    assert world.publisher.published == []

    # The broker's redelivered copy completes it, once.
    assert world.handler(delivery(message(world))) is Outcome.ACK
    record = world.jobs.get(JOB_ID)
    assert (record.status, record.attempts) == (JobStatus.COMPLETED, 2)
    assert final_events(world) == ["job.completed"]


def test_handler_lost_after_the_record_is_completed_leaves_the_event_to_the_redelivery(world) -> None:
    lost = delivery(message(world))
    replace = world.jobs.replace

    def replace_then_lose(record: JobRecord, etag: str) -> str | None:
        written = replace(record, etag)
        if record.status is JobStatus.COMPLETED:
            lost.lost.set()
        return written

    world.jobs.replace = replace_then_lose
    assert world.handler(lost) is Outcome.ABANDON
    assert world.jobs.get(JOB_ID).status is JobStatus.COMPLETED
    assert final_events(world) == []

    world.jobs.replace = replace
    assert world.handler(delivery(message(world))) is Outcome.ACK
    assert final_events(world) == ["job.completed"]


def test_handler_lost_delivery_schedules_no_retry(world) -> None:
    world.store.failing_puts = 1
    lost = delivery(message(world))
    original_put = world.store.put

    def put_then_lose(*args, **kwargs) -> None:
        lost.lost.set()
        original_put(*args, **kwargs)

    world.store.put = put_then_lose
    assert world.handler(lost) is Outcome.ABANDON
    assert world.publisher.to("images.retry") == []


def test_handler_lost_invalid_message_is_not_dead_lettered_twice(world) -> None:
    lost = delivery(b"{not json")
    lost.lost.set()
    assert world.handler(lost) is Outcome.ABANDON
    assert world.publisher.to("images.dlx") == []


# --- events for the live streams -------------------------------------------------------------


def test_handler_announces_each_change_with_a_growing_revision(world) -> None:
    world.store.failing_puts = 1
    world.handler(delivery(message(world)))
    retry = world.publisher.to("images.retry")[-1]
    world.handler(delivery(retry.body, retry.headers))
    assert announced(world) == [
        ("progress.processing", "processing", 1),
        ("progress.retrying", "retrying", 2),
        ("progress.processing", "processing", 3),
        ("job.completed", "completed", 4),
    ]
    assert world.jobs.get(JOB_ID).revision == 4


def test_handler_completes_the_job_when_the_progress_event_cannot_be_published(world) -> None:
    publish = world.publisher.publish

    def refuse_progress(exchange: str, routing_key: str, body: bytes, **options) -> None:
        if routing_key.startswith("progress."):
            raise PublishFailed("broker gone for a moment")
        publish(exchange, routing_key, body, **options)

    world.publisher.publish = refuse_progress
    assert world.handler(delivery(message(world))) is Outcome.ACK
    assert world.jobs.get(JOB_ID).status is JobStatus.COMPLETED
    assert final_events(world) == ["job.completed"]


def with_variants(world, **specs: str) -> None:
    variants = [
        Variant(name=name, operations=parse_operations(ops, 20), output_format="png") for name, ops in specs.items()
    ]
    first = variants[0]
    world.record = world.record.model_copy(
        update={"variants": variants, "operations": first.operations, "output_format": "png"}
    )
    world.jobs.save(world.record)


def test_handler_stores_every_variant_under_its_name_and_lists_them(world) -> None:
    with_variants(world, small="resize(width=100)", square="resize(width=50,height=50,fit=cover)")
    assert world.handler(delivery(message(world))) is Outcome.ACK
    record = world.jobs.get(JOB_ID)
    assert [(r.name, r.key, r.width, r.height) for r in record.results] == [
        ("small", f"results/{JOB_ID}/small.png", 100, 75), ("square", f"results/{JOB_ID}/square.png", 50, 50),
    ]
    assert record.result.key == record.results[0].key
    assert all(Image.open(io.BytesIO(world.store.objects[r.key])).size == (r.width, r.height) for r in record.results)
    (completed,) = [p for p in world.publisher.to("images.events") if p.routing_key == "job.completed"]
    assert [r.name for r in JobEvent.model_validate_json(completed.body).results] == ["small", "square"]


def test_handler_fails_the_job_naming_the_variant_and_stores_no_result(world) -> None:
    with_variants(world, small="resize(width=100)", cut="crop(x=390,width=50)")
    assert world.handler(delivery(message(world))) is Outcome.ACK
    record = world.jobs.get(JOB_ID)
    assert record.status is JobStatus.FAILED and record.error_reason == "crop_outside_image"
    assert record.error.startswith("variant cut: crop:")
    assert [key for key in world.store.objects if key.startswith("results/")] == []
    assert record.results == [] and record.result is None


def test_handler_dead_letters_a_message_whose_variants_disagree_with_the_record(world) -> None:
    with_variants(world, small="resize(width=100)")
    forged = world.record.model_copy(update={"variants": []}).to_message().model_dump_json().encode()
    world.handler(delivery(forged))
    (dead,) = world.publisher.to("images.dlx")
    assert "variants" in dead.headers[Header.FAILURE_ERROR]
