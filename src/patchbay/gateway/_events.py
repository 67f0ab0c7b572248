"""`GET /calls/{id}/events`: a call's events as Server-Sent Events, resumable on any replica.

Behind the gateway's credentials like every API route: a tenant's credential streams its own
calls only (a call is its tenant's call of that id). Each event is one frame, `id:` its id,
`event:` its kind, `data:` the event's JSON; the stream replays what came after `Last-Event-ID`
(the header, or `?last_event_id=` for clients that cannot set headers) from the shared store,
then follows new events, with a keep-alive comment every KEEPALIVE_S, until the call ends
(a last `event: end` frame). Reconnecting to an ended call with nothing left is answered 204,
which tells an EventSource to stop reconnecting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from patchbay.gateway._http import DoorError, Surface, query_params
from patchbay.runtime import ToolRuntime
from patchbay.runtime._callevents import CallEventStream

if TYPE_CHECKING:  # the gateway's module imports this one
    from patchbay.gateway._app import Gateway

KEEPALIVE_S = 15.0  # under the idle timeouts of common proxies and load balancers (30-60 s)


class StreamSettings:
    """How the gateway streams events (`app.state.gateway.event_streams`)."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s


def event_routes(gw: Gateway) -> list[BaseRoute]:
    """The call-events stream's route for a `Gateway`."""
    rt = gw.runtime
    settings = gw.event_streams

    async def events(request: Request) -> Response:
        async def work() -> Response:
            call_id = str(request.path_params["call_id"])
            caller = await gw.admit(Surface.API, request)
            query = query_params(request)
            tenant = gw.credentials.tenant(caller, query.get("tenant"))
            after = request.headers.get("last-event-id") or query.get("last_event_id")
            try:
                stream = rt.call_events(call_id, tenant=tenant, after=after)
            except ValueError as exc:
                raise DoorError(400, "bad_request", f"Last-Event-ID: {exc}") from None
            if after and not await _more_to_come(rt, call_id, tenant, after):
                await stream.aclose()
                return Response(status_code=204)
            return EventSourceResponse(
                _frames(stream, call_id),
                ping=settings.keepalive_s,
                headers={"Cache-Control": "no-store"},
            )

        return await gw.handle(Surface.API, request, work)

    return [Route("/calls/{call_id}/events", events, methods=["GET"])]


async def _more_to_come(rt: ToolRuntime, call_id: str, tenant: str | None, after: str) -> bool:
    """Whether a resuming client has anything to get: the call goes on, or events remain."""
    if await rt.call_is_live(call_id, tenant):
        return True
    async with rt.call_events(call_id, tenant=tenant, after=after) as rest:
        async for _ in rest:
            return True  # the call ended, but after events this client has not seen
    return False


async def _frames(stream: CallEventStream, call_id: str) -> AsyncIterator[ServerSentEvent]:
    try:
        async for event in stream:
            found = event.to_dict()
            yield ServerSentEvent(
                data=json.dumps(found, separators=(",", ":"), ensure_ascii=False),
                event=found["kind"],
                id=found["id"],
            )
        yield ServerSentEvent(data=json.dumps({"call_id": call_id, "ended": True}), event="end")
    finally:
        await stream.aclose()  # the subscription goes when the client does
