"""Locust scenario: each user uploads an image, then polls its status until the job ends.

    .venv/bin/locust -f load_test/locustfile.py --headless -u 10 -r 2 -t 2m \\
        --host http://localhost:8000 --csv results/locust/run --only-summary

Besides the HTTP requests (`/upload`, `/status/[job_id]`), every job is reported as one request of
type `JOB` named `completed`, `failed` or `lost`, whose response time is the job's end-to-end
latency (upload start → the poll that saw its end, so late by up to one poll interval). A failed or
lost job counts as a Locust failure.

Environment: LOCUST_IMAGES (a folder of images, default test_images/ without corrupted.jpg),
LOCUST_OPERATIONS (default: the API's), LOCUST_POLL_INTERVAL (s, default 0.5), LOCUST_JOB_TIMEOUT
(s, default 300).
"""

import os
import random
import time
from pathlib import Path

import gevent
from locust import HttpUser, between, task

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
PROJECT_DIR = Path(__file__).resolve().parents[1]
IMAGES_DIR = Path(os.environ.get("LOCUST_IMAGES", PROJECT_DIR / "test_images"))
OPERATIONS = os.environ.get("LOCUST_OPERATIONS")
POLL_INTERVAL = float(os.environ.get("LOCUST_POLL_INTERVAL", "0.5"))
JOB_TIMEOUT = float(os.environ.get("LOCUST_JOB_TIMEOUT", "300"))

IMAGES = [
    (path.name, path.read_bytes())
    for path in sorted(IMAGES_DIR.iterdir())
    if path.suffix.lower() in IMAGE_SUFFIXES and path.name != "corrupted.jpg"
]
if not IMAGES:
    raise SystemExit(f"no images in {IMAGES_DIR}")


class UploadAndWait(HttpUser):
    wait_time = between(0.5, 2)

    @task
    def upload_and_wait(self) -> None:
        name, data = random.choice(IMAGES)
        form = {"operations": OPERATIONS} if OPERATIONS else {}
        start = time.perf_counter()
        with self.client.post(
            "/upload", files={"file": (name, data)}, data=form, catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            job_id = response.json()["job_id"]
        while time.perf_counter() - start < JOB_TIMEOUT:
            gevent.sleep(POLL_INTERVAL)
            with self.client.get(
                f"/status/{job_id}", name="/status/[job_id]", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    continue
                record = response.json()
            if record["status"] in ("completed", "failed"):
                error = None if record["status"] == "completed" else RuntimeError(record.get("error"))
                self._report_job(record["status"], start, error)
                return
        self._report_job("lost", start, TimeoutError(f"job {job_id} did not end within {JOB_TIMEOUT:g} s"))

    def _report_job(self, outcome: str, start: float, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="JOB",
            name=outcome,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
