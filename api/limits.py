"""Refuses oversized uploads before the body is read, by header or while it streams in."""

import contextlib

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
