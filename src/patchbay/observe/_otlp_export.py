"""Finished spans, batched on a thread and sent as OTLP/HTTP protobuf to a collector.

Written by hand rather than with the SDK's exporter: measured at 64 tool calls in flight, the
SDK's span objects and its encoder cost more CPU than the tool calls themselves (traced calls
ran at under half the untraced rate). Here a finished span is one tuple appended to a deque;
the thread encodes a batch directly in the protobuf wire format (ExportTraceServiceRequest,
opentelemetry-proto's trace.proto), with the attributes that never change for a tool or an
endpoint encoded once. The tests decode what a receiver gets with opentelemetry-proto itself.
"""

from __future__ import annotations

import atexit
import collections
import http.client
import logging
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

__all__ = ["SpanRecord", "SpanShipper", "encode_request"]

log = logging.getLogger("patchbay.observe")

Scalar = str | bool | int | float
Attrs = tuple[tuple[str, Scalar], ...]
# trace id, span id, parent span id (b"" for a root), name, kind (1 internal, 3 client),
# start and end (ns since the epoch), constant attributes, other attributes,
# events [(time ns, name, attributes)], error (status ERROR)
SpanRecord = tuple[
    bytes, bytes, bytes, str, int, int, int, Attrs, list[tuple[str, Scalar]],
    list[tuple[int, str, Attrs]] | None, bool,
]  # fmt: skip

_Q = struct.Struct("<Q").pack
_D = struct.Struct("<d").pack
_ERROR_STATUS = b"\x7a\x02\x18\x02"  # Span.status (15) = Status{code (3): STATUS_CODE_ERROR}
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


_SMALL = [bytes((i,)) for i in range(128)]
_MAX_CACHED = 4096  # encoded attributes and names kept, then encoded per span


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def _text(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def _key_value(key: str, value: Scalar) -> bytes:
    """A KeyValue message: key (1) and AnyValue (2) of string, bool, int64 or double."""
    if isinstance(value, bool):
        any_value = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int):
        any_value = b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64, two's complement
    elif isinstance(value, float):
        any_value = b"\x21" + _D(value)
    else:
        any_value = _field(b"\x0a", _text(str(value)))
    return _field(b"\x0a", _text(key)) + _field(b"\x12", any_value)


def _attributes(tag: bytes, attrs: Sequence[tuple[str, Scalar]]) -> bytes:
    return b"".join(_field(tag, _key_value(k, v)) for k, v in attrs)


class _Encoder:
    """Encodes batches of span records; the constant attribute sets are encoded once each."""

    def __init__(self, resource: Mapping[str, Scalar], scope: str, version: str) -> None:
        self._resource = _field(b"\x0a", _attributes(b"\x0a", list(resource.items())))
        self._scope = _field(
            b"\x0a", _field(b"\x0a", _text(scope)) + _field(b"\x12", _text(version))
        )
        self._constant: dict[Attrs, bytes] = {}
        # Most values repeat (statuses, counts, names): each (key, value) is encoded once.
        self._pairs: dict[tuple[str, Scalar], bytes] = {}
        self._names: dict[str, bytes] = {}

    def _extra(self, extra: Sequence[tuple[str, Scalar]]) -> bytes:
        pairs = self._pairs
        out = []
        for pair in extra:
            found = pairs.get(pair)
            if found is None:
                found = _field(b"\x4a", _key_value(*pair))
                if len(pairs) < _MAX_CACHED:
                    pairs[pair] = found
            out.append(found)
        return b"".join(out)

    def _span(self, record: SpanRecord) -> bytes:
        trace_id, span_id, parent, name, kind, start, end, const, extra, events, error = record
        constant = self._constant.get(const)
        if constant is None:
            constant = self._constant[const] = _attributes(b"\x4a", const)
        parts = [b"\x0a\x10", trace_id, b"\x12\x08", span_id]
        if parent:
            parts += (b"\x22\x08", parent)
        named = self._names.get(name)
        if named is None:
            named = _field(b"\x2a", _text(name))
            if len(self._names) < _MAX_CACHED:
                self._names[name] = named
        parts += (
            named,
            b"\x30" + _varint(kind),
            b"\x39" + _Q(start),
            b"\x41" + _Q(end),
            constant,
            self._extra(extra),
        )
        for at, event, attrs in events or ():
            body = b"\x09" + _Q(at) + _field(b"\x12", _text(event)) + _attributes(b"\x1a", attrs)
            parts.append(_field(b"\x5a", body))
        if error:
            parts.append(_ERROR_STATUS)
        return b"".join(parts)

    def request(self, batch: Sequence[SpanRecord]) -> bytes:
        """An ExportTraceServiceRequest: one resource, one scope, the batch's spans."""
        spans = b"".join(_field(b"\x12", self._span(r)) for r in batch)
        scope_spans = _field(b"\x12", self._scope + spans)
        return _field(b"\x0a", self._resource + scope_spans)


