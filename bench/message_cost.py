"""`python -m bench.message_cost`: the CPU one persistent AMQP message costs RabbitMQ and pika, by size.

What it answers: would carrying a small original inside the job message (instead of the worker
reading it back from S3) save anything? Each message is published with confirms to a durable queue
of a private vhost on the machine's RabbitMQ, then fetched and acked, as a job message is; `--count`
of each size, on a classic and a quorum queue. CPU from /proc for the broker's process (the node
`rabbitmqctl` talks to), from the process clock for the client. Compare with `python -m
bench.storage_cost` (what the S3 GET it would replace costs).
"""

import argparse
import os
import subprocess
from collections.abc import Callable

import pika

from bench.storage_cost import measure
from harness.broker import BrokerVhost

SIZES = {"600 KB": 600_000, "2 KB": 2_000}
QUEUE_TYPES = ("classic", "quorum")


def broker_pid() -> int:
    printed = subprocess.run(
        ["rabbitmqctl", "eval", "os:getpid()."], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return int(printed.strip().strip('"'))


def round_trip(channel, queue: str, body: bytes) -> Callable[[int], None]:
    """Publish with a confirm, fetch and ack: what a job message goes through."""

    def one(_index: int) -> None:
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        method, _properties, _body = channel.basic_get(queue)
        channel.basic_ack(method.delivery_tag)

    return one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    pid = broker_pid()
    vhost = BrokerVhost().create()
    try:
        with vhost.connection() as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            for queue_type in QUEUE_TYPES:
                queue = f"message-cost-{queue_type}"
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})
                for label, size in SIZES.items():
                    one = round_trip(channel, queue, os.urandom(size))
                    figures = measure(pid, one, args.count, server="broker")
                    print(f"{queue_type} queue, {label}: {figures}", flush=True)
    finally:
        vhost.delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
