"""Redirect, cookie and decompression middleware, each over an in-memory transport."""

from __future__ import annotations

import gzip
import sys
import zlib

import brotli
import pytest

from crawler.http import (
    ByteStream,
    CookieMiddleware,
    Cookies,
    DecodingError,
    DecompressMiddleware,
    MockTransport,
    ReadError,
    RedirectMiddleware,
    RemoteProtocolError,
    Request,
    Response,
    ResponseTooLarge,
    TooManyRedirects,
    UnsupportedProtocol,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd


class TrackedStream:
    """A body stream that records whether it was read to the end and closed.

    A class-based iterator, like the pool's streams, so that a body abandoned
    half-way leaves no async generator for the garbage collector.
    """

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.read = False
        self.closed = False

    def __aiter__(self) -> TrackedStream:
        return self

    async def __anext__(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        self.read = True
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def redirect(status: int, location: str, **headers: str) -> Response:
    return Response(status, headers={"Location": location, **headers})


# -- redirects -----------------------------------------------------------------------


async def test_redirect_chain_fills_history_and_closes_hops() -> None:
    streams: list[TrackedStream] = []

    def handler(request: Request) -> Response:
        path = request.url.path
        if path == "/final":
            return Response(200, text="done")
        stream = TrackedStream(b"moved")
        streams.append(stream)
        target = {"/a": "/b", "/b": "http://h.test/final"}[path]
        return Response(302, headers={"Location": target}, stream=stream)

    transport = RedirectMiddleware(MockTransport(handler))
    response = await transport.handle_request(Request("GET", "http://h.test/a"))
    assert response.status_code == 200
    assert [str(r.url) for r in response.history] == ["http://h.test/a", "http://h.test/b"]
    assert [len(r.history) for r in response.history] == [0, 1]
    assert all(s.read and s.closed for s in streams)
    assert response.history[0].content == b"moved"


class BrokenStream(TrackedStream):
    async def __anext__(self) -> bytes:
        if not self.chunks:
            raise ReadError("connection reset while reading http://h.test/a")
        return await super().__anext__()


@pytest.mark.parametrize("stream", [BrokenStream(b"partial"), TrackedStream(b"x" * 70_000, b"y")])
async def test_a_big_or_broken_redirect_body_does_not_stop_the_redirect(
    stream: TrackedStream,
) -> None:
    def handler(request: Request) -> Response:
        if request.url.path == "/a":
            return Response(302, headers={"Location": "/b"}, stream=stream)
        return Response(200, text="arrived")

    response = await RedirectMiddleware(MockTransport(handler)).handle_request(
        Request("GET", "http://h.test/a")
    )
    await response.aread()
    assert response.text == "arrived"
    assert stream.closed and not stream.read


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (301, "POST", "GET"),
        (301, "PUT", "PUT"),
        (302, "POST", "GET"),
        (302, "PUT", "PUT"),
        (303, "PUT", "GET"),
        (303, "GET", "GET"),
        (303, "HEAD", "HEAD"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
    ],
)
async def test_redirect_method_and_body(status: int, method: str, expected: str) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        if len(seen) == 1:
            return redirect(status, "/next")
        return Response(200)

    transport = RedirectMiddleware(MockTransport(handler))
    await transport.handle_request(
        Request(method, "http://h.test/", json={"k": 1}, headers={"X-Keep": "1"})
    )
    second = seen[1]
    assert second.method == expected
    assert second.headers["x-keep"] == "1"
    if expected == method:
        assert second.content == b'{"k":1}'
        assert second.headers["content-type"] == "application/json"
    else:
        assert second.content == b""
        assert "content-type" not in second.headers
        assert "content-length" not in second.headers


async def test_location_is_resolved_against_the_request_url_and_keeps_fragment() -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(str(request.url))
        if len(seen) == 1:
            return redirect(301, "../c?q=1")
        return Response(200)

    transport = RedirectMiddleware(MockTransport(handler))
    await transport.handle_request(Request("GET", "http://h.test/a/b/page#frag"))
    assert seen[1] == "http://h.test/a/c?q=1#frag"


async def test_too_many_redirects_names_the_chain() -> None:
    hops: list[str] = []

    def handler(request: Request) -> Response:
        hops.append(request.url.path)
        return redirect(302, f"/{len(hops)}")

    transport = RedirectMiddleware(MockTransport(handler), max_redirects=3)
    with pytest.raises(TooManyRedirects, match=r"Exceeded 3 redirects.*chain of 4 URLs") as info:
        await transport.handle_request(Request("GET", "http://h.test/start"))
    assert hops == ["/start", "/1", "/2", "/3"]
    assert str(info.value.request.url) == "http://h.test/3"


async def test_redirect_loop_is_caught() -> None:
    def handler(request: Request) -> Response:
        return redirect(302, "/b" if request.url.path == "/a" else "/a")

    transport = RedirectMiddleware(MockTransport(handler))
    with pytest.raises(TooManyRedirects, match="20 redirects"):
        await transport.handle_request(Request("GET", "http://h.test/a"))


async def test_zero_max_redirects_refuses_the_first() -> None:
    transport = RedirectMiddleware(MockTransport(lambda r: redirect(302, "/x")), max_redirects=0)
    with pytest.raises(TooManyRedirects):
        await transport.handle_request(Request("GET", "http://h.test/"))


async def test_redirect_to_other_schemes_is_refused_and_body_closed() -> None:
    stream = TrackedStream(b"")

    def handler(request: Request) -> Response:
        return Response(302, headers={"Location": "ftp://files.test/x"}, stream=stream)

    transport = RedirectMiddleware(MockTransport(handler))
    with pytest.raises(UnsupportedProtocol, match=r"ftp://files\.test/x"):
        await transport.handle_request(Request("GET", "http://h.test/"))
    assert stream.closed


async def test_invalid_location_is_a_protocol_error() -> None:
    transport = RedirectMiddleware(MockTransport(lambda r: redirect(302, "http://[bad/")))
    with pytest.raises(RemoteProtocolError, match="Invalid Location"):
        await transport.handle_request(Request("GET", "http://h.test/"))


async def test_follow_redirects_false_returns_the_3xx() -> None:
    transport = RedirectMiddleware(MockTransport(lambda r: redirect(302, "/x")))
    request = Request("GET", "http://h.test/", extensions={"follow_redirects": False})
    response = await transport.handle_request(request)
    assert response.status_code == 302 and response.history == []


async def test_3xx_without_location_is_returned() -> None:
    transport = RedirectMiddleware(MockTransport(lambda r: Response(304)))
    response = await transport.handle_request(Request("GET", "http://h.test/"))
    assert response.status_code == 304


@pytest.mark.parametrize(
    ("start", "target", "kept"),
    [
        ("http://h.test/", "http://h.test/same", True),
        ("http://h.test/", "http://h.test:8080/port", False),
        ("http://h.test/", "https://h.test/scheme", False),
        ("http://h.test/", "http://other.test/host", False),
        ("https://h.test/", "https://h.test/same", True),
        ("https://h.test/", "http://h.test/downgrade", False),
        ("https://h.test/", "https://other.test/host", False),
    ],
)
async def test_credentials_are_dropped_across_origins(start: str, target: str, kept: bool) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return redirect(302, target) if len(seen) == 1 else Response(200)

    transport = RedirectMiddleware(CookieMiddleware(MockTransport(handler)))
    await transport.handle_request(
        Request(
            "GET",
            start,
            headers={"Authorization": "Basic xyz", "Proxy-Authorization": "Basic p"},
            extensions={"cookies": {"sid": "s"}},
        )
    )
    first, second = seen
    assert first.headers["authorization"] == "Basic xyz" and first.headers["cookie"] == "sid=s"
    assert first.headers["proxy-authorization"] == "Basic p"
    assert ("authorization" in second.headers) is kept
    assert ("proxy-authorization" in second.headers) is kept
    assert ("cookie" in second.headers) is kept


async def test_max_redirects_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_redirects"):
        RedirectMiddleware(MockTransport(lambda r: Response(200)), max_redirects=-1)


async def test_close_is_delegated_down_the_chain() -> None:
    bottom = MockTransport(lambda r: Response(200))
    chain = RedirectMiddleware(CookieMiddleware(DecompressMiddleware(bottom)))
    await chain.aclose()
    assert bottom.closed


# -- cookies -------------------------------------------------------------------------


async def test_cookies_are_stored_from_every_hop_and_sent_per_url() -> None:
    seen: list[str | None] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("cookie"))
        if request.url.path == "/login":
            return Response(302, headers=[("Location", "/home"), ("Set-Cookie", "sid=abc")])
        if request.url.path == "/home":
            return Response(200, headers=[("Set-Cookie", "theme=dark; Path=/home")])
        return Response(200)

    jar = Cookies()
    transport = RedirectMiddleware(CookieMiddleware(MockTransport(handler), jar))
    await transport.handle_request(Request("GET", "http://h.test/login"))
    await transport.handle_request(Request("GET", "http://h.test/home/x"))
    await transport.handle_request(Request("GET", "http://h.test/"))
    await transport.handle_request(Request("GET", "http://other.test/"))
    assert seen == [None, "sid=abc", "theme=dark; sid=abc", "sid=abc", None]


