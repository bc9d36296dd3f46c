"""The API's service layer with in-memory adapters: what a submission stores, publishes and
refuses, and who may see a job."""

import io
import ipaddress
import json
import threading

import pytest

from api import errors
from api.service import JobsPorts, Upload, find_job, open_result, submit_job
from common.clients import ANONYMOUS, Client
from common.egress import EgressPolicy
from common.jobs import JobStatus, JobStore, ResultInfo
from common.settings import UploadLimits
from tests.support.images import camera_jpeg, png_declaring, png_of
from tests.support.memory import MemoryObjectStore, MemoryPublisher

ALICE, BOB, OPS = Client("alice"), Client("bob"), Client("ops", admin=True)
LIMITS = UploadLimits(
    max_upload_bytes=1_000_000, max_image_pixels=1_000_000, max_output_pixels=4_000_000, max_operations=5,
    max_queued_jobs=10, default_operations="resize", default_quality=85, logos=frozenset({"acme", "imgpipe"}),
)


@pytest.fixture
def ports() -> JobsPorts:
    store = MemoryObjectStore()
    resolver = {"hooks.example": "93.184.216.34", "inside.example": "10.0.0.5"}
    egress = EgressPolicy(resolver=lambda host, port: [ipaddress.ip_address(resolver[host])])
    return JobsPorts(store, JobStore(store), MemoryPublisher(), egress, LIMITS)


PNG = png_of((80, 60))


def upload(data: bytes | None = None, client: Client = ALICE, **fields) -> Upload:
    data = PNG if data is None else data
    return Upload(client=client, file=io.BytesIO(data), size=len(data), filename="a.png", **fields)


def nothing_left(ports: JobsPorts) -> bool:
    return ports.store.objects == {} and ports.publisher.published == []


def test_submit_stores_the_original_and_record_then_queues_the_job(ports) -> None:
    record = submit_job(upload(operations="resize(width=20)", callback_url="https://hooks.example/h"), ports)
    assert record.status is JobStatus.QUEUED and record.owner == "alice"
    assert record.callback_url == "https://hooks.example/h"
    assert ports.store.objects[record.original.key] == PNG
    assert ports.jobs.get(record.job_id) == record
    (message,) = ports.publisher.published
    assert (message.exchange, message.routing_key, message.message_id) == ("images.jobs", "job", record.job_id)
    assert json.loads(message.body)["operations"] == [
        {
            "name": "resize", "width": 20, "height": None, "fit": "contain", "upscale": False, "gravity": "center",
            "background": "white",
        }
    ]


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"operations": "explode"}, "operations", "unknown operation 'explode'"),
        ({"operations": "resize(width=3000,height=3000,fit=fill,upscale=true)"}, "operations", "limited to 4000000"),
        ({"output_format": "bmp"}, "output_format", "allowed: jpeg, png, webp, avif, gif, auto"),
        ({"callback_url": "http://inside.example/"}, "callback_url", "private address (10.0.0.5)"),
        ({"callback_url": "http://u:p@hooks.example/"}, "callback_url", "credentials"),
        ({"color": "cmyk"}, "color", "allowed: srgb, keep"),
        ({"operations": "watermark(image=globex)"}, "operations", "no logo preset 'globex'; available: acme, imgpipe"),
        ({"operations": "watermark(image=../../etc/passwd)"}, "operations", "image: String should match pattern"),
        ({"operations": "watermark(image=https://evil.example/x.png)"}, "operations", "should match pattern"),
        ({"metadata": "gps-only"}, "metadata", "allowed: strip, keep, copyright"),
        ({"metadata": "x" * 10_000}, "metadata", "allowed: strip, keep, copyright"),
    ],
)
def test_submit_refuses_bad_fields_naming_them_and_keeps_nothing(ports, fields, field, fragment) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        submit_job(upload(**fields), ports)
    assert caught.value.field == field and fragment in caught.value.detail
    assert nothing_left(ports)


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (b"", errors.InvalidInput, "empty"),
        (b"hello", errors.UnsupportedImage, "not an image in a supported format"),
        (png_declaring(2000, 1000), errors.InvalidInput, "2000x1000 (2000000 pixels); at most 1000000"),
        (b"\x89PNG" + bytes(1_000_000), errors.UploadTooLarge, "files up to 1000000 bytes"),
    ],
)
def test_submit_refuses_files_it_cannot_take(ports, data, error, fragment) -> None:
    with pytest.raises(error) as caught:
        submit_job(upload(data), ports)
    assert fragment in caught.value.detail and caught.value.field == "file"
    assert nothing_left(ports)


