"""One settings object for every service, read from the environment (and `.env` if present).

`Settings` reads the environment variables (their names are the fields' names in capitals) and
refuses unsafe values in production. A service does not pass it around: its entry point hands each
part the section it needs (`settings.broker`, `settings.storage`, `settings.worker`, ...), small
frozen objects with names that say what they are within the section.
"""

import base64
import binascii
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.logos import logo_dir, preset_names
from common.variants import MAX_VARIANTS_BOUND

logger = logging.getLogger(__name__)

# Usable on a developer's machine only: refused with ENVIRONMENT=production.
LOCAL_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"imgpipe local development only!!").decode()
_UNSAFE_SECRETS = {"", "guest", "minioadmin", "change-me", "admin", "password", LOCAL_WEBHOOK_SECRET}
_UNSAFE_USERS = {"guest", "minioadmin"}
MIN_SECRET_LENGTH = 16

MAX_BROKER_NODES = 16
# A DNS name or IPv4 address, or an IPv6 address in brackets; then an optional :port.
_NODE = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?$")


@dataclass(frozen=True)
class BrokerNode:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_broker_nodes(text: str, default_port: int) -> list[BrokerNode]:
    """`h1:5672,h2,[::1]:5673` -> nodes in the given order; a missing port is `default_port`.

    Raises ValueError naming the first entry that is not a host[:port].
    """
    entries = [entry.strip() for entry in text.split(",")]
    if len(entries) > MAX_BROKER_NODES:
        raise ValueError(f"at most {MAX_BROKER_NODES} broker nodes, got {len(entries)}")
    nodes = []
    for entry in entries:
        match = _NODE.match(entry)
        port = int(match["port"]) if match and match["port"] else default_port
        if match is None or not 1 <= port <= 65535:
            raise ValueError(f"not a host[:port] broker address: {entry[:80]!r}")
        nodes.append(BrokerNode(match["host"].strip("[]"), port))
    return nodes


@dataclass(frozen=True)
class RetryPolicy:
    """How often a thing is tried in all, and the first delay between tries (doubling after it)."""

    attempts: int
    base_delay_ms: int


@dataclass(frozen=True)
class TopologySettings:
    """What the queues are declared with (common/topology.py); every service declares the same."""

    queue_type: Literal["classic", "quorum"]
    max_queued_jobs: int
    job_retries: RetryPolicy
    webhook_retries: RetryPolicy


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach RabbitMQ: the AMQP nodes, their management API, and the topology to declare."""

    nodes: tuple[BrokerNode, ...]
    user: str
    password: str = field(repr=False)
    vhost: str
    heartbeat_s: int
    management_port: int
    publish_attempts: int
    topology: TopologySettings
    # False: declared beforehand (compose's broker-setup) by a user allowed to; the services only use it.
    declare_topology: bool = True

    @property
    def management_nodes(self) -> list[BrokerNode]:
        """The management API of every broker node (same hosts, RABBITMQ_MANAGEMENT_PORT)."""
        return [BrokerNode(node.host, self.management_port) for node in self.nodes]

    @property
    def management_url(self) -> str:
        """The first node's management API (the client moves to the next ones when it is down)."""
        return _http_url(self.management_nodes[0]) + "/api"


@dataclass(frozen=True)
class StorageSettings:
    """The S3 bucket, and the keys that read, write and sign download links."""

    endpoint: str
    public_endpoint: str | None
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str
    secure: bool
    region: str
    timeout_s: float
    presigned_url_expiry_s: int
    presign_access_key: str | None
    presign_secret_key: str | None = field(repr=False)


@dataclass(frozen=True)
class RetentionSettings:
    days: float
    sweep_interval_s: float


@dataclass(frozen=True)
class AccessSettings:
    """Who may call the API (api/auth.py) and the secret clients' webhooks are signed with."""

    environment: Literal["local", "production"]
    auth_required: bool
    api_keys: str = field(repr=False)
    admin_api_keys: str = field(repr=False)
    api_keys_file: Path | None
    rate_limit_uploads: str
    webhook_secret: str = field(repr=False)


