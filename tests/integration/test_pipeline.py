"""Upload → RabbitMQ → workers → object storage → events, end to end on real services."""

import io
import json
import socket

import httpx
import pytest
from PIL import ExifTags, Image, IptcImagePlugin
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from harness.processes import wait_for
from harness.system import System
from harness.webhooks import TEST_WEBHOOK_SECRET, WebhookReceiver
from tests.support.images import PRIVATE_STRINGS, camera_jpeg, with_iptc

pytestmark = pytest.mark.integration


def test_upload_completes_with_resized_image_in_bucket(system: System, sample_jpg) -> None:
    response = system.upload(sample_jpg, operations="resize(width=400,height=300,fit=cover),watermark")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert [op["name"] for op in accepted["operations"]] == ["resize", "watermark"]
    assert accepted["status_url"].endswith(f"/status/{accepted['job_id']}")

    status = system.wait_finished(accepted["job_id"])
    assert status["status"] == "completed", status
    result = status["result"]
    assert (result["width"], result["height"], result["format"]) == (400, 300, "jpeg")
    assert status["worker"] in ("worker-a", "worker-b")
    assert status["attempts"] == 1
    assert status["timings"]["total_ms"] >= status["timings"]["processing_ms"] > 0

    downloaded = httpx.get(result["download_url"], timeout=10)
    assert downloaded.status_code == 200
    assert len(downloaded.content) == result["bytes"]
    assert Image.open(io.BytesIO(downloaded.content)).size == (400, 300)

    with system.http as client:
        streamed = client.get(f"/result/{accepted['job_id']}")
    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "image/jpeg"
    assert streamed.content == downloaded.content


def test_seed_operations_resize_and_watermark_fit_default_box(system: System, sample_jpg) -> None:
    response = system.upload(sample_jpg, operations="resize,watermark")
    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    assert (status["result"]["width"], status["result"]["height"]) == (800, 600)


def test_output_format_converts_and_png_alpha_survives(system: System) -> None:
    from harness.processes import PROJECT_DIR

    response = system.upload(
        PROJECT_DIR / "test_images" / "sample.png", operations="resize(width=200)", output_format="webp"
    )
    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    image = Image.open(io.BytesIO(httpx.get(status["result"]["download_url"]).content))
    assert image.format == "WEBP"
    assert image.size == (200, 150)
    assert image.mode == "RGBA"


def test_two_workers_both_take_jobs(system: System, sample_jpg) -> None:
    job_ids = []
    for _ in range(8):
        response = system.upload(sample_jpg, operations="resize(width=300),filter(name=sharpen)")
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["job_id"])
    statuses = [system.wait_finished(job_id) for job_id in job_ids]
    assert all(s["status"] == "completed" for s in statuses), statuses
    assert {s["worker"] for s in statuses} == {"worker-a", "worker-b"}


def test_corrupted_image_fails_and_is_dead_lettered(system: System, corrupted_jpg, sample_jpg) -> None:
    dead_before = system.vhost.message_count("images.jobs.dead")
    response = system.upload(corrupted_jpg, operations="resize")
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    status = system.wait_finished(job_id)
    assert status["status"] == "failed"
    assert status["error_reason"] == "truncated" or status["error_reason"] == "undecodable", status
    assert "truncated" in status["error"] or "decode" in status["error"], status["error"]
    assert status["result"] is None

    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == dead_before + 1, 10, "the dead letter")
    # Other tests of the module dead-letter messages too, some not even JSON: match by header.
    dead = [
        props for props, _ in system.vhost.get_messages("images.jobs.dead", 100)
        if (props.headers or {}).get("x-job-id") == job_id
    ]
    assert len(dead) == 1
    assert dead[0].headers["x-failure-reason"] == status["error_reason"]
    assert dead[0].headers["x-job-id"] == job_id

    with system.http as client:
        assert client.get(f"/result/{job_id}").status_code == 409

    # Both workers are still consuming and the next job completes.
    assert system.vhost.consumer_count("images.jobs.work") == 2
    follow_up = system.upload(sample_jpg, operations="resize(width=100)")
    assert system.wait_finished(follow_up.json()["job_id"])["status"] == "completed"


def test_garbage_message_from_another_client_is_dead_lettered(system: System, sample_jpg) -> None:
    dead_before = system.vhost.message_count("images.jobs.dead")
    system.vhost.publish("images.jobs", "job", b"{not json", message_id="garbage-1")
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == dead_before + 1, 15, "the dead letter")
    dead = [p for p, _ in system.vhost.get_messages("images.jobs.dead", 100) if p.message_id == "garbage-1"]
    assert dead[0].headers["x-failure-reason"] == "invalid_message"
    assert system.vhost.message_count("images.jobs.work") == 0
    assert all(system.services[w].running for w in ("worker-a", "worker-b"))


