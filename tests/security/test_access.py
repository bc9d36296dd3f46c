"""Who may do what: API keys, a job's owner, operator routes and the upload rate limit, on a
running system."""

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message

import pytest
from standardwebhooks.webhooks import Webhook

from common.clients import KeyRing
from common.settings import Settings
from harness.broker import BrokerVhost
from harness.processes import PROJECT_DIR, wait_for
from harness.system import build_system
from harness.webhooks import TEST_WEBHOOK_SECRET, WebhookReceiver

pytestmark = pytest.mark.integration

ALICE, BOB, OPS = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
KEYS = {
    "API_KEYS": f"alice={ALICE},bob={BOB}",
    "ADMIN_API_KEYS": f"ops={OPS}",
    "AUTH_REQUIRED": "true",
}


@pytest.fixture(scope="module")
def secured(s3_endpoint, tmp_path_factory):
    vhost = BrokerVhost().create()
    system = build_system(vhost, s3_endpoint, tmp_path_factory.mktemp("secured"), workers=("worker-a",), **KEYS)
    yield system
    system.stop()
    vhost.delete()


def upload(system, sample_jpg, key: str | None, **form: str):
    return system.upload(sample_jpg, key=key, operations=form.pop("operations", "resize(width=64)"), **form)


def test_upload_without_a_key_is_401_naming_how_to_send_one(secured, sample_jpg) -> None:
    response = upload(secured, sample_jpg, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"] and "X-API-Key" in response.json()["detail"]


def test_upload_with_a_wrong_key_is_401(secured, sample_jpg) -> None:
    response = upload(secured, sample_jpg, "alice-key-0123456789abcdeX")
    assert response.status_code == 401
    assert response.json() == {
        "type": "urn:imgpipe:problem:unauthenticated", "title": "Unauthorized", "status": 401,
        "detail": "the API key is not valid", "instance": "/upload",
    }
    assert response.headers["content-type"] == "application/problem+json"


def test_x_api_key_header_works_like_bearer(secured, sample_jpg) -> None:
    with secured.client(None) as client, open(sample_jpg, "rb") as handle:
        response = client.post(
            "/upload", files={"file": ("s.jpg", handle)}, data={"operations": "resize(width=32)"},
            headers={"X-API-Key": BOB},
        )
    assert response.status_code == 202, response.text
    assert secured.wait_finished(response.json()["job_id"], key=BOB)["status"] == "completed"


def test_another_clients_job_does_not_exist_for_them(secured, sample_jpg) -> None:
    response = upload(secured, sample_jpg, ALICE)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert secured.wait_finished(job_id, key=ALICE)["status"] == "completed"

    unknown = "0" * 32
    for key in (BOB, None):
        with secured.client(key) as client:
            status = client.get(f"/status/{job_id}")
            result = client.get(f"/result/{job_id}")
            missing = client.get(f"/status/{unknown}")
        expected = 404 if key else 401
        assert status.status_code == result.status_code == expected
        if key:
            # Exactly what an id that never existed gets: no oracle for other clients' ids.
            assert status.json()["detail"] == missing.json()["detail"].replace(unknown, job_id)
    with secured.client(ALICE) as client:
        assert client.get(f"/result/{job_id}").status_code == 200
        assert client.get(f"/status/{job_id}").json()["owner"] == "alice"
    with secured.client(OPS) as client:  # operators see every job
        assert client.get(f"/status/{job_id}").status_code == 200


def test_operator_routes_need_an_admin_key(secured) -> None:
    with secured.client(None) as client:
        assert client.get("/dlq/stats").status_code == 401
        assert client.post("/dlq/replay").status_code == 401
    with secured.client(ALICE) as client:
        stats = client.get("/dlq/stats")
        replay = client.post("/dlq/replay", json={})
    assert stats.status_code == replay.status_code == 403
    assert "admin API key" in stats.json()["detail"]
    with secured.client(OPS) as client:
        assert client.get("/dlq/stats").status_code == 200
        assert client.post("/dlq/replay", json={}).status_code == 200


def test_stats_need_a_key_and_metrics_and_health_do_not(secured) -> None:
    with secured.client(None) as client:
        assert client.get("/stats").status_code == 401
        assert client.get("/metrics").status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
    with secured.client(BOB) as client:
        assert client.get("/stats").status_code == 200


def test_upload_rate_limit_answers_429_with_retry_after_per_client(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False, RATE_LIMIT_UPLOADS="3/minute", **KEYS)
    accepted = [upload(system, sample_jpg, ALICE).status_code for _ in range(3)]
    assert accepted == [202, 202, 202]
    refused = upload(system, sample_jpg, ALICE)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "at most 3 per 1 minute" in refused.json()["detail"]
    # Other clients have their own allowance, and the refused upload left nothing behind.
    assert upload(system, sample_jpg, BOB).status_code == 202
    assert len(system.store.list("jobs/")) == 4
    assert system.vhost.message_count("images.jobs.work") == 4


def send_all_then_read(system, key: str, body: bytes) -> tuple[int, Message, bytes]:
    """POST /upload as urllib, requests or a plain socket do: the whole body, then the answer."""
    request = urllib.request.Request(
        f"{system.api_url}/upload", data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "multipart/form-data; boundary=x"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_a_rate_limited_upload_with_a_large_body_gets_the_429_not_a_reset(make_system, sample_jpg, tmp_path) -> None:
    system = make_system(workers=(), notifier=False, RATE_LIMIT_UPLOADS="1/minute", **KEYS)
    big = tmp_path / "big.jpg"
    big.write_bytes(sample_jpg.read_bytes() + bytes(20 * 1024 * 1024))  # far more than the sockets buffer
    assert upload(system, sample_jpg, ALICE).status_code == 202

    for _ in range(3):
        # Before the API read refused bodies, this was ConnectionResetError, every time.
        status, headers, body = send_all_then_read(system, ALICE, big.read_bytes())

        assert status == 429, body[:300]
        assert headers["content-type"] == "application/problem+json" and int(headers["retry-after"]) >= 1
        assert "too many uploads" in json.loads(body)["detail"]
        refused = upload(system, big, ALICE)  # httpx: reads an early answer too
        assert refused.status_code == 429 and "too many uploads" in refused.json()["detail"]


def test_a_refused_upload_is_drained_only_up_to_the_largest_upload(make_system, sample_jpg) -> None:
    """Past the most a real upload can send, the API stops reading and closes the connection: a
    rate-limited client cannot make it read without end."""
    system = make_system(workers=(), notifier=False, RATE_LIMIT_UPLOADS="1/minute", MAX_UPLOAD_BYTES="1000000", **KEYS)
    assert upload(system, sample_jpg, ALICE).status_code == 202
    host, port = system.api_url.removeprefix("http://").split(":")
    total, chunk, sent = 300 * 1024 * 1024, bytes(256 * 1024), 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE}\r\n"
            "Transfer-Encoding: chunked\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
        )
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    # About the largest upload (1 MB and the form's room) and what the sockets' buffers hold.
    assert sent < total / 5


