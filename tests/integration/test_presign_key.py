"""Download links signed by a key of their own that can only read (S3_PRESIGN_ACCESS_KEY): compose
gives MinIO such a key; here SeaweedFS gets one too (tools/objectstore.py), and the links it signs
download the result while the key itself can write nothing."""

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from common.settings import Settings
from common.storage import ObjectStore, StorageUnavailable
from harness.objectstore import S3_KEYS, PrivateObjectStore
from tools.objectstore import identities

pytestmark = pytest.mark.integration

PRESIGN = {"S3_PRESIGN_ACCESS_KEY": "imgpipe-presign", "S3_PRESIGN_SECRET_KEY": secrets.token_urlsafe(18)}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = PrivateObjectStore(tmp_path_factory.mktemp("s3-presign"), env=PRESIGN).start()
    try:
        yield store.endpoint
    finally:
        store.stop()


def store(endpoint: str, access_key: str, secret_key: str, **presign: str) -> ObjectStore:
    return ObjectStore(
        Settings(
            _env_file=None, s3_endpoint=endpoint, s3_bucket="presign-test", s3_access_key=access_key,
            s3_secret_key=secret_key, **presign,
        ).storage
    )


@pytest.fixture(scope="module")
def services_store(endpoint: str) -> ObjectStore:
    services = store(
        endpoint, S3_KEYS["S3_ACCESS_KEY"], S3_KEYS["S3_SECRET_KEY"],
        s3_presign_access_key=PRESIGN["S3_PRESIGN_ACCESS_KEY"], s3_presign_secret_key=PRESIGN["S3_PRESIGN_SECRET_KEY"],
    )
    services.ensure_bucket()
    services.put("results/job.jpg", b"\xff\xd8 a result", "image/jpeg")
    return services


def test_download_link_is_signed_by_the_presign_key_and_downloads(services_store: ObjectStore) -> None:
    url = services_store.presigned_url("results/job.jpg")
    credential = parse_qs(urlsplit(url).query)["X-Amz-Credential"][0]
    assert credential.startswith(f"{PRESIGN['S3_PRESIGN_ACCESS_KEY']}/")
    response = httpx.get(url, timeout=10)
    assert (response.status_code, response.content) == (200, b"\xff\xd8 a result")


def test_a_link_signed_with_a_wrong_presign_secret_is_refused(endpoint: str, services_store: ObjectStore) -> None:
    forged = store(
        endpoint, S3_KEYS["S3_ACCESS_KEY"], S3_KEYS["S3_SECRET_KEY"],
        s3_presign_access_key=PRESIGN["S3_PRESIGN_ACCESS_KEY"], s3_presign_secret_key="not-the-secret-at-all",
    )
    assert httpx.get(forged.presigned_url("results/job.jpg"), timeout=10).status_code == 403


def test_the_presign_key_can_read_but_not_write(endpoint: str, services_store: ObjectStore) -> None:
    presign_only = store(endpoint, PRESIGN["S3_PRESIGN_ACCESS_KEY"], PRESIGN["S3_PRESIGN_SECRET_KEY"])
    assert presign_only.get("results/job.jpg") == b"\xff\xd8 a result"
    with pytest.raises(StorageUnavailable, match="AccessDenied"):
        presign_only.put("results/job.jpg", b"overwritten", "image/jpeg")
    with pytest.raises(StorageUnavailable, match="AccessDenied"):
        presign_only.delete("results/job.jpg")
    assert services_store.get("results/job.jpg") == b"\xff\xd8 a result"


def test_without_a_presign_key_links_are_signed_by_the_service_key(endpoint: str, services_store: ObjectStore) -> None:
    plain = store(endpoint, S3_KEYS["S3_ACCESS_KEY"], S3_KEYS["S3_SECRET_KEY"])
    url = plain.presigned_url("results/job.jpg")
    assert parse_qs(urlsplit(url).query)["X-Amz-Credential"][0].startswith(f"{S3_KEYS['S3_ACCESS_KEY']}/")
    assert httpx.get(url, timeout=10).status_code == 200


def test_seaweedfs_gets_a_read_only_identity_only_with_a_presign_key() -> None:
    keys = {"s3_access_key": "service", "s3_secret_key": "service-secret"}
    presign = {"s3_presign_access_key": "p", "s3_presign_secret_key": "q"}
    config = identities(Settings(_env_file=None, **keys, **presign).storage)
    assert config is not None
    assert {identity["name"]: identity["actions"] for identity in config["identities"]}["presign"] == ["Read"]
    assert identities(Settings(_env_file=None, **keys).storage) is None
