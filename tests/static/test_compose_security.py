"""The compose stack's hardening, checked without a Docker engine: what is published where, who
signs in with which key, and that the RabbitMQ definitions, the MinIO policies and the services'
settings agree. deploy/rabbitmq/definitions.json itself is loaded into a real RabbitMQ node by
tests/integration/test_broker_definitions.py."""

import json
import os
import re
import secrets
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.idempotency import IDEMPOTENCY_PREFIX
from api.job_index import EVERY_JOB
from api.retention import EXPIRING_PREFIXES
from common.cancellation import cancel_key
from common.clients import new_webhook_secret
from common.jobs import original_key, result_key
from common.observability.stats import STATS_PREFIX
from common.settings import Settings, is_strong_secret
from tests.static.test_compose import (  # noqa: F401 - fixtures used by name
    APP_SERVICES,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    EnvEntry,
    clean_env,
    compose,
    compose_cli,
    env_entries,
    run_compose,
    services,
)

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
RABBITMQ_CONF = ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf"
MINIO_SETUP = ROOT / "deploy" / "minio" / "setup.sh"
POLICIES = ROOT / "deploy" / "minio" / "policies"
STORAGE_KEYS = (*sorted(APP_SERVICES), "presign")
SECRET_SUFFIXES = ("_PASSWORD", "_SECRET", "_SECRET_KEY", "_COOKIE")
CLUSTER_COOKIE = "RABBITMQ_ERLANG_COOKIE"


