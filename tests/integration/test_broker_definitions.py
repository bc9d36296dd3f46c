"""deploy/rabbitmq/definitions.json loaded into a RabbitMQ node of the test's own, as compose's
broker-setup job loads it (`python -m common.provisioning`): every service's user can do what its
service needs and nothing more, guest does not exist, and the real services run on those users."""

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAuthenticationError

from common.clients import new_webhook_secret
from common.provisioning import render_definitions, weak_secrets
from harness.broker import BrokerEndpoint, BrokerVhost
from harness.private_broker import PrivateBroker
from harness.processes import PROJECT_DIR, start_notifier, start_worker, wait_for
from harness.system import System, system_env
from harness.webhooks import WebhookReceiver

pytestmark = pytest.mark.integration

DEFINITIONS = PROJECT_DIR / "deploy" / "rabbitmq" / "definitions.json"
RABBITMQ_CONF = PROJECT_DIR / "deploy" / "rabbitmq" / "rabbitmq.conf"
VHOST = "imgpipe-definitions"
ADMIN = "imgpipe-admin"
PASSWORDS = {
    "RABBITMQ_API_PASSWORD": secrets.token_urlsafe(18),
    "RABBITMQ_WORKER_PASSWORD": secrets.token_urlsafe(18),
    "RABBITMQ_NOTIFICATION_PASSWORD": secrets.token_urlsafe(18),
}
USERS = {
    "imgpipe-api": PASSWORDS["RABBITMQ_API_PASSWORD"],
    "imgpipe-worker": PASSWORDS["RABBITMQ_WORKER_PASSWORD"],
    "imgpipe-notification": PASSWORDS["RABBITMQ_NOTIFICATION_PASSWORD"],
}

# Settings that shape the topology (delay queues): the services and the set-up job must agree, as
# compose gives both the same values.
TOPOLOGY_SETTINGS = {"RETRY_BASE_DELAY_MS": "200", "WEBHOOK_BACKOFF_S": "0.1", "WEBHOOK_ATTEMPTS": "2"}

# What each service does on the bus (publish to an exchange, read from a queue); nothing else is allowed.
PROBES = [
    ("publish", "images.jobs"),
    ("publish", "images.retry"),
    ("publish", "images.dlx"),
    ("publish", "images.events"),
    ("read", "images.jobs.work"),
    ("read", "images.jobs.retried"),
    ("read", "images.jobs.dead"),
    ("read", "images.notifications"),
    ("declare", "images.probe"),
    ("follow", "images.events"),  # an exclusive server-named queue bound to the exchange (the API's live events)
]
NEEDS = {
    "imgpipe-api": {
        ("publish", "images.jobs"), ("publish", "images.events"), ("read", "images.jobs.dead"),
        ("follow", "images.events"),
    },
    "imgpipe-worker": {
        ("publish", "images.retry"), ("publish", "images.dlx"), ("publish", "images.events"),
        ("read", "images.jobs.work"), ("read", "images.jobs.retried"),
    },
    "imgpipe-notification": {("publish", "images.retry"), ("read", "images.notifications")},
}


