"""The topology on the broker itself, on RabbitMQ 3 and 4 alike: the delivery limits every quorum
queue states, where a notification handed back too often goes, and queues that an earlier release
declared with fewer arguments."""

import logging
import time
from collections.abc import Iterator

import pytest
from pika.exceptions import ChannelClosedByBroker

from common.settings import Settings, TopologySettings
from common.topology import (
    DEAD_LETTER_QUEUE,
    EVENT_COMPLETED,
    EVENTS_EXCHANGE,
    NOTIFICATION_DELIVERY_LIMIT,
    NOTIFICATIONS_DEAD_LETTER_QUEUE,
    NOTIFICATIONS_QUEUE,
    WORK_QUEUE,
    declare_topology,
)
from harness.broker import BrokerEndpoint, BrokerVhost

pytestmark = [pytest.mark.integration, pytest.mark.every_broker]


@pytest.fixture
def vhost(broker: BrokerEndpoint) -> Iterator[BrokerVhost]:
    vhost = BrokerVhost(endpoint=broker).create()
    yield vhost
    vhost.delete()


def topology_of(queue_type: str) -> TopologySettings:
    return Settings(queue_type=queue_type).broker.topology


def declare(vhost: BrokerVhost, topology: TopologySettings) -> None:
    with vhost.connection() as connection:
        declare_topology(connection.channel(), topology)


def test_a_notification_handed_back_too_often_goes_to_its_dead_letter_queue(vhost: BrokerVhost) -> None:
    declare(vhost, topology_of("quorum"))
    vhost.publish(EVENTS_EXCHANGE, EVENT_COMPLETED, b'{"job_id": "a notifier crashes on this"}')

    deliveries = 0
    with vhost.connection() as connection:
        channel = connection.channel()
        for _ in range(200):
            method, _, _ = channel.basic_get(NOTIFICATIONS_QUEUE, auto_ack=False)
            if method is None:
                if vhost.message_count(NOTIFICATIONS_DEAD_LETTER_QUEUE):
                    break
                time.sleep(0.05)  # a handed-back message is back in the queue a moment later
                continue
            deliveries += 1
            channel.basic_nack(method.delivery_tag, requeue=True)

    # The limit stated, the same on both series (without it, RabbitMQ 4 drops the event past its
    # default, and 3 hands it back for ever).
    assert deliveries == NOTIFICATION_DELIVERY_LIMIT + 1
    ((properties, body),) = vhost.get_messages(NOTIFICATIONS_DEAD_LETTER_QUEUE)
    assert body == b'{"job_id": "a notifier crashes on this"}'
    assert properties.headers["x-death"][0]["reason"] == "delivery_limit"
    assert vhost.message_count(NOTIFICATIONS_QUEUE) == 0


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_queues_an_earlier_release_declared_are_used_as_they_are_with_a_warning(
    vhost: BrokerVhost, queue_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    earlier = {"x-queue-type": queue_type}
    with vhost.connection() as connection:
        channel = connection.channel()
        channel.queue_declare(NOTIFICATIONS_QUEUE, durable=True, arguments=earlier)
        channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=earlier)
    vhost.publish("", DEAD_LETTER_QUEUE, b"a letter from before the upgrade")

    with vhost.connection() as connection, caplog.at_level(logging.WARNING, logger="common.topology"):
        channel = connection.channel()
        declare_topology(channel, topology_of(queue_type))
        # The channel the services go on with is still open, and the rest of the topology is there.
        assert channel.queue_declare(WORK_QUEUE, passive=True).method.message_count == 0

    warnings = [record.getMessage() for record in caplog.records]
    notification_warnings = [w for w in warnings if w.startswith(f"queue {NOTIFICATIONS_QUEUE} ")]
    assert len(notification_warnings) == 1, warnings
    assert "x-dead-letter-exchange, x-dead-letter-routing-key;" in notification_warnings[0]
    dead_letter_warnings = [w for w in warnings if w.startswith(f"queue {DEAD_LETTER_QUEUE} ")]
    # Classic queues take no delivery limit: nothing changed for them.
    assert len(dead_letter_warnings) == (1 if queue_type == "quorum" else 0), warnings
    assert vhost.message_count(DEAD_LETTER_QUEUE) == 1


def test_a_queue_that_differs_in_more_than_the_added_arguments_is_still_refused(vhost: BrokerVhost) -> None:
    with vhost.connection() as connection:
        connection.channel().queue_declare(NOTIFICATIONS_QUEUE, durable=True, arguments={"x-queue-type": "classic"})

    with pytest.raises(ChannelClosedByBroker) as refused:
        declare(vhost, topology_of("quorum"))
    assert refused.value.reply_code == 406
    assert "x-queue-type" in refused.value.reply_text
