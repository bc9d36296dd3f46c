"""Webhook signatures: a receiver can check the body came from us and was not altered."""

import hashlib
import hmac

from notification.webhook import sign, verify


def test_sign_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"job_id": "x"}'
    assert sign(body, "secret") == "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()


def test_verify_refuses_altered_body_or_other_secret() -> None:
    body = b'{"job_id": "x"}'
    signature = sign(body, "secret")
    assert verify(body, "secret", signature)
    assert not verify(body + b" ", "secret", signature)
    assert not verify(body, "other", signature)
