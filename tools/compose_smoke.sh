#!/usr/bin/env bash
# A running stack checked end to end, as a new user would: run it after `docker compose up -d`
# (or, with --native, after `make run`). It waits for health, uploads test_images/sample.jpg, follows
# the job to `completed`, downloads the result through its presigned URL from this machine, checks
# that the object store's console and RabbitMQ's management API answer, scales to 3 workers, sees 3
# consumers on the work queue and scales back. It prints each check; any failure exits non-zero.
#
#   tools/compose_smoke.sh             # docker compose (scales with `docker compose up --scale`)
#   tools/compose_smoke.sh --native    # make run (scales with tools/stack.sh, as `make scale` does)
#
# Settings come from the environment, then ./.env (the environment wins):
#   SMOKE_API_URL         the API (http://localhost:$API_PORT, 8000)
#   SMOKE_API_KEY         a client's API key, sent as a Bearer token (needed with AUTH_REQUIRED)
#   SMOKE_MANAGEMENT_URL  RabbitMQ management (http://localhost:$RABBITMQ_MANAGEMENT_PORT, 15672)
#   SMOKE_MANAGEMENT_USER, SMOKE_MANAGEMENT_PASSWORD   a management user (compose: RabbitMQ's
#                         administrator, RABBITMQ_ADMIN_USER/RABBITMQ_ADMIN_PASSWORD; native:
#                         RABBITMQ_USER/RABBITMQ_PASSWORD)
#   SMOKE_CONSOLE_URL     the object store's console (compose: MinIO's, http://localhost:9001;
#                         native: the SeaweedFS filer, http://localhost:$((S3_PORT + 1002)))
#   SMOKE_WORKERS (3), SMOKE_TIMEOUT_S (120)
# Needs curl and python3 (to read JSON).
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$PROJECT_DIR/tools/lib.sh"
load_dotenv "$PROJECT_DIR/.env"

MODE=compose
case "${1:-}" in
  --native) MODE=native ;;
  "") ;;
  *) echo "usage: $0 [--native]" >&2; exit 2 ;;
esac

API="${SMOKE_API_URL:-http://localhost:${API_PORT:-8000}}"
MANAGEMENT="${SMOKE_MANAGEMENT_URL:-http://localhost:${RABBITMQ_MANAGEMENT_PORT:-15672}}"
VHOST="${RABBITMQ_VHOST:-/}"
if [ "$MODE" = native ]; then
  MANAGEMENT_USER="${SMOKE_MANAGEMENT_USER:-${RABBITMQ_USER:-guest}}"
  MANAGEMENT_PASSWORD="${SMOKE_MANAGEMENT_PASSWORD:-${RABBITMQ_PASSWORD:-guest}}"
  CONSOLE="${SMOKE_CONSOLE_URL:-http://localhost:$((${S3_PORT:-8333} + 1002))/}"
else
  MANAGEMENT_USER="${SMOKE_MANAGEMENT_USER:-${RABBITMQ_ADMIN_USER:-imgpipe-admin}}"
  MANAGEMENT_PASSWORD="${SMOKE_MANAGEMENT_PASSWORD:-${RABBITMQ_ADMIN_PASSWORD:-admin-local}}"
  CONSOLE="${SMOKE_CONSOLE_URL:-http://localhost:9001/}"
fi
WORKERS="${SMOKE_WORKERS:-3}"
TIMEOUT_S="${SMOKE_TIMEOUT_S:-120}"
SAMPLE="$PROJECT_DIR/test_images/sample.jpg"
WORK_QUEUE=images.jobs.work
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT

ok() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

api() { # curl arguments...: the API, with the key if one is given
  local auth=()
  [ -n "${SMOKE_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $SMOKE_API_KEY")
  curl -sS --max-time 30 "${auth[@]}" "$@"
}

json() { # field.path < json: prints the value ("" when missing)
  python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value.get(part) if isinstance(value, dict) else None
print("" if value is None else value)' "$1"
}

urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# Polls `command...` until it succeeds, for at most TIMEOUT_S seconds.
wait_until() { # what command...
  local what="$1" deadline=$((SECONDS + TIMEOUT_S))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within ${TIMEOUT_S} s"
    sleep 1
  done
}

ready() { curl -fsS --max-time 5 -o /dev/null "$API/ready" 2>/dev/null; }

consumers() { # the work queue's consumers, as the management API counts them
  curl -fsS --max-time 10 -u "$MANAGEMENT_USER:$MANAGEMENT_PASSWORD" \
    "$MANAGEMENT/api/queues/$(urlencode "$VHOST")/$WORK_QUEUE" | json consumers
}

