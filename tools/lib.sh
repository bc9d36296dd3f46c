# Shell helpers shared by tools/stack.sh and .ci/run: source it, do not run it.

# True when something accepts TCP connections on host:port.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits until host:port accepts connections, for at most `seconds`; otherwise says what did not open.
wait_for_port() { # host port seconds what
  local i
  for ((i = 0; i < $3 * 2; i++)); do port_open "$1" "$2" && return 0; sleep 0.5; done
  echo "error: $4 did not open $1:$2 within $3 s" >&2
  return 1
}
