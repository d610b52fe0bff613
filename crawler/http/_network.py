"""Opening TCP and TLS streams, with errors translated into our exception tree.

Everything here runs once per connection, never per request, so clarity wins
over speed: the one job is to turn the many ways a connect can fail (refused,
unreachable, DNS, TLS handshake, certificate) into a ConnectError or
ConnectTimeout that names the URL.
"""

from __future__ import annotations

import contextlib
import errno
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, NamedTuple, Protocol

import h11
import trio

from ._exceptions import ConnectError, ConnectTimeout, ProxyError
from ._models import Request
from ._socks import open_socks_stream

if TYPE_CHECKING:
    from ._proxy import Proxy

__all__ = ["IOWatchdog", "StreamIO", "describe_error", "open_stream", "stream_io"]


_MAX_DEPTH = 16  # causes and groups looked through; real chains are 3 deep
# getaddrinfo's error codes are not errnos: their names come from the socket module.
_EAI_NAMES = {
    value: name
    for name, value in vars(socket).items()
    if name.startswith("EAI_") and isinstance(value, int)
}


def describe_error(exc: BaseException, address: str | None = None) -> str:
    """One line saying what went wrong, in the operating system's own words and errno
    name when it said something ("connection refused to 127.0.0.1:1 (ECONNREFUSED)").

    trio wraps what the OS said: a refused connect is "all attempts to connect to
    host:port failed", with the refusal two causes down inside an exception group,
    so this digs the innermost OS error out. ``address`` (``host:port``) is given
    for connects, and says where.
    """
    cause = exc
    while isinstance(cause, trio.BrokenResourceError | trio.ClosedResourceError) and (
        cause.__cause__ is not None
    ):
        cause = cause.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {cause.verify_message or cause}"
    text = str(cause) or type(cause).__name__
    if isinstance(cause, ssl.SSLError):
        return f"TLS error: {text}"
    os_error = _root_os_error(cause)
    if os_error is None or isinstance(os_error, ssl.SSLError):
        return text
    return _describe_os_error(os_error, address)


def _root_os_error(error: BaseException) -> OSError | None:
    """The innermost OSError with an errno among ``error``'s causes (groups included;
    of several connection attempts, the last one)."""
    found: OSError | None = None
    pending: list[tuple[BaseException, int]] = [(error, 0)]
    while pending:
        exc, depth = pending.pop()
        if depth > _MAX_DEPTH:
            continue
        if isinstance(exc, OSError) and exc.errno is not None:
            found = exc
        if isinstance(exc, BaseExceptionGroup):
            pending.extend((inner, depth + 1) for inner in reversed(exc.exceptions))
        if exc.__cause__ is not None:
            pending.append((exc.__cause__, depth + 1))
    return found


