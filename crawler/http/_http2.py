"""One HTTP/2 connection: many concurrent streams over one trio stream, driven by h2.

Each connection runs one background task holding a reader and a writer. The
reader is the only code that calls ``receive_data``: it turns frames into
per-stream state (head, buffered data, end, error) and wakes the task waiting
on that stream. The writer is the only code that touches the socket for
sending: request tasks queue frames in h2's buffer (a synchronous call) and
wake it. So nothing a request task does to the protocol state needs an
await, which is what makes cancellation simple: a cancelled or abandoned
stream is reset (RST_STREAM CANCEL) and its slot given back synchronously,
even inside a cancelled scope.

Why a trio *system* task: the pool is shared by many tasks in many nurseries
and has no nursery of its own, and a connection must outlive the request that
happened to open it. The task owns nothing but this connection; it ends when
the connection closes (``close()`` cancels it, ``ConnectionPool.aclose()``
closes every connection), and every error inside it is caught and reported
to the streams, so it can never crash the run. The IOWatchdog is the
precedent for the same choice.

Flow control: our connection-level receive window is opened to the maximum
at once, and each stream gets its own window (``STREAM_WINDOW``). Received
data is acknowledged when the consumer takes it from the stream, so a slow
reader only stops its own stream: its window fills, the others keep flowing.
Request bodies go out one frame at a time within the server's windows,
waiting for WINDOW_UPDATE when they are exhausted.

GOAWAY: streams above the server's last-stream-id were not processed and fail
with ``StreamUnprocessed`` (the pool sends them again on a new connection);
the others finish normally, and the connection closes once they have (see
``_GracefulH2Connection`` for what that takes with h2).

Liveness: while streams are open and nothing has arrived for
``ping_interval`` seconds, a PING goes out; if nothing at all arrives within
``ping_timeout`` after it, the connection is declared dead, its streams fail
with ``ConnectionLost`` and the pool replaces it.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import trio
from h2.errors import ErrorCodes

from ._config import Timeout
from ._exceptions import (
    HTTPError,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
    total_timeout,
)
from ._h2_errors import ConnectionLost, StreamUnprocessed
from ._headers import Headers, is_token
from ._http11 import MAX_INFORMATIONAL
from ._models import Request, Response
from ._network import describe_error, stream_io

__all__ = ["ConnectionLost", "HTTP2Body", "HTTP2Connection", "StreamUnprocessed"]

READ_SIZE = 65536
_IO_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)
_INF = math.inf
_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65535
#: Highest stream id a client may open (odd ids up to 2**31 - 1).
_MAX_STREAM_ID = 2**31 - 1
# Connection-specific headers are forbidden in HTTP/2 (RFC 9113 8.2.2); Host
# becomes :authority.
_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)

# What may go into :path: visible ASCII, as for an HTTP/1.1 request target.
_TARGET = re.compile(r"[\x21-\x7e]+")

# What a response header field must be to be passed on (RFC 9113 8.2.1, the
# rules h11 holds HTTP/1.1 heads to): a name that is a token (uppercase
# tolerated), a value without CR, LF or NUL. h2's own inbound validation would
# check this, but it costs ten times as much (a Python loop over every byte),
# refuses harmless things (uppercase names, padded values) and answers with
# GOAWAY, failing every other stream of the connection.
_FIELD_NAME = re.compile(rb":?[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_FIELD_VALUE = re.compile(rb"[\r\n\x00]")
# Names already seen to be tokens: the same few dozen come in every response,
# so most names cost a set lookup. Bounded, as servers choose names.
_GOOD_NAMES: set[bytes] = set()
_MAX_GOOD_NAMES = 1024
_METHODS = {m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}

_NotIndexed = hpack.NeverIndexedHeaderTuple
_DataReceived = h2.events.DataReceived
_ResponseReceived = h2.events.ResponseReceived
_InformationalResponseReceived = h2.events.InformationalResponseReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_RemoteSettingsChanged = h2.events.RemoteSettingsChanged
_ConnectionTerminated = h2.events.ConnectionTerminated


class _GracefulH2Connection(h2.connection.H2Connection):
    """h2's connection, but one that keeps reading after GOAWAY.

    h2 closes its state machine as soon as it parses a GOAWAY, and then
    rejects every later frame, even those of the streams the server promised
    to finish (at or below last-stream-id), sometimes in the same read. We
    never open a stream after GOAWAY, so reopening the machine right there is
    safe, and it is the only way to let those streams end normally.
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return result


