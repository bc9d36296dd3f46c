"""The settings sections each service is handed: read from the same environment variables as
before, each part getting its own values and no secret in a repr."""

import pytest

from common.settings import BrokerNode, RetryPolicy, Settings


def test_sections_read_the_documented_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "RABBITMQ_HOSTS": "h1:5700,h2", "RABBITMQ_VHOST": "v", "QUEUE_TYPE": "quorum", "MAX_QUEUED_JOBS": "7",
        "MAX_ATTEMPTS": "4", "RETRY_BASE_DELAY_MS": "250", "WEBHOOK_ATTEMPTS": "6", "WEBHOOK_BACKOFF_S": "0.3",
        "S3_ENDPOINT": "s3:9000", "S3_BUCKET": "b", "RETENTION_DAYS": "2", "WORKER_MEMORY_LIMIT_MB": "512",
        "PREFETCH_COUNT": "3", "SHUTDOWN_GRACE_S": "12", "WEBHOOK_CONCURRENCY": "5", "LOG_JSON": "true",
        "MAX_UPLOAD_BYTES": "4096", "RATE_LIMIT_UPLOADS": "9/minute",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    broker = settings.broker
    assert broker.nodes == (BrokerNode("h1", 5700), BrokerNode("h2", 5672)) and broker.vhost == "v"
    assert (broker.topology.queue_type, broker.topology.max_queued_jobs) == ("quorum", 7)
    assert broker.topology.job_retries == settings.worker.retries == RetryPolicy(4, 250)
    assert broker.topology.webhook_retries == settings.notifier.retries == RetryPolicy(6, 300)
    assert (settings.storage.endpoint, settings.storage.bucket, settings.retention.days) == ("s3:9000", "b", 2)
    assert (settings.worker.memory_limit_mb, settings.worker.prefetch, settings.worker.grace_s) == (512, 3, 12)
    assert (settings.uploads.max_upload_bytes, settings.access.rate_limit_uploads) == (4096, "9/minute")
    assert settings.logging.json is True


def test_notifier_consumer_has_its_own_prefetch_and_grace() -> None:
    settings = Settings(
        _env_file=None, prefetch_count=7, shutdown_grace_s=99, webhook_concurrency=3, webhook_timeout_s=2
    )
    assert (settings.worker.prefetch, settings.worker.grace_s) == (7, 99)
    assert (settings.notifier.prefetch, settings.notifier.grace_s) == (3, 3)


def test_sections_keep_secrets_out_of_their_repr() -> None:
    secrets = {
        "rabbitmq_password": "broker-secret-value", "s3_secret_key": "storage-secret-value",
        "s3_presign_secret_key": "presign-secret-value", "api_keys": "alice=api-key-secret-value",
        "admin_api_keys": "ops=admin-key-secret-value",
    }
    settings = Settings(_env_file=None, **secrets)
    shown = " ".join(repr(section) for section in (settings.broker, settings.storage, settings.access))
    assert [name for name, value in secrets.items() if value.split("=")[-1] in shown] == []


def test_own_endpoints_name_every_broker_node_and_storage_endpoint() -> None:
    settings = Settings(
        _env_file=None, api_public_url="https://api.example", rabbitmq_hosts="h1,[::1]:5700",
        rabbitmq_management_port=15673, s3_endpoint="s3.local:9000", s3_public_endpoint="[::1]:9443",
    )
    assert settings.own_endpoints == [
        ("api.example", 443), ("h1", 5672), ("h1", 15673), ("::1", 5700), ("::1", 15673),
        ("s3.local", 9000), ("::1", 9443),
    ]
