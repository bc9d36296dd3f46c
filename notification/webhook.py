"""Webhook delivery: one signed attempt at a time, bounded in time, to a checked address.

Signatures follow the Standard Webhooks specification (https://www.standardwebhooks.com):
`webhook-id` (the same for every attempt of one message), `webhook-timestamp` (seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the base64
part of a "whsec_..." secret — what the `standardwebhooks` package verifies.

Each attempt resolves the target's host, checks every address against the egress policy and
connects to one of those same addresses (common/egress.py): a name that changes its answer between
the check and the connection gains nothing. Connect, send and read share one deadline
(WEBHOOK_TIMEOUT_S), so an endpoint that answers a byte at a time is cut off like a silent one. At
most WEBHOOK_MAX_RESPONSE_BYTES of the answer are read. Redirects are not followed.
"""

import base64
import hashlib
import hmac
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpcore

from common.egress import EgressPolicy, UnsafeTarget, parse_callback_url
from common.settings import webhook_secret_key

logger = logging.getLogger(__name__)

USER_AGENT = "imgpipe-notifier"
# 408 and 429 say "later"; any other 4xx refuses this call for good.
_RETRYABLE_CLIENT_ERRORS = {408, 429}


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = webhook_secret_key(secret)
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, message_id: str, timestamp: int, body: bytes, signature_header: str) -> bool:
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signature_header.split())


@dataclass(frozen=True)
class AttemptResult:
    delivered: bool
    retryable: bool
    detail: str  # for the notifier's log only: never shown to API clients
    status_code: int | None = None


class _DeadlineStream(httpcore.NetworkStream):
    """Every read and write waits at most until the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _timeout(self, timeout: float | None, exc: type[Exception]) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise exc("the delivery attempt ran out of time")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._timeout(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the egress policy allows, checked at connection time."""

    def __init__(self, policy: EgressPolicy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = self._policy.addresses(host, port)
        last_error: Exception | None = None
        for address in addresses:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                stream = self._tcp.connect_tcp(
                    str(address), port, timeout=min(timeout or remaining, remaining),
                    local_address=local_address, socket_options=socket_options,
                )
                return _DeadlineStream(stream, self._deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectTimeout("the delivery attempt ran out of time")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise UnsafeTarget("unix sockets are never webhook targets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class WebhookSender:
    def __init__(self, policy: EgressPolicy, timeout_s: float, max_response_bytes: int) -> None:
        self._policy = policy
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._ssl = ssl.create_default_context()

    def attempt(self, url: str, secret: str, message_id: str, body: bytes) -> AttemptResult:
        """One delivery attempt; never raises for anything the endpoint or the network does."""
        timestamp = int(time.time())
        headers: dict[bytes | str, bytes | str] = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        deadline = time.monotonic() + self._timeout_s
        try:
            parse_callback_url(url)
            with httpcore.ConnectionPool(
                ssl_context=self._ssl, max_connections=1, network_backend=_CheckedBackend(self._policy, deadline)
            ) as pool, pool.stream(
                "POST", url, headers=headers, content=body,
                extensions={"timeout": {"connect": self._timeout_s, "read": self._timeout_s,
                                        "write": self._timeout_s, "pool": self._timeout_s}},
            ) as response:
                self._read_capped(response)
                status = response.status
        except UnsafeTarget as exc:
            return AttemptResult(False, False, f"refused to call it: {exc}")
        except (httpcore.TimeoutException, TimeoutError) as exc:
            return AttemptResult(False, True, f"timed out: {exc or type(exc).__name__}")
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            return AttemptResult(False, True, f"{type(exc).__name__}: {exc}")
        except (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError, ValueError) as exc:
            return AttemptResult(False, False, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return AttemptResult(True, False, f"HTTP {status}", status)
        retryable = status >= 500 or status in _RETRYABLE_CLIENT_ERRORS
        return AttemptResult(False, retryable, f"HTTP {status}", status)

    def _read_capped(self, response: httpcore.Response) -> None:
        read = 0
        for chunk in response.iter_stream():
            read += len(chunk)
            if read >= self._max_response_bytes:
                break
