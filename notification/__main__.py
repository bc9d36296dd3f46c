"""Notification service entry point: `python -m notification`."""

import logging
import signal

from common.amqp import Consumer
from common.jobs import JobStore
from common.logs import configure_logging
from common.settings import settings
from common.storage import ObjectStore
from common.topology import NOTIFICATIONS_QUEUE
from notification.handler import EventHandler
from notification.webhook import WebhookSender

logger = logging.getLogger("notification")


def main() -> None:
    configure_logging(settings, "notification")
    sender = WebhookSender(
        settings.webhook_secret,
        settings.webhook_timeout_s,
        settings.webhook_attempts,
        settings.webhook_backoff_s,
    )
    handler = EventHandler(sender, JobStore(ObjectStore(settings)))
    consumer = Consumer(settings, NOTIFICATIONS_QUEUE, handler, f"notifier {settings.instance_name}")

    def stop(signum: int, _frame: object) -> None:
        logger.info("notifier: %s received; stopping", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        sender.close()


if __name__ == "__main__":
    main()
