"""Who a request comes from: clients identified by API keys, and each client's webhook secret.

Keys come from the settings (`API_KEYS`, `ADMIN_API_KEYS`: "name=key,...") or from a file of
hashed keys (`API_KEYS_FILE`, written by `python -m tools.apikeys`). Only SHA-256 digests of keys
are kept in memory: keys are long random strings, so a plain digest is enough, and a digest is
what the file stores. A presented key is hashed and compared with every known digest in constant
time; keys are never logged.

The notifier loads the same key ring to sign each client's webhooks with that client's secret: the
one in the keys file, or one derived from WEBHOOK_SECRET and the client's name.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from common.settings import MIN_SECRET_LENGTH, AccessSettings, webhook_secret_key

CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_PREFIX = "ipk_"


@dataclass(frozen=True)
class Client:
    """`name` is None for the anonymous client (no key, allowed only without AUTH_REQUIRED)."""

    name: str | None
    admin: bool = False

    @property
    def label(self) -> str:
        return self.name or "anonymous"

    def may_see(self, owner: str | None) -> bool:
        """A job belongs to the client that made it; operators see every job."""
        return self.admin or owner == self.name


ANONYMOUS = Client(None)


class KeyRingError(ValueError):
    """The configured keys cannot be used; the message names the entry."""


@dataclass(frozen=True)
class _Entry:
    client: Client
    digest: bytes
    webhook_secret: str | None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, entries: list[_Entry], master_webhook_secret: str) -> None:
        self._entries = entries
        self._master = webhook_secret_key(master_webhook_secret)
        self._secrets = {entry.client.name: entry.webhook_secret for entry in entries}

    @classmethod
    def from_settings(cls, access: AccessSettings) -> "KeyRing":
        minimum = MIN_SECRET_LENGTH if access.environment == "production" else 1
        entries = _from_pairs(access.api_keys, admin=False, minimum=minimum)
        entries += _from_pairs(access.admin_api_keys, admin=True, minimum=minimum)
        if access.api_keys_file is not None:
            entries += _from_file(access.api_keys_file)
        names = [entry.client.name for entry in entries]
        duplicates = sorted({name for name in names if names.count(name) > 1}, key=str)
        if duplicates:
            raise KeyRingError(f"client names must be unique; repeated: {', '.join(map(str, duplicates))}")
        return cls(entries, access.webhook_secret)

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def identify(self, key: str) -> Client | None:
        """The client whose key this is, or None. Every digest is compared, match or not."""
        digest = key_digest(key)
        found: Client | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.client
        return found

    def webhook_secret(self, client_name: str | None) -> str:
        """The secret that signs this client's webhooks ("whsec_..."); the global one for anonymous jobs."""
        if client_name is None:
            return "whsec_" + base64.b64encode(self._master).decode()
        explicit = self._secrets.get(client_name)
        if explicit:
            return explicit
        return derived_webhook_secret(self._master, client_name)


def derived_webhook_secret(master_key: bytes, client_name: str) -> str:
    derived = hmac.new(master_key, b"client-webhook-secret:" + client_name.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(derived).decode()


def _from_pairs(spec: str, admin: bool, minimum: int) -> list[_Entry]:
    entries = []
    for number, pair in enumerate(filter(None, (part.strip() for part in spec.split(","))), start=1):
        name, sep, key = pair.partition("=")
        name, key = name.strip(), key.strip()
        what = f"{'ADMIN_API_KEYS' if admin else 'API_KEYS'} entry {number}"
        if not sep or not key:
            raise KeyRingError(f"{what}: expected name=key")
        _check_name(name, what)
        if len(key) < minimum:
            raise KeyRingError(f"{what} ({name}): keys must be at least {minimum} characters")
        entries.append(_Entry(Client(name, admin), key_digest(key), None))
    return entries


def _from_file(path: Path) -> list[_Entry]:
    try:
        document = json.loads(path.read_text())
        items = document["clients"]
        assert isinstance(items, list)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise KeyRingError(f"API_KEYS_FILE {path}: not a keys file ({type(exc).__name__}: {exc})") from None
    entries = []
    for number, item in enumerate(items, start=1):
        what = f"API_KEYS_FILE {path} entry {number}"
        try:
            name, digest = item["name"], bytes.fromhex(item["key_sha256"])
            admin, secret = bool(item.get("admin", False)), item.get("webhook_secret")
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyRingError(f"{what}: needs name and key_sha256 ({type(exc).__name__}: {exc})") from None
        _check_name(name, what)
        if len(digest) != 32:
            raise KeyRingError(f"{what} ({name}): key_sha256 is not a SHA-256 digest")
        if secret is not None:
            try:
                webhook_secret_key(secret)
            except ValueError as exc:
                raise KeyRingError(f"{what} ({name}): {exc}") from None
        entries.append(_Entry(Client(name, admin), digest, secret))
    return entries


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not CLIENT_NAME.fullmatch(name):
        raise KeyRingError(f"{what}: client name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
