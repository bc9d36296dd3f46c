"""In-memory adapters of the system's ports (common/ports.py, worker/isolation.py), for unit tests
of the service layer and the worker's decisions: real implementations kept in dicts and lists, with
switches to make the next calls fail the way the real services do."""

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from common.amqp import DeliveryLost, PublishFailed, QueueFull
from common.storage import ObjectMissing, StorageUnavailable
from worker.isolation import PipelineCancelled, PipelineRequest
from worker.pipeline import ProcessedImage, ProcessedVariants, process_variants


class MemoryObjectStore:
    """An S3 bucket in a dict. `failing_puts` / `failing_gets`: that many next calls (on keys under
    `failing_prefix`) fail as if the server were unreachable; `down`: every call fails."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.modified: dict[str, datetime] = {}
        self.etags: dict[str, str] = {}
        self._versions = itertools.count(1)
        self.puts: list[tuple[str, bytes]] = []
        self.failing_puts = 0
        self.failing_gets = 0
        self.failing_prefix = ""
        self.down = False

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> str:
        self._check()
        if self.failing_puts and key.startswith(self.failing_prefix):
            self.failing_puts -= 1
            raise StorageUnavailable("storage down")
        self.objects[key] = data
        self.modified[key] = datetime.now(UTC)
        self.etags[key] = f"v{next(self._versions)}"
        self.puts.append((key, data))
        return self.etags[key]

    def put_file(
        self, key: str, stream: BinaryIO, size: int, content_type: str, metadata: dict[str, str] | None = None
    ) -> str:
        return self.put(key, stream.read(size), content_type, metadata)

    def replace(self, key: str, data: bytes, content_type: str, etag: str) -> str | None:
        self._check()
        if self.etags.get(key) != etag:
            return None
        return self.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        self._check()
        if self.failing_gets and key.startswith(self.failing_prefix):
            self.failing_gets -= 1
            raise StorageUnavailable("storage down")
        if key not in self.objects:
            raise ObjectMissing(f"object {key!r} does not exist")
        return self.objects[key], self.etags.get(key, "v0")

    def stream(self, key: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        data = self.get(key)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def delete(self, key: str) -> None:
        self._check()
        self.objects.pop(key, None)
        self.modified.pop(key, None)
        self.etags.pop(key, None)

    def list_dated(self, prefix: str) -> list[tuple[str, datetime | None]]:
        self._check()
        return sorted((key, self.modified.get(key)) for key in self.objects if key.startswith(prefix))

    def create(self, key: str, data: bytes, content_type: str) -> bool:
        if key in self.objects:
            self._check()
            return False
        self.put(key, data, content_type)
        return True

    def list_after(self, prefix: str, start_after: str | None, limit: int) -> list[str]:
        keys = [key for key, _ in self.list_dated(prefix) if start_after is None or key > start_after]
        return keys[:limit]

    def presigned_url(self, key: str) -> str:
        return f"memory://{key}"

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("storage down")


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    headers: dict = field(default_factory=dict)


class MemoryPublisher:
    """Keeps what was published. `fail`: publishing raises PublishFailed; `full`: QueueFull; a set
    `cancel` flag (a delivery lost with its connection): DeliveryLost, as the real one does."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.fail = False
        self.full = False

    def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str | None = None,
        headers: dict | None = None, content_type: str = "application/json",
        cancel: threading.Event | None = None,
    ) -> None:
        if cancel is not None and cancel.is_set():
            raise DeliveryLost("the delivery was lost with its connection")
        if self.full:
            raise QueueFull(f"the broker refused {exchange}/{routing_key}: the queue is full")
        if self.fail:
            raise PublishFailed("broker down")
        self.published.append(Published(exchange, routing_key, body, message_id, dict(headers or {})))

    def to(self, exchange: str) -> list[Published]:
        return [message for message in self.published if message.exchange == exchange]


class InProcessPipeline:
    """The pipeline in the test's own process (no child to start or stop)."""

    def __init__(self) -> None:
        self.runs = itertools.count()

    def start(self) -> None:
        pass

    def run(self, request: PipelineRequest, cancelled: Callable[[], bool] | None = None) -> ProcessedImage:
        return next(iter(self.run_variants(request, cancelled).outputs.values()))

    def run_variants(
        self, request: PipelineRequest, cancelled: Callable[[], bool] | None = None
    ) -> ProcessedVariants:
        next(self.runs)
        if cancelled is not None and cancelled():
            raise PipelineCancelled("the job was cancelled while its image was processed")
        return process_variants(
            request.data, request.outputs(), request.max_pixels, max_output_pixels=request.max_output_pixels,
        )

    def close(self) -> None:
        pass
