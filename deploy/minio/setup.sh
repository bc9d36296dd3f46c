#!/bin/bash
# docker-compose.yml's storage-setup job, run in MinIO's mc image with the root credentials, which
# no service gets: the bucket; one key per service (imgpipe-api, -worker, -notification and
# -presign, which signs download links) allowed only what that service does (policies/<service>.json);
# and a lifecycle rule that deletes originals, results, job records and their cancel requests,
# idempotency claims and index entries RETENTION_DAYS after they were written. Every step can run again: `docker compose up` runs it each time.
#
# Reads MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, S3_BUCKET, RETENTION_DAYS (days, may be fractional:
# rounded up; 0: nothing expires) and S3_<SERVICE>_SECRET_KEY for each service.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENDPOINT="${MINIO_ENDPOINT:-http://minio:9000}"
SERVICES=(api worker notification presign)
# The prefixes api/retention.py sweeps natively.
EXPIRING_PREFIXES=(jobs/ originals/ results/ cancels/ idempotency/ index/)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

render() { # policy template: its text with the bucket's name
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "${line//'${S3_BUCKET}'/$S3_BUCKET}"
  done <"$1"
}

whole_days() { # RETENTION_DAYS: whole days, rounded up
  local whole="${1%%.*}" fraction=""
  [[ "$1" == *.* ]] && fraction="${1#*.}"
  if ! [[ "${whole:-0}" =~ ^[0-9]+$ && "$fraction" =~ ^[0-9]*$ ]]; then
    echo "RETENTION_DAYS must be a number of days, not '$1'" >&2
    return 1
  fi
  whole=$((10#${whole:-0}))
  [[ "$fraction" =~ [1-9] ]] && whole=$((whole + 1))
  echo "$whole"
}

lifecycle() { # days: MinIO's lifecycle configuration expiring each prefix after that many days
  local prefix rules=()
  for prefix in "${EXPIRING_PREFIXES[@]}"; do
    rules+=("{\"ID\":\"imgpipe-expire-${prefix%/}\",\"Status\":\"Enabled\",\"Filter\":{\"Prefix\":\"$prefix\"},\"Expiration\":{\"Days\":$1}}")
  done
  local IFS=,
  printf '{"Rules":[%s]}\n' "${rules[*]}"
}

days="$(whole_days "${RETENTION_DAYS:-30}")"

mc alias set local "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$S3_BUCKET"

for service in "${SERVICES[@]}"; do
  key="imgpipe-$service"
  policy="imgpipe-$service-access"
  secret_name="S3_${service^^}_SECRET_KEY"
  secret="${!secret_name:-}"
  [ -n "$secret" ] || { echo "$secret_name is not set" >&2; exit 1; }
  render "$HERE/policies/$service.json" >"$WORK/$service.json"
  mc admin policy create local "$policy" "$WORK/$service.json" >/dev/null
  mc admin user add local "$key" "$secret" >/dev/null
  # Attaching a policy that is attached already fails: then the key must show it.
  if ! attached="$(mc admin policy attach local "$policy" --user "$key" 2>&1)"; then
    [[ "$(mc admin user info local "$key")" == *"$policy"* ]] || { echo "$attached" >&2; exit 1; }
  fi
  echo "key $key: policy $policy"
done

if [ "$days" -gt 0 ]; then
  lifecycle "$days" >"$WORK/lifecycle.json"
  mc ilm rule import "local/$S3_BUCKET" <"$WORK/lifecycle.json" >/dev/null
  echo "lifecycle: ${EXPIRING_PREFIXES[*]} expire $days days after they are written"
else
  mc ilm rule rm --all --force "local/$S3_BUCKET" >/dev/null 2>&1 || true
  echo "lifecycle: nothing expires (RETENTION_DAYS=0)"
fi
