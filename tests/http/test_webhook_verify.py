"""Webhook verification, checked against deliveries signed by the `standardwebhooks` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from patchbay.http._webhooks import Verified, WebhookRefused, verify_delivery
from patchbay.spec._webhooks import HmacVerify, StandardVerify

BODY = b'{"type":"payment.succeeded","data":{"payment_id":"pay_1"}}'


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed(
    secret: str, body: bytes = BODY, at: float | None = None, msg_id: str = "msg_1"
) -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


STANDARD = StandardVerify(scheme="standard", secret="env:S", tolerance_s=300)


def test_a_delivery_signed_by_the_package_is_genuine() -> None:
    secret = new_secret()
    headers = signed(secret)
    found = verify_delivery(STANDARD, [secret], headers, BODY)
    assert found.id == "msg_1"
    assert found.timestamp == float(headers["webhook-timestamp"])
    # and the package itself agrees with what was checked
    Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace(b"pay_1", b"pay_2")),  # another body
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),  # another id
        lambda h, b: ({**h, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}, b),
        lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b),
        lambda h, b: ({**h, "webhook-signature": "garbage"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
    ],
)
def test_forged_deliveries_are_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    secret = new_secret()
    headers, body = tamper(signed(secret), BODY)
    with pytest.raises(WebhookRefused):
        verify_delivery(STANDARD, [secret], headers, body)


def test_another_secret_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="no signature"):
        verify_delivery(STANDARD, [new_secret()], signed(new_secret()), BODY)


def test_stale_and_future_timestamps_are_refused() -> None:
    secret = new_secret()
    now = time.time()
    with pytest.raises(WebhookRefused, match="too old"):
        verify_delivery(STANDARD, [secret], signed(secret, at=now - 301), BODY, now=now)
    with pytest.raises(WebhookRefused, match="future"):
        verify_delivery(STANDARD, [secret], signed(secret, at=now + 301), BODY, now=now)
    # within the tolerance either way
    verify_delivery(STANDARD, [secret], signed(secret, at=now - 290), BODY, now=now)
    verify_delivery(STANDARD, [secret], signed(secret, at=now + 290), BODY, now=now)
    narrow = StandardVerify(scheme="standard", secret="env:S", tolerance_s=10)
    with pytest.raises(WebhookRefused):
        verify_delivery(narrow, [secret], signed(secret, at=now - 60), BODY, now=now)


def test_rotation_accepts_either_secret_and_any_of_several_signatures() -> None:
    old, new = new_secret(), new_secret()
    # the sender still signs with the old secret: the receiver knows both
    assert verify_delivery(STANDARD, [new, old], signed(old), BODY).id == "msg_1"
    # the sender signs with both: several signatures in one header, any may match
    both = signed(old)
    both["webhook-signature"] = f"{signed(new)['webhook-signature']} {both['webhook-signature']}"
    assert verify_delivery(STANDARD, [old], both, BODY).id == "msg_1"
    assert verify_delivery(STANDARD, [new], both, BODY).id == "msg_1"
    with pytest.raises(WebhookRefused):
        verify_delivery(STANDARD, [new_secret()], both, BODY)


def test_the_body_is_checked_as_bytes_not_text() -> None:
    secret = new_secret()
    body = '{"name":"Zoë"}'.encode()
    headers = signed(secret, body)
    assert isinstance(verify_delivery(STANDARD, [secret], headers, body), Verified)
    with pytest.raises(WebhookRefused):
        verify_delivery(STANDARD, [secret], headers, body + b" ")


def _hmac(secret: str, text: bytes, algorithm: str = "sha256", encoding: str = "hex") -> str:
    digest = hmac.new(secret.encode(), text, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_variants(algorithm: str, encoding: str) -> None:
    spec = HmacVerify(
        scheme="hmac",
        header="X-Signature",
        secret="env:S",
        algorithm=algorithm,  # type: ignore[arg-type]
        encoding=encoding,  # type: ignore[arg-type]
        prefix=f"{algorithm}=",
    )
    sig = f"{algorithm}=" + _hmac("s3cret", BODY, algorithm, encoding)
    found = verify_delivery(spec, ["s3cret"], {"x-signature": sig}, BODY)
    assert found.id == "sha256-" + hashlib.sha256(BODY).hexdigest()  # the body's hash dedupes
    for bad in (sig[len(algorithm) + 1 :], sig[:-4] + "AAAA", ""):
        with pytest.raises(WebhookRefused):
            verify_delivery(spec, ["s3cret"], {"x-signature": bad}, BODY)
    with pytest.raises(WebhookRefused):
        verify_delivery(spec, ["other"], {"x-signature": sig}, BODY)


def test_hmac_with_timestamp_and_id_headers() -> None:
    spec = HmacVerify(
        scheme="hmac",
        header="X-Sig",
        secret="env:S",
        timestamp_header="X-Timestamp",
        id_header="X-Delivery",
    )
    now = time.time()
    stamp = str(int(now))
    sig = _hmac("k", stamp.encode() + b"." + BODY)
    headers = {"x-sig": sig, "x-timestamp": stamp, "x-delivery": "d-9"}
    assert verify_delivery(spec, ["k"], headers, BODY, now=now) == Verified("d-9", float(stamp))
    with pytest.raises(WebhookRefused, match="too old"):
        verify_delivery(spec, ["k"], headers, BODY, now=now + 301)
    with pytest.raises(WebhookRefused, match="missing"):
        verify_delivery(spec, ["k"], {"x-sig": sig, "x-delivery": "d-9"}, BODY, now=now)
    # the timestamp is signed: changing it breaks the signature
    moved = {**headers, "x-timestamp": str(int(now) + 1)}
    with pytest.raises(WebhookRefused, match="no signature"):
        verify_delivery(spec, ["k"], moved, BODY, now=now)


def test_hmac_signed_template_like_slack() -> None:
    spec = HmacVerify(
        scheme="hmac",
        header="X-Slack-Signature",
        secret="env:S",
        prefix="v0=",
        timestamp_header="X-Slack-Request-Timestamp",
        signed="v0:{timestamp}:{body}",
    )
    stamp = str(int(time.time()))
    sig = "v0=" + _hmac("k", f"v0:{stamp}:".encode() + BODY)
    headers = {"x-slack-signature": sig, "x-slack-request-timestamp": stamp}
    assert verify_delivery(spec, ["k"], headers, BODY).timestamp == float(stamp)


def test_signed_template_must_be_fillable() -> None:
    with pytest.raises(ValueError, match="timestamp_header"):
        HmacVerify(scheme="hmac", header="X", secret="env:S", signed="{timestamp}.{body}")
    with pytest.raises(ValueError, match="body"):
        HmacVerify(scheme="hmac", header="X", secret="env:S", signed="{id}", id_header="I")
