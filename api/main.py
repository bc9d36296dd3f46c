"""The upload API: `uvicorn api.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.dependencies import Services
from api.limits import UploadSizeLimit
from api.metrics import UploadMetrics
from api.monitoring import Monitoring, upload_counters
from api.routes import dlq, health, jobs, metrics
from common.logs import configure_logging
from common.settings import settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(settings, "api")
    app.state.services = Services.create(settings)
    app.state.monitoring = Monitoring(settings, app.state.services.store)
    yield
    app.state.monitoring.close()
    app.state.services.close()


app = FastAPI(
    title="imgpipe",
    summary="Upload images with a list of operations; workers resize, watermark and filter them.",
    lifespan=lifespan,
)
app.add_middleware(UploadSizeLimit, max_file_bytes=settings.max_upload_bytes)
# Outermost, so it also counts the size limit's refusals.
app.add_middleware(UploadMetrics, counters=upload_counters)
app.include_router(jobs.router)
app.include_router(health.router)
app.include_router(dlq.router)
app.include_router(metrics.router)
