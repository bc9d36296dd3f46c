"""One settings object for every service, read from the environment (and `.env` if present)."""

import base64
import binascii
import logging
import os
import re
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(100_000_000, ge=1, le=1_000_000_000)
    max_operations: int = Field(20, ge=1)
    default_operations: str = "resize,watermark"
    default_quality: int = Field(85, ge=1, le=100)
    # Jobs waiting in the work queue; past it, uploads get 503 and nothing is stored.
    max_queued_jobs: int = Field(10_000, ge=1)

    # Worker
    worker_name: str | None = None
    max_attempts: int = Field(5, ge=1)
    retry_base_delay_ms: int = Field(1000, ge=10)
    shutdown_grace_s: float = Field(30.0, ge=0)
    job_time_limit_s: float = Field(120.0, gt=0)
    # Largest image any operation may produce, whatever `upscale` says.
    max_output_pixels: int = Field(100_000_000, ge=1, le=1_000_000_000)
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

    @property
    def management_nodes(self) -> list[BrokerNode]:
        """The management API of every broker node (same hosts, RABBITMQ_MANAGEMENT_PORT)."""
        return [BrokerNode(node.host, self.rabbitmq_management_port) for node in self.broker_nodes]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def management_url(self) -> str:
        """The first node's management API (the client moves to the next ones when it is down)."""
        return _http_url(self.management_nodes[0]) + "/api"

    @cached_property
    def instance_name(self) -> str:
        """How this process names itself in job records: the worker that ran a job."""
        return self.worker_name or f"{socket.gethostname()}-{os.getpid()}"

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