@pytest.mark.parametrize("crop", ["crop(x=80,y=0,width=5,height=5)", "crop(x=0.5,width=0.6)", "crop(y=90)"])
def test_a_first_crop_outside_the_original_is_refused_naming_it(ports, crop) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        submit_job(upload(operations=f"{crop},resize(width=20)"), ports)
    assert caught.value.field == "operations" and "outside the" in caught.value.detail
    assert nothing_left(ports)


def test_a_crop_that_fits_either_way_round_is_left_to_the_worker(ports) -> None:
    # 80×60 as stored; an orientation tag (not read at the door for PNG) could make it 60×80.
    assert submit_job(upload(operations="crop(x=0,y=0,width=60,height=80)"), ports).status is JobStatus.QUEUED
    assert submit_job(upload(operations="resize(width=400,upscale=true),crop(x=300,width=50)"), ports)


def test_a_first_crop_is_judged_on_the_upright_jpeg(ports) -> None:
    turned = camera_jpeg(orientation=6, size=(80, 60))  # stored 80×60, shown 60×80

    assert submit_job(upload(turned, operations="crop(x=0,y=0,width=60,height=80)"), ports)
    with pytest.raises(errors.InvalidInput, match=r"outside the 60×80 image"):
        submit_job(upload(turned, operations="crop(x=0,y=0,width=80,height=60)"), ports)


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ("resize(width=40),crop(x=30,width=20)", "operation 2 (crop): the crop box (30, 0, 50, 40)"),
        ("crop(width=0.5),crop(x=50,y=0,width=5,height=5)", "operation 2 (crop): the crop box (50, 0, 55, 5)"),
        ("rotate(angle=90),resize(width=30),crop(y=30,height=20)", "operation 3 (crop): the crop box (0, 30, 30, 50)"),
        ("resize(width=200,height=10,fit=pad),filter,crop(x=0,y=5,height=6)", "operation 3 (crop)"),
        ("resize(width=40,height=40,fit=cover),rotate(angle=45),crop(x=0,y=0,width=60)", "operation 3 (crop)"),
    ],
)
def test_a_later_crop_outside_the_image_the_operations_before_it_make_is_refused_naming_it(
    ports, operations: str, expected: str
) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        submit_job(upload(png_of((80, 80)), operations=operations), ports)

    assert caught.value.field == "operations" and caught.value.detail.startswith(f"operations: {expected}")
    assert "outside the" in caught.value.detail
    assert nothing_left(ports)


def test_a_later_crop_names_the_size_the_operations_before_it_make(ports) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        submit_job(upload(png_of((80, 80)), operations="resize(width=40),rotate(angle=90),crop(x=30,width=20)"), ports)

    assert caught.value.detail.endswith("reaches outside the 40×40 image that operations 1–2 make")


@pytest.mark.parametrize(
    "operations",
    [
        "resize(width=40),crop(x=20,width=20)",
        "crop(width=0.5),crop(x=39,y=0,width=1,height=1)",
        "resize(width=40,height=40,fit=cover),rotate(angle=45),crop(x=0,y=0,width=56,height=56)",
        "resize(width=200,height=10,fit=pad),crop(x=199,y=9)",
    ],
)
def test_a_later_crop_that_fits_is_accepted(ports, operations: str) -> None:
    assert submit_job(upload(png_of((80, 80)), operations=operations), ports).status is JobStatus.QUEUED


