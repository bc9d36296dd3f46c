#!/usr/bin/env bash
# Builds, once, a Debian 13 (trixie) root holding RabbitMQ 4 (the series compose runs), for the tests
# that run on RabbitMQ 4 as well as on the machine's broker: harness/private_broker.py starts private
# nodes inside it with chroot. Prints the root's path. A built root is reused; a build that was
# interrupted is started over.
#
#   tools/rabbitmq4_root.sh [ROOT]     default: $RABBITMQ4_ROOT, else .cache/rabbitmq4-root
#
# Needs root (debootstrap, chroot) and the Debian mirror apt uses (DEBIAN_MIRROR overrides it);
# installs debootstrap with apt if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

root="${1:-${RABBITMQ4_ROOT:-.cache/rabbitmq4-root}}"
suite=trixie
# Written last, once the root holds a RabbitMQ 4: its absence marks a root to build.
ready="$root/.imgpipe-rabbitmq-version"

if [ -s "$ready" ]; then
  echo "$root"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "building the RabbitMQ 4 root needs root (debootstrap, chroot)" >&2
  exit 1
fi

# The first Debian archive in apt's sources (deb822 .sources files, then sources.list).
debian_mirror() {
  local uri
  uri=$(grep -h -E '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '{print $2}' | grep -v -E 'security|updates' | grep -m1 -E '/debian/?$' || true)
  if [ -z "$uri" ]; then
    uri=$(grep -h -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | sed -E 's/\[[^]]*\]//' | awk '{print $2}' | grep -v -E 'security|updates' | grep -m1 -E '/debian/?$' || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9  # another session building the same root: wait for it, then reuse its work
if [ -s "$ready" ]; then
  echo "$root"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
partial="$root.partial"
for leftover in "$partial" "$root"; do
  if mountpoint -q "$leftover/proc" 2>/dev/null; then umount "$leftover/proc"; fi
done
rm -rf "$partial" "$root"
started=$(date +%s)
echo "building a Debian $suite root with rabbitmq-server from $mirror in $root (about a minute)" >&2
if ! debootstrap --variant=minbase --include=rabbitmq-server "$suite" "$partial" "$mirror" >"$root.log" 2>&1; then
  tail -n 20 "$root.log" >&2
  echo "debootstrap failed; the whole log is in $root.log" >&2
  exit 1
fi
version=$(chroot "$partial" dpkg-query -W -f '${Version}' rabbitmq-server)
case "$version" in
  4.*) ;;
  *) echo "the $suite root holds rabbitmq-server $version, not a 4.x" >&2; exit 1 ;;
esac
mv "$partial" "$root"
echo "$version" >"$ready"
echo "RabbitMQ $version root built in $(( $(date +%s) - started ))s" >&2
echo "$root"
