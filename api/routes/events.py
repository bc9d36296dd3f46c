"""Live job events as Server-Sent Events: one job's (`GET /jobs/{id}/events`, its owner's) and every
job's (`GET /events`, operators'). The waiting side of `GET /status/{id}?wait=S` is here too.

One job's stream sends the job's state at once (so a client arriving after the end gets the end),
then every change, and ends after `completed`, `failed` or `cancelled`. Event ids are the job's revision: a
client that reconnects with `Last-Event-ID` is sent only what is newer. `GET /events` ids are
`<job_id>:<revision>`; a replica remembers its last events and resumes after the one named, or says
`gap` when it no longer has it.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api import errors, service
from api.auth import AdminClient, CurrentClient, rate_limit_identity
from api.dependencies import Services, ServicesDep
from api.events import EventHub, FeedState, LiveEvents, StreamSlots, Subscription
from api.problems import body as problem_body
from api.problems import documented, status_of
from common.clients import Client
from common.jobs import JobRecord
from common.messages import JobEvent

router = APIRouter(tags=["events"])

PING_S = 15
SEND_TIMEOUT_S = 30
RECONNECT_MS = 2000

# One event of the stream (OpenAPI before 3.2 describes each event with `schema`).
_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "description": "the job's revision (`<job_id>:<revision>` on /events)"},
        "event": {
            "type": "string",
            "enum": [
                "queued", "processing", "retrying", "completed", "failed", "cancelled", "feed", "gap", "error"
            ],
            "description": "the job's status; `feed`: the API lost or regained the broker; `gap`: events were "
            "missed; `error`: the stream ends",
        },
        "data": {"type": "string", "contentMediaType": "application/json", "description": "the job event as JSON"},
        "retry": {"type": "integer", "description": "milliseconds before reconnecting"},
    },
}
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": _EVENT}}, "description": "Server-Sent Events"}
}


JOB_EVENT_ID = r"^([0-9]{1,9})?$"
ANY_EVENT_ID = r"^([0-9a-f]{32}:[0-9]{1,9})?$"


def _last_event_id(pattern: str, example: str) -> Any:
    return Header(
        alias="Last-Event-ID", pattern=pattern,
        description=f"resume after this event, an id the stream sent (e.g. `{example}`); "
        "EventSource sends it when it reconnects",
    )


def _live(request: Request) -> LiveEvents:
    live: LiveEvents = request.app.state.events
    return live


def _hub(request: Request) -> EventHub:
    return _live(request).hub


def _slots(request: Request) -> StreamSlots:
    return _live(request).slots


@contextmanager
def stream_slot(request: Request, client: Client) -> Iterator[None]:
    """Holds one of the client's open streams for as long as the context lasts."""
    identity = rate_limit_identity(client, request.scope)
    slots = _slots(request)
    slots.acquire(identity)
    try:
        yield
    finally:
        slots.release(identity)


def parse_revision(last_event_id: str) -> int | None:
    return int(last_event_id) if last_event_id else None


def parse_global_id(last_event_id: str) -> tuple[str, int] | None:
    if not last_event_id:
        return None
    job_id, _, revision = last_event_id.partition(":")
    return job_id, int(revision)


def job_event_data(event: JobEvent, services: Services) -> dict[str, Any]:
    data = event.model_dump(mode="json", exclude={"webhook"})  # the notifier's hint, not the client's
    if event.result is not None:
        data["result"]["download_url"] = services.store.presigned_url(event.result.key)
    public_url = services.public_url
    data["status_url"] = f"{public_url}/status/{event.job_id}"
    if event.status == "completed":
        data["result_url"] = f"{public_url}/result/{event.job_id}"
    return data


def _sse(event_id: str, event: JobEvent, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event=event.status, id=event_id, retry=RECONNECT_MS)


def _notice(kind: str, **data: Any) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event=kind)


def _problem(error: errors.ApiError, instance: str) -> ServerSentEvent:
    status = status_of(error)
    slug = {404: "not-found", 503: "unavailable"}.get(status, "error")
    return _notice("error", **problem_body(status, slug, error.detail, instance))


def _open(request: Request, client: Client, job_id: str | None) -> tuple[ExitStack, Subscription]:
    stack = ExitStack()
    try:
        stack.enter_context(stream_slot(request, client))
        subscription = stack.enter_context(_hub(request).subscribe(job_id))
    except BaseException:
        stack.close()
        raise
    return stack, subscription


