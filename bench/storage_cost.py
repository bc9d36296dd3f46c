"""`python -m bench.storage_cost`: the CPU one S3 request costs the object store and the client, by kind.

A private SeaweedFS (as the bench and the tests start it) and the services' own client
(common/storage.py, minio-py); `--count` requests of each kind: PUT and GET of an original-sized object
(600 KB, a 2K photo) and of a job-record-sized one (2 KB). CPU from /proc for the store's process, from
the process clock for the client. `--unsigned` repeats the PUTs with the payload left out of the
signature (UNSIGNED-PAYLOAD), to tell the signature's share. `--profile` has SeaweedFS write its Go
CPU profile and prints where the store's CPU went over the whole run, by package and by function;
`--size` and `--puts-only` narrow the run to what is to be profiled.
"""

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import pprof
from harness import procs
from harness.objectstore import PrivateObjectStore, object_store

SIZES = {"600 KB": 600_000, "2 KB": 2_000}


def measure(
    server_pid: int, request: Callable[[int], object], count: int, server: str = "store"
) -> dict[str, float]:
    """CPU per request of this process and of `server_pid` (reported as `<server>_cpu_ms`)."""
    request(-1)  # connection and first-call costs
    client, served = time.process_time(), procs.cpu_seconds(server_pid)
    for index in range(count):
        request(index)
    return {
        "client_cpu_ms": round((time.process_time() - client) * 1000 / count, 2),
        f"{server}_cpu_ms": round((procs.cpu_seconds(server_pid) - served) * 1000 / count, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--unsigned", action="store_true")
    parser.add_argument("--profile", action="store_true", help="SeaweedFS's CPU profile of the run, summarised")
    parser.add_argument("--top", type=int, default=8, help="lines of the profile's summary per table")
    parser.add_argument("--size", choices=list(SIZES), action="append", help="only this object size (repeatable)")
    parser.add_argument("--puts-only", action="store_true", help="no GETs (a profile of the writes alone)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="imgpipe-storage-cost-"))
    (work / "s3").mkdir()
    profile = work / "seaweedfs.pprof" if args.profile else None
    store = PrivateObjectStore(work / "s3", cpu_profile=profile).start()
    try:
        assert store._process is not None  # the store's process is metered
        pid = store._process.pid
        s3 = object_store(store.endpoint, "cost")
        s3.ensure_bucket()
        for label, size in SIZES.items():
            if args.size and label not in args.size:
                continue
            data = os.urandom(size)

            def put(index: int, data: bytes = data, label: str = label) -> None:
                s3.put(f"{label}/{index}", data, "image/jpeg")

            def get(index: int, label: str = label) -> bytes:
                return s3.get(f"{label}/{max(index, 0)}")

            print(f"PUT {label}: {measure(pid, put, args.count)}", flush=True)
            if not args.puts_only:
                print(f"GET {label}: {measure(pid, get, args.count)}", flush=True)
            if args.unsigned:
                import minio.api

                signed = minio.api.sha256_hash
                minio.api.sha256_hash = lambda data: "UNSIGNED-PAYLOAD"
                try:
                    print(f"PUT {label}, UNSIGNED-PAYLOAD: {measure(pid, put, args.count)}", flush=True)
                finally:
                    minio.api.sha256_hash = signed
    finally:
        try:
            store.stop()
        except AssertionError as exc:
            print(f"the store was slow to stop: {exc}")
        if profile is not None:
            summarise(pprof.read(profile), args.top)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def summarise(profile: pprof.CpuProfile, top: int) -> None:
    total = profile.total_ns
    print(f"SeaweedFS CPU profile: {total / 1e9:.2f} s sampled over the run")
    if not total:
        return
    for title, shares in (("by package", profile.by_package()), ("by function", profile.flat())):
        print(f"{title}: " + "; ".join(f"{name} {ns * 100 / total:.1f} %" for name, ns in shares.most_common(top)))


if __name__ == "__main__":
    raise SystemExit(main())
