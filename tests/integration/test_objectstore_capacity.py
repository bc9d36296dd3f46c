"""Every bucket is a SeaweedFS collection with volumes of its own, and SeaweedFS's default cap on
volumes comes from free disk space: on a machine with 80 GB free, the 79th bucket could take no
object, and a test run that makes a bucket per module failed from there on with 503s. The launcher's
--max-volumes sets the cap; the tests' store sets it high. And a cluster that cannot start leaves
nothing running."""

import itertools
import socket
from pathlib import Path

import pytest

from common.storage import StorageUnavailable
from harness.objectstore import PrivateObjectStore, PrivateStorageCluster, object_store
from harness.processes import GiveUp, port_open
from tools.objectstore import GRPC_OFFSET, ports_used, volume_port

pytestmark = pytest.mark.integration


def buckets_that_take_an_object(endpoint: str, up_to: int) -> int:
    for count in itertools.count():
        if count == up_to:
            return count
        store = object_store(endpoint, f"capacity-{count}")
        store.ensure_bucket()
        try:
            store.put("probe", b"x", "application/octet-stream")
        except StorageUnavailable:
            return count
    raise AssertionError("unreachable")


@pytest.mark.parametrize("max_volumes, fits_all", [(3, False), (60, True)])
def test_the_volume_cap_bounds_the_buckets_that_take_objects(
    tmp_path: Path, max_volumes: int, fits_all: bool
) -> None:
    store = PrivateObjectStore(tmp_path / "s3", max_volumes=max_volumes).start()
    try:
        assert (buckets_that_take_an_object(store.endpoint, up_to=12) == 12) is fits_all
    finally:
        store.stop()



def test_a_cluster_member_that_cannot_start_stops_the_others(tmp_path: Path) -> None:
    # Its gRPC port taken: the volume server exits at once, as one did when a connection held the port.
    cluster = PrivateStorageCluster(tmp_path / "s3")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", volume_port(cluster.port, 1) + GRPC_OFFSET))
        blocker.listen()
        with pytest.raises(GiveUp, match="volume-1 exited"):
            cluster.start()
    assert not any(port_open(port) for port in ports_used(cluster.port, cluster.volume_servers))
