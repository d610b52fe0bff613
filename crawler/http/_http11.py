"""One HTTP/1.1 connection: a trio stream driven by an ``h11.Connection``.

This is the hot path of every crawl, so it is written for speed: a small
body is read together with the response head, timeouts are plain deadline
attributes enforced by the pool's IOWatchdog (no cancel scope per request),
the body is an async iterator class rather than an async generator, and
errors are translated in ``except`` clauses (free until something fails)
instead of a context manager entered per request. Profiles of 30,000
keep-alive GETs drove each of these choices.

The connection hands itself back exactly once per request, through the
``on_release`` callback the pool gave it: when the body has been read to the
end (still reusable), or when anything else happens (closed first). A body
abandoned half-way is never reused: the connection is closed instead, since
draining an unknown amount of data could take longer than opening a new one.
"""

from __future__ import annotations

import math
import re
import select
import ssl
from collections.abc import Callable
from typing import Any

import h11
import trio

from . import _h11_fast
from ._config import Timeout
from ._exceptions import (
    HTTPError,
    LocalProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TotalTimeout,
    WriteError,
    WriteTimeout,
    total_timeout,
)
from ._headers import Headers, check_header
from ._models import Request, Response
from ._network import IOWatchdog, describe_error, stream_io

__all__ = ["HTTP11Connection"]

READ_SIZE = 65536
#: Informational (1xx) responses accepted before the final one; a server that
#: sends more is refused rather than followed round an endless loop.
MAX_INFORMATIONAL = 100
#: Largest response head accepted; a longer one is a RemoteProtocolError.
MAX_HEADER_SIZE = 64 * 1024
_VERSIONS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}
_IO_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)

_NEED_DATA = h11.NEED_DATA
_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_Response = h11.Response
_InformationalResponse = h11.InformationalResponse
_ConnectionClosed = h11.ConnectionClosed
_DONE = h11.DONE
_current_time = trio.current_time
_INF = math.inf
_END = h11.EndOfMessage()
_METHODS = {m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_TARGET = re.compile(rb"[\x21-\x7e]+")  # h11's request-target rule: visible ASCII
# Headers that h11 itself interprets or checks: a request carrying one is
# handed to h11.Request so that its checks and error messages apply.
_H11_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})
# (name, value) -> the (name, lower-cased name, value) bytes triple h11 keeps;
# a client sends the same few headers on every request.
_ENCODED: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}
_ENCODED_MAX = 4096
_UNCACHED = frozenset({b"authorization", b"proxy-authorization", b"cookie"})
# h11's private internals are used only in _h11_fast, which falls back to
# h11's public API when the installed h11 is not the one they were written
# for. Its functions are looked up on the module (one dict lookup, no branch)
# so that the tests can switch implementations.
#: Bodies up to this size (by Content-Length) are read with the response head;
#: of any other body, up to this much is taken if it has already arrived.
EAGER_BODY_MAX = 256 * 1024
#: Request bodies of at least this many bytes are announced with
#: ``Expect: 100-continue`` (curl's figure), so that a server that will refuse
#: them can say so before megabytes go out for nothing.
EXPECT_CONTINUE_MIN = 1024 * 1024
#: How long to wait for ``100 Continue`` before sending the body anyway: many
#: servers ignore the expectation and just wait for the body (curl: 1 s).
EXPECT_CONTINUE_WAIT = 1.0
_EXPECT = ("Expect", "100-continue")


def _body_plan(triples: list[tuple[bytes, bytes, bytes]]) -> tuple[bool, bool]:
    """(read the body with the head, close the connection after this response).

    Both Content-Length and Transfer-Encoding: h11 rightly goes by the chunked
    framing, but whoever sent it disagrees with itself about where the message
    ends (the shape of a smuggling attempt), so the connection carries nothing
    more. A chunked body is of unknown length, hence never read eagerly.
    """
    length = None
    chunked = False
    for _, name, value in triples:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        return False, length is not None
    if length is None:
        return False, False
    try:
        return int(length) <= EAGER_BODY_MAX, False
    except ValueError:
        return False, False


