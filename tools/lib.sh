# Shell helpers shared by tools/stack.sh, tools/compose_smoke.sh and .ci/run: source it, do not run it.

# True when something accepts TCP connections on host:port.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits until host:port accepts connections, for at most `seconds`; otherwise says what did not open.
wait_for_port() { # host port seconds what
  local i
  for ((i = 0; i < $3 * 2; i++)); do port_open "$1" "$2" && return 0; sleep 0.5; done
  echo "error: $4 did not open $1:$2 within $3 s" >&2
  return 1
}

# Exports the NAME=value lines of a .env file whose NAME is not set already, so the environment wins
# over the file (as in the services' settings and in docker compose). Values are taken as written,
# up to the end of the line; one layer of quotes is removed.
load_dotenv() { # file
  local line name value
  [ -f "$1" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    name="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    [ -n "${!name+set}" ] && continue
    if [[ "$value" =~ ^\"(.*)\"$ ]] || [[ "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    export "$name=$value"
  done <"$1"
}
