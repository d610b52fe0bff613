"""Real loopback servers for tests.

* ``serve_asgi``: an ASGI app under hypercorn, in the test's nursery.
* ``serve_h11``: a small HTTP/1.1 server on raw trio sockets, driven by h11,
  that counts connections as the server sees them (open now, peak, total), so
  tests can prove what the pool did instead of trusting the client's word.
* ``serve_tcp``: a raw socket handler, for servers that misbehave on purpose.
* ``trickling_server``: a handler for ``serve_tcp`` that sends its answer slowly.
* ``recorder``: a server that keeps every byte it received, for tests of what
  went on the wire.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

TCPHandler = Callable[[trio.SocketStream], Awaitable[None]]


def _with_lifespan(app: Any) -> Any:
    """Answer lifespan events for apps that only speak HTTP."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


@asynccontextmanager
async def serve_asgi(
    app: Any,
    host: str = "127.0.0.1",
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    alpn: list[str] | None = None,
) -> AsyncIterator[str]:
    """Run ``app`` under hypercorn on a free port; yield its base URL."""
    config = Config()
    config.bind = [f"{host}:0"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 30
    if certfile:
        config.certfile = certfile
        config.keyfile = keyfile
        if alpn is not None:
            config.alpn_protocols = alpn
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, _with_lifespan(app), config, shutdown_trigger=shutdown.wait)
        )
        try:
            yield binds[0].rstrip("/")
        finally:
            shutdown.set()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def serve_tcp(handler: TCPHandler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Call ``handler(stream)`` for every accepted connection; yield the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=host))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection_id: int


Responder = Callable[[Seen], Reply | Awaitable[Reply]]


def _default_responder(seen: Seen) -> Reply:
    return Reply(200, [("Content-Type", "text/plain")], f"ok {seen.target}".encode())


@dataclass
class H11Server:
    """Server-side view of what happened: the ground truth for pool tests."""

    host: str
    port: int = 0
    responder: Responder = _default_responder
    ssl_context: ssl.SSLContext | None = None
    open_now: int = 0
    peak_open: int = 0
    connections_total: int = 0
    requests: list[Seen] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections_total += 1
        conn_id = self.connections_total
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        io: trio.abc.Stream = stream
        try:
            if self.ssl_context is not None:
                io = trio.SSLStream(stream, self.ssl_context, server_side=True)
                await io.do_handshake()
            await self._serve_connection(io, conn_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            pass
        finally:
            self.open_now -= 1
            self.closed.set()
            self.closed = trio.Event()
            await trio.aclose_forcefully(io)

    async def _serve_connection(self, io: trio.abc.Stream, conn_id: int) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = await self._next_event(conn, io)
            if event is None:
                return
            assert isinstance(event, h11.Request)
            body = b""
            while True:
                ev = await self._next_event(conn, io)
                if ev is None:
                    return
                if isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    break
            seen = Seen(
                event.method.decode(),
                event.target.decode(),
                {k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
                body,
                conn_id,
            )
            self.requests.append(seen)
            reply = self.responder(seen)
            if not isinstance(reply, Reply):
                reply = await reply
            headers = list(reply.headers)
            if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
                headers.append(("Content-Length", str(len(reply.body))))
            data = conn.send(h11.Response(status_code=reply.status, headers=headers))
            data += conn.send(h11.Data(data=reply.body)) if reply.body else b""
            data += conn.send(h11.EndOfMessage())
            await io.send_all(data)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    @staticmethod
    async def _next_event(conn: h11.Connection, io: trio.abc.Stream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await io.receive_some(65536)))
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            return event


@asynccontextmanager
async def serve_h11(
    responder: Responder = _default_responder,
    host: str = "127.0.0.1",
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[H11Server]:
    server = H11Server(host=host, responder=responder, ssl_context=ssl_context)
    async with serve_tcp(server.handle, host) as port:
        server.port = port
        yield server


# -- raw handlers and recorders for serve_tcp --------------------------------------

_SHORT_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HUGE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"


async def read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """One request head, and whatever of the body came with it."""
    data = b""
    for _ in range(10_000):
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            return head.lower(), rest
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data.lower(), b""


def trickling_server(head: bytes, *, drip_head: bool = False) -> TCPHandler:
    """Sends ``head`` (a byte at a time if ``drip_head``), then a body byte every 50 ms."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            try:
                if not drip_head:
                    await stream.send_all(head)
                for i in range(2000):
                    if drip_head and i < len(head):
                        await stream.send_all(head[i : i + 1])
                    else:
                        await stream.send_all(b"x")
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass  # the client gave up, as it should

    return handler


@dataclass
class Recorder:
    """An HTTP/1.1 server that keeps every byte it received, on every connection,
    and answers each request head with a short 200."""

    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    open: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self.open += 1
        pending = b""
        try:
            async with stream:
                for _ in range(10_000):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    self.received += chunk
                    pending += chunk
                    while b"\r\n\r\n" in pending:
                        _, pending = pending.split(b"\r\n\r\n", 1)
                        await stream.send_all(_SHORT_OK)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.open -= 1
            self.changed.set()
            self.changed = trio.Event()

    async def quiet(self) -> None:
        """Wait until every connection has ended, so ``received`` is complete."""
        while self.open:
            await self.changed.wait()


@asynccontextmanager
async def recorder() -> AsyncIterator[tuple[str, Recorder]]:
    server = Recorder()
    async with serve_tcp(server.handle) as port:
        yield f"http://127.0.0.1:{port}", server
