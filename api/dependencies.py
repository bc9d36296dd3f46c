"""The API's composition root: the services a request handler needs, built once per process."""

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.service import JobsPorts, UploadLimits
from common.amqp import Publisher
from common.egress import EgressPolicy
from common.jobs import JobStore
from common.settings import Settings
from common.storage import ObjectStore, StorageError

logger = logging.getLogger("api")


@dataclass
class Services:
    settings: Settings
    store: ObjectStore
    jobs: JobStore
    publisher: Publisher
    egress: EgressPolicy

    @classmethod
    def create(cls, settings: Settings) -> "Services":
        store = ObjectStore(settings)
        try:
            store.ensure_bucket()
        except StorageError as exc:
            logger.warning("bucket %s not checked at start-up: %s", settings.s3_bucket, exc)
        return cls(
            settings,
            store,
            JobStore(store),
            Publisher(settings, f"api {settings.instance_name}"),
            EgressPolicy.from_settings(settings),
        )

    @property
    def jobs_ports(self) -> JobsPorts:
        return JobsPorts(self.store, self.jobs, self.publisher, self.egress, UploadLimits.from_settings(self.settings))

    def close(self) -> None:
        self.publisher.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
