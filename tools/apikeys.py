"""API keys for clients: `python -m tools.apikeys --help`.

    python -m tools.apikeys add alice [--admin] [--file keys.json]   # prints the key and webhook secret once
    python -m tools.apikeys list [--file keys.json]
    python -m tools.apikeys remove alice [--file keys.json]
    python -m tools.apikeys webhook-secret                           # a new WEBHOOK_SECRET
    python -m tools.apikeys client-secret alice                      # the webhook secret of a client from API_KEYS

The file holds SHA-256 digests of the keys, never the keys; point API_KEYS_FILE at it.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from common.clients import (
    CLIENT_NAME,
    KeyRing,
    KeyRingError,
    key_digest,
    new_key,
    new_webhook_secret,
)
from common.settings import Settings

DEFAULT_FILE = Path("api-keys.json")


def _load(path: Path) -> dict:
    if not path.exists():
        return {"clients": []}
    return json.loads(path.read_text())


def _save(path: Path, document: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    temporary.replace(path)


def add(path: Path, name: str, admin: bool) -> int:
    if not CLIENT_NAME.fullmatch(name):
        print(f"error: client name {name!r} must be 1-64 letters, digits, '.', '_' or '-'", file=sys.stderr)
        return 2
    document = _load(path)
    if any(client.get("name") == name for client in document["clients"]):
        print(f"error: {path} already has a client {name!r}; remove it first", file=sys.stderr)
        return 2
    key, secret = new_key(), new_webhook_secret()
    document["clients"].append(
        {"name": name, "admin": admin, "key_sha256": key_digest(key).hex(), "webhook_secret": secret}
    )
    _save(path, document)
    print(f"client:         {name}{' (admin)' if admin else ''}")
    print(f"API key:        {key}")
    print(f"webhook secret: {secret}")
    print(f"Written to {path} (the key itself is not stored: keep it now).")
    return 0


def remove(path: Path, name: str) -> int:
    document = _load(path)
    kept = [client for client in document["clients"] if client.get("name") != name]
    if len(kept) == len(document["clients"]):
        print(f"error: no client {name!r} in {path}", file=sys.stderr)
        return 2
    _save(path, {**document, "clients": kept})
    print(f"removed {name}")
    return 0


def list_clients(path: Path) -> int:
    for client in _load(path)["clients"]:
        print(f"{client['name']}\t{'admin' if client.get('admin') else 'client'}")
    return 0


def client_secret(name: str) -> int:
    try:
        ring = KeyRing.from_settings(Settings().access)
    except KeyRingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(ring.webhook_secret(name))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.apikeys", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("add", "remove", "list"):
        sub = commands.add_parser(command)
        if command != "list":
            sub.add_argument("name")
        if command == "add":
            sub.add_argument("--admin", action="store_true", help="may use the operator routes (/dlq/*)")
        sub.add_argument("--file", type=Path, default=DEFAULT_FILE, help=f"keys file (default {DEFAULT_FILE})")
    commands.add_parser("webhook-secret", help="print a new random WEBHOOK_SECRET")
    secret = commands.add_parser("client-secret", help="the webhook secret of a client defined in API_KEYS")
    secret.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "add":
        return add(args.file, args.name, args.admin)
    if args.command == "remove":
        return remove(args.file, args.name)
    if args.command == "list":
        return list_clients(args.file)
    if args.command == "webhook-secret":
        print(new_webhook_secret())
        return 0
    return client_secret(args.name)


if __name__ == "__main__":
    sys.exit(main())