@dataclass
class Provisioned:
    broker: PrivateBroker
    admin_password: str

    @property
    def admin(self) -> BrokerEndpoint:
        endpoint = self.broker.endpoint
        return BrokerEndpoint(endpoint.host, endpoint.port, endpoint.management_port, ADMIN, self.admin_password)

    def connect(self, user: str, password: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(
            pika.ConnectionParameters(
                self.broker.endpoint.host, self.broker.endpoint.port, VHOST, pika.PlainCredentials(user, password)
            )
        )


def provision(endpoint: BrokerEndpoint, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m common.provisioning` as compose's broker-setup runs it."""
    return subprocess.run(
        [sys.executable, "-m", "common.provisioning", str(DEFINITIONS)], cwd=PROJECT_DIR, capture_output=True,
        text=True, timeout=120, check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "S3_"))},
            "RABBITMQ_HOST": endpoint.host,
            "RABBITMQ_PORT": str(endpoint.port),
            "RABBITMQ_MANAGEMENT_PORT": str(endpoint.management_port),
            "RABBITMQ_USER": endpoint.user,
            "RABBITMQ_PASSWORD": endpoint.password,
            "RABBITMQ_VHOST": VHOST,
            **TOPOLOGY_SETTINGS,
            **PASSWORDS,
            **env,
        },
    )


@pytest.fixture(scope="module")
def provisioned() -> Iterator[Provisioned]:
    if not PrivateBroker.available():
        pytest.skip("rabbitmq-server is not installed")
    admin_password = secrets.token_urlsafe(18)
    # The compose file's own rabbitmq.conf, with the default user the image makes of RABBITMQ_DEFAULT_USER.
    config = f"{RABBITMQ_CONF.read_text()}\ndefault_user = {ADMIN}\ndefault_pass = {admin_password}\n"
    broker = PrivateBroker(config=config)
    broker.start()
    try:
        setup = Provisioned(broker, admin_password)
        result = provision(setup.admin)
        assert result.returncode == 0, result.stdout + result.stderr + broker.log()
        yield setup
    finally:
        broker.remove()


def allowed(setup: Provisioned, user: str, probe: tuple[str, str]) -> bool:
    """True if the broker lets `user` do `probe`; False if it refuses with ACCESS_REFUSED."""
    action, name = probe
    with setup.connect(user, USERS[user]) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            if action == "publish":
                # Routed nowhere but the fanout dead-letter exchange's queue, emptied below.
                channel.basic_publish(name, "probe", b"probe")
            elif action == "read":
                channel.basic_cancel(channel.basic_consume(name, lambda *_: None))
            elif action == "follow":
                queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
                channel.queue_bind(queue, name, routing_key="#")
                channel.basic_cancel(channel.basic_consume(queue, lambda *_: None))
            else:
                channel.queue_declare(name, auto_delete=True)
        except ChannelClosedByBroker as exc:
            assert exc.reply_code == 403, exc
            return False
    return True


@pytest.mark.parametrize("user", sorted(USERS))
def test_each_service_user_can_do_its_work_and_nothing_more(provisioned: Provisioned, user: str) -> None:
    try:
        seen = {probe: allowed(provisioned, user, probe) for probe in PROBES}
    finally:
        with provisioned.connect(ADMIN, provisioned.admin_password) as connection:
            connection.channel().queue_purge("images.jobs.dead")
    assert seen == {probe: probe in NEEDS[user] for probe in PROBES}


@pytest.mark.parametrize(
    ("user", "status"), [("imgpipe-api", 200), ("imgpipe-worker", 401), ("imgpipe-notification", 401)]
)
def test_only_the_api_reads_the_management_api(provisioned: Provisioned, user: str, status: int) -> None:
    endpoint = provisioned.broker.endpoint
    response = httpx.get(
        f"http://{endpoint.host}:{endpoint.management_port}/api/queues/{VHOST}", auth=(user, USERS[user]), timeout=10
    )
    assert response.status_code == status
    if status == 200:
        assert "images.jobs.work" in {queue["name"] for queue in response.json()}


def test_guest_does_not_exist(provisioned: Provisioned) -> None:
    with pytest.raises(ProbableAuthenticationError):
        provisioned.connect("guest", "guest")
    endpoint = provisioned.broker.endpoint
    users = httpx.get(
        f"http://{endpoint.host}:{endpoint.management_port}/api/users", auth=(ADMIN, provisioned.admin_password),
        timeout=10,
    ).json()
    assert {user["name"] for user in users} == {ADMIN, *USERS}


def test_a_wrong_password_is_refused(provisioned: Provisioned) -> None:
    with pytest.raises(ProbableAuthenticationError):
        provisioned.connect("imgpipe-worker", PASSWORDS["RABBITMQ_API_PASSWORD"])


def test_provisioning_twice_changes_nothing(provisioned: Provisioned) -> None:
    result = provision(provisioned.admin)
    assert result.returncode == 0, result.stderr
    assert allowed(provisioned, "imgpipe-api", ("publish", "images.jobs"))


def test_provisioning_refuses_weak_secrets_in_production(provisioned: Provisioned) -> None:
    production = {
        "ENVIRONMENT": "production",
        "API_KEYS": f"ops={secrets.token_urlsafe(24)}",
        "S3_ACCESS_KEY": "imgpipe-presign",
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        "WEBHOOK_SECRET": new_webhook_secret(),
    }
    assert provision(provisioned.admin, **production).returncode == 0
    result = provision(provisioned.admin, **production, GRAFANA_ADMIN_PASSWORD="admin", MINIO_ROOT_PASSWORD="")
    assert result.returncode == 1
    # Every other secret is long and random: only these two are named.
    assert "GRAFANA_ADMIN_PASSWORD, MINIO_ROOT_PASSWORD are default" in result.stderr, result.stderr
    assert "RABBITMQ_API_PASSWORD" not in result.stderr


def test_rendered_definitions_name_every_password_and_the_vhost() -> None:
    template = json.loads(DEFINITIONS.read_text())
    rendered = render_definitions(template, PASSWORDS, "v", "admin")
    assert {user["name"]: user["password"] for user in rendered["users"]} == USERS
    assert {permission["vhost"] for permission in rendered["permissions"]} == {"v"}
    assert "password_from" in template["users"][0], "the template itself is left alone"
    with pytest.raises(Exception, match="RABBITMQ_WORKER_PASSWORD"):
        render_definitions(template, {**PASSWORDS, "RABBITMQ_WORKER_PASSWORD": ""}, "v", "admin")


def test_weak_secrets_are_named() -> None:
    environ = {"A_PASSWORD": "admin", "B_SECRET_KEY": "x" * 20, "C_SECRET": "short", "D_USER": "guest"}
    assert weak_secrets(environ) == ["A_PASSWORD", "C_SECRET"]


def test_the_services_run_on_their_own_users(
    provisioned: Provisioned, s3_endpoint: str, tmp_path: Path, sample_jpg: Path, corrupted_jpg: Path
) -> None:
    """A job completes, a webhook is retried, a failed job is dead-lettered and the API reads the
    dead-letter queue and the queue figures: each service doing its work with its own user only."""
    vhost = BrokerVhost(VHOST, provisioned.admin)
    base = system_env(vhost, s3_endpoint, RABBITMQ_DECLARE_TOPOLOGY="false", **TOPOLOGY_SETTINGS)

    def env(user: str) -> dict[str, str]:
        return {**base, "RABBITMQ_USER": user, "RABBITMQ_PASSWORD": USERS[user]}

    system = System(vhost, env("imgpipe-api"), tmp_path)
    receiver = WebhookReceiver(status_code=500)
    try:
        _, system.api_url = system.start_api("api")
        system.services["worker"] = start_worker(env("imgpipe-worker"), tmp_path, "worker")
        system.services["notifier"] = start_notifier(env("imgpipe-notification"), tmp_path)
        vhost.wait_for_consumers("images.jobs.work", 1)
        vhost.wait_for_consumers("images.notifications", 1)

        response = system.upload(sample_jpg, operations="resize(width=100)", callback_url=receiver.url())
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert system.wait_finished(job_id)["status"] == "completed"
        # Tried, failed, published to a delay queue by the notifier, tried again, given up.
        webhook = wait_for(
            lambda: (w := system.status(job_id).get("webhook")) and w["attempts"] == 2 and w, 60, "two webhook attempts"
        )
        assert webhook["delivered"] is False and len(receiver.calls_for(job_id)) == 2

        response = system.upload(corrupted_jpg, operations="resize")
        corrupted = response.json()["job_id"]
        assert system.wait_finished(corrupted)["status"] == "failed"
        with system.http as client:
            dead = wait_for(lambda: (s := client.get("/dlq/stats").json())["count"] == 1 and s, 20, "a dead letter")
            metrics = client.get("/metrics").text
        assert dead["recent"][0]["job_id"] == corrupted
        broker_up = re.search(r"^imgpipe_broker_up 1(\.0)?$", metrics, re.MULTILINE)
        assert broker_up, "the API could not read the queue figures"
        for service in system.services.values():
            assert "ACCESS_REFUSED" not in service.log(), service.name
    except BaseException:
        print(system.logs())
        raise
    finally:
        receiver.close()
        system.stop()
