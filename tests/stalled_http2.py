"""A deliberately stalled gRPC client, for tests of what a server does with one."""

from __future__ import annotations

import asyncio
import contextlib
import struct as binary
from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


class StalledHttp2Stream:
    """A server-streaming call over a hand-written HTTP/2 connection that announces a stream
    flow-control window of 0 bytes: the server can accept the call and send headers, but not one
    byte of a message, until `resume` opens the window. It answers SETTINGS and PING so the
    connection stays up."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
    END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
    STREAM = 1

    def __init__(self) -> None:
        self.headers_received = asyncio.Event()
        self.ended = asyncio.Event()
        self.body = b""
        self.reset = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, address: str, method_path: str, request: Message) -> StalledHttp2Stream:
        self = cls()
        host, port = address.rsplit(":", 1)
        reader, self._writer = await asyncio.open_connection(host, int(port))
        settings = binary.pack(">HI", 0x2, 0) + binary.pack(">HI", 0x4, 0)  # ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 0
        body = request.SerializeToString()
        headers = b"".join(
            cls._literal(name, value)
            for name, value in (
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", method_path.encode()),
                (b":authority", address.encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            )
        )
        self._writer.write(
            cls.PREFACE
            + cls._frame(cls.SETTINGS, 0, 0, settings)
            + cls._frame(cls.HEADERS, cls.END_HEADERS, cls.STREAM, headers)
            + cls._frame(cls.DATA, cls.END_STREAM, cls.STREAM, b"\0" + binary.pack(">I", len(body)) + body)
        )
        await self._writer.drain()
        self._reader_task = asyncio.create_task(self._read(reader))
        return self

    @staticmethod
    def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return binary.pack(">I", len(payload))[1:] + bytes([kind, flags]) + binary.pack(">I", stream) + payload

    @staticmethod
    def _literal(name: bytes, value: bytes) -> bytes:
        """HPACK literal header field without indexing, new name, no Huffman (short strings)."""
        assert len(name) < 127 and len(value) < 127
        return b"\0" + bytes([len(name)]) + name + bytes([len(value)]) + value

    async def _read(self, reader: asyncio.StreamReader) -> None:
        assert self._writer is not None
        try:
            while True:
                header = await reader.readexactly(9)
                length = int.from_bytes(header[:3], "big")
                kind, flags = header[3], header[4]
                stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                payload = await reader.readexactly(length)
                if kind == self.SETTINGS and not flags & self.ACK:
                    self._writer.write(self._frame(self.SETTINGS, self.ACK, 0, b""))
                elif kind == self.PING and not flags & self.ACK:
                    self._writer.write(self._frame(self.PING, self.ACK, 0, payload))
                elif stream == self.STREAM and kind == self.HEADERS:
                    self.headers_received.set()
                elif stream == self.STREAM and kind == self.DATA:
                    self.body += payload
                elif (stream == self.STREAM and kind == self.RST_STREAM) or kind == self.GOAWAY:
                    self.reset = True
                    self.ended.set()
                if stream == self.STREAM and kind in (self.DATA, self.HEADERS) and flags & self.END_STREAM:
                    self.ended.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ended.set()

    def messages(self, message_type: type[M]) -> list[M]:
        """The gRPC messages received so far, decoded."""
        found, body = [], self.body
        while len(body) >= 5:
            size = int.from_bytes(body[1:5], "big")
            if len(body) < 5 + size:
                break
            found.append(message_type.FromString(body[5 : 5 + size]))
            body = body[5 + size :]
        return found

    async def resume(self) -> None:
        """Open the stream's and the connection's windows wide: the server may send again."""
        assert self._writer is not None
        increment = binary.pack(">I", 1 << 24)
        self._writer.write(
            self._frame(self.WINDOW_UPDATE, 0, self.STREAM, increment) + self._frame(self.WINDOW_UPDATE, 0, 0, increment)
        )
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer is not None:
            if not self.ended.is_set():  # cancel the call (CANCEL = 0x8) before hanging up
                self._writer.write(self._frame(self.RST_STREAM, 0, self.STREAM, binary.pack(">I", 0x8)))
            self._writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._reader_task
