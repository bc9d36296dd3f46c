"""docker-compose.cluster.yml, the overlay for a RabbitMQ cluster and distributed MinIO: validated
with the Compose CLI merged over docker-compose.yml, then checked for what it promises."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import is_strong_secret, parse_broker_nodes
from tests.static.test_compose import (  # noqa: F401 - fixtures used by name
    APP_SERVICES,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    clean_env,
    compose,
    compose_cli,
    depends_on,
    env_entries,
    parse_env_example,
    published_ports,
    run_compose,
)

OVERLAY = ROOT / "docker-compose.cluster.yml"
CLUSTER_CONF = ROOT / "deploy" / "rabbitmq" / "cluster.conf"
RABBITMQ_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
MINIO_NODES = ("minio", "minio-2")


def merged(cli: list[str], env: dict[str, str], *files: Path) -> dict[str, Any]:
    args = [arg for path in files for arg in ("-f", str(path))]
    result = run_compose(cli, env, "--env-file", str(ENV_EXAMPLE), *args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def cluster(compose_cli: list[str], clean_env: dict[str, str]) -> dict[str, Any]:
    return merged(compose_cli, clean_env, COMPOSE_FILE, OVERLAY)["services"]


@pytest.fixture(scope="module")
def single(compose_cli: list[str], clean_env: dict[str, str]) -> dict[str, Any]:
    return merged(compose_cli, clean_env, COMPOSE_FILE)["services"]


def test_compose_cluster_overlay_rejects_a_broken_overlay(compose_cli, clean_env, tmp_path: Path) -> None:
    broken = tmp_path / "overlay.yml"
    broken.write_text(
        "services:\n  rabbitmq-2:\n    extends:\n      file: docker-compose.yml\n      service: nosuch\n"
    )
    result = run_compose(compose_cli, clean_env, "-f", str(COMPOSE_FILE), "-f", str(broken), "config", "-q")
    assert result.returncode != 0


def test_compose_cluster_nodes_run_the_main_files_images(cluster, single) -> None:
    assert {cluster[name]["image"] for name in RABBITMQ_NODES} == {single["rabbitmq"]["image"]}
    assert {cluster[name]["image"] for name in MINIO_NODES} == {single["minio"]["image"]}


def test_compose_cluster_services_know_every_broker_node(cluster) -> None:
    for name in APP_SERVICES:
        env = cluster[name]["environment"]
        nodes = parse_broker_nodes(env["RABBITMQ_HOSTS"], 5672)
        assert [node.host for node in nodes] == list(RABBITMQ_NODES), name
        assert env["QUEUE_TYPE"] == "quorum", name
        deps = depends_on(cluster[name])
        assert {n: deps[n]["condition"] for n in (*RABBITMQ_NODES, "minio", "minio-2")} == dict.fromkeys(
            (*RABBITMQ_NODES, "minio", "minio-2"), "service_healthy"
        ), name


def test_compose_cluster_broker_setup_declares_quorum_queues_on_every_node(cluster) -> None:
    setup = cluster["broker-setup"]["environment"]
    for name in APP_SERVICES:
        env = cluster[name]["environment"]
        assert (setup["RABBITMQ_HOSTS"], setup["QUEUE_TYPE"]) == (env["RABBITMQ_HOSTS"], env["QUEUE_TYPE"]), name
    assert {n: depends_on(cluster["broker-setup"])[n]["condition"] for n in RABBITMQ_NODES} == dict.fromkeys(
        RABBITMQ_NODES, "service_healthy"
    )


def test_compose_cluster_broker_setup_checks_the_cookie(cluster) -> None:
    cookie = cluster["rabbitmq"]["environment"]["RABBITMQ_ERLANG_COOKIE"]
    assert cluster["broker-setup"]["environment"]["RABBITMQ_ERLANG_COOKIE"] == cookie
    assert not is_strong_secret(cookie), "the local default cookie must be refused in production"


def test_compose_cluster_rabbitmq_nodes_form_one_cluster(cluster) -> None:
    conf = CLUSTER_CONF.read_text()
    listed = re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.M)
    assert listed == [cluster[name]["hostname"] for name in RABBITMQ_NODES]
    cookies = {cluster[name]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] for name in RABBITMQ_NODES}
    assert len(cookies) == 1 and next(iter(cookies)).startswith("-setcookie ")
    for name in RABBITMQ_NODES:
        targets = {volume["target"]: volume["source"] for volume in cluster[name]["volumes"]}
        assert targets["/etc/rabbitmq/conf.d/30-cluster.conf"].endswith("deploy/rabbitmq/cluster.conf"), name
        assert "--erlang-cookie" in " ".join(cluster[name]["healthcheck"]["test"]), name
    data = [
        next(v["source"] for v in cluster[n]["volumes"] if v["target"] == "/var/lib/rabbitmq")
        for n in RABBITMQ_NODES
    ]
    assert len(set(data)) == 3, "each node needs its own data volume"


def test_compose_cluster_minio_is_one_erasure_set_of_four_drives_over_two_nodes(cluster) -> None:
    commands = {" ".join(cluster[name]["command"]) for name in MINIO_NODES}
    assert len(commands) == 1, "every node must be started with the same endpoints"
    drives = re.findall(r"http://([\w-]+):9000(/\S+)", commands.pop())
    assert len(drives) == 4 and {host for host, _ in drives} == {cluster[n]["hostname"] for n in MINIO_NODES}
    for name in MINIO_NODES:
        mounted = {v["target"]: v["source"] for v in cluster[name]["volumes"]}
        assert {path for host, path in drives if host == cluster[name]["hostname"]} == set(mounted), name
    sources = [v["source"] for n in MINIO_NODES for v in cluster[n]["volumes"]]
    assert len(set(sources)) == 4, "each drive its own volume"


def test_compose_cluster_publishes_each_host_port_once(cluster, single) -> None:
    ports = [port for service in cluster.values() for port in published_ports(service)]
    assert len(ports) == len(set(ports))
    assert set(ports) == {port for service in single.values() for port in published_ports(service)}


def test_compose_cluster_cookie_is_documented() -> None:
    entries = {e.name: e for e in parse_env_example(ENV_EXAMPLE.read_text())}
    assert entries["RABBITMQ_ERLANG_COOKIE"].compose_only
    assert f"${{RABBITMQ_ERLANG_COOKIE:-{entries['RABBITMQ_ERLANG_COOKIE'].value}}}" in OVERLAY.read_text()
