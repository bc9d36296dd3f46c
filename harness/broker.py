"""A private virtual host on the real RabbitMQ, and reading its queues through the management API."""

import uuid
from dataclasses import dataclass

import pika

from common.observability.management import ManagementApi
from harness.processes import wait_for


@dataclass(frozen=True)
class BrokerEndpoint:
    host: str = "127.0.0.1"
    port: int = 5672
    management_port: int = 15672
    user: str = "guest"
    password: str = "guest"


# The RabbitMQ that runs on the machine (started before a session or by .ci/run).
BROKER = BrokerEndpoint()


class BrokerVhost:
    def __init__(self, name: str | None = None, endpoint: BrokerEndpoint = BROKER) -> None:
        self.name = name or f"imgpipe-test-{uuid.uuid4().hex[:8]}"
        self.endpoint = endpoint
        self.management = ManagementApi.at(
            endpoint.host, endpoint.management_port, endpoint.user, endpoint.password, self.name
        )

    def create(self) -> "BrokerVhost":
        self.management.create_vhost(self.endpoint.user)
        return self

    def delete(self) -> None:
        self.management.delete_vhost()
        self.management.close()

    def queue(self, name: str) -> dict:
        return self.management.queue(name)

    def message_count(self, name: str) -> int:
        """Messages in a queue, read over AMQP (passive declare): exact, unlike the API's sampled stats."""
        with self.connection() as connection:
            return connection.channel().queue_declare(name, passive=True).method.message_count

    def consumer_count(self, name: str) -> int:
        with self.connection() as connection:
            return connection.channel().queue_declare(name, passive=True).method.consumer_count

    def get_messages(self, name: str, count: int = 10) -> list[tuple[pika.spec.BasicProperties, bytes]]:
        """Reads messages without removing them (nacked back with requeue)."""
        messages = []
        with self.connection() as connection:
            channel = connection.channel()
            tags = []
            for _ in range(count):
                method, properties, body = channel.basic_get(name, auto_ack=False)
                if method is None:
                    break
                tags.append(method.delivery_tag)
                messages.append((properties, body))
            if tags:
                channel.basic_nack(tags[-1], multiple=True, requeue=True)
        return messages

    def publish(self, exchange: str, routing_key: str, body: bytes, **properties) -> None:
        with self.connection() as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(
                exchange, routing_key, body,
                pika.BasicProperties(delivery_mode=2, **properties), mandatory=True,
            )

    def connection(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(
            pika.ConnectionParameters(
                host=self.endpoint.host, port=self.endpoint.port, virtual_host=self.name,
                credentials=pika.PlainCredentials(self.endpoint.user, self.endpoint.password),
            )
        )

    def wait_for_consumers(self, queue: str, count: int, timeout: float = 30) -> None:
        wait_for(lambda: self.consumer_count(queue) >= count, timeout, f"{count} consumers on {queue}")

    def wait_for_consumers_at_most(self, queue: str, count: int, timeout: float = 30) -> None:
        wait_for(lambda: self.consumer_count(queue) <= count, timeout, f"at most {count} consumers on {queue}")
