"""API version pinning: a header, or a path prefix right after the base URL's own path."""

from __future__ import annotations

import msgspec

from patchbay.http._types import Request
from patchbay.spec._model import VersionPin

__all__ = ["apply_version"]


def apply_version(request: Request, pin: VersionPin | None, base_url: str) -> Request:
    """The request pinned to `pin`'s version; applying it twice changes nothing."""
    if pin is None:
        return request
    if pin.header is not None and pin.value is not None:
        return request.with_headers({pin.header: pin.value})
    if not pin.path_prefix or not pin.path_prefix.strip("/"):
        return request
    prefix = "/" + pin.path_prefix.strip("/")
    base = base_url.rstrip("/")
    if not request.url.startswith(base):
        raise ValueError("the request is not under the integration's base URL")
    rest = request.url[len(base) :]
    if rest[:1] not in ("", "/", "?"):
        raise ValueError("the request is not under the integration's base URL")
    if rest == prefix or rest.startswith((prefix + "/", prefix + "?")):
        return request
    return msgspec.structs.replace(
        request, url=base + prefix + (rest if rest[:1] in ("/", "?", "") else "/" + rest)
    )
