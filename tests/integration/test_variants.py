"""Variants and presets end to end: one upload, one message, one decode, every output stored and
listed; a failing variant fails the job with nothing completed; hostile variants and names refused."""

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import ExifTags, Image

from harness.broker import BrokerVhost
from harness.processes import PROJECT_DIR, GiveUp, start_api
from harness.system import System, build_system

pytestmark = pytest.mark.integration

PRESETS = PROJECT_DIR / "presets.yaml"
THREE = {
    "thumb": {"operations": "resize(width=200,height=200,fit=cover)", "output_format": "webp", "quality": 80},
    "large": {"operations": "resize(width=1000),watermark", "output_format": "jpeg"},
    "icon": {"operations": "resize(width=64,height=48,fit=fill)", "output_format": "png"},
}


@pytest.fixture(scope="module")
def system(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The usual system with the repository's presets; one worker, so its log tells every decode."""
    vhost = BrokerVhost().create()
    try:
        built = build_system(
            vhost, s3_endpoint, tmp_path_factory.mktemp("logs"), workers=("worker-a",), PRESETS_FILE=str(PRESETS)
        )
        yield built
        built.stop()
    finally:
        vhost.delete()


def upload(system: System, path: Path, **form: str) -> dict:
    response = system.upload(path, **form)
    assert response.status_code == 202, response.text
    return response.json()


def worker_lines(system: System, job_id: str, words: str) -> list[str]:
    return [line for line in system.services["worker-a"].log().splitlines() if job_id in line and words in line]


def downloaded(result: dict) -> Image.Image:
    response = httpx.get(result["download_url"], timeout=10)
    assert response.status_code == 200 and len(response.content) == result["bytes"]
    return Image.open(io.BytesIO(response.content))


def test_three_variants_from_one_message_and_one_decode(system: System, sample_jpg: Path) -> None:
    accepted = upload(system, sample_jpg, variants=json.dumps(THREE))
    assert [v["name"] for v in accepted["variants"]] == ["thumb", "large", "icon"]
    job_id = accepted["job_id"]

    status = system.wait_finished(job_id)
    assert status["status"] == "completed", status
    expected = {"thumb": ("WEBP", (200, 200)), "large": ("JPEG", (1000, 750)), "icon": ("PNG", (64, 48))}
    assert [r["name"] for r in status["results"]] == ["thumb", "large", "icon"]
    for result in status["results"]:
        image = downloaded(result)
        assert (image.format, image.size) == expected[result["name"]]
        assert (result["width"], result["height"]) == expected[result["name"]][1]
        suffix = {"WEBP": "webp", "JPEG": "jpg", "PNG": "png"}[image.format]
        assert result["key"] == f"results/{job_id}/{result['name']}.{suffix}"
        with system.http as client:
            streamed = client.get(f"/result/{job_id}/{result['name']}")
        assert streamed.status_code == 200 and streamed.content == httpx.get(result["download_url"]).content
        assert streamed.headers["content-type"] == result["content_type"]
    # The job's one result is its first variant's, as before variants.
    assert status["result"]["key"] == status["results"][0]["key"]

    assert len(worker_lines(system, job_id, "processing (attempt")) == 1  # one message, taken once
    (decoded,) = worker_lines(system, job_id, "decoded the original once")
    assert "for 3 variant(s)" in decoded
    assert status["attempts"] == 1


def test_operations_alone_is_the_default_variant_at_the_usual_key(system: System, sample_jpg: Path) -> None:
    job_id = upload(system, sample_jpg, operations="resize(width=300)")["job_id"]
    status = system.wait_finished(job_id)
    assert status["status"] == "completed", status
    assert [v["name"] for v in status["variants"]] == ["default"]
    (result,) = status["results"]
    assert result["key"] == status["result"]["key"] == f"results/{job_id}.jpg"
    with system.http as client:
        assert client.get(f"/result/{job_id}/default").content == client.get(f"/result/{job_id}").content


def test_a_preset_upload_expands_to_its_variants(system: System, sample_jpg: Path) -> None:
    with system.http as client:
        listed = client.get("/presets")
    assert listed.status_code == 200
    assert {name: len(v) for name, v in listed.json()["presets"].items()} == {"avatar": 2, "responsive": 8, "social": 1}

    accepted = upload(system, sample_jpg, preset="social")
    status = system.wait_finished(accepted["job_id"])
    assert status["status"] == "completed", status
    assert status["preset"] == "social" and [v["name"] for v in status["variants"]] == ["card"]
    (card,) = status["results"]
    image = downloaded(card)
    assert (image.format, image.size) == ("JPEG", (1200, 630))


def test_a_failing_variant_fails_the_job_naming_it_and_stores_nothing(system: System, tmp_path: Path) -> None:
    # Only the worker can tell: a PNG's orientation is read with its pixels (stored 400×300, upright
    # 300×400), and the API lets through a crop that fits the image one way round.
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    source = tmp_path / "turned.png"
    Image.new("RGB", (400, 300), "teal").save(source, exif=exif)
    variants = {
        "fine": {"operations": "resize(width=100)"},
        "cut": {"operations": "resize(height=100),crop(x=100,y=0,width=20,height=10)"},
    }
    job_id = upload(system, source, variants=json.dumps(variants))["job_id"]
    status = system.wait_finished(job_id)
    assert status["status"] == "failed", status
    assert status["error_reason"] == "crop_outside_image"
    assert status["error"].startswith("variant cut: crop:")
    assert status["result"] is None and status["results"] == []
    assert system.store.list(f"results/{job_id}") == []
    with system.http as client:
        assert client.get(f"/result/{job_id}/fine").status_code == 409


@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        ({"variants": json.dumps({f"v{i}": {"operations": "flip"} for i in range(11)})}, "at most 10 allowed"),
        ({"variants": json.dumps({"../x": {"operations": "flip"}})}, "variant name '../x' is not allowed"),
        ({"variants": json.dumps({"": {"operations": "flip"}})}, "variant name '' is not allowed"),
        ({"variants": json.dumps({"a" * 1000: {"operations": "flip"}})}, "is not allowed"),
        ({"variants": json.dumps({"größe": {"operations": "flip"}})}, "is not allowed"),
        ({"variants": '{"a":' * 3000 + "1" + "}" * 3000}, "nested too deeply"),
        ({"variants": '["resize"]'}, "must be a JSON object"),
        ({"variants": '"resize"'}, "must be a JSON object"),
        ({"variants": json.dumps({"a": {"operations": ",".join(["flip"] * 500)}})}, "500 operations given; at most 20"),
        ({"variants": json.dumps({"a": {"operations": "flip", "quality": 101}})}, "variant a: quality"),
        ({"preset": "nope"}, "no preset 'nope'; available: avatar, responsive, social"),
        ({"preset": "avatar", "operations": "flip"}, "cannot be combined"),
    ],
    ids=lambda value: str(value)[:30],
)
def test_hostile_variants_are_refused_with_a_problem(system: System, sample_jpg: Path, form, fragment) -> None:
    response = system.upload(sample_jpg, **form)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert fragment in problem["detail"] and len(problem["detail"]) < 1000


@pytest.mark.parametrize("path", ["../x", "..%2Fx", "%2e%2e", "x" * 1000, "Thumb", "%C3%A9"])
def test_result_paths_with_tricks_are_not_found(system: System, sample_jpg: Path, path: str) -> None:
    job_id = upload(system, sample_jpg, variants=json.dumps(THREE))["job_id"]
    assert system.wait_finished(job_id)["status"] == "completed"
    with system.http as client:
        response = client.get(f"/result/{job_id}/{path}")
    assert response.status_code == 404, response.text
    assert not response.headers["content-type"].startswith("image/")


def test_a_bad_preset_stops_the_api_naming_it(system: System, tmp_path: Path) -> None:
    bad = tmp_path / "presets.yaml"
    bad.write_text("fine:\n  a: {operations: flip}\nbroken:\n  b: {operations: 'resize(width=-5)'}\n")
    with pytest.raises(GiveUp) as caught:
        start_api({**system.env, "PRESETS_FILE": str(bad)}, tmp_path, "api-bad-presets")
    assert "preset broken: variant b: operations: operation 1 (resize)" in str(caught.value)