@pytest.fixture(scope="module")
def resolved(compose_cli: list[str], clean_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The services, the monitoring profile's too, as the Compose CLI resolves them with .env.example."""
    result = run_compose(
        compose_cli, clean_env, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "--profile", "monitoring",
        "config",
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def env_value(entries: list[EnvEntry], name: str) -> str:
    return next(entry.value for entry in entries if entry.name == name)


# --- published addresses --------------------------------------------------------------------------


def test_only_the_api_is_published_beyond_this_machine(resolved: dict[str, dict[str, Any]]) -> None:
    published = {
        (name, port.get("host_ip"), int(port["published"]))
        for name, service in resolved.items()
        for port in service.get("ports", [])
    }
    assert {(name, port) for name, host_ip, port in published if host_ip != "127.0.0.1"} == {("api", 8000)}
    assert {(name, port) for name, host_ip, port in published if host_ip == "127.0.0.1"} == {
        ("rabbitmq", 5672), ("rabbitmq", 15672), ("minio", 9000), ("minio", 9001),
        ("prometheus", 9090), ("grafana", 3000),
    }


# --- RabbitMQ: users of their own, no remote guest ------------------------------------------------


def test_rabbitmq_lets_guest_in_from_the_node_only() -> None:
    settings = {
        key.strip(): value.strip()
        for key, _, value in (
            line.partition("=") for line in RABBITMQ_CONF.read_text().splitlines() if line.strip() and line[0] != "#"
        )
    }
    assert "loopback_users" not in settings and settings.get("loopback_users.guest") == "true"


def test_rabbitmq_default_user_is_the_administrator_not_guest(resolved: dict[str, dict[str, Any]]) -> None:
    admin = resolved["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"]
    assert admin not in ("guest", "")
    assert resolved["broker-setup"]["environment"]["RABBITMQ_USER"] == admin


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_each_service_signs_in_to_the_broker_as_its_own_defined_user(
    resolved: dict[str, dict[str, Any]], name: str
) -> None:
    env = resolved[name]["environment"]
    users = {user["name"]: user for user in json.loads(DEFINITIONS.read_text())["users"]}
    assert env["RABBITMQ_USER"] == f"imgpipe-{name}" and env["RABBITMQ_USER"] in users
    # broker-setup creates it with the password the service signs in with.
    password_from = users[env["RABBITMQ_USER"]]["password_from"]
    assert resolved["broker-setup"]["environment"][password_from] == env["RABBITMQ_PASSWORD"]
    assert env["RABBITMQ_DECLARE_TOPOLOGY"] == "false"


def test_definitions_give_every_user_permissions_and_no_configure_right_on_the_topology() -> None:
    definitions = json.loads(DEFINITIONS.read_text())
    permissions = {permission["user"]: permission for permission in definitions["permissions"]}
    assert set(permissions) == {user["name"] for user in definitions["users"]}
    # The API may only declare server-named queues (its exclusive live-events feed), never a named one.
    assert {user: permission["configure"] for user, permission in permissions.items()} == {
        **dict.fromkeys(permissions, "^$"), "imgpipe-api": "^amq\\.gen-.*$"
    }
    assert all("vhost" not in permission for permission in permissions.values()), "set from RABBITMQ_VHOST"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_broker_setup_declares_the_topology_the_service_uses(
    resolved: dict[str, dict[str, Any]], compose: dict[str, Any], name: str
) -> None:
    """Delay queues are named after settings: broker-setup must declare them from the same values."""
    own = {"RABBITMQ_USER", "RABBITMQ_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "RETENTION_DAYS"}
    shared = set(compose["x-common-env"]) - own
    setup, service = resolved["broker-setup"]["environment"], resolved[name]["environment"]
    assert {key: setup.get(key) for key in shared} == {key: service[key] for key in shared}


# --- MinIO: a key per service, never the root one -------------------------------------------------


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_no_service_holds_the_storage_root_key(resolved: dict[str, dict[str, Any]], name: str) -> None:
    root = resolved["minio"]["environment"]
    env = resolved[name]["environment"]
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(env) == set()
    assert root["MINIO_ROOT_USER"] not in env.values() and root["MINIO_ROOT_PASSWORD"] not in env.values()
    assert env["S3_ACCESS_KEY"] == f"imgpipe-{name}"
    assert resolved["storage-setup"]["environment"][f"S3_{name.upper()}_SECRET_KEY"] == env["S3_SECRET_KEY"]


@pytest.mark.parametrize("name", ["api", "notification"])
def test_download_links_are_signed_with_the_read_only_key(resolved: dict[str, dict[str, Any]], name: str) -> None:
    env = resolved[name]["environment"]
    assert env["S3_PRESIGN_ACCESS_KEY"] == "imgpipe-presign"
    assert env["S3_PRESIGN_SECRET_KEY"] == resolved["storage-setup"]["environment"]["S3_PRESIGN_SECRET_KEY"]


def test_storage_setup_runs_the_setup_script_with_the_policies(resolved: dict[str, dict[str, Any]]) -> None:
    setup = resolved["storage-setup"]
    mounts = {(Path(volume["source"]), volume["target"]) for volume in setup["volumes"]}
    assert (MINIO_SETUP.parent, "/etc/imgpipe/minio") in mounts
    assert setup["entrypoint"] == ["/bin/bash", "/etc/imgpipe/minio/setup.sh"]
    assert {path.stem for path in POLICIES.glob("*.json")} == set(STORAGE_KEYS)


# Each key's needs, from the keys the code writes and reads (bucket-level actions on "").
JOB = "0123456789abcdef0123456789abcdef"
ORIGINAL, RESULT = original_key(JOB), result_key(JOB, "jpeg")
RECORD, STATS = f"jobs/{JOB}.json", f"{STATS_PREFIX}w.json"
CANCEL, CLAIM, INDEX = cancel_key(JOB), f"{IDEMPOTENCY_PREFIX}{JOB}", f"{EVERY_JOB}{JOB}"
NEEDS = {
    "api": {
        ("s3:ListBucket", ""), ("s3:PutObject", ORIGINAL), ("s3:DeleteObject", ORIGINAL), ("s3:PutObject", RECORD),
        ("s3:GetObject", RECORD), ("s3:DeleteObject", RECORD), ("s3:GetObject", RESULT), ("s3:GetObject", STATS),
        ("s3:PutObject", CANCEL), ("s3:PutObject", CLAIM), ("s3:GetObject", CLAIM), ("s3:DeleteObject", CLAIM),
        ("s3:PutObject", INDEX), ("s3:DeleteObject", INDEX),
    },
    "worker": {
        ("s3:GetObject", ORIGINAL), ("s3:PutObject", RESULT), ("s3:GetObject", RECORD), ("s3:PutObject", RECORD),
        ("s3:PutObject", STATS), ("s3:GetObject", CANCEL),
    },
    "notification": {("s3:GetObject", RECORD), ("s3:PutObject", RECORD)},
    "presign": {("s3:GetObject", RESULT)},
}
PROBES = sorted(
    {probe for needs in NEEDS.values() for probe in needs}
    | {
        ("s3:DeleteObject", RESULT), ("s3:DeleteObject", STATS), ("s3:GetObject", "elsewhere/x"),
        ("s3:PutObject", "elsewhere/x"), ("s3:DeleteBucket", ""), ("s3:PutBucketPolicy", ""),
        ("s3:PutLifecycleConfiguration", ""), ("admin:CreateUser", ""),
    }
)


def policy(name: str, bucket: str = "images") -> dict:
    return json.loads(POLICIES.joinpath(f"{name}.json").read_text().replace("${S3_BUCKET}", bucket))


def allows(document: dict, action: str, key: str, bucket: str = "images") -> bool:
    """IAM's rule for Allow-only policies: some statement names the action and the resource."""
    resource = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    return any(
        statement["Effect"] == "Allow"
        and any(fnmatchcase(action, pattern) for pattern in statement["Action"])
        and any(fnmatchcase(resource, pattern) for pattern in statement["Resource"])
        for statement in document["Statement"]
    )


@pytest.mark.parametrize("name", STORAGE_KEYS)
def test_each_storage_key_may_do_its_work_and_nothing_more(name: str) -> None:
    document = policy(name)
    assert {probe: allows(document, *probe) for probe in PROBES} == {probe: probe in NEEDS[name] for probe in PROBES}


@pytest.mark.parametrize("name", STORAGE_KEYS)
def test_policies_name_only_the_bucket_and_no_wildcard_action(name: str) -> None:
    document = policy(name, bucket="some-bucket")
    assert all(statement["Effect"] == "Allow" for statement in document["Statement"])
    assert [a for s in document["Statement"] for a in s["Action"] if "*" in a] == []
    assert [
        r for s in document["Statement"] for r in s["Resource"]
        if not re.fullmatch(r"arn:aws:s3:::some-bucket(/[a-z]+/\*)?", r)
    ] == []


def test_the_policy_check_sees_a_broader_grant() -> None:
    broad = {"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::images/*"]}]}
    assert allows(broad, "s3:DeleteObject", RESULT) and not allows(broad, "s3:DeleteBucket", "")


