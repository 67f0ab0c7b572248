"""`patchbay serve` sends each answer in one write: head and body leave together."""

from __future__ import annotations

import asyncio
from typing import Any

from patchbay.gateway._protocol import _OneWrite


class Recording:
    """The part of a transport the wrapper uses, keeping what was written and when."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.extra = {"peername": ("127.0.0.1", 5000)}

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


async def test_writes_of_one_turn_of_the_loop_leave_as_one() -> None:
    raw = Recording()
    transport = _OneWrite(raw)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"ok")
    assert raw.writes == []  # nothing leaves before the turn ends
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert raw.writes[1:] == [b"next"]


async def test_close_sends_what_is_queued_first_and_nothing_after() -> None:
    raw = Recording()
    transport = _OneWrite(raw)  # type: ignore[arg-type]
    transport.write(b"last answer")
    transport.close()
    assert raw.writes == [b"last answer"] and raw.closed
    transport.write(b"too late")
    await asyncio.sleep(0)  # the queued flush finds the transport closing and drops it
    assert raw.writes == [b"last answer"]


async def test_everything_else_is_the_transports() -> None:
    raw = Recording()
    transport = _OneWrite(raw)  # type: ignore[arg-type]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5000)
    assert transport.is_closing() is False
