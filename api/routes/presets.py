"""The operator's presets, as an upload's `preset` field expands them."""

from fastapi import APIRouter

from api.auth import CurrentClient
from api.dependencies import ServicesDep
from api.problems import documented
from api.schemas import PresetsResponse

router = APIRouter(tags=["jobs"])


@router.get("/presets", response_model=PresetsResponse, operation_id="presets", responses=documented(401, 429))
def presets(services: ServicesDep, client: CurrentClient) -> PresetsResponse:
    return PresetsResponse(presets=services.presets)