# --- deploy/minio/setup.sh, run with a stand-in for mc that records what it is asked --------------

FAKE_MC = """#!/bin/bash
printf '%s\\n' "$*" >> "$MC_LOG"
case "$*" in
  "ilm rule import "*) cat > "$MC_LOG.lifecycle" ;;
  "admin policy create "*) cp "$6" "$MC_LOG.$5.json" ;;
  "admin policy attach "*) [ -z "${MC_ATTACH_FAILS:-}" ] || { echo "mc: <ERROR> $MC_ATTACH_FAILS" >&2; exit 1; } ;;
  "admin user info "*) echo "AccessKey: $5"; echo "PolicyName: ${MC_ATTACHED:+$5-access}" ;;
esac
"""


def run_setup(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    log = tmp_path / "mc.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(MINIO_SETUP)], capture_output=True, text=True, timeout=60, check=False,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}", "MC_LOG": str(log),
            "MINIO_ROOT_USER": "root-user", "MINIO_ROOT_PASSWORD": "root-password", "S3_BUCKET": "pictures",
            "RETENTION_DAYS": "30.0", **{f"S3_{key.upper()}_SECRET_KEY": f"{key}-secret" for key in STORAGE_KEYS},
            **env,
        },
    )
    return result, log.read_text().splitlines() if log.exists() else []