def test_a_later_crop_is_judged_on_the_upright_jpeg(ports) -> None:
    turned = camera_jpeg(orientation=6, size=(80, 60))  # stored 80×60, shown 60×80

    assert submit_job(upload(turned, operations="resize(width=30),crop(x=0,y=39,width=30,height=1)"), ports)
    with pytest.raises(errors.InvalidInput, match=r"operation 2 \(crop\).* outside the 30×40 image"):
        submit_job(upload(turned, operations="resize(width=30),crop(x=0,y=0,width=40,height=30)"), ports)


def test_a_later_crop_that_fits_one_way_round_is_left_to_the_worker(ports) -> None:
    # A PNG's orientation is not read at the door: 80×60 stored may be 60×80 upright.
    assert submit_job(upload(operations="resize(width=40,height=40),crop(x=0,y=0,width=40,height=30)"), ports)
    assert submit_job(upload(operations="resize(width=40,height=40),crop(x=0,y=0,width=30,height=40)"), ports)
    with pytest.raises(errors.InvalidInput, match=r"operation 2 \(crop\)"):
        submit_job(upload(operations="resize(width=40,height=40),crop(x=0,y=0,width=40,height=40)"), ports)


def test_submit_with_storage_down_is_unavailable_and_queues_nothing(ports) -> None:
    ports.store.down = True
    with pytest.raises(errors.Unavailable) as caught:
        submit_job(upload(), ports)
    assert caught.value.retry_after_s == 5
    assert ports.publisher.published == []


@pytest.mark.parametrize("prefix", ["jobs/", "index/"])
def test_a_storage_failure_after_the_original_leaves_nothing_behind(ports, prefix: str) -> None:
    ports.store.failing_puts, ports.store.failing_prefix = 1, prefix
    with pytest.raises(errors.Unavailable, match="object storage"):
        submit_job(upload(), ports)
    assert nothing_left(ports)


def test_the_record_and_its_index_entries_are_written_at_once(ports) -> None:
    """Three small PUTs: each waits at a barrier that only three writes in flight together pass."""
    together = threading.Barrier(3, timeout=5)
    put = ports.store.put

    def put_at_the_barrier(key: str, data: bytes, content_type: str, metadata=None) -> str:
        if not key.startswith("originals/"):
            together.wait()
        return put(key, data, content_type, metadata)

    ports.store.put = put_at_the_barrier  # type: ignore[method-assign]
    record = submit_job(upload(), ports)
    assert ports.jobs.get(record.job_id) == record
    assert sum(key.startswith("index/") for key in ports.store.objects) == 2


@pytest.mark.parametrize(("switch", "error"), [("fail", errors.Unavailable), ("full", errors.QueueFull)])
def test_submit_that_cannot_be_queued_leaves_nothing_behind(ports, switch, error) -> None:
    setattr(ports.publisher, switch, True)
    with pytest.raises(error):
        submit_job(upload(), ports)
    assert ports.store.objects == {}


def test_a_job_is_found_by_its_owner_and_operators_only(ports) -> None:
    record = submit_job(upload(), ports)
    assert find_job(record.job_id, ALICE, ports.jobs) == record
    assert find_job(record.job_id, OPS, ports.jobs) == record
    for other in (BOB, ANONYMOUS):
        with pytest.raises(errors.NotFound) as caught:
            find_job(record.job_id, other, ports.jobs)
        assert caught.value.detail == f"no job {record.job_id!r}"


@pytest.mark.parametrize("job_id", ["../etc/passwd", "0" * 31, "X" * 32, "0" * 32])
def test_ids_that_are_not_jobs_are_not_found(ports, job_id) -> None:
    with pytest.raises(errors.NotFound):
        find_job(job_id, ALICE, ports.jobs)


def test_a_result_opens_only_once_completed(ports) -> None:
    record = submit_job(upload(), ports)
    with pytest.raises(errors.NotFinished, match="is queued"):
        open_result(record.job_id, ALICE, ports.jobs, ports.store)
    record.start("w", 1)
    record.complete(ResultInfo(key="results/x.png", width=1, height=1, bytes=3, format="png", content_type="image/png"))
    ports.jobs.save(record)
    ports.store.put("results/x.png", b"abc", "image/png")
    _, body = open_result(record.job_id, ALICE, ports.jobs, ports.store)
    assert b"".join(body) == b"abc"