consumers_are() { [ "$(consumers 2>/dev/null)" = "$1" ]; }

running_workers() { # as the process manager counts them (the management API's figures lag a few seconds)
  if [ "$MODE" = native ]; then
    "$PROJECT_DIR/tools/stack.sh" ps | grep -c '^worker:.*RUNNING' || true
  else
    (cd "$PROJECT_DIR" && docker compose ps --status running --quiet worker) | grep -c . || true
  fi
}

scale_workers() { # N
  local output
  if [ "$MODE" = native ]; then
    output="$("$PROJECT_DIR/tools/stack.sh" scale "$1" 2>&1)" || fail "could not scale to $1 workers: $output"
  else
    output="$(cd "$PROJECT_DIR" && docker compose up -d --no-deps --scale "worker=$1" worker 2>&1)" \
      || fail "could not scale to $1 workers: $output"
  fi
}

echo "==> checking the $MODE stack: API $API"

# 1. Health
wait_until "the API to be ready (broker and object store reachable)" ready
ok "API ready: $(curl -fsS --max-time 5 "$API/ready")"
if [ "$MODE" = compose ]; then
  unhealthy="$(cd "$PROJECT_DIR" && docker compose ps --format '{{.Service}} {{.Health}}' | awk '$2 == "unhealthy" {print $1}')"
  [ -z "$unhealthy" ] || fail "unhealthy services: $unhealthy"
  ok "no service unhealthy (docker compose ps)"
fi

# 2. Upload (the key first: a refused upload is cut off before its body is sent)
code="$(api -o /dev/null -w '%{http_code}' "$API/status/00000000000000000000000000000000" || true)"
case "$code" in
  401|403) fail "the API refused the key (HTTP $code): set SMOKE_API_KEY to a client's key" ;;
esac
upload="$(api -F "file=@$SAMPLE" -F "operations=resize(width=320),watermark" "$API/upload" || true)"
[ -n "$upload" ] || fail "upload: no answer from $API/upload"
job_id="$(json job_id <<<"$upload" 2>/dev/null || true)"
[ -n "$job_id" ] || fail "upload refused: $upload"
ok "uploaded $(basename "$SAMPLE"): job $job_id"

# 3. Follow the job
job_finished() {
  status="$(api "$API/status/$job_id")"
  case "$(json status <<<"$status")" in
    completed) return 0 ;;
    failed) fail "job $job_id failed: $(json error <<<"$status")" ;;
    *) return 1 ;;
  esac
}
wait_until "job $job_id to complete" job_finished
ok "job completed by $(json worker <<<"$status") in $(json timings.total_ms <<<"$status") ms:" \
  "$(json result.width <<<"$status")x$(json result.height <<<"$status") $(json result.format <<<"$status")"

# 4. The result through its presigned URL, fetched from this machine
download_url="$(json result.download_url <<<"$status")"
[ -n "$download_url" ] || fail "the completed job has no download_url: $status"
curl -fsS --max-time 30 -o "$WORK_DIR/result" "$download_url" || fail "presigned URL did not download: $download_url"
size="$(wc -c <"$WORK_DIR/result" | tr -d ' ')"
[ "$size" = "$(json result.bytes <<<"$status")" ] || fail "downloaded $size bytes, the job says $(json result.bytes <<<"$status")"
[ "$(head -c 2 "$WORK_DIR/result" | od -An -tx1 | tr -d ' \n')" = ffd8 ] || fail "the result is not a JPEG"
ok "downloaded the result through its presigned URL ($size bytes, a JPEG) from ${download_url%%\?*}"

# 5. The consoles
code="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$CONSOLE" || true)"
[ "$code" = 200 ] || fail "object store console $CONSOLE answered ${code:-nothing}"
ok "object store console answers at $CONSOLE"
overview="$(curl -fsS --max-time 10 -u "$MANAGEMENT_USER:$MANAGEMENT_PASSWORD" "$MANAGEMENT/api/overview")" \
  || fail "RabbitMQ management at $MANAGEMENT refused $MANAGEMENT_USER or did not answer"
ok "RabbitMQ management answers at $MANAGEMENT (RabbitMQ $(json rabbitmq_version <<<"$overview"))"

# 6. Scaling
before="$(running_workers)"
scale_workers "$WORKERS"
wait_until "$WORKERS consumers on $WORK_QUEUE" consumers_are "$WORKERS"
ok "scaled from $before to $WORKERS workers: $WORKERS consumers on $WORK_QUEUE"
scale_workers "$before"
wait_until "$before consumers on $WORK_QUEUE again" consumers_are "$before"
ok "scaled back to $before workers"

echo "==> all checks passed"
