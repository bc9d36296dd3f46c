"""Refuses oversized uploads before the body is read, by header or while it streams in; reads and
discards, within bounds, the body of an upload refused for another reason."""

import asyncio
import contextlib

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from api.errors import UploadTooLarge


class _TooLarge(Exception):
    pass


# Room for the multipart framing and the form fields around the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024


class UploadSizeLimit:
    def __init__(self, app: ASGIApp, max_file_bytes: int, paths: tuple[str, ...] = ("/upload",)) -> None:
        self.app = app
        self.max_file_bytes = max_file_bytes
        self.max_body_bytes = max_file_bytes + FORM_OVERHEAD_BYTES
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, scope["path"])
            return

        received = 0
        exceeded = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def refusing_send(message: Message) -> None:
            # Past the limit, whatever the app answers (the form parser reports a broken body)
            # is replaced by the 413.
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(send, scope["path"])

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, refusing_send)
        if exceeded and not refused:
            await self._refuse(send, scope["path"])

    async def _refuse(self, send: Send, path: str) -> None:
        error = UploadTooLarge(f"upload too large: files up to {self.max_file_bytes} bytes are accepted", field="file")
        await problems.refuse(send, error, path)


# How long a refused upload's body is read for, at most: a client that stalls is then cut off.
DRAIN_SECONDS = 30


async def drain_body(scope: Scope, receive: Receive, max_bytes: int) -> None:
    """Read and discard the request's body, up to `max_bytes` and DRAIN_SECONDS, before a refusal
    is sent.

    A client that sends its whole body before reading the answer (urllib, requests, a plain socket)
    would otherwise find the connection reset: the server closes it with the body unread, and the
    kernel answers unread data with a reset that can destroy the answer. Not drained: a body over
    `max_bytes` by its Content-Length (never read in full anyway), and one the client holds back
    until told to go on (`Expect: 100-continue`), which the refusal spares it from sending.
    """
    headers = Headers(scope=scope)
    declared = headers.get("content-length")
    if headers.get("expect", "").lower() == "100-continue":
        return
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return
    received = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while received <= max_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
