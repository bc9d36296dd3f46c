"""The notifier's decisions about one event, over in-memory adapters: when it reads the job record,
when it sends a webhook (tests/security/test_bus.py sends forged events to the real notifier)."""

import logging

import pytest
from pika.spec import BasicProperties

from api.routes.events import job_event_data
from common.amqp import Delivery, Outcome
from common.clients import KeyRing
from common.jobs import JobRecord, JobStore, OriginalInfo, original_key
from common.messages import JobEvent, ResultInfo
from common.operations import Resize
from common.settings import Settings
from common.topology import notification_retry_steps
from notification.handler import EventHandler
from notification.webhook import AttemptResult
from tests.support.memory import MemoryObjectStore, MemoryPublisher

JOB_ID = "0123456789abcdef0123456789abcdef"
CALLBACK = "https://hooks.example.com/imgpipe"


class RecordingSender:
    """Takes every attempt as delivered, and keeps it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def attempt(self, url: str, secret: str, message_id: str, body: bytes) -> AttemptResult:
        self.sent.append((url, body))
        return AttemptResult(True, False, "200")


class Notifier:
    def __init__(self) -> None:
        self.store = MemoryObjectStore()
        self.jobs = JobStore(self.store)
        self.sender = RecordingSender()
        self.publisher = MemoryPublisher()
        settings = Settings(_env_file=None)
        self.handle = EventHandler(
            self.sender, self.jobs, self.store, KeyRing.from_settings(settings.access), self.publisher,  # type: ignore[arg-type]
            notification_retry_steps(settings.webhook_retries), attempts=3, per_host=2,
        )

    def completed_job(self, callback_url: str | None) -> JobRecord:
        job = JobRecord.queued(
            job_id=JOB_ID, operations=[Resize(width=100)], quality=85, owner=None, callback_url=callback_url,
            original=OriginalInfo(key=original_key(JOB_ID), format="jpeg", width=400, height=300, bytes=1),
        )
        job.start("worker-1", 1)
        job.complete(ResultInfo(
            key=f"results/{JOB_ID}.jpeg", width=100, height=75, bytes=9, format="jpeg", content_type="image/jpeg"
        ))
        self.jobs.save(job)
        return job

    def deliver(self, body: bytes) -> Outcome:
        return self.handle(Delivery(body, BasicProperties(), 1, False, "job.completed", channel=None))


@pytest.fixture
def notifier() -> Notifier:
    return Notifier()


def test_an_event_says_whether_its_job_has_a_webhook(notifier: Notifier) -> None:
    assert notifier.completed_job(CALLBACK).to_event().webhook is True
    assert notifier.completed_job(None).to_event().webhook is False


def test_a_job_without_a_webhook_is_logged_without_reading_its_record(notifier, caplog) -> None:
    event = notifier.completed_job(None).to_event()
    notifier.store.down = True  # a read would fail, and put the event off to a retry queue
    with caplog.at_level(logging.INFO, logger="notification"):
        assert notifier.deliver(event.model_dump_json().encode()) is Outcome.ACK
    assert notifier.publisher.published == []
    assert f"job {JOB_ID} completed by worker-1: 100x75 jpeg, 9 bytes" in caplog.text


def test_a_job_with_a_webhook_is_read_and_sent_from_its_record(notifier: Notifier) -> None:
    event = notifier.completed_job(CALLBACK).to_event()
    assert notifier.deliver(event.model_dump_json().encode()) is Outcome.ACK
    assert [url for url, _ in notifier.sender.sent] == [CALLBACK]
    webhook = notifier.jobs.get(JOB_ID).webhook  # type: ignore[union-attr]
    assert webhook is not None and webhook.delivered


def test_an_event_without_the_field_reads_the_record_as_before(notifier: Notifier) -> None:
    """An event from a worker older than the field: the record decides."""
    body = notifier.completed_job(CALLBACK).to_event().model_dump_json(exclude={"webhook"}).encode()
    assert JobEvent.model_validate_json(body).webhook is True
    assert notifier.deliver(body) is Outcome.ACK
    assert len(notifier.sender.sent) == 1


def test_a_forged_no_webhook_event_neither_sends_nor_suppresses_the_real_one(notifier: Notifier) -> None:
    real = notifier.completed_job(CALLBACK).to_event()
    forged = real.model_copy(update={"webhook": False})
    assert notifier.deliver(forged.model_dump_json().encode()) is Outcome.ACK
    assert notifier.sender.sent == []
    assert notifier.deliver(real.model_dump_json().encode()) is Outcome.ACK
    assert len(notifier.sender.sent) == 1


def test_a_forged_webhook_event_for_a_job_without_one_sends_nothing(notifier: Notifier) -> None:
    forged = notifier.completed_job(None).to_event().model_copy(update={"webhook": True})
    assert notifier.deliver(forged.model_dump_json().encode()) is Outcome.ACK
    assert notifier.sender.sent == []


def test_live_streams_do_not_show_the_notifiers_hint(notifier: Notifier) -> None:
    services = type("Services", (), {"store": notifier.store, "public_url": "http://127.0.0.1:8000"})()
    data = job_event_data(notifier.completed_job(CALLBACK).to_event(), services)  # type: ignore[arg-type]
    assert "webhook" not in data and data["status"] == "completed"
