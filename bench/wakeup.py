"""`python -m bench.wakeup`: what this host charges a process for waking up after being idle.

A one-byte round trip over loopback TCP (TCP_NODELAY) between this process and a child, after
sleeping `gap` ms each time: back to back both stay on CPU, after a gap both have gone idle and
the scheduler (and, in a virtual machine, the hypervisor) must wake them. A job handled one at a
time crosses many processes (client, API, the S3 store's own hops, RabbitMQ, a worker and its image
process, the notifier), each idle since the last job, and pays this on every hop; a request that
one process answers, as thumbor's, pays it about once. Read a one-at-a-time p50 against it.
"""

import argparse
import json
import multiprocessing
import socket
import statistics
import time
from multiprocessing.connection import Connection

GAPS_MS = (0.0, 1.0, 10.0, 40.0, 200.0)


def _echo(ready: Connection) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        ready.send(listener.getsockname()[1])
        peer, _ = listener.accept()
        with peer:
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := peer.recv(64):
                peer.sendall(data)


def round_trips(gaps_ms: tuple[float, ...] = GAPS_MS, count: int = 40) -> dict[str, dict[str, float]]:
    """Per gap: the median and the highest round trip, in microseconds."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=_echo, args=(sender,), daemon=True)
    child.start()
    try:
        with socket.create_connection(("127.0.0.1", receiver.recv()), timeout=10) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            figures = {}
            for gap in gaps_ms:
                times = []
                for _ in range(count):
                    time.sleep(gap / 1000)
                    started = time.perf_counter()
                    connection.sendall(b"x")
                    if connection.recv(64) != b"x":
                        raise RuntimeError("the echo process answered something else")
                    times.append((time.perf_counter() - started) * 1e6)
                figures[f"{gap:g}"] = {"p50_us": round(statistics.median(times)), "max_us": round(max(times))}
            return figures
    finally:
        child.terminate()
        child.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="round trips per gap")
    args = parser.parse_args(argv)
    figures = round_trips(count=args.count)
    for gap, figure in figures.items():
        print(f"idle {gap} ms before: round trip p50 {figure['p50_us']} µs, max {figure['max_us']} µs")
    print(json.dumps({"round_trip_us_by_idle_ms": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
