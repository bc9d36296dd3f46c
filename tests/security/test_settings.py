"""ENVIRONMENT=production refuses to start with any default, empty or short secret."""

import pytest

from common.clients import KeyRing, KeyRingError
from common.settings import Settings

STRONG = {
    "environment": "production",
    "rabbitmq_user": "imgpipe-api",
    "rabbitmq_password": "a-long-broker-password",
    "s3_access_key": "imgpipe-api",
    "s3_secret_key": "a-long-storage-secret",
    "webhook_secret": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=",
    "api_keys": "alice=a-long-enough-api-key",
}


def test_production_with_strong_settings_starts_and_requires_keys() -> None:
    settings = Settings(_env_file=None, **STRONG)
    assert settings.auth_required is True


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"rabbitmq_password": "guest"}, "RABBITMQ_PASSWORD"),
        ({"rabbitmq_password": "x"}, "RABBITMQ_PASSWORD"),
        ({"rabbitmq_password": ""}, "RABBITMQ_PASSWORD"),
        ({"rabbitmq_user": "guest"}, "RABBITMQ_USER"),
        ({"s3_secret_key": "minioadmin"}, "S3_SECRET_KEY"),
        ({"s3_access_key": "minioadmin"}, "S3_ACCESS_KEY"),
        ({"s3_presign_secret_key": "short"}, "S3_PRESIGN_SECRET_KEY"),
        ({"webhook_secret": Settings.model_fields["webhook_secret"].default}, "WEBHOOK_SECRET"),
        ({"api_keys": ""}, "no API keys"),
    ],
)
def test_production_refuses_weak_settings_naming_them(override: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Settings(_env_file=None, **{**STRONG, **override})


def test_production_refuses_short_api_keys() -> None:
    settings = Settings(_env_file=None, **{**STRONG, "api_keys": "alice=short"})
    with pytest.raises(KeyRingError, match="at least 16 characters"):
        KeyRing.from_settings(settings.access)


@pytest.mark.parametrize(
    ("api_keys", "message"),
    [("alice", "expected name=key"), ("al ice=k", "client name"), ("a=k1,a=k2", "unique")],
)
def test_malformed_key_settings_are_named(api_keys: str, message: str) -> None:
    with pytest.raises(KeyRingError, match=message):
        KeyRing.from_settings(Settings(_env_file=None, api_keys=api_keys).access)


def test_key_lookup_finds_the_client_and_nothing_else() -> None:
    ring = KeyRing.from_settings(Settings(_env_file=None, api_keys="a=key-one", admin_api_keys="ops=key-two").access)
    assert ring.identify("key-one").name == "a" and not ring.identify("key-one").admin
    assert ring.identify("key-two").admin
    assert ring.identify("key-on") is None and ring.identify("") is None
