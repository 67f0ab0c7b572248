"""Reading an answer's body within a limit: decoded bytes are counted as they arrive.

Both transports use this, so an endless body or a compression bomb ends the same way on
either: at `limit` decoded bytes, with never more than that held in memory.
"""

from __future__ import annotations

import zlib

from patchbay.http._types import Request, ResponseTooLarge

_GZIP = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate data
_NO_BODY_STATUSES = frozenset({204, 304})  # whatever their Content-Length says


class BodyTooLarge(Exception):
    """The answer passed the limit; reading stops and the connection is closed."""


class BodyUnreadable(Exception):
    """A compressed body that is corrupt or cut short."""


def length_over(value: str | None, limit: int, status: int) -> bool:
    """Whether a Content-Length announces more than `limit` bytes (refused before reading)."""
    if value is None or status < 200 or status in _NO_BODY_STATUSES:
        return False
    try:
        return int(value) > limit
    except ValueError:
        return False  # the HTTP parser judges a malformed length; this only judges size


def inflater_for(coding: str | None, limit: int) -> Inflater | None:
    """A bounded decoder for a gzip or deflate Content-Encoding; None for anything else."""
    if coding is None:
        return None
    coding = coding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return Inflater(True, limit)
    if coding == "deflate":
        return Inflater(False, limit)
    return None  # identity, or a coding nobody asked for: the bytes are kept as they came


class Inflater:
    """Decompresses incrementally with an output cap, so a bomb never inflates past `limit`.

    Hand-written over zlib.decompressobj: only `max_length` bounds what one input chunk may
    inflate to, and neither transport's own decoding passes one.
    """

    __slots__ = ("_gzip", "_head", "_limit", "_obj", "_raw", "_raw_limit", "chunks", "size")

    def __init__(self, gzip: bool, limit: int) -> None:
        self._gzip = gzip
        self._limit = limit
        # compressed input that inflates to nothing (empty gzip members, stored empty blocks)
        # could run forever without growing `size`: the input is bounded too
        self._raw_limit = limit + limit // 4 + 65536
        self._raw = 0
        self._head = b""  # deflate: the first bytes, until they tell zlib from raw deflate
        self._obj: zlib._Decompress | None = zlib.decompressobj(_GZIP) if gzip else None
        self.chunks: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> None:
        """Decode one piece of the body; raises BodyTooLarge or BodyUnreadable."""
        self._raw += len(data)
        if self._raw > self._raw_limit:
            raise BodyTooLarge
        obj = self._obj
        if obj is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = b""
            # RFC 9110's deflate is zlib-wrapped; some servers send raw deflate instead
            zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            obj = self._obj = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -15)
        while data:
            if obj.eof:
                if not self._gzip:
                    return  # bytes after a deflate stream are ignored, as zlib.decompress does
                obj = self._obj = zlib.decompressobj(_GZIP)  # a gzip body may hold more members
            try:
                out = obj.decompress(data, self._limit - self.size + 1)
            except zlib.error:
                kind = "gzip" if self._gzip else "deflate"
                raise BodyUnreadable(f"the {kind} body could not be decompressed") from None
            if out:
                self.size += len(out)
                if self.size > self._limit:
                    raise BodyTooLarge
                self.chunks.append(out)
            data = obj.unused_data if obj.eof else obj.unconsumed_tail

    def finish(self) -> None:
        """Check that the compressed body ended where it should."""
        if self._raw == 0:
            return  # an empty body stays empty whatever its Content-Encoding says
        if self._obj is None or not self._obj.eof:
            raise BodyUnreadable("the compressed body is truncated")


def too_large(request: Request, status: int | None) -> ResponseTooLarge:
    """The error for an answer past the request's `max_response_bytes` (it names no body)."""
    return ResponseTooLarge(
        "The system's answer was larger than this integration accepts, so it was not read.",
        status_code=status,
        tool=request.tool or None,
    )