@dataclass(frozen=True)
class UploadLimits:
    """What the API accepts in an upload, and what it fills in when the client leaves it out."""

    max_upload_bytes: int
    max_image_pixels: int
    max_output_pixels: int
    max_operations: int
    max_queued_jobs: int
    default_operations: str
    default_quality: int
    # The logo presets watermark(image=...) may name, as found when the API started.
    logos: frozenset[str] = frozenset()
    idempotency_ttl_s: int = 24 * 3600
    max_variants: int = 10


@dataclass(frozen=True)
class WorkerSettings:
    max_image_pixels: int
    max_output_pixels: int
    job_time_limit_s: float
    memory_limit_mb: int
    stats_interval_s: float
    retries: RetryPolicy
    max_frames: int
    logo_dir: Path
    # The work queue's consumer: messages taken at a time, and how long a stopping worker finishes.
    prefetch: int
    grace_s: float


@dataclass(frozen=True)
class NotifierSettings:
    timeout_s: float
    retries: RetryPolicy
    concurrency: int
    per_host_concurrency: int
    max_response_bytes: int
    allowed_networks: str

    @property
    def prefetch(self) -> int:
        """One event per delivery thread."""
        return self.concurrency

    @property
    def grace_s(self) -> float:
        """A stopping notifier's attempts in flight end by their own deadline."""
        return self.timeout_s + 1


