"""RabbitMQ administration through the management API.

    python -m tools.broker reset    # delete the system's queues and exchanges (make clean)
"""

import argparse
import sys
from urllib.parse import quote

from common.management import management_client
from common.settings import settings
from common.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, JOBS_EXCHANGE, RETRY_EXCHANGE

PREFIX = "images."


def reset() -> int:
    vhost = quote(settings.rabbitmq_vhost, safe="")
    with management_client(settings, timeout=10) as client:
        queues = [q["name"] for q in client.get(f"/queues/{vhost}").raise_for_status().json()]
        for name in queues:
            if name.startswith(PREFIX):
                client.delete(f"/queues/{vhost}/{quote(name, safe='')}").raise_for_status()
        for name in (JOBS_EXCHANGE, DEAD_LETTER_EXCHANGE, RETRY_EXCHANGE, EVENTS_EXCHANGE):
            response = client.delete(f"/exchanges/{vhost}/{quote(name, safe='')}")
            if response.status_code not in (204, 404):
                response.raise_for_status()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["reset"])
    args = parser.parse_args()
    return {"reset": reset}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