def test_unknown_job_is_404(system: System) -> None:
    with system.http as client:
        for path in ("/status/0123456789abcdef0123456789abcdef", "/result/0123456789abcdef0123456789abcdef"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "no job" in response.json()["detail"]


@pytest.mark.parametrize("target", ["/status/..", "/status/%2E%2E", "/result/..%5Cetc", "/status/..;x=1"])
def test_path_tricks_reach_the_route_and_are_refused_as_unknown_jobs(system: System, target: str) -> None:
    """Sent as they are (an HTTP client would normalise `..`): the route itself refuses them."""
    host, port = system.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), head
    assert json.loads(body)["detail"].startswith("no job "), body


def test_unknown_operation_is_422_and_nothing_is_queued(system: System, sample_jpg) -> None:
    before = system.vhost.message_count("images.jobs.work")
    # Idle workers would empty the queue at once: the records in the bucket show what was accepted.
    records = len(system.store.list("jobs/"))
    response = system.upload(sample_jpg, operations="resize,explode")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "unknown operation 'explode'" in detail
    assert "crop, filter, flip, pixelate, resize, rotate, saturation, watermark" in detail
    assert system.vhost.message_count("images.jobs.work") == before
    assert len(system.store.list("jobs/")) == records


@pytest.mark.parametrize(
    ("form", "status_code", "fragment"),
    [
        ({"operations": "resize(width=0)"}, 422, "width"),
        ({"operations": "resize(colour=red)"}, 422, "unknown parameter 'colour'"),
        ({"operations": "filter(name=blur,radius=-1)"}, 422, "radius"),
        ({"output_format": "bmp"}, 422, "allowed: jpeg, png, webp, avif, gif, auto"),
        ({"callback_url": "ftp://example"}, 422, "callback_url"),
        ({"metadata": "none"}, 422, "metadata 'none' is not supported"),
        ({"color": "p3"}, 422, "color 'p3' is not supported"),
    ],
)
def test_upload_rejects_bad_parameters(system: System, sample_jpg, form, status_code, fragment) -> None:
    response = system.upload(sample_jpg, **form)
    assert response.status_code == status_code, response.text
    assert fragment in response.json()["detail"]


def test_upload_rejects_non_image_and_empty_file(system: System, tmp_path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    response = system.upload(text)
    assert response.status_code == 415
    assert "not an image" in response.json()["detail"]

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    response = system.upload(empty)
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_status_is_readable_through_a_second_api_process(system: System, sample_jpg) -> None:
    job_id = system.upload(sample_jpg, operations="resize(width=120)").json()["job_id"]
    first = system.wait_finished(job_id)
    second_api, second_url = system.start_api("api-2")
    try:
        response = httpx.get(f"{second_url}/status/{job_id}", timeout=10)
        assert response.status_code == 200
        second = response.json()
        assert second["status"] == "completed"
        assert second["result"]["key"] == first["result"]["key"]
        assert second["worker"] == first["worker"]
    finally:
        second_api.stop()


def test_callback_url_gets_a_signed_completion_event(system: System, sample_jpg) -> None:
    receiver = WebhookReceiver()
    try:
        job_id = system.upload(sample_jpg, operations="resize(width=64)", callback_url=receiver.url()).json()["job_id"]
        assert system.wait_finished(job_id)["status"] == "completed"
        call = wait_for(lambda: next(iter(receiver.calls_for(job_id)), None), 20, "the webhook call")
        event = call.payload
        assert event["type"] == "job.completed"
        assert event["data"]["result"]["width"] == 64
        assert httpx.get(event["data"]["result"]["download_url"]).status_code == 200
        # Verified as any receiver would, with the Standard Webhooks reference package.
        assert Webhook(TEST_WEBHOOK_SECRET).verify(call.body, call.headers) == event
        with pytest.raises(WebhookVerificationError):
            Webhook(TEST_WEBHOOK_SECRET).verify(call.body.replace(b"64", b"65"), call.headers)
    finally:
        receiver.close()


@pytest.mark.every_broker
def test_prefetch_above_one_settles_every_message_once(make_system, sample_jpg) -> None:
    """With several messages in hand, each verdict must go back for its own delivery."""
    system = make_system(workers=("worker-a",), notifier=False, PREFETCH_COUNT="4")
    with open(sample_jpg, "rb") as handle:
        data = handle.read()
    job_ids = []
    with system.http as client:
        for _ in range(16):
            response = client.post("/upload", files={"file": ("s.jpg", data)}, data={"operations": "resize(width=32)"})
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["job_id"])
    statuses = [system.wait_finished(job_id) for job_id in job_ids]
    assert [s["status"] for s in statuses] == ["completed"] * 16
    assert all(s["attempts"] == 1 for s in statuses)
    wait_for(lambda: system.vhost.queue("images.jobs.work")["messages_unacknowledged"] == 0, 20, "every ack")
    assert system.services["worker-a"].running


