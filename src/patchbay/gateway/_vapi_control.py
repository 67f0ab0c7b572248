"""Vapi Live Call Control: a live call's events, posted to the call's `controlUrl`.

Vapi puts a call's control URL in its server messages (`message.call.monitor.controlUrl`, when
the assistant's monitor plan enables control). From the first message that carries it until
the call's end-of-call report (or `status-update` ended), the gateway follows the call's
events and POSTs each one to that URL as an `add-message`: the event's note as a system
message, with `triggerResponseEnabled` when the event has words to say, so the assistant
speaks them on its next turn without cutting the one in progress. Each event is claimed in the
state store first, so with several replicas (each seeing some of the call's messages) and
across restarts, an event is posted once.

The control URL is a capability (whoever holds it steers the call): it is kept in memory only,
never logged beyond its host, and only POSTed to when its host is an allowed one (Vapi's own by
default; plain http only for a loopback host) and without following redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from patchbay.gateway._http import mapping, text_or_none
from patchbay.integrations._callnote import CallEventLike, event_note, follow_call_events
from patchbay.runtime import ToolRuntime
from patchbay.spec import CallContext
from patchbay.spec._call import call_scoped
from patchbay.state import StateError

__all__ = ["VAPI_CONTROL_HOSTS", "VapiControl", "allowed_control_url", "control_url"]

log = logging.getLogger("patchbay.gateway")

VAPI_CONTROL_HOSTS: tuple[str, ...] = ("vapi.ai",)  # the host and its subdomains
MAX_CALLS = 10_000  # live calls followed at once; the oldest is dropped beyond it
_ATTEMPTS = 2  # a POST that failed on the network or with a 5xx is tried once more
_RETRY_S = 0.2
_CLAIM_TTL_S = 24 * 3600.0  # a claimed event is not posted again for as long as calls last

CallKey = tuple[str | None, str]


def control_url(message: Mapping[str, Any]) -> str | None:
    """The call's Live Call Control URL in a server message, if it carries one."""
    call = mapping(message.get("call"))
    return text_or_none(mapping(call.get("monitor")).get("controlUrl")) or text_or_none(
        mapping(message.get("monitor")).get("controlUrl")
    )


def _host(url: str) -> str:
    """What may be logged of a control URL: its host."""
    return urlsplit(url).hostname or "?"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_control_url(url: str, hosts: Iterable[str]) -> bool:
    """Whether `url` may be POSTed to: https (http on loopback only), no credentials, and its
    host one of `hosts` or a subdomain of one."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if not host or parts.username or parts.password:
        return False
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(host)):
        return False
    return any(host == h or host.endswith("." + h) for h in hosts)


@dataclass
class _Followed:
    url: str
    task: asyncio.Task[None] | None = None
    posted: list[str] = field(default_factory=list)  # ids of the events Vapi accepted
    seen: list[str] = field(default_factory=list)  # ids of every event handled, in order


class VapiControl:
    """The Vapi calls whose events the gateway is posting to their control URLs."""

    def __init__(
        self,
        runtime: ToolRuntime,
        *,
        hosts: Iterable[str] = VAPI_CONTROL_HOSTS,
        timeout_s: float = 5.0,
        max_calls: int = MAX_CALLS,
    ) -> None:
        self.runtime = runtime
        self.hosts = tuple(h.lower().strip(".") for h in hosts)
        self.timeout_s = timeout_s
        self.max_calls = max_calls
        self._calls: OrderedDict[CallKey, _Followed] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._refused: set[str] = set()  # hosts already warned about

    def __len__(self) -> int:
        return len(self._calls)

    def posted(self, call_id: str, tenant: str | None = None) -> list[str]:
        """Ids of the call's events its control URL accepted from this gateway."""
        found = self._calls.get((tenant, call_id))
        return list(found.posted) if found is not None else []

    def seen(self, call_id: str, tenant: str | None = None) -> list[str]:
        """Ids of the call's events this gateway handled: posted, failed, or another's."""
        found = self._calls.get((tenant, call_id))
        return list(found.seen) if found is not None else []

    def allowed(self, url: str) -> bool:
        """Whether the gateway may POST to this control URL."""
        return allowed_control_url(url, self.hosts)

    def observe(self, message: Mapping[str, Any], tenant: str | None) -> None:
        """Start following the message's call when it carries a control URL (once per call)."""
        call_id = text_or_none(mapping(message.get("call")).get("id"))
        url = control_url(message)
        if call_id is None or url is None:
            return
        if not self.allowed(url):
            host = _host(url)
            if host not in self._refused and len(self._refused) < 100:
                self._refused.add(host)
                log.warning("vapi control URL on host %s is not allowed: not used", host[:80])
            return
        key: CallKey = (tenant, call_id)
        found = self._calls.get(key)
        if found is not None:
            found.url = url  # Vapi may move a call: the newest URL is the one to use
            self._calls.move_to_end(key)
            return
        followed = _Followed(url)
        self._calls[key] = followed
        call = CallContext(id=call_id, tenant=tenant)
        followed.task = asyncio.create_task(
            self._follow(key, call, followed), name="patchbay-vapi-control"
        )
        while len(self._calls) > self.max_calls:
            _, oldest = self._calls.popitem(last=False)
            if oldest.task is not None:
                oldest.task.cancel()

    async def end(self, call_id: str, tenant: str | None) -> None:
        """The call ended: stop following it."""
        found = self._calls.pop((tenant, call_id), None)
        if found is not None and found.task is not None:
            found.task.cancel()
            await asyncio.gather(found.task, return_exceptions=True)

    async def close(self) -> None:
        """Stop following every call and release the HTTP client."""
        tasks = [f.task for f in self._calls.values() if f.task is not None]
        self._calls.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _follow(self, key: CallKey, call: CallContext, followed: _Followed) -> None:
        claims = call_scoped("vapictl", call.id, call.tenant)

        async def deliver(event: CallEventLike) -> None:
            try:
                if await self._claim(f"{claims}:{event.id}") and await self._post(
                    followed.url, event
                ):
                    followed.posted.append(event.id)
            finally:
                followed.seen.append(event.id)

        try:
            await follow_call_events(self.runtime, call, deliver)
        finally:
            if self._calls.get(key) is followed:  # the call ended elsewhere (/calls/{id}/end)
                del self._calls[key]

    async def _claim(self, key: str) -> bool:
        """Whether this gateway posts the event: one replica does (and a restarted one does not
        post again), whichever replicas follow the call."""
        try:
            return await self.runtime.store.set_if_absent(key, b"1", ttl_s=_CLAIM_TTL_S)
        except StateError as exc:  # better said twice than never
            log.warning("vapi control could not claim a call event: %s", type(exc).__name__)
            return True

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _post(self, url: str, event: CallEventLike) -> bool:
        body = {
            "type": "add-message",
            "message": {"role": "system", "content": event_note(event)},
            "triggerResponseEnabled": bool(event.say),
        }
        problem = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                await asyncio.sleep(_RETRY_S)
            try:
                async with self._client().post(url, json=body, allow_redirects=False) as answer:
                    await answer.read()
                    if answer.status < 300:
                        return True
                    problem = f"status {answer.status}"
                    if answer.status < 500:
                        break  # refused (the call is over, or the URL is wrong): not retried
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
        log.warning(
            "vapi control %s did not take call event %s: %s", _host(url), event.event, problem
        )
        return False