def _describe_os_error(error: OSError, address: str | None) -> str:
    code = error.errno or 0  # _root_os_error only returns errors with one
    reason = error.strerror or str(error)
    reason = reason[:1].lower() + reason[1:]
    if isinstance(error, socket.gaierror):
        host = address.rpartition(":")[0] if address else "the host"
        return f"cannot resolve {host}: {reason} ({_EAI_NAMES.get(code, code)})"
    name = errno.errorcode.get(code, str(code))
    if address is None:
        return f"{reason} ({name})"
    if code == errno.ECONNREFUSED:
        return f"connection refused to {address} ({name})"
    return f"cannot connect to {address}: {reason} ({name})"


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_stream(
    request: Request,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    connect_timeout: float | None,
    proxy: Proxy | None = None,
) -> trio.abc.Stream:
    """Connect (and handshake, for TLS) within ``connect_timeout`` seconds.

    With a ``proxy``, the TCP connection goes to the proxy; for TLS a
    ``CONNECT`` tunnel to ``host:port`` is opened first (a SOCKS5 proxy
    tunnels every connection), and the handshake (certificate check and ALPN
    included) is made with the origin through it.
    """
    stream: trio.abc.Stream | None = None
    via = "" if proxy is None else f" via proxy {proxy.label}"
    with trio.move_on_after(math.inf if connect_timeout is None else connect_timeout) as scope:
        try:
            if proxy is None:
                stream = await trio.open_tcp_stream(host, port)
            elif not proxy.forwards:
                stream = await open_socks_stream(request, host, port, proxy, host_port(host, port))
            else:
                stream = await trio.open_tcp_stream(proxy.host, proxy.port)
                if ssl_context is not None:
                    await _tunnel(stream, request, host, port, proxy)
            if ssl_context is not None:
                tls = trio.SSLStream(
                    stream, ssl_context, server_hostname=host, https_compatible=True
                )
                try:
                    await tls.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(tls)
                    raise
                stream = tls
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            where = host_port(host, port) if proxy is None else host_port(proxy.host, proxy.port)
            reason = describe_error(exc, where)
            raise ConnectError(
                f"Could not connect to {request.url}{via}: {reason}",
                request=request,
                reason=reason,
            ) from exc
        except BaseException:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise
    if scope.cancelled_caught or stream is None:
        raise ConnectTimeout(
            f"Timed out after {connect_timeout} s connecting to {request.url}{via}",
            request=request,
        )
    return stream


_MAX_CONNECT_RESPONSE = 64 * 1024


async def _tunnel(
    stream: trio.abc.Stream, request: Request, host: str, port: int, proxy: Proxy
) -> None:
    """Ask ``proxy`` (connected on ``stream``) for a tunnel to ``host:port``.

    h11 frames the exchange: it knows that a 2xx answer to CONNECT ends HTTP
    on the connection, and bounds the size of the answer's head.
    """
    target = host_port(host, port).encode("ascii")
    headers = [(b"Host", target)]
    if proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", proxy.authorization))
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_CONNECT_RESPONSE)
    await stream.send_all(conn.send(h11.Request(method=b"CONNECT", target=target, headers=headers)))
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProxyError(
                f"Proxy {proxy.label} sent an invalid answer to CONNECT {target.decode()} "
                f"for {request.url}: {exc}",
                request=request,
                proxy=proxy.label,
            ) from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(16384)
            if not data:
                raise ProxyError(
                    f"Proxy {proxy.label} closed the connection before answering "
                    f"CONNECT {target.decode()} for {request.url}",
                    request=request,
                    proxy=proxy.label,
                )
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        assert isinstance(event, h11.Response)
        if 200 <= event.status_code < 300:
            return
        reason = event.reason.decode("latin-1", "replace")
        raise ProxyError(
            f"Proxy {proxy.label} refused CONNECT {target.decode()} for {request.url}: "
            f"{event.status_code} {reason}".rstrip(),
            request=request,
            proxy=proxy.label,
            status_code=event.status_code,
        )


class StreamIO(NamedTuple):
    """The four I/O operations a connection needs, bound to one stream.

    ``receive`` waits for readability first (the right call right after a
    request was sent, when nothing can have arrived yet, and a guaranteed
    checkpoint); ``receive_now`` tries the socket first (for the rest of a
    response, which has often arrived already); ``receive_nowait`` never
    waits and returns None when nothing is there (always, for TLS).
    ``close`` is synchronous.
    """

    send_all: Callable[[bytes], Awaitable[None]]
    receive: Callable[[int], Awaitable[bytes]]
    receive_now: Callable[[int], Awaitable[bytes]]
    receive_nowait: Callable[[int], bytes | None]
    close: Callable[[], None]
    fileno: int


