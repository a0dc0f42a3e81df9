"""ghostgpt.server.CoalescingTransport: the writes of one turn of the event loop leave as one,
in order, and nothing pending is lost or sent late at a close."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import uvloop

from ghostgpt.server import COALESCE_MAX_BYTES, CoalescingTransport


class Recording:
    """The transport under the wrapper: what reached it, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(bytes(data))
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def _run(test: Any) -> None:
    async def main() -> None:
        inner = Recording()
        await test(inner, CoalescingTransport(cast(asyncio.Transport, inner), asyncio.get_running_loop()))

    uvloop.run(main())


def test_the_writes_of_one_turn_leave_as_one_write_at_the_next_turn() -> None:
    async def test(inner: Recording, transport: CoalescingTransport) -> None:
        for piece in (b"head\r\n", b"", b"data: 1\n\n", bytearray(b"data: 2\n\n"), memoryview(b"data: [DONE]\n\n")):
            transport.write(piece)
        assert inner.writes == []  # nothing yet: the turn is not over
        assert transport.get_write_buffer_size() == len(b"head\r\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n")
        await asyncio.sleep(0)
        assert inner.writes == [b"head\r\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"]
        transport.write(b"next")
        transport.writelines([b" turn", b"!"])
        await asyncio.sleep(0)
        assert inner.writes[1:] == [b"next turn!"]
        await asyncio.sleep(0)
        assert len(inner.writes) == 2  # no empty writes from an idle turn
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's

    _run(test)


def test_a_close_sends_what_is_pending_first_and_an_abort_drops_it() -> None:
    async def test(inner: Recording, transport: CoalescingTransport) -> None:
        transport.write(b"last words")
        transport.close()
        assert inner.events == ["write", "close"] and inner.writes == [b"last words"]
        await asyncio.sleep(0)  # the scheduled flush finds nothing, writes nothing after the close
        assert inner.events == ["write", "close"]

    _run(test)

    async def aborted(inner: Recording, transport: CoalescingTransport) -> None:
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)
        assert inner.events == ["abort"]

    _run(aborted)

    async def eof(inner: Recording, transport: CoalescingTransport) -> None:
        transport.write(b"answer")
        transport.write_eof()
        assert inner.events == ["write", "eof"]

    _run(eof)


def test_a_large_answer_is_written_at_once_so_flow_control_sees_it() -> None:
    async def test(inner: Recording, transport: CoalescingTransport) -> None:
        piece = b"x" * (COALESCE_MAX_BYTES // 4)
        for _ in range(4):
            transport.write(piece)
        assert inner.writes == [piece * 4]  # at the limit: sent within the turn
        transport.write(b"tail")
        assert len(inner.writes) == 1
        await asyncio.sleep(0)
        assert inner.writes[1:] == [b"tail"]

    _run(test)


def test_what_is_pending_when_the_connection_is_gone_is_dropped() -> None:
    async def test(inner: Recording, transport: CoalescingTransport) -> None:
        transport.write(b"to a client that left")
        inner.closing = True  # the connection was lost
        await asyncio.sleep(0)
        assert inner.writes == []

    _run(test)


def test_over_a_real_socket_every_byte_arrives_in_order_and_a_close_ends_it_after_them() -> None:
    """uvloop's own transport under the wrapper: pieces written across turns, a large
    burst past the limit, then a close in the same turn as the last write — the peer reads
    exactly what was written, then EOF."""
    pieces = [b"HTTP/1.1 200 OK\r\n\r\n", *(b"data: %d\n\n" % n for n in range(33)), b"x" * COALESCE_MAX_BYTES]

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            wrapped = CoalescingTransport(cast(asyncio.Transport, transport), asyncio.get_running_loop())

            async def answer() -> None:
                for number, piece in enumerate(pieces):
                    wrapped.write(piece)
                    if number % 10 == 0:
                        await asyncio.sleep(0)
                wrapped.write(b"last")
                wrapped.close()

            self.task = asyncio.ensure_future(answer())

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        received = await asyncio.wait_for(reader.read(), 10)  # to EOF
        writer.close()
        server.close()
        return received

    assert uvloop.run(main()) == b"".join(pieces) + b"last"
