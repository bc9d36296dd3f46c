"""deploy/k8s rendered with kustomize and validated without a cluster: the Kubernetes API's schemas
for built-in kinds, the operators' CRD schemas for RabbitmqCluster, Tenant and KEDA's kinds, and
what the manifests promise (the KEDA trigger watches the real work queue, non-root, probes...)."""

import base64
import copy
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from common.clients import new_webhook_secret
from common.settings import Settings
from common.topology import WORK_QUEUE
from tests.support.k8s import K8S_DIR, OVERLAYS, render, validate

# Secrets the manifests use that no overlay generates: the RabbitMQ Cluster Operator creates the
# default user's; in production the others are created beforehand (overlays/production).
OPERATOR_SECRETS = {"imgpipe-rabbitmq-default-user"}
PRODUCTION_SECRETS = {"imgpipe-minio-env", "imgpipe-minio-user", "imgpipe-webhook", "imgpipe-api-keys"}
SERVICES = {"imgpipe-api", "imgpipe-worker", "imgpipe-notification"}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render(K8S_DIR / request.param)


def objects(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def test_k8s_every_object_is_valid_against_its_schema(rendered) -> None:
    _, manifests = rendered
    assert [problem for manifest in manifests for problem in validate(manifest)] == []


def test_k8s_rendering_has_the_system(rendered) -> None:
    _, manifests = rendered
    kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert {("Deployment", name) for name in SERVICES} <= kinds
    assert {
        ("RabbitmqCluster", "imgpipe-rabbitmq"),
        ("Tenant", "imgpipe-minio"),
        ("ScaledObject", "imgpipe-worker"),
        ("TriggerAuthentication", "imgpipe-rabbitmq"),
        ("HorizontalPodAutoscaler", "imgpipe-api"),
        ("Service", "imgpipe-api"),
        ("ConfigMap", "imgpipe-config"),
    } <= kinds


@pytest.mark.parametrize(
    ("kind", "path", "value", "complaint"),
    [
        (
            "Deployment",
            ("spec", "template", "spec", "containers", 0, "livenesProbe"),
            {},
            "'livenesProbe' was unexpected",
        ),
        ("Deployment", ("spec", "replicas"), "two", "'two' is not of type 'integer'"),
        ("ScaledObject", ("spec", "maxReplicas"), 3, "'maxReplicas' was unexpected"),
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "value"), 20, "20 is not of type 'string'"),
        ("RabbitmqCluster", ("spec", "rabbitmq", "additionalPlugins"), ["rabbitmq shovel"], "does not match"),
        ("Tenant", ("spec", "pools", 0, "servers"), "4", "'4' is not of type 'integer'"),
    ],
)
def test_k8s_validation_refuses_a_broken_object(kind: str, path: tuple, value: Any, complaint: str) -> None:
    manifests = render(K8S_DIR / "overlays/local")
    broken = copy.deepcopy(next(m for m in manifests if m["kind"] == kind))
    node = broken
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    problems = validate(broken)
    assert problems and complaint in " ".join(problems), problems


