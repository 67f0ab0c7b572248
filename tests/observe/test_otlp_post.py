"""The exporter's HTTP/1.1 POSTs against collectors that answer in every way HTTP allows.

Each collector here is a real socket server that records what arrived and answers with bytes
the test chooses: a length, chunks, the end of the connection, a refusal, a dropped
keep-alive connection. The exporter must read each answer to its end, keep the connection
when it may, open another when it must, and retry only what a collector may take again.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from patchbay.observe._otlp_export import SpanShipper, SpanTemplate, encode_span, span_ids
from patchbay.observe._otlp_post import Poster

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
Answer = Callable[[int, socket.socket], None]  # (request number, connection)


class RawCollector:
    """Reads each request (headers and Content-Length body) and answers through `answer`."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/v1/traces"
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                self.requests.append((head, buffered[:length]))
                buffered = buffered[length:]
                try:
                    self._answer(len(self.requests), conn)
                except OSError:
                    return

    def close(self) -> None:
        self._server.close()


Make = Callable[[Answer], RawCollector]


@pytest.fixture
def collector() -> Iterator[Make]:
    made: list[RawCollector] = []

    def make(answer: Answer) -> RawCollector:
        made.append(RawCollector(answer))
        return made[-1]

    yield make
    for c in made:
        c.close()


def _ok(n: int, conn: socket.socket) -> None:
    conn.sendall(OK)


def test_posts_share_one_connection_and_carry_the_headers(collector: Make) -> None:
    c = collector(_ok)
    poster = Poster(c.url, {"Content-Type": "application/x-protobuf", "x-key": "s3cr3t"}, 5.0)
    try:
        assert [poster.post(b"one"), poster.post(b"two" * 50_000)] == [200, 200]
    finally:
        poster.close()
    assert c.connections == 1
    (head1, body1), (_, body2) = c.requests
    assert head1.startswith(b"POST /v1/traces HTTP/1.1\r\n")
    assert b"\r\nx-key: s3cr3t" in head1 and b"\r\nHost: 127.0.0.1:" in head1
    assert (body1, body2) == (b"one", b"two" * 50_000)


def test_a_chunked_answer_is_read_to_its_end(collector: Make) -> None:
    def chunked(n: int, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b"3\r\nabc\r\n")
        conn.sendall(b"0\r\n\r\n")

    c = collector(chunked)
    poster = Poster(c.url, {}, 5.0)
    try:
        assert [poster.post(b"a"), poster.post(b"b")] == [200, 200]
    finally:
        poster.close()
    assert c.connections == 1  # the second answer was not mistaken for the first's rest


def test_an_answer_ended_by_closing_opens_a_new_connection(collector: Make) -> None:
    def closing(n: int, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\npartial success")
        conn.shutdown(socket.SHUT_WR)

    c = collector(closing)
    poster = Poster(c.url, {}, 5.0)
    try:
        assert [poster.post(b"a"), poster.post(b"b")] == [202, 202]
    finally:
        poster.close()
    assert c.connections == 2


def test_a_collector_that_hangs_up_without_answering_is_an_error(collector: Make) -> None:
    def hang_up(n: int, conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_RDWR)

    c = collector(hang_up)
    poster = Poster(c.url, {}, 5.0)
    with pytest.raises(ConnectionError):
        poster.post(b"a")
    poster.close()


def test_a_silent_collector_times_out(collector: Make) -> None:
    c = collector(lambda n, conn: None)
    poster = Poster(c.url, {}, 0.3)
    with pytest.raises(TimeoutError):
        poster.post(b"a")
    poster.close()


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"x-key": "k\r\nX-Injected: 1"}, "control character"),
        ({"bad name": "v"}, "cannot be sent"),
        ({"Content-Length": "5"}, "cannot be sent"),
        ({"Host": "elsewhere"}, "cannot be sent"),
    ],
)
def test_headers_that_would_change_the_request_are_refused(
    headers: dict[str, str], why: str
) -> None:
    with pytest.raises(ValueError, match=why) as refused:
        Poster("http://127.0.0.1:4318/v1/traces", headers, 5.0)
    assert "\r\n" not in str(refused.value) and "X-Injected" not in str(refused.value)


@pytest.mark.parametrize("url", ["ftp://collector/v1/traces", "http:///v1/traces", "collector"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        Poster(url, {}, 5.0)


def _span(n: int) -> bytes:
    template = SpanTemplate("GET /x", 3, ())
    return encode_span(span_ids(b"t" * 16, b""), n.to_bytes(8, "big"), template, 1, 2, b"", False)


def test_the_shipper_retries_a_refusal_it_may_and_a_dropped_connection(collector: Make) -> None:
    def flaky(n: int, conn: socket.socket) -> None:
        if n == 1:
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
        elif n == 2:
            conn.shutdown(socket.SHUT_RDWR)  # a kept-alive connection the collector dropped
        else:
            conn.sendall(OK)

    c = collector(flaky)
    shipper = SpanShipper(c.url, {}, {"service.name": "t"}, "1", delay_s=60.0)
    try:
        for n in range(1, 4):
            shipper.add(_span(n))
        shipper.flush()
        assert shipper.failed == 0
        assert len(c.requests) == 3
        assert c.requests[0][1] == c.requests[2][1]  # the same export, sent again whole
    finally:
        shipper.shutdown()


def test_the_shipper_gives_up_on_a_refusal_it_may_not_retry(collector: Make) -> None:
    refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    c = collector(lambda n, conn: conn.sendall(refused))
    shipper = SpanShipper(c.url, {}, {"service.name": "t"}, "1", delay_s=60.0)
    try:
        shipper.add(_span(1))
        shipper.add(_span(2))
        shipper.flush()
        assert shipper.failed == 2
        assert len(c.requests) == 1
    finally:
        shipper.shutdown()


def test_an_endless_answer_is_given_up(collector: Make) -> None:
    def endless(n: int, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        chunk = b"x" * 65536
        while True:
            conn.sendall(chunk)

    c = collector(endless)
    poster = Poster(c.url, {}, 5.0)
    with pytest.raises(ConnectionError, match="too large"):
        poster.post(b"a")
    poster.close()


def test_a_path_and_host_beyond_ascii_are_sent_encoded(collector: Make) -> None:
    c = collector(_ok)
    url = c.url.replace("/v1/traces", "/tenants/zürich team/v1/traces?region=eu west")
    poster = Poster(url, {}, 5.0)
    try:
        assert poster.post(b"a") == 200
    finally:
        poster.close()
    ((head, _),) = c.requests
    assert head.startswith(b"POST /tenants/z%C3%BCrich%20team/v1/traces?region=eu%20west HTTP")
    # An international host name goes into Host as its ASCII (IDNA) form.
    idn = Poster("http://bücher.example:4318/v1/traces", {}, 5.0)
    assert b"Host: xn--bcher-kva.example:4318\r\n" in idn._head


def test_a_header_value_beyond_latin_1_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'x-key' has a character that HTTP cannot carry") as no:
        Poster("http://127.0.0.1:4318/v1/traces", {"x-key": "k€y"}, 5.0)
    assert "k€y" not in str(no.value)
