"""The Storage page's API (GET /storage, GET /storage/{job_id}/{kind}) on a running system: a client
sees only its own jobs' objects, keys come from job ids, previews are bounded, pages are bounded."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from harness.broker import BrokerVhost
from harness.processes import PROJECT_DIR
from harness.system import System, build_system

pytestmark = pytest.mark.integration

ALICE, BOB, OPS = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
SAMPLE = PROJECT_DIR / "test_images" / "sample.jpg"
KEYS = {"API_KEYS": f"alice={ALICE},bob={BOB}", "ADMIN_API_KEYS": f"ops={OPS}", "AUTH_REQUIRED": "true"}


@pytest.fixture(scope="module")
def secured(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    vhost = BrokerVhost().create()
    system = build_system(
        vhost, s3_endpoint, tmp_path_factory.mktemp("storage"), workers=("worker-a",), notifier=False,
        RATE_LIMIT_UPLOADS="", **KEYS,
    )
    yield system
    system.stop()
    vhost.delete()


def completed_job(system: System, image: Path, key: str) -> str:
    response = system.upload(image, key=key, operations="resize(width=64)")
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    assert system.wait_finished(job_id, key=key)["status"] == "completed"
    return job_id


@pytest.fixture(scope="module")
def alices_job(secured: System) -> str:
    return completed_job(secured, SAMPLE, ALICE)


def listed(system: System, key: str | None, **params: str | int) -> dict:
    with system.client(key) as client:
        response = client.get("/storage", params=params)
    assert response.status_code == 200, response.text
    page: dict = response.json()
    return page


def every_listed_id(system: System, key: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = listed(system, key, limit=100, **({"after": cursor} if cursor else {}))
        ids += [job["job_id"] for job in page["jobs"]]
        if (cursor := page["next_cursor"]) is None:
            return ids


def test_storage_lists_the_clients_original_and_result_with_sizes(secured: System, alices_job: str) -> None:
    jobs = {job["job_id"]: job for job in listed(secured, ALICE)["jobs"]}
    job = jobs[alices_job]
    status = secured.status(alices_job, key=ALICE)
    assert (job["owner"], job["status"], job["filename"]) == ("alice", "completed", "sample.jpg")
    original, result = job["objects"]
    assert (original["kind"], original["bytes"], original["width"]) == (
        "original", status["original"]["bytes"], status["original"]["width"]
    )
    assert (result["kind"], result["bytes"], result["width"]) == ("result", status["result"]["bytes"], 64)
    assert original["preview_url"] == f"{secured.api_url}/storage/{alices_job}/original"
    assert job["stored_at"] and job["created_at"]


def test_another_clients_objects_are_not_listed_and_do_not_exist(secured: System, alices_job: str) -> None:
    assert alices_job not in every_listed_id(secured, BOB)
    assert alices_job in every_listed_id(secured, OPS)  # an operator sees every job
    with secured.client(BOB) as client:
        for kind in ("original", "result"):
            response = client.get(f"/storage/{alices_job}/{kind}")
            assert response.status_code == 404
            assert response.json()["detail"] == f"no job {alices_job!r}"
    with secured.client(None) as client:
        assert client.get("/storage").status_code == 401
        assert client.get(f"/storage/{alices_job}/original").status_code == 401


def test_preview_is_the_stored_object_itself(secured: System, alices_job: str, sample_jpg: Path) -> None:
    with secured.client(ALICE) as client:
        original = client.get(f"/storage/{alices_job}/original")
        preview = client.get(f"/storage/{alices_job}/result")
        result = client.get(f"/result/{alices_job}")
    assert original.status_code == 200 and original.content == sample_jpg.read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert original.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in original.headers["content-security-policy"]
    assert preview.status_code == 200 and preview.content == result.content


def test_odd_keys_and_kinds_reach_no_object(secured: System, alices_job: str) -> None:
    with secured.client(ALICE) as client:
        for path in (
            f"/storage/{alices_job}/record", f"/storage/{alices_job}/%2e%2e", f"/storage/{alices_job}/original.json",
        ):
            assert client.get(path).status_code in (404, 422), path
        for job_id in ("..%2F..%2Fjobs%2Fx", "jobs%2F" + alices_job, alices_job.upper(), alices_job + ".json", "%00"):
            response = client.get(f"/storage/{job_id}/original")
            assert response.status_code == 404, (job_id, response.text)
            assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "params", [{"limit": 1_000_000}, {"limit": 0}, {"limit": -1}, {"after": "x" * 65}, {"after": "../jobs"},
               {"after": "1." + "g" * 32}, {"after": "9" * 16 + "." + "0" * 32}],
)
def test_storage_refuses_huge_limits_and_foreign_cursors(secured: System, params: dict) -> None:
    with secured.client(ALICE) as client:
        response = client.get("/storage", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_storage_pages_through_every_job_once(secured: System, sample_jpg: Path) -> None:
    made = {completed_job(secured, sample_jpg, BOB) for _ in range(3)}
    first = listed(secured, BOB, limit=2)
    assert len(first["jobs"]) == 2 and first["next_cursor"]
    pages = [first]
    while pages[-1]["next_cursor"]:
        pages.append(listed(secured, BOB, limit=2, after=pages[-1]["next_cursor"]))
    ids = [job["job_id"] for page in pages for job in page["jobs"]]
    assert len(ids) == len(set(ids)) and made <= set(ids)
    stored = [job["stored_at"] for page in pages for job in page["jobs"]]
    assert stored == sorted(stored, reverse=True)


def test_a_large_original_is_listed_without_a_preview(secured: System, tmp_path: Path) -> None:
    noisy = tmp_path / "noise.png"
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(noisy)
    assert noisy.stat().st_size > 2 * 1024 * 1024
    job_id = completed_job(secured, noisy, ALICE)
    job = next(job for job in listed(secured, ALICE)["jobs"] if job["job_id"] == job_id)
    original, result = job["objects"]
    assert original["bytes"] == noisy.stat().st_size and original["preview_url"] is None
    assert result["preview_url"] is not None
    with secured.client(ALICE) as client:
        response = client.get(f"/storage/{job_id}/original")
    assert response.status_code == 404
    assert "no preview of the original" in response.json()["detail"]