def test_a_photo_with_gps_comes_back_without_any_of_its_metadata(system: System, tmp_path) -> None:
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(camera_jpeg(orientation=6, size=(400, 300)))

    response = system.upload(photo, operations="resize(width=150)")

    assert response.status_code == 202, response.text
    assert (response.json()["metadata"], response.json()["color"]) == ("strip", "srgb")
    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    with system.http as client:
        data = client.get(f"/result/{status['job_id']}").content
    image = Image.open(io.BytesIO(data))
    assert image.size == (150, 200)  # turned upright first
    assert len(image.getexif()) == 0 and not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not any(secret in data for secret in PRIVATE_STRINGS)


def test_metadata_keep_keeps_exif_xmp_iptc_and_the_comment(system: System, tmp_path) -> None:
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(with_iptc(camera_jpeg()))

    response = system.upload(photo, operations="resize(width=100)", metadata="keep")

    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert (status["status"], status["metadata"]) == ("completed", "keep"), status
    image = Image.open(io.BytesIO(_download(system, status["job_id"])))
    assert image.getexif()[ExifTags.Base.Artist] == "Ann Example" and "xmp" in image.info
    assert IptcImagePlugin.getiptcinfo(image) == {(2, 90): b"SecretIptcCy"}
    assert image.info["comment"] == b"SecretComment"


def test_metadata_copyright_keeps_the_credit_and_drops_the_position(system: System, tmp_path) -> None:
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(camera_jpeg())

    response = system.upload(photo, operations="resize(width=100)", metadata="copyright", color="keep")

    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert (status["status"], status["metadata"], status["color"]) == ("completed", "copyright", "keep"), status
    with system.http as client:
        data = client.get(f"/result/{status['job_id']}").content
    exif = Image.open(io.BytesIO(data)).getexif()
    assert exif[ExifTags.Base.Artist] == "Ann Example" and not exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert b"SN-SECRET-1234" not in data


def _download(system: System, job_id: str) -> bytes:
    with system.http as client:
        return client.get(f"/result/{job_id}").content


@pytest.mark.parametrize(("output_format", "written"), [("auto", "webp"), ("avif", "avif")])
def test_an_animated_gif_comes_back_animated_with_its_timing(
    system: System, tmp_path, output_format: str, written: str
) -> None:
    frames = [Image.new("RGB", (200, 150), colour) for colour in ("red", "green", "blue")]
    source = tmp_path / "anim.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=[70, 140, 210], loop=0)

    response = system.upload(source, operations="resize(width=100),watermark", output_format=output_format)

    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    assert (status["result"]["format"], status["result"]["content_type"]) == (written, f"image/{written}")
    image = Image.open(io.BytesIO(_download(system, status["job_id"])))
    assert (image.format, image.n_frames, image.size) == (written.upper(), 3, (100, 75))
    durations = []
    for index in range(3):
        image.seek(index)
        image.load()
        durations.append(image.info["duration"])
    assert durations == [70, 140, 210]


def test_a_still_photo_as_auto_is_avif(system: System, sample_jpg) -> None:
    response = system.upload(sample_jpg, operations="resize(width=300)", output_format="auto")

    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    assert status["result"]["format"] == "avif"
    assert Image.open(io.BytesIO(_download(system, status["job_id"]))).format == "AVIF"


def test_max_bytes_is_met_or_the_job_fails_naming_it(system: System, sample_jpg) -> None:
    fits = system.upload(sample_jpg, operations="resize(width=600)", output_format="jpeg", max_bytes="20000")
    too_small = system.upload(sample_jpg, operations="resize(width=600)", output_format="png", max_bytes="600")

    status = system.wait_finished(fits.json()["job_id"])
    assert status["status"] == "completed", status
    assert status["max_bytes"] == 20000 and status["result"]["bytes"] <= 20000
    failed = system.wait_finished(too_small.json()["job_id"])
    assert (failed["status"], failed["error_reason"]) == ("failed", "output_too_large"), failed
    assert "max_bytes=600" in failed["error"]


