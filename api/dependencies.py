"""The API's composition root: the services a request handler needs, built once per process."""

import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from api.presets import Presets, load_presets
from api.service import JobsPorts
from common.amqp import Publisher
from common.egress import EgressPolicy
from common.jobs import JobStore
from common.settings import BrokerSettings, Settings, UploadLimits
from common.storage import ObjectStore, StorageError

logger = logging.getLogger("api")


@dataclass
class Services:
    store: ObjectStore
    jobs: JobStore
    publisher: Publisher
    egress: EgressPolicy
    broker: BrokerSettings
    limits: UploadLimits
    # Where clients reach this API: the links in answers start with it.
    public_url: str
    # The object store's own console, linked from the Storage page ("" : none).
    storage_console_url: str
    presets: Presets = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings) -> "Services":
        # First: a bad presets file stops the API before it connects to anything.
        presets = load_presets(settings.presets_file, settings.uploads)
        store = ObjectStore(settings.storage)
        try:
            store.ensure_bucket()
        except StorageError as exc:
            logger.warning("bucket %s not checked at start-up: %s", store.bucket, exc)
        return cls(
            store,
            JobStore(store),
            Publisher(settings.broker, f"api {settings.instance_name}"),
            EgressPolicy.build(settings.notifier.allowed_networks, settings.own_endpoints),
            settings.broker,
            settings.uploads,
            settings.api_public_url,
            settings.storage_console_url,
            presets,
        )

    @property
    def jobs_ports(self) -> JobsPorts:
        return JobsPorts(self.store, self.jobs, self.publisher, self.egress, self.limits, self.presets)

    def close(self) -> None:
        self.publisher.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