def test_storage_setup_makes_the_bucket_keys_policies_and_lifecycle(tmp_path: Path) -> None:
    result, calls = run_setup(tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls[:2] == [
        "alias set local http://minio:9000 root-user root-password", "mb --ignore-existing local/pictures"
    ]
    for key in STORAGE_KEYS:
        assert f"admin user add local imgpipe-{key} {key}-secret" in calls
        assert f"admin policy attach local imgpipe-{key}-access --user imgpipe-{key}" in calls
        rendered = json.loads((tmp_path / f"mc.log.imgpipe-{key}-access.json").read_text())
        assert rendered == policy(key, bucket="pictures")
    lifecycle = json.loads((tmp_path / "mc.log.lifecycle").read_text())
    assert calls[-1] == "ilm rule import local/pictures"
    assert {rule["Filter"]["Prefix"]: rule["Expiration"]["Days"] for rule in lifecycle["Rules"]} == dict.fromkeys(
        EXPIRING_PREFIXES, 30
    )


@pytest.mark.parametrize(("retention", "days"), [("2", 2), ("0.5", 1), ("1.25", 2), ("7.0", 7)])
def test_storage_setup_rounds_retention_up_to_whole_days(tmp_path: Path, retention: str, days: int) -> None:
    result, _ = run_setup(tmp_path, RETENTION_DAYS=retention)
    assert result.returncode == 0, result.stderr
    rules = json.loads((tmp_path / "mc.log.lifecycle").read_text())["Rules"]
    assert {rule["Expiration"]["Days"] for rule in rules} == {days}


def test_storage_setup_without_retention_removes_the_rules(tmp_path: Path) -> None:
    result, calls = run_setup(tmp_path, RETENTION_DAYS="0")
    assert result.returncode == 0, result.stderr
    assert calls[-1] == "ilm rule rm --all --force local/pictures"
    assert not (tmp_path / "mc.log.lifecycle").exists()


def test_storage_setup_refuses_a_retention_that_is_not_a_number(tmp_path: Path) -> None:
    result, calls = run_setup(tmp_path, RETENTION_DAYS="thirty")
    assert result.returncode != 0 and "RETENTION_DAYS" in result.stderr and calls == []


def test_storage_setup_refuses_a_missing_secret(tmp_path: Path) -> None:
    result, _ = run_setup(tmp_path, S3_WORKER_SECRET_KEY="")
    assert result.returncode != 0 and "S3_WORKER_SECRET_KEY is not set" in result.stderr


def test_storage_setup_runs_again_over_an_attached_policy(tmp_path: Path) -> None:
    ok, _ = run_setup(tmp_path, MC_ATTACH_FAILS="policy change is already in effect", MC_ATTACHED="yes")
    assert ok.returncode == 0, ok.stderr
    failed, _ = run_setup(tmp_path, MC_ATTACH_FAILS="Access Denied.")
    assert failed.returncode != 0 and "Access Denied." in failed.stderr


# --- secrets and memory ---------------------------------------------------------------------------


def compose_only_secrets(entries: list[EnvEntry]) -> dict[str, str]:
    return {entry.name: entry.value for entry in entries if entry.compose_only and entry.name.endswith(SECRET_SUFFIXES)}


def test_every_compose_secret_is_checked_by_broker_setup(
    resolved: dict[str, dict[str, Any]], env_entries: list[EnvEntry]
) -> None:
    # The cluster overlay's cookie is checked by the overlay's broker-setup (test_compose_cluster.py).
    secrets = {name: value for name, value in compose_only_secrets(env_entries).items() if name != CLUSTER_COOKIE}
    assert {"GRAFANA_ADMIN_PASSWORD", "MINIO_ROOT_PASSWORD", "RABBITMQ_ADMIN_PASSWORD"} <= set(secrets)
    setup = resolved["broker-setup"]["environment"]
    checked = {name: value for name, value in setup.items() if name.endswith(SECRET_SUFFIXES)}
    # Under its own name, or as broker-setup's own RABBITMQ_PASSWORD (the administrator's).
    assert {name for name, value in secrets.items() if value not in checked.values()} == set()
    assert setup["RABBITMQ_PASSWORD"] == resolved["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]


def test_production_refuses_every_local_default_secret(env_entries: list[EnvEntry]) -> None:
    assert {name: value for name, value in compose_only_secrets(env_entries).items() if is_strong_secret(value)} == {}


@pytest.mark.parametrize("name", ["grafana", "api", "worker", "notification"])
def test_services_start_only_once_the_secrets_passed(resolved: dict[str, dict[str, Any]], name: str) -> None:
    assert resolved[name]["depends_on"]["broker-setup"]["condition"] == "service_completed_successfully"


def megabytes(limit: str | int) -> float:
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(limit).lower())
    assert match, limit
    return int(match[1]) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[match[2]]


def test_every_service_has_a_memory_limit(compose: dict[str, Any]) -> None:
    assert [name for name, service in compose["services"].items() if "mem_limit" not in service] == []


def test_worker_memory_limit_is_above_its_image_process_cap(
    compose: dict[str, Any], env_entries: list[EnvEntry]
) -> None:
    image_process_cap = int(env_value(env_entries, "WORKER_MEMORY_LIMIT_MB"))
    worker_itself = 160  # MB, the worker's measured peak outside its image process (docs/scaling.md)
    assert megabytes(compose["services"]["worker"]["mem_limit"]) >= image_process_cap + worker_itself


# --- production, as the services' own settings see it ---------------------------------------------

SETTINGS_CHECKED = [*sorted(APP_SERVICES), "broker-setup"]


def resolve_with(compose_cli: list[str], clean_env: dict[str, str], env_file: Path) -> dict[str, dict[str, Any]]:
    result = run_compose(compose_cli, clean_env, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def settings_error(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    """What Settings says about a service's environment (None: it starts)."""
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, str(value))
        try:
            Settings(_env_file=None)
        except ValueError as exc:
            return str(exc)
    return None


@pytest.fixture(scope="module")
def production_env_file(tmp_path_factory: pytest.TempPathFactory, env_entries: list[EnvEntry]) -> Path:
    """.env.example with ENVIRONMENT=production, API keys and a long random value for every secret."""
    strong = {
        entry.name: secrets.token_urlsafe(24)
        for entry in env_entries
        if entry.name.endswith(SECRET_SUFFIXES) and entry.name != "WEBHOOK_SECRET"
    }
    values = {
        **{entry.name: entry.value for entry in env_entries if not entry.optional},
        **strong,
        "ENVIRONMENT": "production",
        "API_KEYS": f"alice={secrets.token_urlsafe(24)}",
        "WEBHOOK_SECRET": new_webhook_secret(),
        "S3_PRESIGN_SECRET_KEY": secrets.token_urlsafe(24),
    }
    path = tmp_path_factory.mktemp("production") / ".env"
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


@pytest.mark.parametrize("name", SETTINGS_CHECKED)
def test_every_service_starts_in_production_with_strong_secrets(
    compose_cli: list[str], clean_env: dict[str, str], production_env_file: Path, name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = resolve_with(compose_cli, clean_env, production_env_file)[name]["environment"]
    assert environment["ENVIRONMENT"] == "production"
    assert settings_error(environment, monkeypatch) is None


@pytest.mark.parametrize("name", SETTINGS_CHECKED)
def test_every_service_refuses_the_local_defaults_in_production(
    compose_cli: list[str], clean_env: dict[str, str], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = resolve_with(compose_cli, {**clean_env, "ENVIRONMENT": "production"}, ENV_EXAMPLE)
    error = settings_error(resolved[name]["environment"], monkeypatch)
    assert error is not None and "RABBITMQ_PASSWORD" in error, error
