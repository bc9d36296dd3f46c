"""Every error the API answers, in one shape: RFC 9457 problem details.

    {"type": "urn:imgpipe:problem:invalid-input", "title": "Invalid input", "status": 422,
     "detail": "operations: operation 1 (resize): width: ...", "field": "operations", "instance": "/upload"}

`detail` names the problem for a person; `type` is stable for programs; `field` names the offending
form field or parameter where there is one. The middleware's refusals (413, 401, 429 before the
body is read) and FastAPI's own validation errors use the same shape.
"""

import json
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from api import errors

MEDIA_TYPE = "application/problem+json"

# error class → (status, type slug)
_KINDS: dict[type[errors.ApiError], tuple[int, str]] = {
    errors.InvalidInput: (422, "invalid-input"),
    errors.UnsupportedImage: (415, "unsupported-image"),
    errors.UploadTooLarge: (413, "upload-too-large"),
    errors.NotFound: (404, "not-found"),
    errors.NotFinished: (409, "not-finished"),
    errors.AlreadyFinished: (409, "already-finished"),
    errors.RequestInFlight: (409, "request-in-flight"),
    errors.Unauthenticated: (401, "unauthenticated"),
    errors.Forbidden: (403, "forbidden"),
    errors.RateLimited: (429, "rate-limited"),
    errors.QueueFull: (503, "queue-full"),
    errors.Unavailable: (503, "unavailable"),
}


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong with the request."""

    type: str = Field(description="a stable URN naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="what is wrong and what is allowed, for a person")
    instance: str | None = Field(None, description="the path of the request")
    field: str | None = Field(None, description="the form field or parameter at fault, where there is one")


def status_of(error: errors.ApiError) -> int:
    return _kinds(error)[0]


def _kinds(error: errors.ApiError) -> tuple[int, str]:
    for kind, found in _KINDS.items():
        if isinstance(error, kind):
            return found
    return 500, "internal-error"


def body(status: int, slug: str, detail: str, instance: str | None = None, field: str | None = None) -> dict[str, Any]:
    problem = Problem(
        type=f"urn:imgpipe:problem:{slug}", title=HTTPStatus(status).phrase, status=status,
        detail=detail, instance=instance, field=field,
    )
    return problem.model_dump(exclude_none=True)


def headers_of(error: errors.ApiError) -> dict[str, str]:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def response_for(error: errors.ApiError, instance: str | None = None) -> JSONResponse:
    status, slug = _kinds(error)
    return JSONResponse(
        body(status, slug, error.detail, instance, error.field), status_code=status,
        headers=headers_of(error), media_type=MEDIA_TYPE,
    )


async def refuse(send: Send, error: errors.ApiError, instance: str) -> None:
    """Answer from an ASGI middleware, before the app has read the body; the connection is then
    closed, as the client may still be sending a large body that will not be read."""
    status, slug = _kinds(error)
    content = json.dumps(body(status, slug, error.detail, instance, error.field)).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(content)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in headers_of(error).items()]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


# Where a request's value came from, left out of the field's name.
_LOCATIONS = ("body", "query", "path", "form", "header")


def install(app: FastAPI) -> None:
    """Answer every error of the app as a problem."""

    @app.exception_handler(errors.ApiError)
    async def _api_error(request: Request, error: errors.ApiError) -> JSONResponse:
        return response_for(error, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in _LOCATIONS]
        field = location[0] if location else None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in _LOCATIONS)}: {e.get('msg')}"
            for e in error.errors()[:5]
        )
        return JSONResponse(
            body(422, "invalid-input", problems or "the request is not valid", request.url.path, field),
            status_code=422, media_type=MEDIA_TYPE,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        slug = HTTPStatus(error.status_code).phrase.lower().replace(" ", "-")
        return JSONResponse(
            body(error.status_code, slug, str(error.detail), request.url.path),
            status_code=error.status_code, headers=getattr(error, "headers", None), media_type=MEDIA_TYPE,
        )


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the problems a route may answer."""
    descriptions = {
        401: "no valid API key where one is needed",
        403: "the key's client may not do this",
        404: "no such job (or another client's)",
        409: "the job has no result (result), or has ended and cannot be cancelled (cancel)",
        413: "the upload is larger than MAX_UPLOAD_BYTES",
        415: "the file is not an image in an accepted format",
        422: "a field's value is not acceptable; `field` names it",
        429: "past the client's upload rate; see Retry-After",
        503: "the work queue is full, or the broker or object store is unreachable; see Retry-After",
    }
    return {
        status: {
            "model": Problem,
            "description": descriptions[status],
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