def _encoded_item(item: tuple[str, str]) -> tuple[bytes, bytes, bytes] | None:
    """Check one header and encode it as h11's triple, or None if h11 must see it.

    Only a checked header enters ``_ENCODED``, so a cache hit needs no check.
    Credentials are never cached (a process-wide table of secrets), so they
    are checked on every request: two precompiled regex calls.
    """
    name, value = item
    check_header(name, value)
    try:
        bname = name.encode("ascii")  # a token is ASCII
        triple = (bname, bname.lower(), value.encode("latin-1"))
    except UnicodeEncodeError:
        raise LocalProtocolError(
            f"Header {name!r} cannot be sent: its name or value is not Latin-1"
        ) from None
    lname = triple[1]
    if lname in _H11_HEADERS:
        return None
    if lname not in _UNCACHED:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[item] = triple
    return triple


class HTTP11Connection:
    """One HTTP/1.1 connection to one origin, serving one request at a time.

    The small interface (``is_idle``, ``is_available``, ``has_expired``,
    ``can_handle_request``, ``is_readable``, ``close``) is what the pool relies
    on, so an HTTP/2 connection can slot in beside it.
    """

    __slots__ = (
        "_close",
        "_eof",
        "_framing_conflict",
        "_h11",
        "_head_items",
        "_host_header",
        "_poller",
        "_proxy_auth",
        "_receive",
        "_receive_now",
        "_receive_nowait",
        "_send",
        "_target_prefix",
        "deadline",
        "expect_continue_min",
        "idle_since",
        "is_closed",
        "on_release",
        "origin",
        "pool_origin",
        "pool_permit",
        "requests_served",
        "response_started",
        "timed_out",
        "watchdog",
    )

    def __init__(
        self,
        origin: tuple[str, str, int | None],
        stream: trio.abc.Stream,
        on_release: Callable[[HTTP11Connection], None],
        *,
        host_header: bytes,
        watchdog: IOWatchdog,
        max_header_size: int = MAX_HEADER_SIZE,
        expect_continue_min: float = EXPECT_CONTINUE_MIN,
        target_prefix: bytes = b"",
        proxy_authorization: bytes | None = None,
    ) -> None:
        self.origin = origin
        # Through a forward proxy: the target in absolute form ("http://host:port"
        # before the path) and the proxy's credentials on every request.
        self._target_prefix = target_prefix
        #: Smallest request body sent with ``Expect: 100-continue`` (inf: never).
        self.expect_continue_min = expect_continue_min
        self.watchdog = watchdog
        self.deadline = _INF  # trio time after which the watchdog closes us
        self.timed_out = False
        io = stream_io(stream)
        self._send = io.send_all
        self._receive = io.receive
        self._receive_now = io.receive_now
        self._receive_nowait = io.receive_nowait
        self._close = io.close
        self._poller = select.poll()
        self._poller.register(io.fileno, select.POLLIN)
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        self._host_header = (b"Host", host_header)
        head: list[tuple[bytes, bytes, bytes]] = [(b"Host", b"host", host_header)]
        self._proxy_auth: list[tuple[bytes, bytes]] = []
        if proxy_authorization is not None:
            head.append((b"Proxy-Authorization", b"proxy-authorization", proxy_authorization))
            self._proxy_auth.append((b"Proxy-Authorization", proxy_authorization))
        self._head_items = tuple(head)
        self.on_release = on_release
        self.pool_origin: Any = None
        self.pool_permit: object = None  # the pool's ConnectionPermits token, if any
        self.idle_since = 0.0
        self.is_closed = False
        self._eof = False  # the server closed its side (a body delimited by close)
        # A response carried both Content-Length and Transfer-Encoding: never
        # reused, since a proxy on the way may have framed it the other way.
        self._framing_conflict = False
        self.requests_served = 0
        self.response_started = False

    # -- the interface the pool uses ------------------------------------------

    def can_handle_request(self, origin: tuple[str, str, int | None]) -> bool:
        return origin == self.origin

    def is_idle(self) -> bool:
        return not self.is_closed and self._h11.our_state is h11.IDLE

    def is_available(self) -> bool:
        """HTTP/1.1 serves one request at a time: available means idle."""
        return self.is_idle()

    def has_expired(self, now: float, keepalive_expiry: float | None) -> bool:
        return keepalive_expiry is not None and now - self.idle_since >= keepalive_expiry

    def is_readable(self) -> bool:
        """An idle socket that is readable has been closed by the server (or sent
        garbage): either way it must not carry the next request."""
        return bool(self._poller.poll(0))

    def expire(self) -> None:
        """Called by the watchdog once ``deadline`` has passed: the waiting task
        wakes up with ClosedResourceError and reports the timeout."""
        self.timed_out = True
        self.close()

    def close(self) -> None:
        """Close at once, without awaiting: safe under cancellation and cheap.

        trio wakes any task blocked on the socket with ClosedResourceError.
        """
        if not self.is_closed:
            self.is_closed = True
            self._poller = None  # type: ignore[assignment]
            self._close()

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        where = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
        if self.is_closed:
            state = "CLOSED"
        elif self._h11.our_state is h11.IDLE:
            state = "IDLE"
        else:
            state = "ACTIVE"
        return f"<HTTP11Connection [{where}, {state}, Request Count: {self.requests_served}]>"

    # -- one exchange ------------------------------------------------------------

    async def handle_request(
        self, request: Request, timeouts: Timeout, end: float = _INF
    ) -> Response:
        """Send ``request`` and read the response head.

        A small body with a Content-Length is read here too, and the
        connection goes back to the pool before this returns: no extra round
        through the body iterator per page, and a connection that is never
        held hostage by a caller that is slow to read. Anything larger, or of
        unknown length, is streamed. ``end`` is the trio time by which the
        whole request must be over (``Timeout.total``), body included.
        """
        self.requests_served += 1
        self.response_started = False
        conn = self._h11
        writing = True
        chunks: list[bytes] = []
        finished = False
        write_t = timeouts.write
        read_t = timeouts.read
        write_error: BaseException | None = None
        receive = self._receive  # waits first: the answer cannot be here yet
        # h11's buffer is empty here (a connection with bytes left over is
        # never reused), so the first call would only say NEED_DATA.
        event: Any = _NEED_DATA
        try:
            expect = self._expects_continue(request) if request.content else False
            head_data, body_data = self._encode_request(request, expect is None)
            # The watchdog closes the connection if this deadline passes while
            # we wait: no cancel scope per request (see IOWatchdog for why).
            self.watchdog.watch()
            deadline = _INF if write_t is None else _current_time() + write_t
            self.deadline = deadline if deadline < end else end
            if expect is False:
                data = head_data + body_data if body_data else head_data
            else:
                await self._send(head_data)
                event = await self._await_continue(end)
                receive = self._receive_now
                if event is _NEED_DATA:
                    data = body_data
                    event = conn.next_event()  # the 100 may have come with more
                else:
                    data = b""  # a final answer came first: the body stays unsent
                self.watchdog.watch()  # it may have gone to sleep during the wait
                deadline = _INF if write_t is None else _current_time() + write_t
                self.deadline = deadline if deadline < end else end
            try:
                if data:
                    await self._send(data)
            except _IO_ERRORS as exc:
                if self.timed_out:
                    raise
                # The server may have answered early (413, say) and closed:
                # its response is worth more than the failed write, if it came.
                write_error = exc
                self._eof = True  # never reuse: the request went out half-sent
            writing = False
            deadline = _INF if read_t is None else _current_time() + read_t
            self.deadline = deadline if deadline < end else end
            eager = False
            buffered = 0
            informational = 0
            head: Any = None
            while True:
                kind = type(event)
                if event is _NEED_DATA:
                    if head is None or eager:
                        chunk = await receive(READ_SIZE)
                        receive = self._receive_now
                    else:
                        # Large or of unknown length (chunked, say): take what
                        # has already arrived, up to a limit, and stream the rest.
                        if buffered >= EAGER_BODY_MAX:
                            break
                        maybe = self._receive_nowait(READ_SIZE)
                        if maybe is None:
                            break
                        chunk = maybe
                    if chunk:
                        self.response_started = True
                        if read_t is not None:
                            deadline = _current_time() + read_t
                            self.deadline = deadline if deadline < end else end
                    else:
                        self._eof = True
                    conn.receive_data(chunk)
                elif kind is _Data:
                    data = event.data
                    chunks.append(data if type(data) is bytes else bytes(data))
                    buffered += len(data)
                elif kind is _EndOfMessage:
                    finished = True
                    break
                elif kind is _Response:
                    head = event
                    # h11's own (name, lower-cased name, value) triples: no
                    # list of pairs built just to be decoded and dropped.
                    triples = _h11_fast.response_triples(head)
                    eager, conflict = _body_plan(triples)
                    if conflict:
                        self._framing_conflict = True
                elif kind is _InformationalResponse:
                    informational += 1
                    if informational > MAX_INFORMATIONAL:
                        raise RemoteProtocolError(
                            f"{request.url} sent more than {MAX_INFORMATIONAL} informational "
                            "(1xx) responses before the final one",
                            request=request,
                        )
                else:
                    raise RemoteProtocolError(
                        f"Server disconnected without sending a response to {request.url}",
                        request=request,
                    )
                event = conn.next_event()
            self.deadline = _INF
        except BaseException as exc:
            timed_out = self.timed_out
            self.close()
            self.on_release(self)
            if write_error is not None and not isinstance(exc, trio.Cancelled):
                # No response to be had after all: the write's error is the story.
                raise _translate(write_error, request, "sending") from write_error
            if timed_out and not isinstance(exc, trio.Cancelled):
                if self.deadline == end:
                    raise total_timeout(request, timeouts.total) from None
                if writing:
                    raise WriteTimeout(
                        f"Timed out after {write_t} s sending the request to {request.url}",
                        request=request,
                    ) from None
                raise ReadTimeout(
                    f"Timed out after {read_t} s waiting for the response from {request.url}",
                    request=request,
                ) from None
            if isinstance(exc, HTTPError | trio.Cancelled):
                raise
            if self._eof and not self.response_started:
                raise RemoteProtocolError(
                    f"Server disconnected without sending a response to {request.url}",
                    request=request,
                ) from exc
            raise _translate(exc, request, "sending" if writing else "reading") from exc
        if finished:
            self._response_done()
        chunks.reverse()
        return Response(
            head.status_code,
            headers=Headers.from_triples(triples),
            stream=HTTP11Body(None if finished else self, request, timeouts, chunks, end),
            request=request,
            http_version=_VERSIONS.get(head.http_version, "HTTP/1.1"),
            reason_phrase=head.reason.decode("latin-1"),
        )

    def _expects_continue(self, request: Request) -> bool | None:
        """How to send a request body: False at once, True (or None, adding the
        header) after waiting for ``100 Continue``.

        A caller's own Expect header is respected either way.
        """
        given = request.headers.get("expect")
        if given is None:
            return None if len(request.content) >= self.expect_continue_min else False
        return given.strip().lower() == "100-continue"

    async def _await_continue(self, end: float) -> Any:
        """After a head sent with ``Expect: 100-continue``: ``_NEED_DATA`` to send
        the body (``100 Continue`` came, or nothing within EXPECT_CONTINUE_WAIT),
        or the final response's h11 event, which answers the request as it is.

        A cancel scope is fine here: this is the path of large uploads only.
        """
        conn = self._h11
        read = self._receive
        self.deadline = end
        with trio.move_on_at(min(_current_time() + EXPECT_CONTINUE_WAIT, end)):
            while True:
                event = conn.next_event()
                if event is _NEED_DATA:
                    chunk = await read(READ_SIZE)
                    if chunk:
                        self.response_started = True
                    else:
                        self._eof = True
                    conn.receive_data(chunk)
                    read = self._receive_now
                elif type(event) is _InformationalResponse:
                    if event.status_code == 100:
                        return _NEED_DATA
                else:
                    # h11 was told the body was sent; it was not, so the server
                    # may still read the next request as its body: close after.
                    self._eof = True
                    return event
        return _NEED_DATA

    def _encode_request(self, request: Request, expect: bool = False) -> tuple[bytes, bytes]:
        """Serialise the request head, and the body with its framing.

        ``expect`` adds ``Expect: 100-continue`` (on a copy of the headers).

        This is the last step before the socket, so it is where a header that
        could split the message is refused, whatever put it there (auth, a
        cookie, a caller changing ``request.headers`` after building it).
        Header pairs are checked once per distinct pair (``_encoded_item``,
        ``Headers.validate``), so h11 is handed the event as pre-validated
        (``_parsed=True``): it still checks the method and target, frames the
        message and tracks the state (HEAD, Connection: close), without
        running its regexes over every header (with h11 0.16; see _h11_fast).
        """
        headers = request.headers
        if expect:
            headers = headers.copy()
            headers[_EXPECT[0]] = _EXPECT[1]
        url = request.url
        method = request.method
        try:
            target = (f"{url.path}?{url.query}" if url.query else url.path).encode("ascii")
            if self._target_prefix:
                target = self._target_prefix + target
            event = self._fast_event(method, target, headers)
            if event is None:
                headers.validate()
                raw = headers.raw
                if "host" not in headers:
                    raw.insert(0, self._host_header)
                if self._proxy_auth:
                    raw.extend(self._proxy_auth)
                event = _h11_fast.request_from_pairs(
                    _METHODS.get(method) or method.encode("ascii"), target, raw
                )
        except (UnicodeEncodeError, h11.LocalProtocolError, LocalProtocolError) as exc:
            raise LocalProtocolError(
                f"Cannot send request to {url}: {exc}", request=request
            ) from None
        conn = self._h11
        head = conn.send(event)
        body = conn.send(h11.Data(data=request.content)) if request.content else b""
        return head, body + conn.send(_END)

    def _fast_event(self, method: str, target: bytes, headers: Headers) -> h11.Request | None:
        """The h11 event for the common request, built without h11's checks, or None.

        h11.Request.__init__ costs a few microseconds per request, mostly
        re-checking what is already known here. When the method is a known
        one, the target is plain visible ASCII, and no header needs h11's
        own handling (Host, Content-Length, Transfer-Encoding), the event is
        assembled from header triples checked and encoded once per distinct
        header (directly, when ``_h11_fast`` may use h11's internals). Anything
        else takes h11's constructor, errors and all.
        """
        bmethod = _METHODS.get(method)
        if bmethod is None or not _TARGET.fullmatch(target):
            return None
        items = [*self._head_items]
        cache = _ENCODED
        for item in headers._items:  # read-only; Headers is this package's own
            triple = cache.get(item)
            if triple is None:
                triple = _encoded_item(item)
                if triple is None:
                    return None
            items.append(triple)
        return _h11_fast.request_from_triples(bmethod, target, items)

    def _response_done(self) -> None:
        """The body has been read to its end: keep the connection if both sides may."""
        conn = self._h11
        if (
            conn.our_state is _DONE
            and conn.their_state is _DONE
            and not self._eof
            and not self._framing_conflict
            and not conn.trailing_data[0]  # bytes after the response: garbage
        ):
            conn.start_next_cycle()
        else:
            self.close()
        self.on_release(self)


