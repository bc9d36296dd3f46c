#!/usr/bin/env bash
# The native stack (no Docker): RabbitMQ, SeaweedFS as the S3 store, the API, the notifier and the
# workers, under supervisord. Used by the Makefile: run | stop | scale N | ps | logs [service] | clean.
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PROJECT_DIR
. "$PROJECT_DIR/tools/lib.sh"  # port_open, wait_for_port, load_dotenv
# The same .env the services read, loaded here so the ports below follow it; the environment wins
# (`RABBITMQ_HOSTS=... make run` with an empty RABBITMQ_HOSTS= in .env).
load_dotenv "$PROJECT_DIR/.env"
export RUN_DIR="${RUN_DIR:-$PROJECT_DIR/.run}"
export VENV="${VENV:-$PROJECT_DIR/.venv}"
export API_HOST="${API_HOST:-127.0.0.1}"
export API_PORT="${API_PORT:-8000}"
export S3_PORT="${S3_PORT:-8333}"
export S3_ENDPOINT="${S3_ENDPOINT:-127.0.0.1:$S3_PORT}"
# SeaweedFS's filer browser, linked from the console's Storage page.
export STORAGE_CONSOLE_URL="${STORAGE_CONSOLE_URL:-http://localhost:$((S3_PORT + 1002))/buckets/}"
export MAX_WORKERS="${MAX_WORKERS:-16}"
# The repository's example presets (presets.yaml): what `preset=avatar` and the others expand to.
export PRESETS_FILE="${PRESETS_FILE:-$PROJECT_DIR/presets.yaml}"
# single: SeaweedFS in one process; cluster: master, STORAGE_VOLUME_SERVERS volume servers (each
# file on two of them, replication 001) and a filer with the S3 gateway, on the same S3 port.
STORAGE="${STORAGE:-single}"
export STORAGE_VOLUME_SERVERS="${STORAGE_VOLUME_SERVERS:-3}"
RABBITMQ_HOST="${RABBITMQ_HOST:-127.0.0.1}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
RABBITMQ_MANAGEMENT_PORT="${RABBITMQ_MANAGEMENT_PORT:-15672}"
CONF="$PROJECT_DIR/deploy/supervisord.conf"
ctl() { "$VENV/bin/supervisorctl" -c "$CONF" "$@"; }
say() { printf '==> %s\n' "$*"; }

supervisor_running() { [ -S "$RUN_DIR/supervisor.sock" ] && ctl pid >/dev/null 2>&1; }

# RABBITMQ_HOSTS (a cluster's nodes, h1:5672,h2,...): the stack starts no broker; one node must answer.
ensure_cluster_broker() {
  local node host port
  IFS=',' read -ra nodes <<<"$RABBITMQ_HOSTS"
  for node in "${nodes[@]}"; do
    node="${node// /}"
    host="${node%:*}"; port="${node##*:}"
    [ "$host" = "$node" ] && port="$RABBITMQ_PORT"
    if port_open "${host//[\[\]]/}" "$port"; then say "RabbitMQ cluster node up on $node"; return 0; fi
  done
  echo "error: no node of RABBITMQ_HOSTS ($RABBITMQ_HOSTS) answers" >&2
  exit 1
}

ensure_broker() {
  if [ -n "${RABBITMQ_HOSTS:-}" ]; then ensure_cluster_broker; return; fi
  if port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT"; then
    say "RabbitMQ is up on $RABBITMQ_HOST:$RABBITMQ_PORT"
  elif [ "$RABBITMQ_HOST" != "127.0.0.1" ] && [ "$RABBITMQ_HOST" != "localhost" ]; then
    echo "error: RabbitMQ at $RABBITMQ_HOST:$RABBITMQ_PORT is not reachable (RABBITMQ_HOST points elsewhere)" >&2
    exit 1
  else
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing rabbitmq-server from the OS packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
      else
        echo "error: RabbitMQ is not running and not installed. Install it, e.g." >&2
        echo "  sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached" >&2
        echo "or point RABBITMQ_HOST/RABBITMQ_PORT at a running broker." >&2
        exit 1
      fi
    fi
    say "starting RabbitMQ"
    rabbitmq-server -detached
    touch "$RUN_DIR/started-rabbitmq"
    wait_for_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" 60 RabbitMQ
  fi
  if ! port_open "$RABBITMQ_HOST" "$RABBITMQ_MANAGEMENT_PORT"; then
    if command -v rabbitmq-plugins >/dev/null 2>&1; then
      say "enabling the RabbitMQ management plugin"
      rabbitmq-plugins enable rabbitmq_management >/dev/null
      wait_for_port "$RABBITMQ_HOST" "$RABBITMQ_MANAGEMENT_PORT" 60 "RabbitMQ management"
    else
      echo "warning: the RabbitMQ management API is not on :$RABBITMQ_MANAGEMENT_PORT (monitoring needs it)" >&2
    fi
  fi
}

