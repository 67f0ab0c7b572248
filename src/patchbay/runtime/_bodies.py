"""Bodies beyond JSON for Python handlers: text, XML or bytes sent as they are, answers as text."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any, Literal

from patchbay.http._build import _header_value
from patchbay.http._types import Response
from patchbay.spec._base import HEADER_NAME

__all__ = ["Answer", "extra_headers", "read_answer"]

Answer = Literal["json", "text", "bytes"]
# framing and routing are the transport's; credentials are the integration's auth
_RESERVED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "proxy-authorization"}
)
_TEXT = "text/plain; charset=utf-8"


def extra_headers(
    headers: Mapping[str, str] | None,
    content_type: str | None,
    json: Any,
    content: str | bytes | None,
    form: Mapping[str, Any] | None,
) -> dict[str, str]:
    """A handler's own headers for one request, checked, with its body's Content-Type.

    Raises ValueError for a handler's mistake (two bodies, a header it may not set): the
    runtime reports it as an internal error and logs it, and nothing is sent.
    """
    if sum(body is not None for body in (json, content, form)) > 1:
        raise ValueError("give one body: json=, content= or form=")
    if content is not None and not isinstance(content, str | bytes):
        raise ValueError(f"content= must be str or bytes, not {type(content).__name__}")
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ValueError(f"a handler may not set the header {name[:40]!r}")
        out[name] = _header_value(name, value)
    if content_type is None and isinstance(content, str):
        content_type = _TEXT
    if content_type is not None:
        out = {k: v for k, v in out.items() if k.lower() != "content-type"}
        out["Content-Type"] = _header_value("Content-Type", content_type)
    return out


def read_answer(response: Response, answer: Answer) -> str | bytes:
    """A 2xx body as bytes, or as text decoded by its charset (UTF-8 when it names none)."""
    if answer == "bytes":
        return response.body
    if answer != "text":
        raise ValueError(f'answer= is "json", "text" or "bytes", not {answer!r}')
    charset = "utf-8"
    for part in (response.header("content-type") or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip(" \"'"):
            charset = value.strip(" \"'")
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"  # an unknown charset name: UTF-8 is what most such answers are
    return response.body.decode(charset, errors="replace")