async def test_explicit_cookie_header_is_merged_and_wins() -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers["cookie"])
        return Response(200)

    jar = Cookies({"a": "jar", "b": "jar"})
    transport = CookieMiddleware(MockTransport(handler), jar)
    request = Request("GET", "http://h.test/", headers={"Cookie": "a=mine"})
    await transport.handle_request(request)
    jar["b"] = "new"
    await transport.handle_request(request)  # a resend (retry) sees fresh jar values
    assert seen == ["b=jar; a=mine", "b=new; a=mine"]


async def test_resent_request_drops_a_cookie_header_gone_stale() -> None:
    seen: list[str | None] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("cookie"))
        return Response(200)

    jar = Cookies({"sid": "1"})
    transport = CookieMiddleware(MockTransport(handler), jar)
    request = Request("GET", "http://h.test/")
    await transport.handle_request(request)
    jar.clear()
    await transport.handle_request(request)
    assert seen == ["sid=1", None]


# -- decompression -------------------------------------------------------------------


def encoded(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "br":
        return bytes(brotli.compress(body))
    if coding == "zstd":
        return zstd.compress(body)
    raise AssertionError(coding)


async def decode(
    body: bytes, content_encoding: str, *, split: int = 7, max_size: int | None = None
) -> Response:
    """Serve ``body`` in small pieces with ``content_encoding`` and read it back."""
    pieces = [body[i : i + split] for i in range(0, len(body), split)]
    stream = TrackedStream(*pieces)

    def handler(request: Request) -> Response:
        return Response(200, headers={"Content-Encoding": content_encoding}, stream=stream)

    transport = DecompressMiddleware(MockTransport(handler))
    response = await transport.handle_request(Request("GET", "http://h.test/page"))
    response.max_size = max_size
    await response.aread()
    assert stream.closed
    return response


PAGE = b"<html>" + b"hello crawler " * 5000 + b"</html>"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
async def test_each_coding_decodes_in_small_pieces(coding: str) -> None:
    response = await decode(encoded(PAGE, coding), coding.upper())
    assert response.content == PAGE
    assert response.headers["content-encoding"] == coding.upper()  # kept as received


async def test_raw_deflate() -> None:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = compressor.compress(PAGE) + compressor.flush()
    assert (await decode(raw, "deflate")).content == PAGE


async def test_multiple_codings_are_undone_in_reverse_order() -> None:
    body = encoded(encoded(encoded(PAGE, "gzip"), "br"), "zstd")
    assert (await decode(body, "gzip, identity, br, zstd")).content == PAGE


async def test_concatenated_gzip_members() -> None:
    body = gzip.compress(b"one ") + gzip.compress(b"two")
    assert (await decode(body, "gzip", split=3)).content == b"one two"


async def test_concatenated_zstd_frames() -> None:
    body = encoded(b"one ", "zstd") + encoded(b"two", "zstd")
    assert (await decode(body, "zstd")).content == b"one two"


@pytest.mark.parametrize("split", [1, 3, 1000])
@pytest.mark.parametrize("coding", ["gzip", "zstd"])
async def test_members_and_trailing_junk_across_chunk_boundaries(coding: str, split: int) -> None:
    """A second member's magic bytes may arrive one at a time; junk after the last
    member is ignored however it is cut."""
    body = encoded(b"one ", coding) + encoded(b"two", coding) + b"<!-- junk -->"
    assert (await decode(body, coding, split=split)).content == b"one two"


async def test_identity_and_absent_encoding_leave_the_stream_alone() -> None:
    stream = TrackedStream(b"plain")
    for headers in ({}, {"Content-Encoding": "identity"}):

        def handler(request: Request, headers: dict[str, str] = headers) -> Response:
            return Response(200, headers=headers, stream=stream)

        transport = DecompressMiddleware(MockTransport(handler))
        response = await transport.handle_request(Request("GET", "http://h.test/"))
        assert response.stream is stream


async def test_empty_encoded_body_is_fine() -> None:
    for coding in ("gzip", "deflate", "br", "zstd"):
        assert (await decode(b"", coding)).content == b""


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
async def test_corrupt_data_names_the_url(coding: str) -> None:
    with pytest.raises(DecodingError, match=rf"http://h\.test/page.*{coding}"):
        await decode(b"\x1f\x8b\x08this is not compressed at all" * 3, coding)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
async def test_bomb_stops_at_max_size_in_bounded_steps(coding: str) -> None:
    bomb = encoded(b"\0" * (20 * 1024 * 1024), coding)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(ResponseTooLarge, match=r"http://h\.test/page.*1000000 bytes"):
        await decode(bomb, coding, split=len(bomb), max_size=1_000_000)


async def test_decoder_yields_bounded_pieces() -> None:
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))

    def handler(request: Request) -> Response:
        return Response(200, headers={"Content-Encoding": "gzip"}, stream=TrackedStream(bomb))

    transport = DecompressMiddleware(MockTransport(handler), step=16384)
    response = await transport.handle_request(Request("GET", "http://h.test/"))
    sizes = [len(chunk) async for chunk in response.aiter_bytes()]
    assert sum(sizes) == 4 * 1024 * 1024
    assert max(sizes) == 16384


async def test_abandoned_decoding_closes_the_inner_stream() -> None:
    stream = TrackedStream(*[gzip.compress(b"x" * 100)[i : i + 5] for i in range(0, 30, 5)])

    def handler(request: Request) -> Response:
        return Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)

    response = await DecompressMiddleware(MockTransport(handler)).handle_request(
        Request("GET", "http://h.test/")
    )
    await response.aclose()
    assert stream.closed


async def test_abandoning_an_in_memory_encoded_body_leaves_nothing_to_finalise() -> None:
    bomb = gzip.compress(b"\0" * (2 * 1024 * 1024))

    def handler(request: Request) -> Response:
        return Response(200, headers={"Content-Encoding": "gzip"}, stream=ByteStream(bomb))

    response = await DecompressMiddleware(MockTransport(handler)).handle_request(
        Request("GET", "http://h.test/")
    )
    response.max_size = 100_000
    with pytest.raises(ResponseTooLarge):
        await response.aread()
    assert response.is_closed
