"""Notification service entry point: `python -m notification`."""

import logging
import signal

from common.amqp import Consumer, Publisher
from common.clients import KeyRing
from common.egress import EgressPolicy
from common.jobs import JobStore
from common.logs import configure_logging
from common.settings import settings
from common.storage import ObjectStore
from common.topology import NOTIFICATIONS_QUEUE, notification_retry_steps
from notification.handler import EventHandler
from notification.webhook import WebhookSender

logger = logging.getLogger("notification")


def main() -> None:
    configure_logging(settings.logging, "notification")
    name, notifier = f"notifier {settings.instance_name}", settings.notifier
    store = ObjectStore(settings.storage)
    publisher = Publisher(settings.broker, f"{name} publisher")
    egress = EgressPolicy.build(notifier.allowed_networks, settings.own_endpoints)
    sender = WebhookSender(egress, notifier.timeout_s, notifier.max_response_bytes)
    handler = EventHandler(
        sender,
        JobStore(store),
        store,
        KeyRing.from_settings(settings.access),
        publisher,
        notification_retry_steps(notifier.retries),
        attempts=notifier.retries.attempts,
        per_host=notifier.per_host_concurrency,
    )
    consumer = Consumer(
        settings.broker, NOTIFICATIONS_QUEUE, handler, name,
        prefetch=notifier.prefetch, concurrency=notifier.concurrency, grace_s=notifier.grace_s,
    )

    def stop(signum: int, _frame: object) -> None:
        logger.info("notifier: %s received; stopping", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        publisher.close()


if __name__ == "__main__":
    main()
