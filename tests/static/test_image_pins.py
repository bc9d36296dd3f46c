"""Every image the project pulls is pinned by tag and digest and comes from a registry we chose.

A tag can be moved or deleted (Docker Hub dropped `minio/minio` in September 2026 and every fresh
`docker compose up` failed); a digest names the exact bytes, and the allow-list below makes a move to
another registry one visible edit here rather than a surprise on a new machine.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s import K8S_DIR, OVERLAYS, render

ROOT = Path(__file__).resolve().parents[2]

# Where pulled images may come from: registry/namespace. MinIO's images are on MinIO's own registry
# (quay.io/minio), a frozen snapshot since the community edition is published as source only.
ALLOWED_SOURCES = {
    "docker.io/library",  # Docker's official images: python, rabbitmq
    "docker.io/prom",
    "docker.io/grafana",
    "quay.io/minio",
}
# Built from this repository (deploy/k8s names them; the production overlay points them at the
# user's own registry): there is no digest to pin before they are built.
BUILT_HERE = re.compile(r"(^|/)imgpipe/(api|worker|notification)(:[\w.-]+)?$")

REFERENCE = re.compile(
    r"^(?:(?P<registry>[a-z0-9.-]+\.[a-z]+(?::\d+)?|localhost(?::\d+)?)/)?"
    r"(?P<path>[a-z0-9._/-]+?)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageReference:
    source: str  # registry/namespace
    name: str
    tag: str | None
    digest: str | None


def parse_reference(text: str) -> ImageReference:
    match = REFERENCE.match(text)
    assert match, f"not an image reference: {text!r}"
    path = match["path"]
    if "/" not in path:
        path = f"library/{path}"
    namespace, _, name = path.rpartition("/")
    return ImageReference(f"{match['registry'] or 'docker.io'}/{namespace}", name, match["tag"], match["digest"])


def problems(text: str) -> list[str]:
    """What is wrong with one image reference (empty: pinned by tag and digest, from an allowed source)."""
    reference = parse_reference(text)
    found = []
    if reference.tag is None:
        found.append("no tag")
    if reference.digest is None:
        found.append("no @sha256 digest")
    if reference.source not in ALLOWED_SOURCES:
        found.append(f"{reference.source} is not an allowed source")
    return found


# --- where images are named -----------------------------------------------------------------------


class ComposeLoader(yaml.SafeLoader):
    """Reads Compose's merge tags (`!reset`, `!override`) as the plain values they carry."""


ComposeLoader.add_multi_constructor(
    "!", lambda loader, _tag, node: loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else loader.construct_scalar(node)
)


def compose_images() -> dict[str, str]:
    found = {}
    for path in sorted(ROOT.glob("docker-compose*.yml")):
        for name, service in (yaml.load(path.read_text(), ComposeLoader)["services"] or {}).items():
            if "image" in service:
                found[f"{path.name}: {name}"] = service["image"]
    return found


def dockerfile_bases(path: Path) -> list[str]:
    """The images `FROM` pulls, leaving out earlier stages of the same file."""
    stages: set[str] = set()
    bases = []
    for line in path.read_text().splitlines():
        words = [word for word in line.split() if not word.startswith("--")]
        if not words or words[0].upper() != "FROM":
            continue
        if words[1] not in stages:
            bases.append(words[1])
        if len(words) >= 4 and words[2].upper() == "AS":
            stages.add(words[3])
    return bases


def dockerfiles() -> list[Path]:
    """The repository's own Dockerfiles: what git tracks, not what a test run leaves in the tree
    (virtualenvs, the RabbitMQ 4 root with its /proc)."""
    listed = subprocess.run(
        ["git", "ls-files", "--", "Dockerfile", "**/Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [ROOT / line for line in sorted(listed.stdout.split())]


def dockerfile_images() -> dict[str, str]:
    return {
        f"{path.relative_to(ROOT)}: {i}": base
        for path in dockerfiles()
        for i, base in enumerate(dockerfile_bases(path))
    }


def manifest_images(node: Any) -> list[str]:
    """Every `image:` value in a rendered Kubernetes object (containers, operator resources)."""
    if isinstance(node, dict):
        own = [node["image"]] if isinstance(node.get("image"), str) else []
        return own + [image for value in node.values() for image in manifest_images(value)]
    if isinstance(node, list):
        return [image for item in node for image in manifest_images(item)]
    return []


def k8s_images() -> dict[str, str]:
    return {
        f"deploy/k8s/{overlay}: {manifest['kind']} {manifest['metadata']['name']}: {image}": image
        for overlay in OVERLAYS
        for manifest in render(K8S_DIR / overlay)
        for image in manifest_images(manifest)
    }


# --- the checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", [compose_images, dockerfile_images, k8s_images], ids=["compose", "dockerfiles", "k8s"]
)
def test_every_pulled_image_is_pinned_by_tag_and_digest_from_an_allowed_source(source) -> None:
    images = source()
    assert images, f"{source.__name__} found no image"
    pulled = {where: image for where, image in images.items() if not BUILT_HERE.search(image)}
    assert {where: (image, problems(image)) for where, image in pulled.items() if problems(image)} == {}


def test_k8s_images_built_here_are_the_three_services() -> None:
    built = {parse_reference(image).name for image in k8s_images().values() if BUILT_HERE.search(image)}
    assert built == {"api", "worker", "notification"}


def test_minio_comes_from_its_own_registry() -> None:
    minio = [image for image in [*compose_images().values(), *k8s_images().values()] if "minio/" in image]
    assert minio and all(image.startswith("quay.io/minio/") for image in minio), minio


@pytest.mark.parametrize(
    ("image", "complaint"),
    [
        ("minio/minio:RELEASE.2025-04-22T22-12-26Z@sha256:" + "a" * 64, "docker.io/minio is not an allowed source"),
        ("rabbitmq:4.0.9-management", "no @sha256 digest"),
        ("python@sha256:" + "b" * 64, "no tag"),
        ("ghcr.io/someone/python:3.11@sha256:" + "c" * 64, "ghcr.io/someone is not an allowed source"),
    ],
)
def test_the_check_refuses_unpinned_or_foreign_images(image: str, complaint: str) -> None:
    assert complaint in problems(image)


def test_the_check_accepts_a_pinned_official_image() -> None:
    reference = parse_reference("python:3.11.13-slim-bookworm@sha256:" + "d" * 64)
    assert reference == ImageReference("docker.io/library", "python", "3.11.13-slim-bookworm", "sha256:" + "d" * 64)
    assert problems("quay.io/minio/mc:RELEASE.2025-04-16T18-13-26Z@sha256:" + "e" * 64) == []