class _Stream:
    """One request/response exchange as the reader and the request task share it."""

    __slots__ = (
        "chunks",
        "end",
        "ended",
        "error",
        "headers",
        "id",
        "informational",
        "released",
        "request",
        "sending",
        "total",
        "wakeup",
    )

    def __init__(self, request: Request) -> None:
        self.request = request
        self.id = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.chunks: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self.ended = False
        self.error: HTTPError | None = None
        self.wakeup: trio.Event | None = None
        self.released = False
        self.sending = False
        self.informational = 0  # 1xx responses received so far
        self.end = _INF  # trio time by which the whole exchange must be over
        self.total: float | None = None  # the Timeout.total behind ``end``

    def wake(self) -> None:
        wakeup = self.wakeup
        if wakeup is not None:
            wakeup.set()


class HTTP2Connection:
    """One HTTP/2 connection to one origin, carrying up to ``max_streams`` streams.

    The pool counts granted streams in ``active`` and is called back through
    ``on_release`` (exactly once per ``handle_request``, when its stream is
    over), ``on_change`` (GOAWAY, new server settings) and ``on_closed``.
    """

    #: Seconds without any frame from the server, while streams are open,
    #: before a PING is sent; and how long the PING may go unanswered.
    ping_interval = 10.0
    ping_timeout = 5.0
    #: Our receive window per stream: how much of one response may be
    #: buffered before its reader takes it.
    STREAM_WINDOW = 1024 * 1024

    def __init__(
        self,
        origin: tuple[str, str, int | None],
        stream: trio.abc.Stream,
        *,
        authority: bytes,
        on_release: Callable[[HTTP2Connection], None],
        on_change: Callable[[HTTP2Connection], None],
        on_closed: Callable[[HTTP2Connection], None],
        write_timeout: float | None,
        label: str = "",
    ) -> None:
        self.origin = origin
        self.label = label or f"{origin[0]}://{origin[1]}"
        self._scheme = origin[0].encode("ascii")
        self._authority = authority
        io = stream_io(stream)
        self._send_all = io.send_all
        self._receive = io.receive
        self._close = io.close
        self._write_timeout = _INF if write_timeout is None else write_timeout
        self.on_release = on_release
        self.on_change = on_change
        self.on_closed = on_closed
        # _request_headers refuses bad names and CR/LF/NUL in values (with an
        # error naming the header, which h2's own check would not give) and
        # lower-cases names: h2's second pass over outgoing headers is skipped.
        # Incoming header fields get only the checks that matter (see
        # _forbidden_field): a crawler is lenient, as browsers are, and h2's
        # full checks of them were a tenth of a request's CPU time.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        conn = self._h2 = _GracefulH2Connection(config=config)
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024,
            },
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(_MAX_WINDOW - _DEFAULT_WINDOW)
        self._streams: dict[int, _Stream] = {}
        self.active = 0  # streams granted by the pool and not yet released
        self.idle_since = trio.current_time()
        self.is_closed = False
        self.goaway = False  # the server sent GOAWAY: no new streams
        self.retired = False  # the pool wants no new streams: close when idle
        self.pool_origin: Any = None
        self.pool_permit: object = None  # the pool's ConnectionPermits token, if any
        self.pool_state: Any = None
        self.streams_opened = 0
        self._ping_sent = False
        self._settings_received = False
        self._read_scope: trio.CancelScope | None = None
        self._scope = trio.CancelScope()
        self._write_wakeup = trio.Event()
        self._write_wakeup.set()  # the connection preface is waiting in h2's buffer
        trio.lowlevel.spawn_system_task(self._run, name=f"crawler.http HTTP/2 {self.label}")

    # -- the interface the pool uses ----------------------------------------------

    def can_handle_request(self, origin: tuple[str, str, int | None]) -> bool:
        return origin == self.origin

    @property
    def max_streams(self) -> int:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS.

        One until the server's SETTINGS have arrived: before that its limit is
        unknown, and a server may treat streams beyond it as a protocol error
        that takes the whole connection down.
        """
        if not self._settings_received:
            return 1
        return int(self._h2.remote_settings.max_concurrent_streams)

    def is_available(self) -> bool:
        """May carry one more new stream (capacity aside)."""
        return (
            not self.is_closed
            and not self.goaway
            and not self.retired
            and self._h2.highest_outbound_stream_id < _MAX_STREAM_ID - 2
        )

    def is_idle(self) -> bool:
        return not self.is_closed and self.active == 0

    def has_expired(self, now: float, keepalive_expiry: float | None) -> bool:
        return (
            self.active == 0
            and keepalive_expiry is not None
            and now - self.idle_since >= keepalive_expiry
        )

    def is_readable(self) -> bool:
        """Never: the reader task takes whatever arrives and closes the connection
        as soon as the server closes its side, so an open one needs no probe."""
        return False

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def retire(self) -> None:
        """Take no new streams; close once the current ones are over."""
        self.retired = True
        if self.active == 0:
            self.close()

    def close(self) -> None:
        """Close at once, without awaiting; open streams fail with ConnectionLost."""
        if self.is_closed:
            return
        self.is_closed = True
        self._close()
        self._scope.cancel()
        self._fail_streams("the connection was closed")
        self.on_closed(self)

    def __repr__(self) -> str:
        state = "CLOSED" if self.is_closed else ("IDLE" if self.active == 0 else "ACTIVE")
        return (
            f"<HTTP2Connection [{self.label}, {state}, {len(self._streams)} streams, "
            f"Request Count: {self.streams_opened}]>"
        )

    # -- one exchange --------------------------------------------------------------

    async def handle_request(
        self, request: Request, timeouts: Timeout, end: float = _INF
    ) -> Response:
        """Open a stream, send ``request`` on it and wait for the response head.

        The body stays in the stream's buffer for ``HTTP2Body``; the stream's
        slot goes back to the pool when the server ends it, whether or not it
        has been read yet.
        """
        stream = _Stream(request)
        stream.end = end
        stream.total = timeouts.total
        try:
            self._open(stream)
            if request.content:
                await self._send_body(stream, request.content, timeouts.write)
            read_t = timeouts.read
            while stream.headers is None:
                if stream.error is not None:
                    raise stream.error
                if not await self._wait(stream, read_t):
                    raise ReadTimeout(
                        f"Timed out after {read_t} s waiting for the response from {request.url}",
                        request=request,
                    )
        except h2.exceptions.ProtocolError as exc:
            self._abandon(stream)
            raise RemoteProtocolError(
                f"HTTP/2 error while sending {request.url} to {self.label}: {exc}",
                request=request,
            ) from None
        except BaseException:
            self._abandon(stream)
            raise
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        for name, value in stream.headers:
            if name[:1] == b":":
                if name == b":status" and value.isdigit() and len(value) == 3:
                    status = int(value)
            else:
                headers.append((name, value))
        if not status:
            self._abandon(stream)
            raise RemoteProtocolError(
                f"{self.label} sent a response to {request.url} without a valid :status",
                request=request,
            )
        return Response(
            status,
            headers=Headers.from_raw(headers),
            stream=HTTP2Body(self, stream, timeouts.read),
            request=request,
            http_version="HTTP/2",
        )

    def _open(self, stream: _Stream) -> None:
        request = stream.request
        if self.is_closed or self.goaway:
            raise StreamUnprocessed(
                f"The HTTP/2 connection to {self.label} is closing; {request.url} was not sent",
                request=request,
            )
        conn = self._h2
        try:
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(
                stream_id, self._request_headers(request), end_stream=not request.content
            )
        except h2.exceptions.TooManyStreamsError:
            raise StreamUnprocessed(
                f"The HTTP/2 connection to {self.label} has no room for another stream "
                f"for {request.url}",
                request=request,
            ) from None
        except (h2.exceptions.ProtocolError, UnicodeEncodeError, LocalProtocolError) as exc:
            raise LocalProtocolError(
                f"Cannot send request to {request.url}: {exc}", request=request
            ) from None
        stream.id = stream_id
        self._streams[stream_id] = stream
        self.streams_opened += 1
        self._write_wakeup.set()
        scope = self._read_scope
        if scope is not None and scope.deadline == _INF:
            scope.deadline = trio.current_time() + self.ping_interval

    def _request_headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        """The header block, checked here because nothing after this looks at it.

        h2 is configured not to validate outgoing headers (for speed), and the
        request may have changed since it was built (auth, cookies, callers),
        so every field that could break the block or a proxy's HTTP/1.1
        rendering of it is refused here: names that are not tokens (which
        also keeps out pseudo-headers), CR/LF/NUL in values, a method that is
        not a token, a path that is not visible ASCII.
        """
        url = request.url
        headers = request.headers
        headers.validate()  # one set lookup per header already seen
        method = request.method
        bmethod = _METHODS.get(method)
        if bmethod is None:
            if not is_token(method):
                raise LocalProtocolError(f"Invalid HTTP method {method!r}")
            bmethod = method.encode("ascii")
        path = f"{url.path}?{url.query}" if url.query else (url.path or "/")
        if _TARGET.fullmatch(path) is None:
            raise LocalProtocolError(f"Invalid character in the request target {path!r}")
        authority = self._authority
        regular: list[tuple[bytes, bytes]] = []
        for name, value in headers.raw:
            lname = name.lower()
            if lname in _DROPPED:
                if lname == b"host":
                    authority = value
                continue
            if lname == b"te" and value.lower() != b"trailers":
                continue
            regular.append((lname, value))
        return [
            (b":method", bmethod),
            (b":authority", authority),
            (b":scheme", self._scheme),
            # A path rarely repeats: indexing it would only push the headers
            # that do repeat (User-Agent, Accept...) out of HPACK's table.
            _NotIndexed(b":path", path.encode("ascii")),
            *regular,
        ]

    async def _send_body(self, stream: _Stream, body: bytes, write_t: float | None) -> None:
        """Send ``body`` within the server's flow-control windows."""
        conn = self._h2
        stream_id = stream.id
        view = memoryview(body)
        total = len(view)
        pos = 0
        stream.sending = True
        while pos < total:
            if stream.error is not None:
                raise stream.error
            if stream.ended:
                # The server answered before taking the whole body (allowed):
                # close our half too, or the stream would count as open forever.
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
                self._write_wakeup.set()
                break
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                if not await self._wait(stream, write_t):
                    raise WriteTimeout(
                        f"Timed out after {write_t} s sending the request body to "
                        f"{stream.request.url} (the server's flow-control window stayed shut)",
                        request=stream.request,
                    )
                continue
            end = min(pos + window, total)
            conn.send_data(stream_id, view[pos:end], end_stream=end == total)
            pos = end
            self._write_wakeup.set()
        stream.sending = False

    async def _wait(self, stream: _Stream, seconds: float | None) -> bool:
        """Wait for news on ``stream``; False if ``seconds`` passed first.

        Raises TotalTimeout if the stream's total deadline passed first.
        """
        wakeup = stream.wakeup = trio.Event()
        limit = _INF if seconds is None else trio.current_time() + seconds
        end = stream.end
        if end < limit:
            limit = end
        with trio.move_on_at(limit):
            await wakeup.wait()
        stream.wakeup = None
        if wakeup.is_set():
            return True
        if limit == end:
            raise total_timeout(stream.request, stream.total)
        return False

    def _ack(self, stream: _Stream, size: int) -> None:
        """The consumer took ``size`` flow-controlled bytes: let the server send more."""
        if not self.is_closed:
            self._h2.acknowledge_received_data(size, stream.id)
            self._write_wakeup.set()

    def _abandon(self, stream: _Stream) -> None:
        """The request task gives up on ``stream`` (error, timeout, cancel, closed body)."""
        unread = 0
        while stream.chunks:
            unread += stream.chunks.popleft()[1]
        if unread:
            self._ack(stream, unread)
        if stream.id and self._streams.pop(stream.id, None) is not None and not self.is_closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):  # closed on h2's side
                self._h2.reset_stream(stream.id, ErrorCodes.CANCEL)
            self._write_wakeup.set()
        self._release(stream)

    def _release(self, stream: _Stream) -> None:
        if not stream.released:
            stream.released = True
            self.on_release(self)
            if (self.goaway or self.retired) and not self._streams and self.active == 0:
                self.close()

    # -- the background task -------------------------------------------------------

    async def _run(self) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                await self._reader()
                nursery.cancel_scope.cancel()

    async def _writer(self) -> None:
        conn = self._h2
        send_all = self._send_all
        try:
            while True:
                await self._write_wakeup.wait()
                self._write_wakeup = trio.Event()
                data = conn.data_to_send()
                if not data:
                    continue
                with trio.move_on_after(self._write_timeout) as scope:
                    await send_all(data)
                if scope.cancelled_caught:
                    self._die(f"sending to {self.label} took longer than {self._write_timeout} s")
                    return
        except _IO_ERRORS as exc:
            self._die(f"sending to {self.label} failed: {describe_error(exc)}")
        except Exception as exc:  # a system task must never raise: report it instead
            self._die(f"unexpected error while sending to {self.label}: {exc!r}")

    async def _reader(self) -> None:
        conn = self._h2
        receive = self._receive
        dispatch = self._dispatch
        try:
            while not self.is_closed:
                if self._ping_sent:
                    deadline = trio.current_time() + self.ping_timeout
                elif self._streams:
                    deadline = trio.current_time() + self.ping_interval
                else:
                    deadline = _INF
                with trio.CancelScope(deadline=deadline) as scope:
                    self._read_scope = scope
                    data = await receive(READ_SIZE)
                self._read_scope = None
                if scope.cancelled_caught:
                    if not self._streams:
                        self._ping_sent = False
                    elif self._ping_sent:
                        self._die(
                            f"{self.label} did not answer a PING within {self.ping_timeout} s"
                        )
                        return
                    else:
                        conn.ping(b"crawler\x00")
                        self._ping_sent = True
                        self._write_wakeup.set()
                    continue
                self._ping_sent = False
                if not data:
                    self._die(f"{self.label} closed the connection")
                    return
                for event in conn.receive_data(data):
                    dispatch(event)
                self._write_wakeup.set()
        except h2.exceptions.ProtocolError as exc:
            self._die(f"{self.label} broke the HTTP/2 protocol: {exc}", protocol=True)
        except _IO_ERRORS as exc:
            if not self.is_closed:
                self._die(f"reading from {self.label} failed: {describe_error(exc)}")
        except Exception as exc:  # a system task must never raise: report it instead
            self._die(f"unexpected error while reading from {self.label}: {exc!r}")

    def _dispatch(self, event: Any) -> None:
        kind = type(event)
        if kind is _DataReceived:
            stream = self._streams.get(event.stream_id)
            if stream is None:  # a stream we reset or gave up: only the connection counts
                if event.flow_controlled_length:
                    self._h2.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                return
            stream.chunks.append((event.data, event.flow_controlled_length))
            stream.wake()
        elif kind is _ResponseReceived:
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                fields = event.headers
                bad = _forbidden_field(fields)
                if bad is None:
                    stream.headers = fields
                    stream.wake()
                else:
                    self._refuse(
                        stream,
                        f"{self.label} sent a response to {stream.request.url} with an "
                        f"invalid header: {bad}",
                    )
        elif kind is _StreamEnded:
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream.ended = True
                stream.wake()
                self._release(stream)
        elif kind is _StreamReset:
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                self._reset_by_server(stream, event.error_code)
        elif kind is _WindowUpdated:
            if event.stream_id == 0:
                for stream in self._streams.values():
                    if stream.sending:
                        stream.wake()
            else:
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.wake()
        elif kind is _RemoteSettingsChanged:
            self._settings_received = True
            for stream in self._streams.values():
                if stream.sending:
                    stream.wake()
            self.on_change(self)
        elif kind is _ConnectionTerminated:
            self._goaway(event.last_stream_id, event.error_code)
        elif kind is _InformationalResponseReceived:
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.informational += 1
                if stream.informational > MAX_INFORMATIONAL:
                    self._refuse(
                        stream,
                        f"{self.label} sent more than {MAX_INFORMATIONAL} informational "
                        f"(1xx) responses for {stream.request.url} before the final one",
                    )

    def _refuse(self, stream: _Stream, why: str) -> None:
        """Give up on a stream the server is abusing: reset it, fail its request."""
        del self._streams[stream.id]
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream.id, ErrorCodes.PROTOCOL_ERROR)
        self._write_wakeup.set()
        stream.error = RemoteProtocolError(why, request=stream.request)
        stream.wake()
        self._release(stream)

    def _reset_by_server(self, stream: _Stream, code: Any) -> None:
        request = stream.request
        try:
            name = ErrorCodes(code).name
        except ValueError:
            name = str(code)
        if code == ErrorCodes.REFUSED_STREAM:
            stream.error = StreamUnprocessed(
                f"{self.label} refused the stream for {request.url} (REFUSED_STREAM)",
                request=request,
            )
        else:
            stream.error = RemoteProtocolError(
                f"{self.label} reset the stream of {request.url} (RST_STREAM {name})",
                request=request,
            )
        stream.wake()
        self._release(stream)

    def _goaway(self, last_stream_id: int, code: Any) -> None:
        self.goaway = True
        for stream_id, stream in list(self._streams.items()):
            request = stream.request
            if stream_id > last_stream_id:
                stream.error = StreamUnprocessed(
                    f"{self.label} sent GOAWAY before processing {request.url}",
                    request=request,
                )
            elif stream.sending:
                # h2 dropped whatever of the body was still queued.
                stream.error = RemoteProtocolError(
                    f"{self.label} sent GOAWAY while {request.url} was being sent",
                    request=request,
                )
            else:
                continue
            del self._streams[stream_id]
            stream.wake()
            self._release(stream)
        self.on_change(self)
        if not self._streams and self.active == 0:
            self.close()

    def _fail_streams(self, why: str) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            if stream.error is None:
                stream.error = ConnectionLost(
                    f"HTTP/2 connection lost while fetching {stream.request.url}: {why}",
                    request=stream.request,
                    before_response=stream.headers is None,
                )
            stream.wake()
            self._release(stream)

    def _die(self, why: str, *, protocol: bool = False) -> None:
        """The connection is unusable: fail its streams and close it."""
        if self.is_closed:
            return
        streams = list(self._streams.values())
        if protocol:
            for stream in streams:
                stream.error = RemoteProtocolError(
                    f"HTTP/2 error while fetching {stream.request.url}: {why}",
                    request=stream.request,
                )
        self._fail_streams(why)
        self.close()