def test_keda_trigger_names_the_work_queue_and_vhost(rendered) -> None:
    _, manifests = rendered
    (scaled,) = objects(manifests, "ScaledObject").values()
    config = objects(manifests, "ConfigMap")["imgpipe-config"]["data"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == WORK_QUEUE
    assert trigger["metadata"]["vhostName"] == config["RABBITMQ_VHOST"]
    assert trigger["metadata"]["mode"] == "QueueLength" and int(trigger["metadata"]["value"]) > 0
    # The management API of the same broker the services use, on the port they are told.
    host, port = config["RABBITMQ_HOST"], config["RABBITMQ_MANAGEMENT_PORT"]
    assert trigger["metadata"]["host"] == f"http://{host}:{port}/"
    assert host in objects(manifests, "RabbitmqCluster")
    assert scaled["spec"]["scaleTargetRef"]["name"] in objects(manifests, "Deployment")
    assert trigger["authenticationRef"]["name"] in objects(manifests, "TriggerAuthentication")
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


def test_k8s_config_names_are_settings(rendered) -> None:
    _, manifests = rendered
    config = objects(manifests, "ConfigMap")["imgpipe-config"]["data"]
    names = {name.upper() for name in Settings.model_fields}
    env = {
        e["name"]
        for d in objects(manifests, "Deployment").values()
        for c in containers(d)
        for e in c.get("env", [])
    }
    assert set(config) - names == set()
    assert env - names == set()
    assert config["QUEUE_TYPE"] == "quorum"


def test_k8s_config_starts_the_services_in_its_environment(rendered) -> None:
    """The ConfigMap with credentials as the Secrets would give them: the services' own settings
    check (production refuses weak secrets and a missing key file) must accept it."""
    overlay, manifests = rendered
    config = objects(manifests, "ConfigMap")["imgpipe-config"]["data"]
    generated = {
        name: {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
        for name, secret in objects(manifests, "Secret").items()
    }
    if overlay == "overlays/local":
        credentials = {
            "S3_ACCESS_KEY": generated["imgpipe-minio-user"]["CONSOLE_ACCESS_KEY"],
            "S3_SECRET_KEY": generated["imgpipe-minio-user"]["CONSOLE_SECRET_KEY"],
            "WEBHOOK_SECRET": generated["imgpipe-webhook"]["secret"],
        }
        keys_file = generated["imgpipe-api-keys"][Path(config["API_KEYS_FILE"]).name]
        assert json.loads(keys_file) == {"clients": []}
    else:  # what the operator and the documented commands create
        credentials = {
            "RABBITMQ_USER": "default_user_" + secrets.token_hex(8),
            "RABBITMQ_PASSWORD": secrets.token_urlsafe(24),
            "S3_ACCESS_KEY": "imgpipe-app",
            "S3_SECRET_KEY": secrets.token_urlsafe(24),
            "WEBHOOK_SECRET": new_webhook_secret(),
        }
    values = {key.lower(): value for key, value in {**config, **credentials}.items()}
    settings = Settings(_env_file=None, **values)
    assert settings.environment == ("local" if overlay == "overlays/local" else "production")
    assert str(settings.api_keys_file).startswith("/etc/imgpipe/keys/")


def test_k8s_services_run_as_non_root_with_limits(rendered) -> None:
    _, manifests = rendered
    for name, deployment in objects(manifests, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in containers(deployment):
            security = container["securityContext"]
            assert (security["allowPrivilegeEscalation"], security["readOnlyRootFilesystem"]) == (
                False,
                True,
            ), name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert (
                set(container["resources"]["requests"])
                == set(container["resources"]["limits"])
                == {"cpu", "memory"}
            )


def test_k8s_api_probes_health_and_ready(rendered) -> None:
    _, manifests = rendered
    (api,) = containers(objects(manifests, "Deployment")["imgpipe-api"])
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"http": 8000}


def test_k8s_worker_grace_exceeds_shutdown_grace(rendered) -> None:
    _, manifests = rendered
    worker = objects(manifests, "Deployment")["imgpipe-worker"]["spec"]["template"]["spec"]
    grace = float(objects(manifests, "ConfigMap")["imgpipe-config"]["data"]["SHUTDOWN_GRACE_S"])
    assert worker["terminationGracePeriodSeconds"] > grace
    assert "replicas" not in objects(manifests, "Deployment")["imgpipe-worker"]["spec"], (
        "KEDA owns the replicas"
    )


def test_k8s_every_workload_has_a_disruption_budget(rendered) -> None:
    _, manifests = rendered
    selected = {
        tuple(sorted(pdb["spec"]["selector"]["matchLabels"].items()))
        for pdb in objects(manifests, "PodDisruptionBudget").values()
    }
    for name, deployment in objects(manifests, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(set(sel) <= set(labels.items()) for sel in selected), name
    # The operator labels the RabbitMQ pods with the cluster's name.
    assert (("app.kubernetes.io/name", "imgpipe-rabbitmq"),) in selected


def test_k8s_secrets_referenced_are_generated_or_provided(rendered) -> None:
    overlay, manifests = rendered
    referenced = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in objects(manifests, "Deployment").values()
        for c in containers(d)
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    referenced |= {
        ref["name"]
        for t in objects(manifests, "TriggerAuthentication").values()
        for ref in t["spec"]["secretTargetRef"]
    }
    referenced |= {
        volume["secret"]["secretName"]
        for d in objects(manifests, "Deployment").values()
        for volume in d["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in volume
    }
    tenant = objects(manifests, "Tenant")["imgpipe-minio"]["spec"]
    referenced |= {tenant["configuration"]["name"], *(u["name"] for u in tenant["users"])}
    generated = set(objects(manifests, "Secret"))
    if overlay == "overlays/local":
        assert referenced - generated == OPERATOR_SECRETS
    else:
        assert generated == set(), "production secrets do not belong in the repository"
        assert referenced == OPERATOR_SECRETS | PRODUCTION_SECRETS


def test_k8s_production_overlay_is_production() -> None:
    manifests = render(K8S_DIR / "overlays/production")
    assert objects(manifests, "ConfigMap")["imgpipe-config"]["data"]["ENVIRONMENT"] == "production"
    images = {c["image"] for d in objects(manifests, "Deployment").values() for c in containers(d)}
    assert all(":" in image and not image.endswith((":dev", ":latest")) for image in images), images
    assert objects(manifests, "RabbitmqCluster")["imgpipe-rabbitmq"]["spec"]["replicas"] == 3


MEASURED = K8S_DIR.parents[1] / "docs" / "capacity" / "measured.json"
MEBI = {"Mi": 2**20, "Gi": 2**30}


def mebibytes(quantity: str) -> float:
    return float(quantity[:-2]) * MEBI[quantity[-2:]] / 2**20


@pytest.mark.parametrize(
    ("deployment", "group"),
    [("imgpipe-api", "api"), ("imgpipe-worker", "workers"), ("imgpipe-notification", "notifier")],
)
def test_k8s_memory_covers_the_measured_peak(deployment: str, group: str) -> None:
    runs = json.loads(MEASURED.read_text())["runs"].values()
    peak_mb = max(run["peak_rss_mb"][group] for run in runs)
    (container,) = containers(objects(render(K8S_DIR / "base"), "Deployment")[deployment])
    resources = container["resources"]
    assert mebibytes(resources["requests"]["memory"]) >= peak_mb * 1.25
    assert mebibytes(resources["limits"]["memory"]) >= peak_mb * 2


def test_k8s_worker_gets_the_one_core_it_can_use() -> None:
    (container,) = containers(objects(render(K8S_DIR / "base"), "Deployment")["imgpipe-worker"])
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"] == "1"
