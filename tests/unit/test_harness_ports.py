"""Fixed ports the harness picks for SeaweedFS and broker clusters stay below the range the kernel
gives outgoing connections: a port there can be taken by a connection's local end between the
check that it is free and the server's bind (a volume server once died of it)."""

from harness.broker_cluster import free_shared_ports
from harness.objectstore import free_s3_port
from harness.processes import ephemeral_port_floor
from tools.objectstore import MAX_VOLUME_SERVERS, ports_used


def test_every_seaweedfs_port_of_a_cluster_is_below_the_ephemeral_range() -> None:
    floor = ephemeral_port_floor()
    for _ in range(20):
        assert max(ports_used(free_s3_port(MAX_VOLUME_SERVERS), MAX_VOLUME_SERVERS)) < floor


def test_broker_cluster_ports_are_below_the_ephemeral_range() -> None:
    floor = ephemeral_port_floor()
    for _ in range(20):
        assert all(port < floor for port in free_shared_ports(("127.0.0.1",), 2))