class HTTP11Body:
    """The response body as an async iterator: buffered chunks, then the connection.

    A class with ``__anext__`` rather than an async generator: no generator
    frame to set up per response, and ``aclose()`` is plain synchronous work
    (so it completes even inside a cancelled scope).
    """

    __slots__ = ("_conn", "_end", "_pending", "_read_timeout", "_request", "_total")

    def __init__(
        self,
        conn: HTTP11Connection | None,
        request: Request,
        timeouts: Timeout,
        pending: list[bytes],
        end: float = _INF,
    ) -> None:
        self._conn = conn
        self._request = request
        self._read_timeout = timeouts.read
        self._total = timeouts.total
        self._end = end  # trio time by which the whole body must be in
        self._pending = pending  # in reverse order, so pop() is cheap

    def __aiter__(self) -> HTTP11Body:
        return self

    async def __anext__(self) -> bytes:
        if self._pending:
            return self._pending.pop()
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        h = conn._h11
        try:
            while True:
                event = h.next_event()
                kind = type(event)
                if kind is _Data:
                    data = event.data  # type: ignore[union-attr]
                    return data if type(data) is bytes else bytes(data)
                if kind is _EndOfMessage:
                    self._conn = None
                    conn._response_done()
                    raise StopAsyncIteration
                if event is _NEED_DATA:
                    timeout = self._read_timeout
                    end = self._end
                    conn.watchdog.watch()
                    if end == _INF:
                        conn.deadline = _INF if timeout is None else _current_time() + timeout
                    else:
                        now = _current_time()
                        if now >= end:  # a body read after the total timeout
                            raise total_timeout(self._request, self._total)
                        deadline = _INF if timeout is None else now + timeout
                        conn.deadline = deadline if deadline < end else end
                    chunk = await conn._receive(READ_SIZE)
                    conn.deadline = _INF
                    if not chunk:
                        conn._eof = True
                    h.receive_data(chunk)
                    continue
                raise RemoteProtocolError(  # ConnectionClosed or anything unexpected
                    f"Unexpected {event!r} while reading the body of {self._request.url}",
                    request=self._request,
                )
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            timed_out = conn.timed_out
            if self._conn is not None:
                self._conn = None
                conn.close()
                conn.on_release(conn)
            if isinstance(exc, TotalTimeout):
                raise
            if timed_out and not isinstance(exc, trio.Cancelled):
                if conn.deadline == self._end:
                    raise total_timeout(self._request, self._total) from None
                raise ReadTimeout(
                    f"Timed out after {self._read_timeout} s reading the body of "
                    f"{self._request.url}",
                    request=self._request,
                ) from None
            if isinstance(exc, HTTPError | trio.Cancelled):
                raise
            raise _translate(exc, self._request, "reading the body") from exc

    async def aclose(self) -> None:
        self._pending.clear()
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.close()
            conn.on_release(conn)


def _translate(exc: BaseException, request: Request, doing: str) -> BaseException:
    """Our exception for a library exception raised while ``doing`` something."""
    if isinstance(exc, h11.RemoteProtocolError):
        if "_SWITCH_UPGRADE" in str(exc):  # h11's only word for a 101 nobody asked for
            return RemoteProtocolError(
                f"{request.url} answered 101 Switching Protocols to a request that asked "
                "for no upgrade",
                request=request,
            )
        return RemoteProtocolError(
            f"Invalid HTTP from {request.url} while {doing}: {exc}", request=request
        )
    if isinstance(exc, h11.LocalProtocolError):
        return LocalProtocolError(f"Cannot send request to {request.url}: {exc}", request=request)
    if isinstance(exc, _IO_ERRORS):
        cls = WriteError if doing == "sending" else ReadError
        return cls(
            f"Connection to {request.url} failed while {doing}: {describe_error(exc)}",
            request=request,
        )
    return exc