def _respond(content: AsyncIterator[ServerSentEvent], stack: ExitStack) -> EventSourceResponse:
    return EventSourceResponse(
        content, ping=PING_S, send_timeout=SEND_TIMEOUT_S, background=BackgroundTask(stack.close),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/jobs/{job_id}/events", operation_id="job_events", response_class=EventSourceResponse,
    responses={**_STREAM, **documented(401, 404, 422, 429, 503)},
)
async def job_events(
    job_id: str,
    request: Request,
    services: ServicesDep,
    client: CurrentClient,
    last_event_id: Annotated[str, _last_event_id(JOB_EVENT_ID, "3")] = "",
) -> EventSourceResponse:
    """The job's status now, then every change, until `completed`, `failed` or `cancelled`."""
    after = parse_revision(last_event_id)
    stack, subscription = _open(request, client, job_id)
    try:
        record = await run_in_threadpool(service.find_job, job_id, client, services.jobs)
    except BaseException:
        stack.close()
        raise

    def reload() -> JobRecord:
        return service.find_job(job_id, client, services.jobs)

    return _respond(follow_job(record, subscription, after, reload, services, request.url.path, stack), stack)


async def follow_job(
    record: JobRecord,
    subscription: Subscription,
    after: int | None,
    reload: Callable[[], JobRecord],
    services: Services,
    instance: str,
    stack: ExitStack,
) -> AsyncIterator[ServerSentEvent]:
    sent = after
    try:
        event: JobEvent | None = record.to_event()
        while True:
            if event is not None:
                if sent is None or event.revision > sent:
                    yield _sse(str(event.revision), event, job_event_data(event, services))
                    sent = event.revision
                if event.final and event.revision == sent:
                    return  # the end, sent now or before the client reconnected
            signal = await subscription.next()
            if subscription.overflowed:
                yield _notice("error", detail="this stream fell behind; reconnect to catch up")
                return
            if isinstance(signal, JobEvent):
                event = signal
                continue
            event = None
            if signal.state == "lost":
                yield _notice("feed", broker="lost", detail="the API lost the message broker; reconnecting")
                continue
            try:
                event = (await run_in_threadpool(reload)).to_event()
            except errors.ApiError as error:
                yield _problem(error, instance)
                return
    finally:
        stack.close()


@router.get(
    "/events", operation_id="all_job_events", response_class=EventSourceResponse,
    responses={**_STREAM, **documented(401, 403, 422, 429)},
)
async def all_job_events(
    request: Request,
    services: ServicesDep,
    operator: AdminClient,
    last_event_id: Annotated[str, _last_event_id(ANY_EVENT_ID, "0123456789abcdef0123456789abcdef:3")] = "",
) -> EventSourceResponse:
    """Every job's changes as this replica learns them (operators only)."""
    after = parse_global_id(last_event_id)
    stack, subscription = _open(request, operator, None)
    backlog: list[JobEvent] | None = []
    if after is not None:
        recent = list(_hub(request).recent)
        position = next((i for i, e in enumerate(recent) if (e.job_id, e.revision) == after), None)
        backlog = None if position is None else recent[position + 1:]
    return _respond(follow_everything(backlog, subscription, services, stack), stack)


async def follow_everything(
    backlog: list[JobEvent] | None, subscription: Subscription, services: Services, stack: ExitStack
) -> AsyncIterator[ServerSentEvent]:
    def sse(event: JobEvent) -> ServerSentEvent:
        return _sse(f"{event.job_id}:{event.revision}", event, job_event_data(event, services))

    try:
        if backlog is None:
            yield _notice("gap", detail="events since Last-Event-ID are no longer remembered; read /stats to catch up")
        for event in backlog or ():
            yield sse(event)
        while True:
            signal = await subscription.next()
            if subscription.overflowed:
                yield _notice("error", detail="this stream fell behind; reconnect to catch up")
                return
            if isinstance(signal, FeedState):
                yield _notice("feed", broker=signal.state)
                continue
            yield sse(signal)
    finally:
        stack.close()


async def wait_for_change(
    request: Request, client: Client, job_id: str, wait_s: float, services: Services
) -> JobRecord:
    """The job once its status changes, or as it is after `wait_s` seconds."""
    with stream_slot(request, client), _hub(request).subscribe(job_id) as subscription:
        record = await run_in_threadpool(service.find_job, job_id, client, services.jobs)
        deadline = time.monotonic() + wait_s
        while not record.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return record
            try:
                signal = await asyncio.wait_for(subscription.next(), remaining)
            except TimeoutError:
                return record
            if isinstance(signal, FeedState) and signal.state == "lost":
                continue
            if isinstance(signal, FeedState) or signal.revision > record.revision or subscription.overflowed:
                changed = await run_in_threadpool(service.find_job, job_id, client, services.jobs)
                if changed.revision != record.revision or changed.status is not record.status:
                    return changed
    return record
