"""GET /metrics (Prometheus text format) and GET /stats (the same picture as JSON)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import CurrentClient
from api.monitoring import Monitoring

router = APIRouter(tags=["monitoring"])


def get_monitoring(request: Request) -> Monitoring:
    monitoring: Monitoring = request.app.state.monitoring
    return monitoring


MonitoringDep = Annotated[Monitoring, Depends(get_monitoring)]


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(monitoring: MonitoringDep) -> Response:
    return Response(monitoring.metrics(), media_type=CONTENT_TYPE_LATEST)


@router.get("/stats")
def stats(monitoring: MonitoringDep, _client: CurrentClient) -> dict[str, Any]:
    return monitoring.stats()
