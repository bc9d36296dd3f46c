"""Webhooks cannot be aimed inside: refused at submission, refused again at send time, never
redirected by a changed DNS answer, and a slow endpoint holds back nobody else. Live requests go
to loopback only; the other ranges are checked in test_egress_policy.py."""

import ipaddress

import pytest

from common.egress import EgressPolicy, UnsafeTarget
from common.operations import Resize
from harness.broker import BrokerVhost
from harness.processes import wait_for
from harness.system import build_system
from harness.webhooks import TEST_WEBHOOK_SECRET, WebhookReceiver
from notification.webhook import WebhookSender
from tests.support.images import png_of

pytestmark = pytest.mark.integration

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::1]", "[::ffff:127.0.0.1]"]


@pytest.fixture
def receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def closed_system(s3_endpoint, tmp_path_factory):
    """Webhooks may reach public addresses only: the defaults."""
    vhost = BrokerVhost().create()
    system = build_system(
        vhost, s3_endpoint, tmp_path_factory.mktemp("closed"), workers=("worker-a",), WEBHOOK_ALLOWED_NETWORKS=""
    )
    yield system
    system.stop()
    vhost.delete()


def test_loopback_callback_forms_are_refused_at_upload(closed_system, receiver, sample_jpg) -> None:
    queued_before = closed_system.vhost.message_count("images.jobs.work")
    for host in LOOPBACK_HOSTS:
        url = receiver.url(host=host)
        response = closed_system.upload(sample_jpg, operations="resize(width=32)", callback_url=url)
        assert response.status_code == 422, (host, response.text)
        assert response.json()["detail"] == "callback_url is refused: it points to a loopback address " + (
            "(::1)" if host == "[::1]" else "(127.0.0.1, inside ::ffff:7f00:1)" if "ffff" in host else "(127.0.0.1)"
        ), host
    assert closed_system.vhost.message_count("images.jobs.work") == queued_before
    assert receiver.calls == []


def test_credentials_and_schemes_are_refused_at_upload(closed_system, sample_jpg) -> None:
    for url, reason in [
        ("http://guest:guest@127.0.0.1:15672/api/queues", "credentials"),
        ("ftp://example.org/x", "only http and https"),
        ("gopher://127.0.0.1:5672/", "only http and https"),
    ]:
        response = closed_system.upload(sample_jpg, callback_url=url)
        assert response.status_code == 422, url
        assert reason in response.json()["detail"]


def test_the_api_itself_is_never_a_webhook_target(make_system, sample_jpg) -> None:
    # Even with loopback allowed (as for the tests' receivers), the API's own address is refused:
    # a failed job's event would otherwise be a replay request for itself.
    system = make_system(workers=("worker-a",))
    mapped = system.api_url.replace("127.0.0.1", "[::ffff:127.0.0.1]")
    for url in (f"{system.api_url}/dlq/replay", f"{mapped}/dlq/replay"):
        response = system.upload(sample_jpg, callback_url=url)
        assert response.status_code == 422, response.text
        assert "own services" in response.json()["detail"]
    broker = system.upload(sample_jpg, callback_url=f"http://127.0.0.1:{system.vhost.endpoint.management_port}/api/")
    assert broker.status_code == 422 and "own services" in broker.json()["detail"]


def test_notifier_checks_again_at_send_time(closed_system, receiver) -> None:
    """A record with a loopback callback that never went through the API: nothing is sent."""
    job_id = closed_system.submit_directly(png_of((50, 40)), [Resize(width=20)], 50, 40, callback_url=receiver.url())
    assert closed_system.wait_finished(job_id)["status"] == "completed"
    record = wait_for(lambda: (s := closed_system.status(job_id))["webhook"] and s, 30, "the webhook outcome")
    assert record["webhook"]["delivered"] is False
    assert record["webhook"]["error"] == "not delivered: the endpoint did not accept the event"
    assert receiver.calls == []
    assert "refused to call it: it points to a loopback address" in closed_system.services["notifier"].log()


def test_sender_connects_to_the_address_it_checked(receiver) -> None:
    """A name is resolved once per attempt, checked, and that very answer is connected to."""
    answers = {"hooks.test": [ipaddress.ip_address("127.0.0.1")]}
    allowed = EgressPolicy(
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), resolver=lambda host, port: answers[host]
    )
    sender = WebhookSender(allowed, timeout_s=5, max_response_bytes=1024)
    result = sender.attempt(
        f"http://hooks.test:{receiver.port}/hook", TEST_WEBHOOK_SECRET, "msg_1", b'{"data":{"job_id":"x"}}'
    )
    assert result.delivered, result.detail
    assert receiver.calls[0].headers["Host"] == f"hooks.test:{receiver.port}"


def test_sender_refuses_a_name_that_turns_private_between_check_and_send(receiver) -> None:
    """DNS rebinding: public when the API looked, loopback when the notifier sends."""
    lookups: list[str] = []

    def rebinding(host: str, port: int):
        lookups.append(host)
        return [ipaddress.ip_address("93.184.216.34" if len(lookups) == 1 else "127.0.0.1")]

    policy = EgressPolicy(resolver=rebinding)
    policy.check_url(f"http://rebind.test:{receiver.port}/hook")  # what the API saw
    result = WebhookSender(policy, timeout_s=5, max_response_bytes=1024).attempt(
        f"http://rebind.test:{receiver.port}/hook", TEST_WEBHOOK_SECRET, "msg_2", b"{}"
    )
    assert not result.delivered and not result.retryable
    assert "loopback" in result.detail
    assert receiver.calls == []


def test_an_endpoint_that_drips_its_answer_is_cut_off_at_the_deadline() -> None:
    dripping = WebhookReceiver(drip_s=0.05)  # a complete answer would take 50 s
    try:
        policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
        result = WebhookSender(policy, timeout_s=1, max_response_bytes=1024).attempt(
            dripping.url(), TEST_WEBHOOK_SECRET, "msg_3", b"{}"
        )
    finally:
        dripping.close()
    assert not result.delivered and result.retryable
    assert "timed out" in result.detail
    assert len(dripping.calls) == 1


def test_a_slow_endpoint_holds_back_no_other_clients_events(make_system, receiver, sample_jpg) -> None:
    dripping = WebhookReceiver(drip_s=0.05)
    try:
        system = make_system(workers=("worker-a",), WEBHOOK_TIMEOUT_S="60", WEBHOOK_ATTEMPTS="1")
        slow = system.upload(sample_jpg, operations="resize(width=16)", callback_url=dripping.url()).json()["job_id"]
        wait_for(lambda: dripping.calls, 30, "the slow endpoint to be called")
        fast = [
            system.upload(sample_jpg, operations="resize(width=16)", callback_url=receiver.url()).json()["job_id"]
            for _ in range(3)
        ]
        wait_for(lambda: all(receiver.calls_for(job) for job in fast), 30, "the other endpoint's events")
        # The slow delivery is still in progress: the others did not wait for it.
        assert system.status(slow)["webhook"] is None
    finally:
        dripping.close()


def test_unsafe_target_message_never_contains_more_than_the_reason() -> None:
    with pytest.raises(UnsafeTarget) as caught:
        EgressPolicy().check_url("http://127.0.0.1:15672/api/users")
    assert str(caught.value) == "it points to a loopback address (127.0.0.1)"
