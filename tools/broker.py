"""RabbitMQ administration through the management API.

    python -m tools.broker reset    # delete the system's queues and exchanges (make clean)
"""

import argparse
import sys

from common.observability.management import ManagementApi
from common.settings import settings
from common.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, JOBS_EXCHANGE, RETRY_EXCHANGE

PREFIX = "images."


def reset() -> int:
    api = ManagementApi.from_settings(settings.broker, timeout=10)
    try:
        for queue in api.queues():
            if queue["name"].startswith(PREFIX):
                api.delete_queue(queue["name"])
        for name in (JOBS_EXCHANGE, DEAD_LETTER_EXCHANGE, RETRY_EXCHANGE, EVENTS_EXCHANGE):
            api.delete_exchange(name)
    finally:
        api.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["reset"])
    args = parser.parse_args()
    return {"reset": reset}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
