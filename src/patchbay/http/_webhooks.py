"""Verifying incoming webhooks on their raw body: Standard Webhooks and configurable HMAC.

Written by hand, with the same logic as the `standardwebhooks` package (the tests sign with
it): the package fixes its tolerance at five minutes, takes one secret, decodes the body as
text and raises ValueError on a malformed signature header; here the tolerance is the
source's, every secret of a rotation is tried, and the body stays bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from patchbay.spec._webhooks import HmacVerify, StandardVerify

_PREFIX = "whsec_"
_DIGESTS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "sha512": hashlib.sha512}


class WebhookRefused(Exception):
    """A delivery that is not genuine or not fresh; the reason is for logs, never the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    """A genuine delivery: its id (for deduplication) and when it was signed."""

    id: str
    timestamp: float | None


def standard_key(secret: str) -> bytes:
    """A Standard Webhooks secret's key: the base64 after `whsec_` (raw text otherwise)."""
    text = secret.strip()
    if text.startswith(_PREFIX):
        try:
            # the package pads the same way: secrets are often given without their padding
            return base64.b64decode(text[len(_PREFIX) :] + "==")
        except (binascii.Error, ValueError):
            raise WebhookRefused("the webhook secret is not valid base64") from None
    try:
        return base64.b64decode(text + "==", validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def _fresh(stamp: str, tolerance_s: float, now: float) -> float:
    try:
        when = float(stamp.strip())
    except ValueError:
        raise WebhookRefused("the timestamp is not a number") from None
    if when != when or when < now - tolerance_s:  # NaN is never fresh
        raise WebhookRefused("the timestamp is too old")
    if when > now + tolerance_s:
        raise WebhookRefused("the timestamp is in the future")
    return when


def verify_standard(
    spec: StandardVerify,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> Verified:
    """Check a Standard Webhooks delivery; raise WebhookRefused unless one signature matches."""
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    given = _header(headers, "webhook-signature")
    if not msg_id or not stamp or not given:
        raise WebhookRefused("a webhook-id, webhook-timestamp or webhook-signature is missing")
    when = _fresh(stamp, spec.tolerance_s, time.time() if now is None else now)
    signed = b"%s.%s.%s" % (msg_id.encode(), str(int(when)).encode(), body)
    offered: list[bytes] = []
    for part in given.split():
        version, _, value = part.partition(",")
        if version != "v1" or not value:
            continue  # other versions (v1a: asymmetric) are not ours to check
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    for secret in secrets:
        expected = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return Verified(msg_id, when)
    raise WebhookRefused("no signature matches")


def verify_hmac(
    spec: HmacVerify,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> Verified:
    """Check an HMAC-signed delivery as its source declares; raise WebhookRefused otherwise."""
    given = _header(headers, spec.header)
    if not given:
        raise WebhookRefused(f"the {spec.header} header is missing")
    given = given.strip()
    if spec.prefix:
        if not given.startswith(spec.prefix):
            raise WebhookRefused("the signature lacks its prefix")
        given = given[len(spec.prefix) :]
    stamp = None
    when: float | None = None
    if spec.timestamp_header is not None:
        stamp = _header(headers, spec.timestamp_header)
        if not stamp:
            raise WebhookRefused(f"the {spec.timestamp_header} header is missing")
        when = _fresh(stamp, spec.tolerance_s, time.time() if now is None else now)
    msg_id = _header(headers, spec.id_header) if spec.id_header is not None else None
    if spec.id_header is not None and not msg_id:
        raise WebhookRefused(f"the {spec.id_header} header is missing")
    head, _, tail = spec.signed_template.partition("{body}")
    fill = {"{id}": msg_id or "", "{timestamp}": (stamp or "").strip()}
    for name, value in fill.items():
        head, tail = head.replace(name, value), tail.replace(name, value)
    signed = head.encode() + body + tail.encode()
    try:
        offered = bytes.fromhex(given) if spec.encoding == "hex" else base64.b64decode(given)
    except (binascii.Error, ValueError):
        raise WebhookRefused("the signature is not valid hex or base64") from None
    digest = _DIGESTS[spec.algorithm]
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, digest).digest()
        if hmac.compare_digest(expected, offered):
            # Without an id header, the same body is the same delivery.
            return Verified(msg_id or "sha256-" + hashlib.sha256(body).hexdigest(), when)
    raise WebhookRefused("no signature matches")


def verify_delivery(
    spec: StandardVerify | HmacVerify,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> Verified:
    """Check a delivery by its source's scheme, before anything parses its body."""
    if isinstance(spec, StandardVerify):
        return verify_standard(spec, secrets, headers, body, now)
    return verify_hmac(spec, secrets, headers, body, now)
