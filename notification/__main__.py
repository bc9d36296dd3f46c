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
    configure_logging(settings, "notification")
    name = f"notifier {settings.instance_name}"
    store = ObjectStore(settings)
    publisher = Publisher(settings, f"{name} publisher")
    sender = WebhookSender(
        EgressPolicy.from_settings(settings), settings.webhook_timeout_s, settings.webhook_max_response_bytes
    )
    handler = EventHandler(
        sender,
        JobStore(store),
        store,
        KeyRing.from_settings(settings),
        publisher,
        notification_retry_steps(settings),
        attempts=settings.webhook_attempts,
        per_host=settings.webhook_per_host_concurrency,
    )
    consumer = Consumer(
        settings, NOTIFICATIONS_QUEUE, handler, name,
        prefetch=settings.webhook_concurrency,
        concurrency=settings.webhook_concurrency,
        # An attempt in flight ends by its own deadline.
        grace_s=settings.webhook_timeout_s + 1,
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
