# The three services' images from one recipe: a shared base with every service's locked dependencies
# (requirements-services.lock, hash-checked), then a target per service that adds the shared
# package common/ and its own code (after its own system packages, so code edits rebuild little).
# Build from the repository root, one target per image:
#   docker build --target api -t imgpipe/api .          (worker, notification alike)
# docker-compose.yml and deploy/k8s build and name the same targets.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

# Dependencies in their own layer, shared by the three images: source edits do not reinstall them.
# Every package is pinned with its hashes; pip refuses anything else.
COPY requirements-services.lock requirements-services.lock
RUN pip install --require-hashes --no-deps -r requirements-services.lock


# Upload API. Readiness is probed by compose (GET /ready); liveness is GET /health.
FROM base AS api
COPY common/ common/
COPY api/ api/
USER 10001:10001
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]


# Image-processing worker. SIGTERM starts a graceful stop (finish the current job, up to
# SHUTDOWN_GRACE_S). Scale with WORKER_REPLICAS in .env (docker-compose.yml).
FROM base AS worker
# DejaVu Sans is the watermark font.
# Versions are not pinned: Debian drops superseded versions from the archive, so a pin breaks the
# build at the next security update; the base image's digest already fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY common/ common/
COPY worker/ worker/
USER 10001:10001
CMD ["python", "-m", "worker"]


# Notification service (webhook delivery).
FROM base AS notification
COPY common/ common/
COPY notification/ notification/
USER 10001:10001
CMD ["python", "-m", "notification"]