def encode_request(
    batch: Sequence[SpanRecord], resource: Mapping[str, Scalar], version: str = ""
) -> bytes:
    """The protobuf bytes of an ExportTraceServiceRequest for `batch` (for tests and tools)."""
    return _Encoder(resource, "patchbay", version).request(batch)


class SpanShipper:
    """Buffers finished spans and sends them in batches from a daemon thread.

    `add` never blocks: past `max_queue` spans waiting, new ones are dropped and counted
    (`dropped`). A batch leaves every `delay_s`, or as soon as `batch` spans wait.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        resource: Mapping[str, Scalar],
        version: str,
        *,
        max_queue: int = 16384,
        batch: int = 512,
        delay_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._url = url
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # One kept-alive connection, used by the exporting thread only (under `_lock`): a new
        # connection per export costs more CPU than encoding the spans.
        self._conn: http.client.HTTPConnection | None = None
        self._headers = {"Content-Type": "application/x-protobuf", **headers}
        self._encoder = _Encoder(resource, "patchbay", version)
        self._queue: collections.deque[SpanRecord] = collections.deque()
        self._max = max_queue
        self._batch = batch
        self._delay = delay_s
        self._timeout = timeout_s
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one export at a time: the thread's, or a flush's
        self._stopped = False
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="patchbay-otlp", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    def add(self, record: SpanRecord) -> None:
        """Queue one finished span (called on the event loop: an append, rarely a wake-up)."""
        queue = self._queue
        if len(queue) >= self._max:
            self.dropped += 1
            return
        queue.append(record)
        if len(queue) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Send every queued span now (blocking: from a thread or outside the event loop)."""
        with self._lock:
            queue = self._queue
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), self._batch))]
                self._send(self._encoder.request(batch), len(batch))

    def _send(self, body: bytes, count: int) -> None:
        why = ""
        for attempt in range(3):
            if attempt:
                time.sleep(0.5 * attempt)
            try:
                status = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                why = type(exc).__name__
                continue
            if 200 <= status < 300:
                return
            why = f"HTTP {status}"
            if status not in _RETRY_STATUSES:
                break
        # The collector's URL and headers are not logged: its headers may hold its key.
        log.warning("otlp: %d spans not exported to the collector (%s)", count, why)
        self.failed += count

    def _post(self, body: bytes) -> int:
        """POST one export on the kept-alive connection (no proxy: settings come from the
        config, never from the environment); the answer's status."""
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self._timeout)
        self._conn.request("POST", self._path, body=body, headers=self._headers)
        answer = self._conn.getresponse()
        answer.read()
        if answer.will_close:
            self._drop_connection()
        return answer.status

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def shutdown(self) -> None:
        """Send what is queued and stop the thread."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=self._timeout)
        self.flush()
        with self._lock:
            self._drop_connection()
        atexit.unregister(self.shutdown)
