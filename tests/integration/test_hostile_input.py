"""Hostile and bad input: every case gets a clear answer and nothing crashes, loops or is lost."""

import json
import socket
import uuid

import pytest

from common.operations import Resize
from harness.processes import family_peak_rss_mb, wait_for
from harness.procs import children
from harness.system import System
from tests.integration.test_faults import SLOW_OPERATIONS, upload_ok
from tests.support.images import png_declaring

pytestmark = pytest.mark.integration


def test_upload_over_the_limit_is_413_from_the_header(make_system, tmp_path) -> None:
    system = make_system(workers=(), notifier=False, MAX_UPLOAD_BYTES="100000")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(300_000))
    response = system.upload(big)
    assert response.status_code == 413
    assert "files up to 100000 bytes" in response.json()["detail"]
    # Refused from the header alone: the answer comes although not one byte of the body is sent.
    host, port = system.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 300000\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_upload_streamed_without_length_is_cut_off_at_the_limit(make_system) -> None:
    """Chunked upload with no Content-Length: the API answers 413 once the stream passes the limit,
    long before the client has sent everything."""
    system = make_system(workers=(), notifier=False, MAX_UPLOAD_BYTES="100000")
    host, port = system.api_url.removeprefix("http://").split(":")
    boundary = "x" + uuid.uuid4().hex
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    total = 50 * 1024 * 1024
    chunk = bytes(64 * 1024)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(30)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < total / 2


def test_upload_names_are_kept_as_metadata_never_as_paths(system: System, sample_jpg, tmp_path) -> None:
    with system.http as client:
        response = client.post(
            "/upload",
            files={"file": ("../../etc/pa\u202ess wd;rm -rf.jpg", sample_jpg.read_bytes(), "image/jpeg")},
            data={"operations": "resize(width=50)"},
        )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    status = system.wait_finished(job_id)
    assert status["original"]["key"] == f"originals/{job_id}"
    assert status["original"]["filename"] == "pass wd;rm -rf.jpg"
    assert status["result"]["key"] == f"results/{job_id}.jpg"


def test_upload_judges_content_not_name(system: System, sample_jpg, tmp_path) -> None:
    renamed = tmp_path / "holiday.txt"
    renamed.write_bytes(sample_jpg.read_bytes())
    response = system.upload(renamed, operations="resize(width=40)")
    assert response.status_code == 202, response.text
    assert system.wait_finished(response.json()["job_id"])["result"]["format"] == "jpeg"

    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes(b"%PDF-1.4\n" + bytes(1000))
    response = system.upload(disguised)
    assert response.status_code == 415
    assert "not an image" in response.json()["detail"]


def test_upload_refuses_a_decompression_bomb_before_queueing(system: System, tmp_path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(100_000, 100_000))
    before = system.vhost.message_count("images.jobs.work")
    records = len(system.store.list("jobs/"))
    response = system.upload(bomb)
    assert response.status_code == 422
    assert "100000x100000" in response.json()["detail"] and "pixels" in response.json()["detail"]
    assert system.vhost.message_count("images.jobs.work") == before
    assert len(system.store.list("jobs/")) == records


@pytest.mark.parametrize(
    ("operations", "fragment", "limit"),
    [
        ("resize(width=1000000000)", "width", "less than or equal to 16384"),
        ("filter(name=blur,radius=-3)", "radius", "greater than 0"),
        (",".join(["resize"] * 10_000), "10000 operations given", "at most 20 allowed"),
        ("resize(width=16000,height=16000,fit=fill,upscale=yes please)", "upscale", "valid boolean"),
    ],
)
def test_upload_refuses_absurd_operations(system: System, sample_jpg, operations, fragment, limit) -> None:
    response = system.upload(sample_jpg, operations=operations)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    assert limit in response.json()["detail"]  # the limit is named, not only the parameter
    assert response.json()["field"] == "operations"


def test_worker_refuses_a_bomb_that_bypassed_the_api_with_bounded_memory(make_system) -> None:
    system = make_system(workers=("worker-a",), notifier=False)
    job_id = system.submit_directly(png_declaring(60_000, 60_000), [Resize(width=100)], 60_000, 60_000)
    status = system.wait_finished(job_id)
    assert status["status"] == "failed"
    assert status["error_reason"] == "too_many_pixels"
    assert "60000×60000" in status["error"]
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 10, "the dead letter")
    # Decoding it would take 3.6 GB; neither the worker nor its image process got near that.
    worker_pid = system.services["worker-a"].process.pid
    assert children(worker_pid), "the worker runs images in a process of its own"
    assert family_peak_rss_mb(worker_pid) < 300


def test_worker_enforces_the_job_time_limit(make_system, sample_jpg) -> None:
    system = make_system(workers=("worker-a",), notifier=False, JOB_TIME_LIMIT_S="1")
    job_id = upload_ok(system, sample_jpg, operations=SLOW_OPERATIONS)
    status = system.wait_finished(job_id, timeout=60)
    assert status["status"] == "failed"
    assert status["error_reason"] == "time_limit"
    assert "time limit" in status["error"]
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 10, "the dead letter")
    follow_up = upload_ok(system, sample_jpg, operations="resize(width=80)")
    assert system.wait_finished(follow_up)["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "empty body"),
        (b"\x00\xff\xfe binary junk", "binary"),
        (b"[1, 2, 3]", "a JSON array"),
        (b'{"job_id": "0123456789abcdef0123456789abcdef"}', "missing fields"),
        (
            json.dumps({
                "job_id": "0123456789abcdef0123456789abcdef", "original_key": "originals/x",
                "operations": [{"name": "explode"}], "submitted_at": "2026-01-01T00:00:00Z",
            }).encode(),
            "unknown operation",
        ),
    ],
)
def test_garbage_messages_are_dead_lettered_with_a_reason(system: System, body: bytes, kind: str) -> None:
    message_id = f"garbage-{uuid.uuid4().hex[:8]}"
    dead_before = system.vhost.message_count("images.jobs.dead")
    system.vhost.publish("images.jobs", "job", body, message_id=message_id)
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == dead_before + 1, 15, f"{kind} dead-lettered")
    (props,) = [p for p, _ in system.vhost.get_messages("images.jobs.dead", 200) if p.message_id == message_id]
    assert props.headers["x-failure-reason"] == "invalid_message"
    assert "not a valid job message" in props.headers["x-failure-error"]
    assert system.vhost.consumer_count("images.jobs.work") == 2
    assert all(system.services[name].running for name in ("worker-a", "worker-b"))
