"""The upload API: `uvicorn api.main:app`."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from api import problems
from api.auth import Authenticator, UploadGate, UploadRateLimit
from api.dependencies import Services
from api.events import LiveEvents
from api.limits import FORM_OVERHEAD_BYTES, UploadSizeLimit
from api.metrics import UploadMetrics
from api.monitoring import Monitoring, upload_counters
from api.retention import RetentionSweeper
from api.routes import console, dlq, events, health, jobs, manage, metrics, presets, storage
from common.clients import KeyRing
from common.imaging import guard_decompression
from common.logs import configure_logging
from common.settings import settings

authenticator = Authenticator(settings.access, KeyRing.from_settings(settings.access))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(settings.logging, "api")
    guard_decompression(settings.uploads.max_image_pixels)
    app.state.authenticator = authenticator
    app.state.services = Services.create(settings)
    app.state.monitoring = Monitoring(settings.broker, settings.instance_name, app.state.services.store)
    sweeper = RetentionSweeper(app.state.services.store, settings.retention)
    sweeper.start()
    app.state.events = LiveEvents.start(settings.broker, settings.instance_name, asyncio.get_running_loop())
    yield
    app.state.events.close()
    sweeper.close()
    app.state.monitoring.close()
    app.state.services.close()


# /docs and /redoc with their scripts and styles served from the fastapi-offline package, not a CDN:
# they work on a machine without internet access.
app = FastAPIOffline(
    title="imgpipe",
    summary="Upload images with a list of operations; workers resize, watermark and filter them.",
    lifespan=lifespan,
)
problems.install(app)
app.add_middleware(UploadSizeLimit, max_file_bytes=settings.uploads.max_upload_bytes)
# Before the size limit and the body: a client that may not upload is refused from its headers.
app.add_middleware(
    UploadGate, authenticator=authenticator, limit=UploadRateLimit(settings.access.rate_limit_uploads),
    max_body_bytes=settings.uploads.max_upload_bytes + FORM_OVERHEAD_BYTES,
)
# Outermost, so it also counts the gate's and the size limit's refusals.
app.add_middleware(UploadMetrics, counters=upload_counters)
app.include_router(jobs.router)
app.include_router(manage.router)
app.include_router(presets.router)
app.include_router(events.router)
app.include_router(health.router)
app.include_router(dlq.router)
app.include_router(metrics.router)
app.include_router(storage.router)
app.include_router(console.router)
app.mount("/static", StaticFiles(directory=console.STATIC_DIR), name="static")
