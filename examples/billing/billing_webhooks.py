"""The example billing service's outgoing webhooks, signed per Standard Webhooks."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import aiohttp
from standardwebhooks import Webhook

Json = dict[str, Any]


class WebhookSender:
    """Sends events signed per Standard Webhooks; a non-2xx or no answer is retried after
    backoff_s, doubling, with the same ``webhook-id`` (receivers deduplicate by it)."""

    def __init__(self, url: str, secret: str, *, attempts: int = 5, backoff_s: float = 0.5) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the webhook URL must be http:// or https://, not {url!r}")
        if not secret.startswith("whsec_"):
            raise ValueError("the webhook secret must look like whsec_<base64>")
        if attempts < 1 or backoff_s < 0:
            raise ValueError("webhook attempts must be at least 1 and the backoff not negative")
        self.url = url
        self.signer = Webhook(secret)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.deliveries: list[Json] = []  # what /_webhooks shows: id, type, attempts, delivered

    async def send(self, event_type: str, data: Json) -> bool:
        """Deliver one event; True once the endpoint answered 2xx."""
        msg_id = "msg_" + secrets.token_hex(12)
        body = json.dumps({"type": event_type, "timestamp": datetime.now(UTC).isoformat(),
                           "data": data})  # fmt: skip
        record: Json = {"id": msg_id, "type": event_type, "attempts": [], "delivered": False}
        self.deliveries.append(record)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(self.attempts):
                if attempt:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                now = datetime.now(UTC)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self.signer.sign(msg_id, now, body),
                }
                try:
                    async with session.post(self.url, data=body, headers=headers) as answer:
                        outcome: int | str = answer.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                record["attempts"].append(outcome)
                if isinstance(outcome, int) and 200 <= outcome < 300:
                    record["delivered"] = True
                    return True
        return False