scale_workers() { # N
  local n="$1" i
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -gt "$MAX_WORKERS" ]; then
    echo "error: WORKERS must be a number from 0 to $MAX_WORKERS (MAX_WORKERS)" >&2
    exit 1
  fi
  local start=() stop=()
  for ((i = 0; i < MAX_WORKERS; i++)); do
    if [ "$i" -lt "$n" ]; then start+=("worker:worker-$i"); else stop+=("worker:worker-$i"); fi
  done
  # Stopping sends SIGTERM: each worker finishes its current job before it exits.
  [ "${#stop[@]}" -gt 0 ] && ctl stop "${stop[@]}" >/dev/null
  [ "${#start[@]}" -gt 0 ] && ctl start "${start[@]}" >/dev/null
  say "workers: $n running"
}

wait_ready() {
  local i
  for ((i = 0; i < 120; i++)); do
    if curl -fsS "http://$API_HOST:$API_PORT/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: the API is not ready after 60 s; see 'make logs' and $RUN_DIR/logs" >&2
  curl -sS "http://$API_HOST:$API_PORT/ready" >&2 || true
  exit 1
}

start_storage() {
  case "$STORAGE" in
    single) ctl start storage >/dev/null ;;
    cluster)
      if ! [[ "$STORAGE_VOLUME_SERVERS" =~ ^[2-8]$ ]]; then
        echo "error: STORAGE_VOLUME_SERVERS must be 2 to 8 (3 keeps writes going when one is lost)" >&2
        exit 1
      fi
      say "starting SeaweedFS as a cluster: master, $STORAGE_VOLUME_SERVERS volume servers, filer + S3"
      ctl start storage-master >/dev/null
      ctl start "storage-volume:*" >/dev/null
      ctl start storage-filer >/dev/null ;;
    *) echo "error: STORAGE must be single or cluster, not '$STORAGE'" >&2; exit 1 ;;
  esac
  wait_for_port 127.0.0.1 "$S3_PORT" 60 "the object store (SeaweedFS, $STORAGE)"
}

cmd_run() {
  local workers="${1:-1}"
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/data"
  ensure_broker
  if supervisor_running; then
    ctl reread >/dev/null && ctl update >/dev/null
  else
    say "starting supervisord"
    "$VENV/bin/supervisord" -c "$CONF"
    for _ in $(seq 1 40); do supervisor_running && break; sleep 0.25; done
  fi
  start_storage
  ctl start api notification >/dev/null
  scale_workers "$workers"
  wait_ready
  cat <<MSG
==> ready
    API            http://localhost:$API_PORT  (docs: http://localhost:$API_PORT/docs)
    RabbitMQ       http://localhost:$RABBITMQ_MANAGEMENT_PORT  (guest/guest)
    Object store   S3 API on http://localhost:$S3_PORT  (browse: http://localhost:$((S3_PORT + 1002))/buckets/)
    Logs           make logs   (files in $RUN_DIR/logs)
MSG
}

cmd_stop() {
  if supervisor_running; then
    say "stopping the services (workers finish their current job first)"
    local pid
    pid="$(cat "$RUN_DIR/supervisord.pid" 2>/dev/null || true)"
    ctl shutdown >/dev/null
    # supervisord exits once every service has stopped (workers may take up to stopwaitsecs).
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.25; done
  else
    say "nothing running"
  fi
  if [ -f "$RUN_DIR/started-rabbitmq" ]; then
    say "stopping the RabbitMQ that 'make run' started"
    rabbitmqctl stop >/dev/null 2>&1 || true
    rm -f "$RUN_DIR/started-rabbitmq"
  fi
}

cmd_clean() {
  local started_broker=""
  [ -f "$RUN_DIR/started-rabbitmq" ] && started_broker=1
  rm -f "$RUN_DIR/started-rabbitmq"  # stopped below, once its queues are gone
  cmd_stop
  if port_open "$RABBITMQ_HOST" "$RABBITMQ_MANAGEMENT_PORT"; then
    say "deleting the system's queues and exchanges"
    "$VENV/bin/python" -m tools.broker reset
  fi
  if [ -n "$started_broker" ]; then
    say "stopping the RabbitMQ that 'make run' started"
    rabbitmqctl stop >/dev/null 2>&1 || true
  fi
  say "removing $RUN_DIR (stored images, job records, logs)"
  rm -rf "$RUN_DIR"
}

case "${1:-}" in
  run) cmd_run "${2:-1}" ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  scale)
    supervisor_running || { echo "error: not running; use 'make run WORKERS=${2:-1}'" >&2; exit 1; }
    scale_workers "${2:?usage: stack.sh scale N}" ;;
  ps)
    if supervisor_running; then
      ctl status | grep -v "Not started" || true
    else
      say "nothing running"
    fi ;;
  logs)
    shopt -s nullglob
    files=("$RUN_DIR"/logs/"${2:-}"*.log)
    [ "${#files[@]}" -gt 0 ] || { echo "no logs yet in $RUN_DIR/logs" >&2; exit 1; }
    tail -n 40 -F "${files[@]}" ;;
  *) echo "usage: $0 run [WORKERS] | stop | scale N | ps | logs [service] | clean" >&2; exit 2 ;;
esac
