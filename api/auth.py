"""Authentication, access to jobs and operator routes, and the upload rate limit.

A request names its client with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Without a
key it is the anonymous client, unless AUTH_REQUIRED (always on in production). A wrong key is
refused even when keys are optional. Uploads are authenticated and rate-limited by `UploadGate`
before their body is read; other routes by the `CurrentClient` / `AdminClient` dependencies.
"""

import math
import time
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems
from api.errors import ApiError, Forbidden, RateLimited, Unauthenticated
from api.limits import drain_body
from common.clients import ANONYMOUS, Client, KeyRing
from common.settings import AccessSettings

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")


class Authenticator:
    def __init__(self, access: AccessSettings, keys: KeyRing) -> None:
        self._required = access.auth_required
        self._open_operator_routes = access.environment == "local" and not access.auth_required
        self._keys = keys

    def authenticate(self, key: str | None) -> Client:
        if key:
            client = self._keys.identify(key)
            if client is None:
                raise Unauthenticated("the API key is not valid")
            return client
        if self._required:
            raise Unauthenticated("an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        return ANONYMOUS

    def authenticate_headers(self, headers: Headers) -> Client:
        return self.authenticate(presented_key(headers.get("authorization"), headers.get("x-api-key")))

    def require_admin(self, client: Client) -> Client:
        if client.admin or self._open_operator_routes:
            return client
        if client.name is None:
            raise Unauthenticated("operator routes need an admin API key")
        raise Forbidden(f"client {client.name!r} is not an operator; use an admin API key")


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return api_key.strip() if api_key and api_key.strip() else None


class UploadRateLimit:
    """At most the configured number of uploads per client in any moving window (`limits`'
    notation, e.g. "120/minute" or "10/second;300/minute"); kept in this replica's memory."""

    def __init__(self, spec: str) -> None:
        self._items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, identity: str) -> None:
        for item in self._items:
            if not self._limiter.hit(item, "upload", identity):
                reset = self._limiter.get_window_stats(item, "upload", identity).reset_time
                retry_after = max(1, math.ceil(reset - time.time()))
                raise RateLimited(
                    f"too many uploads: at most {item} per client; retry in {retry_after} s", retry_after_s=retry_after
                )


def rate_limit_identity(client: Client, scope: Scope) -> str:
    if client.name is not None:
        return f"client:{client.name}"
    peer = scope.get("client")
    return f"address:{peer[0] if peer else 'unknown'}"


class UploadGate:
    """Authenticates and rate-limits POST /upload before its body goes to the app: a refused
    upload is not parsed, checked or stored, its body (at most `max_body_bytes`) only read and
    discarded so that the client gets the refusal (api.limits.drain_body). The client is left in
    the request state for the route."""

    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, limit: UploadRateLimit, max_body_bytes: int,
        path: str = "/upload",
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limit = limit
        self.max_body_bytes = max_body_bytes
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            client = self.authenticator.authenticate_headers(Headers(scope=scope))
            self.limit.check(rate_limit_identity(client, scope))
        except ApiError as error:
            await drain_body(scope, receive, self.max_body_bytes)
            await problems.refuse(send, error, scope["path"])
            return
        scope.setdefault("state", {})["client"] = client
        await self.app(scope, receive, send)


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


def current_client(
    request: Request,
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> Client:
    gated = getattr(request.state, "client", None)
    if isinstance(gated, Client):
        return gated
    return authenticator.authenticate(bearer.credentials if bearer else api_key)


CurrentClient = Annotated[Client, Depends(current_client)]


def admin_client(
    client: CurrentClient, authenticator: Annotated[Authenticator, Depends(get_authenticator)]
) -> Client:
    return authenticator.require_admin(client)


AdminClient = Annotated[Client, Depends(admin_client)]
