"""`POST /webhooks/{source}`: signed webhooks from the company's API into live calls.

Not behind the gateway's bearer check: the delivery's signature is its credential, checked
by the runtime on the raw body before anything parses it. Unknown source: 404; forged or
stale: 401 (no reason given; it goes to the log); too large: 413; stored: 200.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from patchbay.gateway._http import DoorError, Surface, json_response, read_body

if TYPE_CHECKING:  # the gateway's module imports this one
    from patchbay.gateway._app import Gateway


def webhook_routes(gw: Gateway) -> list[BaseRoute]:
    """The webhook receiver's route for a `Gateway`."""
    rt = gw.runtime
    sources = gw.config.webhooks

    async def receive(request: Request) -> Response:
        async def work() -> Response:
            source = str(request.path_params["source"])
            spec = sources.get(source)
            if spec is None:
                raise DoorError(404, "not_found", "There is no webhook source of that name.")
            # Read before its sender is verified: counted in the gateway's unverified budget.
            body = await read_body(request, spec.max_body_bytes, gw.unverified)
            status, answer = await rt.accept_webhook(source, request.headers, body)
            return json_response(answer, status)

        return await gw.handle(Surface.API, request, work)

    return [Route("/webhooks/{source}", receive, methods=["POST"])]
