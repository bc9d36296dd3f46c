"""The web console (`GET /`, static files in api/static/, no build step) and what it reads that the
OpenAPI document does not say plainly: each operation and its parameters (`GET /operations`), taken
from the same declarations the API validates with, so the console's form never drifts from them."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.dependencies import ServicesDep
from common.operations import OPERATION_MODELS

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
# The console loads nothing from elsewhere and runs no inline script; job fields are shown as text.
CONSOLE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter()


class OperationDescription(BaseModel):
    name: str
    summary: str
    parameters: dict[str, Any] = Field(description="the operation's JSON schema; `name` is the operation")


class OperationsCatalogue(BaseModel):
    operations: list[OperationDescription]
    max_operations: int
    default_operations: str


@router.get("/", include_in_schema=False)
def console() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={
            "Cache-Control": "no-cache", "Content-Security-Policy": CONSOLE_POLICY, "X-Content-Type-Options": "nosniff"
        },
    )


@router.get("/operations", response_model=OperationsCatalogue, operation_id="operations", tags=["jobs"])
def operations(services: ServicesDep) -> OperationsCatalogue:
    """Every operation an upload may ask for, with its parameters as JSON schema."""
    return OperationsCatalogue(
        operations=[
            OperationDescription(
                name=name, summary=(model.__doc__ or "").strip(), parameters=model.model_json_schema(by_alias=True)
            )
            for name, model in OPERATION_MODELS.items()
        ],
        max_operations=services.limits.max_operations,
        default_operations=services.limits.default_operations,
    )