@dataclass(frozen=True)
class LogSettings:
    level: str
    json: bool


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["local", "production"] = "local"

    # Access (api/auth.py). Keys: "name=key,..." in API_KEYS / ADMIN_API_KEYS, or a file of hashed
    # keys made by `python -m tools.apikeys`. Without AUTH_REQUIRED, requests without a key are
    # served as the anonymous client; production always requires a key.
    auth_required: bool = False
    api_keys: str = ""
    admin_api_keys: str = ""
    api_keys_file: Path | None = None
    rate_limit_uploads: str = "120/minute"

    # RabbitMQ
    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = Field(5672, ge=1, le=65535)
    # Several nodes of one cluster, tried in order: "h1:5672,h2:5672,h3". Empty: RABBITMQ_HOST.
    rabbitmq_hosts: str = ""
    rabbitmq_user: str = "guest"
    rabbitmq_password: str = "guest"
    rabbitmq_vhost: str = "/"
    rabbitmq_management_port: int = Field(15672, ge=1, le=65535)
    rabbitmq_heartbeat_s: int = Field(30, ge=0)
    queue_type: Literal["classic", "quorum"] = "classic"
    prefetch_count: int = Field(1, ge=1)
    publish_attempts: int = Field(3, ge=1)
    # false: the topology is declared beforehand (compose's broker-setup), and the services' users
    # may not configure anything; they only use the exchanges and queues.
    rabbitmq_declare_topology: bool = True

    # Object storage (MinIO under compose, any S3-compatible server natively)
    s3_endpoint: str = "127.0.0.1:8333"
    s3_public_endpoint: str | None = None
    s3_access_key: str = "minioadmin"
    s3_secret_key: str = "minioadmin"
    s3_bucket: str = "images"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_timeout_s: float = Field(10.0, gt=0)
    presigned_url_expiry_s: int = Field(3600, ge=60, le=7 * 24 * 3600)
    # A key that can only read results/, for presigned download URLs (unset: S3_ACCESS_KEY's).
    s3_presign_access_key: str | None = None
    s3_presign_secret_key: str | None = None
    # Originals, results and job records older than this are deleted (0: kept forever).
    retention_days: float = Field(30.0, ge=0)
    retention_sweep_interval_s: float = Field(3600.0, gt=0)

    # Upload API
    api_public_url: str = "http://localhost:8000"
    # The object store's own web console, linked from the console's Storage page (compose: MinIO's).
    storage_console_url: str = ""
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(100_000_000, ge=1, le=1_000_000_000)
    max_operations: int = Field(20, ge=1)
    # Named outputs one upload may ask for (the `variants` field, or a preset's).
    max_variants: int = Field(10, ge=1, le=MAX_VARIANTS_BOUND)
    # The operator's presets: named sets of variants (YAML, api/presets.py); unset: none.
    presets_file: Path | None = None
    default_operations: str = "resize,watermark"
    default_quality: int = Field(85, ge=1, le=100)
    # Jobs waiting in the work queue; past it, uploads get 503 and nothing is stored.
    max_queued_jobs: int = Field(10_000, ge=1)
    # How long an upload's Idempotency-Key stands for its job; after it the key makes a new one.
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)

    # Worker
    worker_name: str | None = None
    max_attempts: int = Field(5, ge=1)
    retry_base_delay_ms: int = Field(1000, ge=10)
    shutdown_grace_s: float = Field(30.0, ge=0)
    job_time_limit_s: float = Field(120.0, gt=0)
    # Largest image any operation may produce, whatever `upscale` says.
    max_output_pixels: int = Field(100_000_000, ge=1, le=1_000_000_000)
    # Frames of an animation kept as one (MAX_IMAGE_PIXELS counts them all).
    max_frames: int = Field(500, ge=1, le=10_000)
    # Logo presets for watermark(image=...): <name>.png files (unset: common/logos/).
    watermark_dir: Path | None = None
    # Address space of the process that decodes and transforms images (0: no limit).
    worker_memory_limit_mb: int = Field(2048, ge=0)
    stats_interval_s: float = Field(5.0, gt=0)

    # Notification service
    # Standard Webhooks secret ("whsec_" + base64); clients with API keys get their own (api/auth.py).
    webhook_secret: str = LOCAL_WEBHOOK_SECRET
    # Connect + send + read of one delivery attempt, together.
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = Field(0.5, ge=0.01)
    webhook_concurrency: int = Field(8, ge=1, le=256)
    webhook_per_host_concurrency: int = Field(2, ge=1)
    webhook_max_response_bytes: int = Field(64 * 1024, ge=0)
    # Networks webhooks may reach although they are not public (e.g. "10.1.2.0/24"); empty: none.
    webhook_allowed_networks: str = ""

    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("rabbitmq_hosts")
    @classmethod
    def _check_broker_nodes(cls, value: str) -> str:
        if value.strip():
            parse_broker_nodes(value, 5672)
        return value

    @property
    def broker_nodes(self) -> list[BrokerNode]:
        """The broker nodes to try, in order: RABBITMQ_HOSTS, or else RABBITMQ_HOST:RABBITMQ_PORT."""
        if self.rabbitmq_hosts.strip():
            return parse_broker_nodes(self.rabbitmq_hosts, self.rabbitmq_port)
        return [BrokerNode(self.rabbitmq_host, self.rabbitmq_port)]

    @cached_property
    def instance_name(self) -> str:
        """How this process names itself in job records: the worker that ran a job."""
        return self.worker_name or f"{socket.gethostname()}-{os.getpid()}"

    # --- the sections, each handed to the parts that need it ------------------------------------

    @property
    def job_retries(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.retry_base_delay_ms)

    @property
    def webhook_retries(self) -> RetryPolicy:
        return RetryPolicy(self.webhook_attempts, max(10, round(self.webhook_backoff_s * 1000)))

    @property
    def broker(self) -> BrokerSettings:
        return BrokerSettings(
            nodes=tuple(self.broker_nodes),
            user=self.rabbitmq_user,
            password=self.rabbitmq_password,
            vhost=self.rabbitmq_vhost,
            heartbeat_s=self.rabbitmq_heartbeat_s,
            management_port=self.rabbitmq_management_port,
            publish_attempts=self.publish_attempts,
            topology=TopologySettings(self.queue_type, self.max_queued_jobs, self.job_retries, self.webhook_retries),
            declare_topology=self.rabbitmq_declare_topology,
        )

    @property
    def storage(self) -> StorageSettings:
        return StorageSettings(
            endpoint=self.s3_endpoint,
            public_endpoint=self.s3_public_endpoint,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            bucket=self.s3_bucket,
            secure=self.s3_secure,
            region=self.s3_region,
            timeout_s=self.s3_timeout_s,
            presigned_url_expiry_s=self.presigned_url_expiry_s,
            presign_access_key=self.s3_presign_access_key,
            presign_secret_key=self.s3_presign_secret_key,
        )

    @property
    def retention(self) -> RetentionSettings:
        return RetentionSettings(self.retention_days, self.retention_sweep_interval_s)

    @property
    def access(self) -> AccessSettings:
        return AccessSettings(
            environment=self.environment,
            auth_required=self.auth_required,
            api_keys=self.api_keys,
            admin_api_keys=self.admin_api_keys,
            api_keys_file=self.api_keys_file,
            rate_limit_uploads=self.rate_limit_uploads,
            webhook_secret=self.webhook_secret,
        )

    @property
    def uploads(self) -> UploadLimits:
        return UploadLimits(
            max_upload_bytes=self.max_upload_bytes,
            max_image_pixels=self.max_image_pixels,
            max_output_pixels=self.max_output_pixels,
            max_operations=self.max_operations,
            max_queued_jobs=self.max_queued_jobs,
            max_variants=self.max_variants,
            default_operations=self.default_operations,
            default_quality=self.default_quality,
            logos=preset_names(logo_dir(self.watermark_dir)),
            idempotency_ttl_s=self.idempotency_ttl_s,
        )

    @property
    def worker(self) -> WorkerSettings:
        return WorkerSettings(
            max_image_pixels=self.max_image_pixels,
            max_output_pixels=self.max_output_pixels,
            job_time_limit_s=self.job_time_limit_s,
            memory_limit_mb=self.worker_memory_limit_mb,
            stats_interval_s=self.stats_interval_s,
            retries=self.job_retries,
            max_frames=self.max_frames,
            logo_dir=logo_dir(self.watermark_dir),
            prefetch=self.prefetch_count,
            grace_s=self.shutdown_grace_s,
        )

    @property
    def notifier(self) -> NotifierSettings:
        return NotifierSettings(
            timeout_s=self.webhook_timeout_s,
            retries=self.webhook_retries,
            concurrency=self.webhook_concurrency,
            per_host_concurrency=self.webhook_per_host_concurrency,
            max_response_bytes=self.webhook_max_response_bytes,
            allowed_networks=self.webhook_allowed_networks,
        )

    @property
    def logging(self) -> LogSettings:
        return LogSettings(self.log_level, self.log_json)

    @property
    def own_endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of every service of this system a client could name: the API's public
        address, each broker node and its management API, the storage endpoints."""
        api = urlsplit(self.api_public_url)
        endpoints: list[tuple[str, int]] = []
        if api.hostname:
            endpoints.append((api.hostname, api.port or (443 if api.scheme == "https" else 80)))
        for node in self.broker_nodes:
            endpoints += [(node.host, node.port), (node.host, self.rabbitmq_management_port)]
        for endpoint in filter(None, (self.s3_endpoint, self.s3_public_endpoint)):
            host, _, port = endpoint.rpartition(":")
            if host and port.isdigit():
                endpoints.append((host.strip("[]"), int(port)))
        return endpoints

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str) -> str:
        webhook_secret_key(value)
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_defaults_in_production(self) -> "Settings":
        if self.environment != "production":
            return self
        self.auth_required = True
        problems = [
            f"{name.upper()} is a default, empty or shorter than {MIN_SECRET_LENGTH} characters"
            for name in ("rabbitmq_password", "s3_secret_key", "webhook_secret", "s3_presign_secret_key")
            if getattr(self, name) is not None and not is_strong_secret(getattr(self, name))
        ]
        problems += [
            f"{name.upper()} is the well-known default user {getattr(self, name)!r}"
            for name in ("rabbitmq_user", "s3_access_key", "s3_presign_access_key")
            if getattr(self, name) in _UNSAFE_USERS
        ]
        if not (self.api_keys or self.admin_api_keys or self.api_keys_file):
            problems.append("no API keys are configured (API_KEYS, ADMIN_API_KEYS or API_KEYS_FILE)")
        if problems:
            raise ValueError("refusing to start with ENVIRONMENT=production: " + "; ".join(problems))
        return self


def is_strong_secret(value: str) -> bool:
    return value not in _UNSAFE_SECRETS and len(value) >= MIN_SECRET_LENGTH


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after the "whsec_" prefix."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith("whsec_") or len(key) < 16:
        raise ValueError(
            "WEBHOOK_SECRET must be 'whsec_' followed by the base64 of at least 16 random bytes; "
            "make one with `python -m tools.apikeys webhook-secret`"
        )
    return key


def _http_url(node: BrokerNode) -> str:
    host = f"[{node.host}]" if ":" in node.host else node.host
    return f"http://{host}:{node.port}"


settings = Settings()
