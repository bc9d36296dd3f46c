"""The broker set up for services that may do no more than their work (compose's broker-setup job).

    python -m common.provisioning deploy/rabbitmq/definitions.json

Signed in as the broker's administrator (RABBITMQ_USER / RABBITMQ_PASSWORD), it imports the
definitions file (a user per service and the permissions each needs, each user's password taken
from the environment variable the file names in `password_from`; the virtual host RABBITMQ_VHOST),
then declares the whole topology (common/topology.py, from the same settings the services read).
The services then run with RABBITMQ_DECLARE_TOPOLOGY=false and may configure nothing.

With ENVIRONMENT=production it first refuses every default, empty or short secret it was handed
(every variable named *_PASSWORD, *_SECRET, *_SECRET_KEY or *_COOKIE): compose gives it all of them, Grafana's
and MinIO's included, and nothing else starts until it has succeeded.
"""

import copy
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from pika.exceptions import AMQPError

from common.amqp import connect
from common.observability.management import ManagementApi
from common.settings import MIN_SECRET_LENGTH, BrokerSettings, Settings, is_strong_secret
from common.topology import declare_topology

logger = logging.getLogger("provisioning")

SECRET_SUFFIXES = ("_PASSWORD", "_SECRET", "_SECRET_KEY", "_COOKIE")
ATTEMPTS = 10


class ProvisioningError(Exception):
    pass


def weak_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secret-looking variables whose values production refuses, by name (values never shown)."""
    return sorted(
        name for name, value in environ.items() if name.endswith(SECRET_SUFFIXES) and not is_strong_secret(value)
    )


def render_definitions(
    template: dict[str, Any], environ: Mapping[str, str], vhost: str, admin: str
) -> dict[str, Any]:
    """The definitions to import: `password_from` replaced by the password it names, the virtual host
    set on every permission, and the administrator given the virtual host (to declare the topology).
    Raises ProvisioningError naming a missing password variable."""
    definitions = copy.deepcopy(template)
    for user in definitions.get("users", []):
        variable = user.pop("password_from", None)
        if not variable or not environ.get(variable):
            raise ProvisioningError(f"user {user.get('name')!r}: its password variable {variable!r} is not set")
        user["password"] = environ[variable]
    for permission in definitions.get("permissions", []):
        permission["vhost"] = vhost
    definitions["permissions"] = [
        *definitions.get("permissions", []),
        {"user": admin, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"},
    ]
    definitions["vhosts"] = [{"name": vhost}]
    return definitions


def provision(broker: BrokerSettings, definitions: dict[str, Any]) -> None:
    """Imports the definitions through the management API, then declares the topology over AMQP."""
    api = ManagementApi.from_settings(broker, timeout=30)
    try:
        api.import_definitions(definitions)
    finally:
        api.close()
    connection = connect(broker, "broker-setup")
    try:
        declare_topology(connection.channel(), broker.topology)
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    environ = dict(os.environ)
    if environ.get("ENVIRONMENT") == "production" and (weak := weak_secrets(environ)):
        logger.error(
            "refusing to set up with ENVIRONMENT=production: %s %s default, empty or shorter than %d characters",
            ", ".join(weak), "is" if len(weak) == 1 else "are", MIN_SECRET_LENGTH,
        )
        return 1
    # Checked above as a whole; its own settings need no API keys or storage keys.
    settings = Settings(environment="local")
    template = json.loads(Path(argv[0]).read_text())
    definitions = render_definitions(template, environ, settings.rabbitmq_vhost, settings.rabbitmq_user)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            provision(settings.broker, definitions)
            break
        except (AMQPError, OSError, httpx.HTTPError) as exc:
            if attempt == ATTEMPTS:
                logger.error("could not set up the broker: %s: %s", type(exc).__name__, exc)
                return 1
            logger.warning("broker not ready (%s); trying again", type(exc).__name__)
            time.sleep(2)
    users = ", ".join(user["name"] for user in definitions.get("users", []))
    logger.info("topology declared; users %s set up on vhost %s", users, settings.rabbitmq_vhost)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