def stream_io(stream: trio.abc.Stream) -> StreamIO:
    """Bind the I/O operations for ``stream``, which the caller must not use again.

    A plain TCP stream is unwrapped to its OS socket and driven with trio's
    public low-level waits: trio's SocketStream costs a scheduler round trip
    and two context managers per call, and a request makes three calls, which
    profiles showed as a tenth of a request's CPU time. TLS streams are used
    as they are.
    """
    if isinstance(stream, trio.SocketStream):
        return _raw_socket_io(socket.socket(fileno=stream.socket.detach()))
    transport = stream
    while isinstance(transport, trio.SSLStream):
        transport = transport.transport_stream
    sock = transport.socket  # type: ignore[attr-defined]
    receive = stream.receive_some
    return StreamIO(
        stream.send_all,
        receive,  # type: ignore[arg-type]
        receive,  # type: ignore[arg-type]
        _nothing,
        sock.close,
        sock.fileno(),
    )


def _nothing(max_bytes: int) -> bytes | None:
    return None


def _raw_socket_io(sock: socket.socket) -> StreamIO:
    sock.setblocking(False)
    wait_readable = trio.lowlevel.wait_readable
    wait_writable = trio.lowlevel.wait_writable
    send = sock.send
    recv = sock.recv

    async def send_all(data: bytes) -> None:
        try:
            sent = send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(view):
            await wait_writable(sock)
            with contextlib.suppress(BlockingIOError):
                sent += send(view[sent:])

    async def receive(max_bytes: int) -> bytes:
        while True:
            await wait_readable(sock)
            try:
                return recv(max_bytes)
            except BlockingIOError:
                pass

    async def receive_now(max_bytes: int) -> bytes:
        try:
            return recv(max_bytes)
        except BlockingIOError:
            return await receive(max_bytes)

    def receive_nowait(max_bytes: int) -> bytes | None:
        try:
            return recv(max_bytes)
        except BlockingIOError:
            return None

    def close() -> None:
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    return StreamIO(send_all, receive, receive_now, receive_nowait, close, sock.fileno())


class Watched(Protocol):
    """What the watchdog needs from a connection."""

    deadline: float

    def expire(self) -> None: ...


class IOWatchdog:
    """Enforces the read and write deadlines of a pool's connections.

    Why not a cancel scope per request: entering one, registering its deadline
    and leaving it cost about 5% of the CPU of a keep-alive request, the
    largest item we could remove. Instead a connection writes its deadline
    into a plain attribute before each wait (a float store), and one task per
    pool sleeps until the earliest deadline and closes the connections that
    passed theirs; trio then wakes the waiting task with ClosedResourceError,
    which the connection reports as a ReadTimeout or WriteTimeout.

    The task is a trio system task, started on first use: the pool is built
    outside any nursery, and the task holds nothing of its own. It waits on an
    event while no deadline is pending, stops at ``close()``, and is cancelled
    with the run at the latest. A deadline set while it sleeps towards a later
    one is noticed within ``TICK`` seconds.
    """

    TICK = 0.1

    def __init__(self, connections: Collection[Watched]) -> None:
        self._connections = connections
        self._wakeup: trio.Event | None = None
        self._running = False
        self._closed = False
        self._sleep = trio.CancelScope()  # cancelled by close() to end the task at once

    def watch(self) -> None:
        """A deadline is about to be set: make sure someone is watching."""
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()
        elif not self._running and not self._closed:
            self._running = True
            trio.lowlevel.spawn_system_task(self._run, name="crawler.http I/O watchdog")

    def close(self) -> None:
        self._closed = True
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()
        self._sleep.cancel()

    async def _run(self) -> None:
        try:
            while not self._closed:
                now = trio.current_time()
                soonest = math.inf
                for conn in self._connections:
                    deadline = conn.deadline
                    if deadline <= now:
                        conn.expire()
                    elif deadline < soonest:
                        soonest = deadline
                if soonest == math.inf:
                    wakeup = self._wakeup = trio.Event()
                    await wakeup.wait()
                else:
                    with self._sleep:
                        await trio.sleep_until(min(soonest, now + self.TICK))
                    self._sleep = trio.CancelScope()
        finally:
            self._running = False
            self._wakeup = None
