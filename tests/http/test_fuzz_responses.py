"""Property: whatever bytes a server answers with, a request ends in a Response or an HTTPError.

A raw trio socket server on loopback sends generated responses (odd status
lines, hostile headers, chunked framing right and wrong, stacked and
truncated Content-Encodings, random mutations of all of it) and closes. The
client must never raise anything outside the HTTPError tree, never hang, and
never hand back more than its size limit.

Hypothesis runs each example in its own ``trio.run``, so the server lives in a
thread with its own trio loop, started once for the module and told by the
request path which reply to send.
"""

from __future__ import annotations

import gzip
import itertools
import sys
import threading
import zlib
from collections.abc import Iterator
from functools import partial

import brotli
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.http import Client, HTTPError, Timeout

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

MAX_SIZE = 256 * 1024
CODINGS = ["gzip", "x-gzip", "deflate", "br", "zstd", "identity", "compress", "bogus", ""]


class ReplyServer:
    """Answers ``GET /<n>`` with ``replies[n]`` verbatim, then closes the connection."""

    def __init__(self) -> None:
        self.replies: dict[int, bytes] = {}
        self.port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.CancelScope | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    def __enter__(self) -> ReplyServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fuzz server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            trio.from_thread.run_sync(stop.cancel, trio_token=self._token)
        self._thread.join(10)

    async def _main(self) -> None:
        with trio.CancelScope() as self._stop:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
                )
                self.port = listeners[0].socket.getsockname()[1]
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()

    async def _handle(self, stream: trio.SocketStream) -> None:
        head = b""
        with trio.move_on_after(10):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = await stream.receive_some(65536)
                if not data:
                    break
                head += data
        parts = head.split(b" ", 2)
        reply = self.replies.get(int(parts[1][1:])) if len(parts) > 2 else None
        try:
            if reply:
                await stream.send_all(reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


@pytest.fixture(scope="module")
def server() -> Iterator[ReplyServer]:
    with ReplyServer() as running:
        yield running


def encode(body: bytes, coding: str) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(body, mtime=0)
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "br":
        return bytes(brotli.compress(body))
    if coding == "zstd":
        return zstd.compress(body)
    return body


def rarely(
    common: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    """``odd`` one time in eight: enough hostile input without drowning the framing and
    decoding paths, which only well-formed heads reach."""
    return st.integers(0, 7).flatmap(lambda n: odd if n == 0 else common)


status_lines = rarely(
    st.builds(
        lambda status, reason: b"HTTP/1.1 %s %s" % (status, reason),
        st.sampled_from([b"200", b"200", b"204", b"304", b"301", b"404", b"500", b"100"]),
        st.sampled_from([b"OK", b"", b"Whatever \xe9"]),
    ),
    st.builds(
        lambda version, status, reason: b"%s %s %s" % (version, status, reason),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b"HTTP/9.9", b"HTP/1"]),
        st.one_of(
            st.sampled_from([b"101", b"103", b"999", b"0200"]),
            st.integers(-5, 1200).map(lambda n: str(n).encode()),
            st.binary(max_size=4),
        ),
        st.binary(max_size=12),
    ),
)

header_names = rarely(
    st.sampled_from(
        [b"Content-Encoding", b"Connection", b"Set-Cookie", b"Location", b"Content-Type", b"X-A"]
    ),
    # Framing headers added blindly mostly just break the framing: rarely, then.
    st.one_of(st.sampled_from([b"Content-Length", b"Transfer-Encoding"]), st.binary(max_size=10)),
)
header_values = rarely(
    st.sampled_from(
        [
            b"chunked",
            b"gzip",
            b"gzip, chunked",
            b"close",
            b"keep-alive",
            b"0",
            b"-1",
            b"99999999999999999999",
            b"text/html; charset=\xff",
            b"sid=1; Path=/; Domain=127.0.0.1",
            b"/elsewhere",
        ]
    ),
    st.binary(max_size=40),
)
extra_headers = st.lists(st.tuples(header_names, header_values), max_size=3)


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> bytes:
    """Chunked framing, sometimes with wrong sizes, extensions, trailers or no end."""
    out = []
    rest = body
    for _ in range(6):
        if not rest:
            break
        size = draw(st.integers(1, len(rest)))
        piece, rest = rest[:size], rest[size:]
        declared = size + draw(st.sampled_from([0] * 12 + [-1, 1, 1000]))
        size_line = b"%x" % declared if declared >= 0 else b"-1"
        size_line += draw(st.sampled_from([b"", b"", b";ext=1", b" ", b"zz"]))
        out.append(size_line + b"\r\n" + piece + b"\r\n")
    if rest:
        out.append(b"%x\r\n" % len(rest) + rest + b"\r\n")
    end = draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b"", b"0\r\n"]))
    return b"".join(out) + end


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    # Now and then a chain far past any sane length (it once overflowed the stack).
    long_chain = draw(st.integers(0, 15)) == 0
    codings = (
        ["gzip"] * 3000 if long_chain else draw(st.lists(st.sampled_from(CODINGS), max_size=7))
    )
    content = draw(st.one_of(st.binary(max_size=600), st.just(b"<p>page</p>" * 200)))
    body = content
    for coding in codings[:7]:
        body = encode(body, coding.strip())
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    headers: list[tuple[bytes, bytes]] = []
    if codings:
        headers.append((b"Content-Encoding", ", ".join(codings).encode()))
    framing = draw(st.sampled_from(["length", "wrong-length", "chunked", "close", "both"]))
    if framing in ("length", "both"):
        headers.append((b"Content-Length", b"%d" % len(body)))
    if framing == "wrong-length":
        delta = draw(st.integers(-len(body), 50))
        headers.append((b"Content-Length", b"%d" % (len(body) + delta)))
    if framing in ("chunked", "both"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = draw(chunked(body))
    headers += draw(extra_headers)
    head = draw(status_lines) + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    message = bytearray(head + b"\r\n" + body)
    mutation = draw(st.sampled_from(["none"] * 5 + ["flip", "cut", "insert"]))
    if message and mutation != "none":
        at = draw(st.integers(0, len(message) - 1))
        if mutation == "flip":
            message[at] ^= draw(st.integers(1, 255))
        elif mutation == "cut":
            del message[at:]
        else:
            message[at:at] = draw(st.sampled_from([b"\r\n", b"\n", b"\x00", b" ", b":", b"\r"]))
    return bytes(message)


_ids = itertools.count()


async def exchange(port: int, n: int) -> None:
    timeout = Timeout(5)
    async with Client(follow_redirects=False, max_response_size=MAX_SIZE, timeout=timeout) as c:
        with trio.fail_after(15):  # a hang is a failure, not a slow pass
            try:
                response = await c.get(f"http://127.0.0.1:{port}/{n}")
            except HTTPError:
                return
    assert 100 <= response.status_code <= 999
    assert len(response.content) <= MAX_SIZE


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(reply=replies())
def test_any_reply_ends_in_a_response_or_an_http_error(server: ReplyServer, reply: bytes) -> None:
    n = next(_ids)
    server.replies[n] = reply
    try:
        trio.run(exchange, server.port, n)
    finally:
        del server.replies[n]
