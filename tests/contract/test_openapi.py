"""The API does what its OpenAPI document says: schemathesis sends generated requests (valid and
not) to every operation of a running system and checks each answer against the document — status
codes, content types, bodies, headers, authentication — then follows the document's links from an
upload to the routes that take its job id."""

import io

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from harness.broker import BrokerVhost
from harness.system import build_system

pytestmark = pytest.mark.integration

KEY = "contract-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
# Every check runs. Only one rule is widened, for the upload: a request the document calls valid
# (a `file` of any bytes) may still be refused for what the bytes are — not an image (415), an
# empty file or an image over the pixel limit (422) — which the document says in those responses.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": "/upload",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "403", "413", "415", "422", "429", "503"]
                    }
                },
            }
        ]
    }
)

# Streams that end only when the client goes: tests/integration/test_live_events.py checks them.
ENDLESS = {"/events"}


@pytest.fixture(scope="module")
def api_schema(s3_endpoint, tmp_path_factory):
    vhost = BrokerVhost().create()
    system = build_system(
        vhost, s3_endpoint, tmp_path_factory.mktemp("contract"), workers=("worker-a",),
        AUTH_REQUIRED="true", ADMIN_API_KEYS=f"contract={KEY}", RATE_LIMIT_UPLOADS="",
    )
    try:
        yield schemathesis.openapi.from_url(f"{system.api_url}/openapi.json", config=CONFIG)
    finally:
        system.stop()
        vhost.delete()


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_answers_as_documented(api_schema) -> None:
    checked = []
    for operation in operations(api_schema):
        if operation.path in ENDLESS:
            continue

        @given(case=operation.as_strategy())
        @EXAMPLES
        def answers_as_documented(case) -> None:
            case.call_and_validate(headers=HEADERS)

        answers_as_documented()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /upload" in checked and "GET /status/{job_id}" in checked, checked


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, "PNG")
    return buffer.getvalue()


def test_links_from_an_upload_lead_to_its_status_and_result(api_schema) -> None:
    """Stateful: upload, then follow the document's links with the returned job id. Uploads that
    schemathesis means to be valid carry a real image (decided by the case alone, so hypothesis sees
    the same scenario every time), so the linked routes see jobs that exist."""
    followed: list[tuple[str, int]] = []

    real_images: set[int] = set()

    class Scenario(api_schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case) -> None:
            positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
            if case.operation.path == "/upload" and positive and isinstance(case.body, dict):
                case.body = {"file": png()}
                real_images.add(id(case))

        def get_call_kwargs(self, case) -> dict:
            return {"headers": HEADERS}

        def after_call(self, response, case) -> None:
            followed.append((case.operation.path, response.status_code))

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            # A real image is bytes where the document generates text: schemathesis would count
            # the substituted body as schema-violating, so that one check skips those uploads.
            excluded = [negative_data_rejection] if id(case) in real_images else None
            case.validate_response(
                response, additional_checks=additional_checks, excluded_checks=excluded, transport_kwargs=kwargs
            )

    # Generation only: replaying a scenario against a live system meets other job ids, which
    # hypothesis would take for an inconsistent strategy rather than report the failure itself.
    Scenario.run(settings=settings(max_examples=15, stateful_step_count=4, deadline=None,
                                   suppress_health_check=list(HealthCheck), phases=[Phase.generate],
                                   database=None, derandomize=True))
    assert ("/upload", 202) in followed, followed
    # Which linked route each step takes is the generator's choice among every route with a job id
    # (derandomized, so the same every run): one of the upload's own links reaching its job is the proof.
    linked = ("/status/{job_id}", "/result/{job_id}")
    assert any(path in linked and status == 200 for path, status in followed), followed
