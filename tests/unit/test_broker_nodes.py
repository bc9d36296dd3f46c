"""Several broker nodes: parsing RABBITMQ_HOSTS, one connection parameter set per node, and the
management API client moving to the next node when one cannot be reached."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from pydantic import ValidationError

from common.amqp import connection_parameters
from common.observability.management import FailoverTransport, management_client
from common.settings import BrokerNode, Settings, parse_broker_nodes
from harness.processes import free_port


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_broker_nodes_default_to_the_single_host() -> None:
    assert settings(rabbitmq_host="mq", rabbitmq_port=5673).broker_nodes == [BrokerNode("mq", 5673)]


def test_broker_nodes_come_from_rabbitmq_hosts_in_order() -> None:
    nodes = settings(rabbitmq_hosts=" h1:5672, h2 ,10.0.0.3:5700,[::1]:5701", rabbitmq_port=5999).broker_nodes
    assert nodes == [
        BrokerNode("h1", 5672),
        BrokerNode("h2", 5999),
        BrokerNode("10.0.0.3", 5700),
        BrokerNode("::1", 5701),
    ]


def test_management_nodes_use_the_management_port() -> None:
    values = settings(rabbitmq_hosts="h1:5672,h2:5673", rabbitmq_management_port=15680)
    assert values.broker.management_nodes == [BrokerNode("h1", 15680), BrokerNode("h2", 15680)]
    assert values.broker.management_url == "http://h1:15680/api"
    assert settings(rabbitmq_hosts="[::1]:5672").broker.management_url == "http://[::1]:15672/api"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("h1:5672,,h2", "''"),
        ("h1:0", "'h1:0'"),
        ("h1:70000", "'h1:70000'"),
        ("h1:port", "'h1:port'"),
        ("user@h1:5672", "'user@h1:5672'"),
        ("http://h1:5672", "'http://h1:5672'"),
        ("::1:5672", "'::1:5672'"),
        ("h1 h2", "'h1 h2'"),
        ("-h1", "'-h1'"),
    ],
)
def test_rabbitmq_hosts_refuses_what_is_not_host_port(value: str, named: str) -> None:
    with pytest.raises(ValidationError) as error:
        settings(rabbitmq_hosts=value)
    assert f"not a host[:port] broker address: {named}" in str(error.value)


def test_rabbitmq_hosts_refuses_too_many_nodes() -> None:
    with pytest.raises(ValueError, match="at most 16 broker nodes, got 17"):
        parse_broker_nodes(",".join(f"h{i}" for i in range(17)), 5672)


def test_connection_parameters_one_per_node_with_the_same_credentials() -> None:
    params = connection_parameters(
        settings(
            rabbitmq_hosts="h1:5672,h2:5673", rabbitmq_user="u", rabbitmq_password="p", rabbitmq_vhost="v"
        ).broker,
        "test",
    )
    assert [(p.host, p.port, p.virtual_host) for p in params] == [("h1", 5672, "v"), ("h2", 5673, "v")]
    assert {(p.credentials.username, p.credentials.password, p.connection_attempts) for p in params} == {
        ("u", "p", 1)
    }


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f'{{"path": "{self.path}", "host": "{self.headers["Host"]}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def live_api():
    server = HTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield BrokerNode("127.0.0.1", server.server_port)
    server.shutdown()
    server.server_close()


def test_management_client_skips_a_node_that_refuses_connections(live_api: BrokerNode) -> None:
    dead = BrokerNode("127.0.0.1", free_port())
    values = settings(
        rabbitmq_hosts=f"127.0.0.1:{dead.port},127.0.0.1:{live_api.port}", rabbitmq_management_port=dead.port
    )
    transport = FailoverTransport([dead, live_api])
    with httpx.Client(base_url=values.broker.management_url, transport=transport) as client:
        response = client.get("/queues/%2F")
        assert response.status_code == 200
        assert response.json() == {"path": "/api/queues/%2F", "host": f"127.0.0.1:{live_api.port}"}
        assert transport.current == live_api  # asked first next time


def test_management_client_raises_the_connect_error_when_every_node_is_down() -> None:
    values = settings(
        rabbitmq_hosts=f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
        rabbitmq_management_port=free_port(),
    )
    with management_client(values.broker, timeout=2) as client, pytest.raises(httpx.ConnectError):
        client.get("/overview")


def test_failover_transport_needs_a_node() -> None:
    with pytest.raises(ValueError, match="no management API node"):
        FailoverTransport([])