def test_a_refused_upload_that_waits_for_100_continue_is_answered_at_once(make_system, sample_jpg) -> None:
    system = make_system(workers=(), notifier=False, RATE_LIMIT_UPLOADS="1/minute", **KEYS)
    assert upload(system, sample_jpg, ALICE).status_code == 202
    host, port = system.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE}\r\nExpect: 100-continue\r\n"
            "Content-Length: 5000000\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
        )
        answer = sock.recv(4096)  # no body sent: the refusal needs none
    assert answer.startswith(b"HTTP/1.1 429"), answer[:200]


def test_webhooks_are_signed_with_the_clients_own_secret(make_system, sample_jpg) -> None:
    receiver = WebhookReceiver()
    try:
        system = make_system(workers=("worker-a",), **KEYS)
        job_id = upload(system, sample_jpg, ALICE, callback_url=receiver.url()).json()["job_id"]
        call = wait_for(lambda: next(iter(receiver.calls_for(job_id)), None), 30, "alice's webhook")
        alice_secret = KeyRing.from_settings(
            Settings(_env_file=None, api_keys=KEYS["API_KEYS"], webhook_secret=TEST_WEBHOOK_SECRET).access
        ).webhook_secret("alice")
        assert alice_secret != TEST_WEBHOOK_SECRET
        assert Webhook(alice_secret).verify(call.body, call.headers)["data"]["job_id"] == job_id
        with pytest.raises(Exception, match="signature"):
            Webhook(TEST_WEBHOOK_SECRET).verify(call.body, call.headers)
    finally:
        receiver.close()


def test_keys_file_made_by_the_tool_identifies_its_client(make_system, sample_jpg, tmp_path) -> None:
    keys_file = tmp_path / "keys.json"
    made = subprocess.run(
        [sys.executable, "-m", "tools.apikeys", "add", "carol", "--file", str(keys_file)],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
    )
    key = next(line.split()[-1] for line in made.stdout.splitlines() if line.startswith("API key:"))
    assert key not in keys_file.read_text()  # only its digest is stored
    assert json.loads(keys_file.read_text())["clients"][0]["name"] == "carol"

    system = make_system(workers=(), notifier=False, AUTH_REQUIRED="true", API_KEYS_FILE=str(keys_file))
    accepted = upload(system, sample_jpg, key)
    assert accepted.status_code == 202, accepted.text
    assert system.status(accepted.json()["job_id"], key=key)["owner"] == "carol"
    assert upload(system, sample_jpg, key[:-1] + ("A" if key[-1] != "A" else "B")).status_code == 401


def test_local_mode_without_keys_keeps_the_seed_flow_open(system, sample_jpg) -> None:
    response = system.upload(sample_jpg, operations="resize(width=40)")
    assert response.status_code == 202, response.text
    assert system.wait_finished(response.json()["job_id"])["status"] == "completed"
    with system.client(None) as client:
        assert client.get("/dlq/stats").status_code == 200
