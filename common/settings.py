"""One settings object for every service, read from the environment (and `.env` if present)."""

import logging
import os
import socket
from functools import cached_property
from typing import Literal

from pydantic import Field, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

_UNSAFE_SECRETS = {"guest", "minioadmin", "change-me"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["local", "production"] = "local"

    # RabbitMQ
    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = 5672
    rabbitmq_user: str = "guest"
    rabbitmq_password: str = "guest"
    rabbitmq_vhost: str = "/"
    rabbitmq_management_port: int = 15672
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

    # Upload API
    api_public_url: str = "http://localhost:8000"
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(100_000_000, ge=1, le=1_000_000_000)
    max_operations: int = Field(20, ge=1)
    default_operations: str = "resize,watermark"
    default_quality: int = Field(85, ge=1, le=100)

    # Worker
    worker_name: str | None = None
    max_attempts: int = Field(5, ge=1)
    retry_base_delay_ms: int = Field(1000, ge=10)
    shutdown_grace_s: float = Field(30.0, ge=0)
    job_time_limit_s: float = Field(120.0, gt=0)
    stats_interval_s: float = Field(5.0, gt=0)

    # Notification service
    webhook_secret: str = "change-me"
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = Field(0.5, ge=0)

    log_level: str = "INFO"
    log_json: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amqp_url(self) -> str:
        vhost = "%2F" if self.rabbitmq_vhost == "/" else self.rabbitmq_vhost
        return (
            f"amqp://{self.rabbitmq_user}:{self.rabbitmq_password}"
            f"@{self.rabbitmq_host}:{self.rabbitmq_port}/{vhost}"
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def management_url(self) -> str:
        return f"http://{self.rabbitmq_host}:{self.rabbitmq_management_port}/api"

    @cached_property
    def instance_name(self) -> str:
        """How this process names itself in job records: the worker that ran a job."""
        return self.worker_name or f"{socket.gethostname()}-{os.getpid()}"

    @model_validator(mode="after")
    def _refuse_unsafe_defaults_in_production(self) -> "Settings":
        unsafe = [
            name
            for name in ("rabbitmq_password", "s3_secret_key", "webhook_secret")
            if getattr(self, name) in _UNSAFE_SECRETS
        ]
        if unsafe and self.environment == "production":
            raise ValueError(f"unsafe default secrets in production: {', '.join(unsafe)}")
        return self


settings = Settings()
