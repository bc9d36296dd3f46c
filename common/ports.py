"""What the services need from the outside world, as protocols: the real adapters
(`common.storage.ObjectStore`, `common.amqp.Publisher`) and the in-memory ones the unit tests use
(`tests/support/memory.py`) both satisfy them."""

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, Protocol


class ObjectStorage(Protocol):
    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> str: ...

    def put_file(
        self, key: str, stream: BinaryIO, size: int, content_type: str, metadata: dict[str, str] | None = None
    ) -> str: ...

    def replace(self, key: str, data: bytes, content_type: str, etag: str) -> str | None: ...

    def get(self, key: str) -> bytes: ...

    def get_tagged(self, key: str) -> tuple[bytes, str]: ...

    def stream(self, key: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]: ...

    def delete(self, key: str) -> None: ...

    def list_dated(self, prefix: str) -> list[tuple[str, datetime | None]]: ...

    def list_after(self, prefix: str, start_after: str | None, limit: int) -> list[str]: ...

    def create(self, key: str, data: bytes, content_type: str) -> bool: ...

    def presigned_url(self, key: str) -> str: ...


class MessagePublisher(Protocol):
    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
        content_type: str = "application/json",
        cancel: threading.Event | None = None,
    ) -> None: ...
