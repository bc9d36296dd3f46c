"""Signed webhook delivery.

The body is the event as JSON; the header `X-Imgpipe-Signature: sha256=<hex>` carries the
HMAC-SHA256 of the exact body bytes under the shared WEBHOOK_SECRET, so a receiver can check that
the call came from this system. `X-Imgpipe-Event` names the event and `X-Imgpipe-Delivery` the job.
"""

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import httpx

SIGNATURE_HEADER = "X-Imgpipe-Signature"

logger = logging.getLogger(__name__)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    return hmac.compare_digest(sign(body, secret), signature)


@dataclass
class DeliveryReport:
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    def __init__(self, secret: str, timeout_s: float, attempts: int, backoff_s: float) -> None:
        self._secret = secret
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, url: str, event: str, job_id: str, body: bytes) -> DeliveryReport:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "imgpipe-notifier",
            SIGNATURE_HEADER: sign(body, self._secret),
            "X-Imgpipe-Event": event,
            "X-Imgpipe-Delivery": job_id,
        }
        report = DeliveryReport(delivered=False, attempts=0)
        for attempt in range(1, self._attempts + 1):
            report.attempts = attempt
            try:
                response = self._client.post(url, content=body, headers=headers)
                report.status_code = response.status_code
                if response.is_success:
                    report.delivered, report.error = True, None
                    return report
                report.error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    return report  # the receiver refuses this call; asking again will not help
            except httpx.HTTPError as exc:
                report.error = f"{type(exc).__name__}: {exc}"
            if attempt < self._attempts:
                delay = self._backoff_s * 2 ** (attempt - 1)
                logger.info(
                    "webhook %s attempt %d failed (%s); next in %.1fs",
                    url, attempt, report.error, delay, extra={"job_id": job_id},
                )
                time.sleep(delay)
        return report

    def close(self) -> None:
        self._client.close()
