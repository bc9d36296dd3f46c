"""tools/compose_smoke.sh, the check a new user runs after `docker compose up -d`, run here with
--native against the native stack as `make run` starts it (no Docker engine on our machines)."""

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import BrokerVhost
from harness.native_stack import NativeStack, start_native_stack
from harness.processes import PROJECT_DIR, free_port

pytestmark = pytest.mark.integration

SMOKE = PROJECT_DIR / "tools" / "compose_smoke.sh"
API_KEY = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """The native stack with one worker; API keys required, as outside `local`."""
    vhost = BrokerVhost().create()
    try:
        native = start_native_stack(
            vhost, tmp_path_factory.mktemp("run"), workers=1, AUTH_REQUIRED="true", API_KEYS=f"smoke={API_KEY}"
        )
        try:
            yield native
        finally:
            native.stop()
    finally:
        vhost.delete()


def smoke(stack: NativeStack, **env: str) -> subprocess.CompletedProcess[str]:
    endpoint = stack.vhost.endpoint
    return subprocess.run(
        ["bash", str(SMOKE), "--native"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=280, check=False,
        env={
            **stack.env,
            "SMOKE_API_URL": stack.api_url,
            "SMOKE_API_KEY": API_KEY,
            "SMOKE_MANAGEMENT_URL": f"http://{endpoint.host}:{endpoint.management_port}",
            "SMOKE_MANAGEMENT_USER": endpoint.user,
            "SMOKE_MANAGEMENT_PASSWORD": endpoint.password,
            "SMOKE_TIMEOUT_S": "90",
            **env,
        },
    )


def test_smoke_script_passes_against_the_native_stack(stack: NativeStack) -> None:
    result = smoke(stack)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr + stack.logs()
    checks = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    expected = [
        "ok    API ready",
        "ok    uploaded sample.jpg: job ",
        "ok    job completed by worker-0",
        "ok    downloaded the result through its presigned URL",
        f"ok    object store console answers at http://localhost:{int(stack.env['S3_PORT']) + 1002}/",
        "ok    RabbitMQ management answers",
        "ok    scaled from 1 to 3 workers: 3 consumers on images.jobs.work",
        "ok    scaled back to 1 workers",
    ]
    assert [prefix for prefix in expected if not any(check.startswith(prefix) for check in checks)] == [], result.stdout
    assert stack.vhost.consumer_count("images.jobs.work") == 1


def test_smoke_script_fails_naming_the_refused_key(stack: NativeStack) -> None:
    result = smoke(stack, SMOKE_API_KEY="not-a-key-of-this-system")
    assert result.returncode == 1
    assert "FAIL  the API refused the key (HTTP 401)" in result.stderr, result.stdout + result.stderr
    assert "all checks passed" not in result.stdout


def test_smoke_script_fails_when_the_console_does_not_answer(stack: NativeStack) -> None:
    result = smoke(stack, SMOKE_CONSOLE_URL=f"http://127.0.0.1:{free_port()}/")
    assert result.returncode != 0
    assert "FAIL  object store console" in result.stderr, result.stdout + result.stderr


FAKE_DOCKER = """#!/bin/bash
# docker, as far as tools/compose_smoke.sh uses it, over the native stack: records each call.
printf '%s\\n' "$*" >> "$DOCKER_LOG"
case "$*" in
  "compose ps --format "*) printf 'api healthy\\nrabbitmq healthy\\nminio %s\\nworker \\n' "${MINIO_HEALTH:-healthy}" ;;
  "compose ps --status running --quiet worker") bash "$STACK" ps | grep '^worker:.*RUNNING' ;;
  "compose up -d --no-deps --scale worker="*" worker")
    call="$*"
    count="${call#*worker=}"
    exec bash "$STACK" scale "${count%% *}" ;;
  *) echo "unexpected: docker $*" >&2; exit 1 ;;
esac
"""


def smoke_as_compose(
    stack: NativeStack, tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The script's compose mode, with a stand-in `docker` that scales the native stack."""
    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    endpoint = stack.vhost.endpoint
    result = subprocess.run(
        ["bash", str(SMOKE)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=280, check=False,
        env={
            **stack.env,
            "PATH": f"{tmp_path}:{stack.env['PATH']}",
            "DOCKER_LOG": str(log),
            "STACK": str(PROJECT_DIR / "tools" / "stack.sh"),
            "SMOKE_API_URL": stack.api_url,
            "SMOKE_API_KEY": API_KEY,
            "SMOKE_MANAGEMENT_URL": f"http://{endpoint.host}:{endpoint.management_port}",
            "SMOKE_MANAGEMENT_USER": endpoint.user,
            "SMOKE_MANAGEMENT_PASSWORD": endpoint.password,
            "SMOKE_CONSOLE_URL": f"http://127.0.0.1:{int(stack.env['S3_PORT']) + 1002}/",
            "SMOKE_TIMEOUT_S": "90",
            **env,
        },
    )
    return result, log.read_text() if log.exists() else ""


def test_smoke_script_scales_through_docker_compose_in_compose_mode(stack: NativeStack, tmp_path: Path) -> None:
    result, calls = smoke_as_compose(stack, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    no service unhealthy (docker compose ps)" in result.stdout
    assert "ok    scaled from 1 to 3 workers: 3 consumers on images.jobs.work" in result.stdout
    scaling = [line for line in calls.splitlines() if line.startswith("compose up")]
    assert scaling == [
        "compose up -d --no-deps --scale worker=3 worker", "compose up -d --no-deps --scale worker=1 worker"
    ]


def test_smoke_script_names_an_unhealthy_service(stack: NativeStack, tmp_path: Path) -> None:
    result, calls = smoke_as_compose(stack, tmp_path, MINIO_HEALTH="unhealthy")
    assert result.returncode == 1
    assert "FAIL  unhealthy services: minio" in result.stderr
    assert "compose up" not in calls