def _forbidden_field(fields: list[tuple[bytes, bytes]]) -> str | None:
    """What is wrong with a response head, or None if nothing that matters is.

    Anything that repeats response headers (a redirect, Set-Cookie into a later
    Cookie header, a log line) would pass a line break on; h11 refuses such a
    head on HTTP/1.1. Values are searched in one pass over their concatenation,
    and the failing field is only looked for once the pass found something.
    """
    good = _GOOD_NAMES
    for name, _ in fields:
        if name not in good:
            if _FIELD_NAME.fullmatch(name) is None:
                return f"the name {name.decode('latin-1')!r} is not a token"
            if len(good) < _MAX_GOOD_NAMES:
                good.add(name)
    if _BAD_FIELD_VALUE.search(b"".join([value for _, value in fields])) is None:
        return None
    name, value = next(field for field in fields if _BAD_FIELD_VALUE.search(field[1]))
    char = "CR" if b"\r" in value else "LF" if b"\n" in value else "NUL"
    return f"the value of {name.decode('latin-1')!r} holds {char}"


class HTTP2Body:
    """A response body: the stream's buffered frames, then whatever still arrives.

    Each chunk taken is acknowledged to the server (flow control), so the
    server sends exactly as fast as this body is read.
    """

    __slots__ = ("_conn", "_read_timeout", "_stream")

    def __init__(self, conn: HTTP2Connection, stream: _Stream, read_timeout: float | None) -> None:
        self._conn = conn
        self._stream: _Stream | None = stream
        self._read_timeout = read_timeout

    def __aiter__(self) -> HTTP2Body:
        return self

    async def __anext__(self) -> bytes:
        stream = self._stream
        if stream is None:
            raise StopAsyncIteration
        conn = self._conn
        try:
            while True:
                chunks = stream.chunks
                if chunks:
                    data, size = chunks.popleft()
                    if size:
                        conn._ack(stream, size)
                    if data:
                        return data
                    continue
                if stream.ended:
                    self._stream = None
                    raise StopAsyncIteration
                if stream.error is not None:
                    raise stream.error
                if not await conn._wait(stream, self._read_timeout):
                    raise ReadTimeout(
                        f"Timed out after {self._read_timeout} s reading the body of "
                        f"{stream.request.url}",
                        request=stream.request,
                    )
        except StopAsyncIteration:
            raise
        except BaseException:
            self._stream = None
            conn._abandon(stream)
            raise

    async def aclose(self) -> None:
        stream = self._stream
        if stream is not None:
            self._stream = None
            self._conn._abandon(stream)
