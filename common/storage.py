"""Object storage through the S3 API (MinIO under compose, SeaweedFS natively).

Errors are translated into two kinds the services act on: `ObjectMissing` (a permanent problem
with one key) and `StorageUnavailable` (the store cannot be reached or answered with an error;
worth retrying later).
"""

import io
import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import DictType

from common.settings import StorageSettings

logger = logging.getLogger(__name__)

_MISSING_CODES = {"NoSuchKey", "NoSuchObject"}
_CLAIMED_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


class StorageError(Exception):
    pass


class ObjectMissing(StorageError):
    pass


class StorageUnavailable(StorageError):
    pass


def _client(
    endpoint: str, storage: StorageSettings, http: urllib3.PoolManager | None, presigning: bool = False
) -> Minio:
    # The region is given so that the client never asks the server for it: presigning then
    # works offline, and against a public endpoint the services themselves cannot reach.
    # Download links may be signed by a key of their own that can only read results.
    presign_key = presigning and storage.presign_access_key and storage.presign_secret_key
    return Minio(
        endpoint,
        access_key=storage.presign_access_key if presign_key else storage.access_key,
        secret_key=storage.presign_secret_key if presign_key else storage.secret_key,
        secure=storage.secure,
        region=storage.region,
        http_client=http,
    )


class ObjectStore:
    def __init__(self, storage: StorageSettings) -> None:
        self.bucket = storage.bucket
        self._expiry = timedelta(seconds=storage.presigned_url_expiry_s)
        timeout = urllib3.Timeout(connect=min(3.0, storage.timeout_s), read=storage.timeout_s)
        http = urllib3.PoolManager(
            timeout=timeout,
            maxsize=16,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        )
        self._client = _client(storage.endpoint, storage, http)
        self._presigner = _client(storage.public_endpoint or storage.endpoint, storage, None, presigning=True)

    def ensure_bucket(self) -> None:
        with _translated(self.bucket):
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                    logger.info("created bucket %s", self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    def is_reachable(self) -> bool:
        try:
            with _translated(self.bucket):
                return self._client.bucket_exists(self.bucket)
        except StorageError:
            return False

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> str:
        """Writes the object; its new ETag."""
        return self.put_file(key, io.BytesIO(data), len(data), content_type, metadata)

    def put_file(
        self, key: str, stream: BinaryIO, size: int, content_type: str, metadata: dict[str, str] | None = None
    ) -> str:
        with _translated(key):
            written = self._client.put_object(
                self.bucket, key, stream, size, content_type=content_type,
                metadata=None if metadata is None else {**metadata},
            )
        return _unquoted(written.etag)

    def replace(self, key: str, data: bytes, content_type: str, etag: str) -> str | None:
        """Writes the object only if it is still the version `etag` names (S3's `If-Match`): its new
        ETag, or None if another write came first (412) or it is gone (404). minio-py's put_object
        cannot send that header either (see create)."""
        headers: DictType = {"If-Match": f'"{etag}"', "Content-Type": content_type}
        with _translated(key):
            try:
                written = self._client._put_object(self.bucket, key, data, headers)
            except S3Error as exc:
                if exc.code in _CLAIMED_CODES | _MISSING_CODES or exc.response.status in (404, 409, 412):
                    return None
                raise
        return _unquoted(written.etag)

    def create(self, key: str, data: bytes, content_type: str) -> bool:
        """Writes the object only if no object has the key (S3's `If-None-Match: *`); False if one
        has (412), or another create of it is under way (409). minio-py's put_object cannot send
        that header, so this goes through the client's own signed request path."""
        headers: DictType = {"If-None-Match": "*", "Content-Type": content_type}
        with _translated(key):
            try:
                self._client._put_object(self.bucket, key, data, headers)
            except S3Error as exc:
                if exc.code in _CLAIMED_CODES or exc.response.status in (409, 412):
                    return False
                raise
        return True

    def get(self, key: str) -> bytes:
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and the ETag of that version (for `replace`)."""
        with _translated(key):
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read(), _unquoted(response.headers.get("ETag", ""))
            finally:
                response.close()
                response.release_conn()

    def stream(self, key: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        with _translated(key):
            response = self._client.get_object(self.bucket, key)
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        with _translated(key):
            self._client.remove_object(self.bucket, key)

    def list_dated(self, prefix: str) -> list[tuple[str, datetime | None]]:
        """The keys under `prefix` with their last-modified times, in key order."""
        with _translated(prefix):
            return [
                (obj.object_name, obj.last_modified)
                for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]

    def list_after(self, prefix: str, start_after: str | None, limit: int) -> list[str]:
        """At most `limit` keys under `prefix` that sort after `start_after`, in key order."""
        with _translated(prefix):
            found = self._client.list_objects(self.bucket, prefix=prefix, recursive=True, start_after=start_after)
            return [obj.object_name for obj in itertools.islice(found, limit) if obj.object_name is not None]

    def list(self, prefix: str) -> list[str]:
        """The keys under `prefix`, in key order."""
        return [key for key, _ in self.list_dated(prefix)]

    def presigned_url(self, key: str) -> str:
        return self._presigner.presigned_get_object(self.bucket, key, expires=self._expiry)


def _unquoted(etag: str | None) -> str:
    return (etag or "").strip('"')


@contextmanager
def _translated(key: str) -> Iterator[None]:
    try:
        yield
    except S3Error as exc:
        if exc.code in _MISSING_CODES:
            raise ObjectMissing(f"object {key!r} does not exist") from exc
        raise StorageUnavailable(f"object storage refused {key!r}: {exc.code}: {exc.message}") from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageUnavailable(f"object storage unreachable for {key!r}: {exc}") from exc