@pytest.mark.parametrize("value", ["0", "-5", "511", str(2**40), "lots", "1e6"])
def test_max_bytes_out_of_range_is_422_naming_it(system: System, sample_jpg, value: str) -> None:
    response = system.upload(sample_jpg, max_bytes=value)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "max_bytes" or "max_bytes" in response.json()["detail"]


def test_geometry_and_tone_operations_run_through_the_system(system: System, tmp_path) -> None:
    wide = Image.new("RGB", (900, 300), (120, 130, 140))
    wide.paste(Image.effect_mandelbrot((200, 200), (-2, -1.2, 0.8, 1.2), 100).convert("RGB"), (650, 50))
    source = tmp_path / "wide.png"
    wide.save(source)
    operations = (
        "crop(aspect=1:1,gravity=smart),rotate(angle=90),flip(direction=horizontal),"
        "saturation(factor=1.2),contrast(factor=1.1),brightness(factor=1.05),autocontrast,pixelate(size=4),"
        "resize(width=200,height=100,fit=pad,background=black)"
    )

    response = system.upload(source, operations=operations, output_format="png")

    assert response.status_code == 202, response.text
    status = system.wait_finished(response.json()["job_id"])
    assert status["status"] == "completed", status
    assert (status["result"]["width"], status["result"]["height"]) == (200, 100)
    image = Image.open(io.BytesIO(_download(system, status["job_id"]))).convert("RGB")
    assert image.getpixel((10, 50)) == (0, 0, 0) and image.getpixel((190, 50)) == (0, 0, 0)  # the pad
    # the detailed subject was kept: many colours in the middle square
    assert len(set(image.crop((50, 0, 150, 100)).get_flattened_data())) > 50


@pytest.mark.parametrize(
    ("operations", "fragment"),
    [
        ("crop(aspect=1:1,gravity=up)", "gravity"),
        ("crop(x=1500,y=0,width=200,height=10)", "outside the 1600×1200 image"),
        ("resize(width=800),crop(x=700,y=0,width=200,height=10)", "operation 2 (crop)"),
        ("resize(width=800),rotate(angle=90),crop(y=700,height=200)", "outside the 600×800 image that operations 1–2"),
        ("rotate(angle=720)", "angle"),
        ("resize(width=10,height=10,fit=pad,background=sparkly)", "not a colour"),
        ("brightness", "factor"),
    ],
)
def test_bad_operation_parameters_are_422_naming_them(
    system: System, sample_jpg, operations: str, fragment: str
) -> None:
    response = system.upload(sample_jpg, operations=operations)

    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"] and response.json()["field"] == "operations"


def test_a_crop_outside_the_upright_image_fails_the_job_in_the_worker(system: System, tmp_path) -> None:
    # A PNG's orientation is read only with its pixels: stored 400×300, upright 300×400. The API
    # lets a crop through that fits one way round; the worker knows which and fails the job.
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    source = tmp_path / "turned.png"
    Image.new("RGB", (400, 300), "teal").save(source, exif=exif)

    response = system.upload(source, operations="resize(height=100),crop(x=100,y=0,width=20,height=10)")

    assert response.status_code == 202, response.text
    failed = system.wait_finished(response.json()["job_id"])
    assert (failed["status"], failed["error_reason"]) == ("failed", "crop_outside_image"), failed
    assert "crop" in failed["error"] and "outside the 75×100 image" in failed["error"], failed


def test_a_logo_preset_is_drawn_and_an_unknown_one_is_422(system: System, tmp_path) -> None:
    source = tmp_path / "white.png"
    Image.new("RGB", (600, 400), "white").save(source)

    accepted = system.upload(source, operations="watermark(image=imgpipe,position=center,size=0.3,opacity=1)")
    refused = system.upload(source, operations="watermark(image=globex)")

    assert refused.status_code == 422 and "no logo preset 'globex'; available: imgpipe" in refused.json()["detail"]
    status = system.wait_finished(accepted.json()["job_id"])
    assert status["status"] == "completed", status
    image = Image.open(io.BytesIO(_download(system, status["job_id"]))).convert("RGB")
    red, green, blue = image.getpixel((120, 200))  # inside the logo's blue, left of its text
    assert blue > 150 and red < 80, (red, green, blue)
