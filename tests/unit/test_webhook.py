"""Webhook signatures (Standard Webhooks): a receiver can check a delivery came from us, unaltered,
with the reference implementation (the `standardwebhooks` package)."""

import base64
import hashlib
import hmac

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from common.clients import new_webhook_secret
from common.settings import Settings
from notification.webhook import sign, verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_sign_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    body = b'{"type":"job.completed"}'
    expected = hmac.new(b"0123456789abcdef0123456789abcdef", b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", 1700000000, body) == "v1," + base64.b64encode(expected).decode()


def test_signature_verifies_with_the_standard_webhooks_package() -> None:
    import time

    body, timestamp = b'{"type":"job.failed","data":{"job_id":"x"}}', int(time.time())
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(SECRET, "msg_x", timestamp, body),
    }
    assert Webhook(SECRET).verify(body, headers) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)


def test_verify_refuses_altered_body_id_or_other_secret() -> None:
    body = b'{"job_id": "x"}'
    signature = sign(SECRET, "msg_1", 1700000000, body)
    assert verify(SECRET, "msg_1", 1700000000, body, signature)
    assert not verify(SECRET, "msg_1", 1700000000, body + b" ", signature)
    assert not verify(SECRET, "msg_2", 1700000000, body, signature)
    assert not verify(new_webhook_secret(), "msg_1", 1700000000, body, signature)


@pytest.mark.parametrize("secret", ["change-me", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()])
def test_settings_refuse_a_webhook_secret_that_is_not_a_standard_one(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        Settings(_env_file=None, webhook_secret=secret)
