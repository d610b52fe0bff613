"""Content-Encoding over a real socket: stacks, truncated and corrupt bodies, odd codings."""

from __future__ import annotations

import contextlib
import gzip
import sys
import zlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Protocol

import brotli
import pytest
import trio

from crawler.http import Client, DecodingError, HTTPError, ResponseTooLarge, _decompress
from tests.servers import TCPHandler

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

PAGE = b"<html>" + b"a page worth keeping whole " * 4000 + b"</html>"
CODINGS = ["gzip", "deflate", "br", "zstd"]


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


def stacked(body: bytes, codings: list[str]) -> bytes:
    for coding in codings:
        body = encoded(body, coding)
    return body


class Serve(Protocol):
    async def __call__(self, body: bytes, coding: str, *, close_delimited: bool = False) -> str: ...


async def _read_head(stream: trio.SocketStream) -> None:
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk


def replying(body: bytes, content_encoding: str, *, close_delimited: bool = False) -> TCPHandler:
    """A raw server sending ``body`` as is, framed by Content-Length or by closing."""

    async def handler(stream: trio.SocketStream) -> None:
        await _read_head(stream)
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {content_encoding}\r\n"
        if close_delimited:
            head += "Connection: close\r\n\r\n"
        else:
            head += f"Content-Length: {len(body)}\r\n\r\n"
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(head.encode() + body)
        await stream.aclose()

    return handler


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(body, coding)`` -> the URL of a server replying with them."""
    async with trio.open_nursery() as nursery:

        async def start(body: bytes, coding: str, *, close_delimited: bool = False) -> str:
            handler = replying(body, coding, close_delimited=close_delimited)
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/page"

        yield start
        nursery.cancel_scope.cancel()


async def fetch(url: str, *, max_size: int | None = 64 * 1024 * 1024) -> bytes:
    with trio.fail_after(10):
        async with Client(max_response_size=max_size) as client:
            response = await client.get(url)
            return response.content


# -- stacked codings -----------------------------------------------------------------


async def test_five_stacked_codings_decode(serve: Serve) -> None:
    codings = ["gzip", "br", "zstd", "deflate", "gzip"]
    url = await serve(stacked(PAGE, codings), ", ".join(codings))
    assert await fetch(url) == PAGE


async def test_identity_anywhere_in_the_chain_is_a_no_op(serve: Serve) -> None:
    body = stacked(PAGE, ["gzip", "br"])
    url = await serve(body, "identity, gzip, Identity, br, identity")
    assert await fetch(url) == PAGE


async def test_six_stacked_codings_are_refused(serve: Serve) -> None:
    url = await serve(stacked(PAGE, ["gzip"] * 6), ", ".join(["gzip"] * 6))
    with pytest.raises(DecodingError, match=r"127\.0\.0\.1:\d+/page.*Content-Encoding.*6 codings"):
        await fetch(url)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
async def test_thousands_of_stacked_codings_are_refused_not_a_recursion_error(
    serve: Serve, coding: str
) -> None:
    url = await serve(encoded(PAGE, coding), ",".join([coding] * 12000))
    with pytest.raises(DecodingError, match=r"/page.*Content-Encoding"):
        await fetch(url)


async def test_decoders_are_built_only_when_data_reaches_them(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outermost layer is corrupt: the four under it never see a byte."""
    built: list[str] = []
    make = _decompress._make_decoder

    def counting(coding: str, *args: object) -> object:
        built.append(coding)
        return make(coding, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_decompress, "_make_decoder", counting)
    url = await serve(b"\x1f\x8b\x08 not gzip at all" * 10, "zstd, zstd, zstd, zstd, gzip")
    with pytest.raises(DecodingError):
        await fetch(url)
    assert built == ["gzip"]


# -- truncated and corrupt bodies ----------------------------------------------------


@pytest.mark.parametrize("close_delimited", [False, True], ids=["content-length", "close"])
@pytest.mark.parametrize("coding", CODINGS)
async def test_a_truncated_body_is_an_error_not_half_a_page(
    serve: Serve, coding: str, close_delimited: bool
) -> None:
    body = encoded(PAGE, coding)
    cut = body[: len(body) * 2 // 3]
    url = await serve(cut, coding, close_delimited=close_delimited)
    with pytest.raises(DecodingError, match=rf"127\.0\.0\.1:\d+/page.*{coding}.*truncated"):
        await fetch(url)


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_body_cut_just_before_its_end_is_an_error(serve: Serve, coding: str) -> None:
    body = encoded(PAGE, coding)
    url = await serve(body[:-1], coding)
    with pytest.raises(DecodingError, match="/page"):
        await fetch(url)


async def test_a_truncated_inner_layer_is_an_error(serve: Serve) -> None:
    inner = encoded(PAGE, "gzip")[:-10]
    url = await serve(encoded(inner, "br"), "gzip, br")
    with pytest.raises(DecodingError, match="truncated"):
        await fetch(url)


async def test_a_second_gzip_member_cut_short_is_an_error(serve: Serve) -> None:
    body = gzip.compress(b"one ") + gzip.compress(PAGE)[:40]
    url = await serve(body, "gzip")
    with pytest.raises(DecodingError, match="truncated"):
        await fetch(url)


@pytest.mark.parametrize("coding", CODINGS)
async def test_corrupt_data_is_an_error_naming_the_url(serve: Serve, coding: str) -> None:
    body = encoded(PAGE, coding)
    half = len(body) // 2
    url = await serve(body[:half] + b"\xff" * 32 + body[half:], coding)
    with pytest.raises(DecodingError, match=rf"/page.*{coding}"):
        await fetch(url)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
async def test_complete_bodies_with_trailing_junk_still_decode(serve: Serve, coding: str) -> None:
    """What browsers accept: bytes after the end of the compressed stream are ignored
    (for gzip and zstd they must not look like the start of another member or frame).
    The brotli library refuses trailing bytes, so for br they are a DecodingError."""
    url = await serve(encoded(PAGE, coding) + b"\n", coding)
    assert await fetch(url) == PAGE


@pytest.mark.parametrize("coding", CODINGS)
async def test_an_empty_encoded_body_is_an_empty_page(serve: Serve, coding: str) -> None:
    url = await serve(b"", coding)
    assert await fetch(url) == b""


# -- unknown codings -----------------------------------------------------------------


@pytest.mark.parametrize("header", ["x-custom", "gzip, x-custom", "x-custom, gzip", "utf-8"])
async def test_a_chain_with_an_unknown_coding_is_passed_through_as_received(
    serve: Serve, header: str
) -> None:
    """Codings under an unknown one cannot be undone, and undoing only the ones on top
    would leave a body no header describes: the body stays exactly as it came."""
    body = encoded(PAGE, "gzip")
    url = await serve(body, header)
    assert await fetch(url) == body


# -- size limit still holds ----------------------------------------------------------


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_bomb_still_stops_at_the_size_limit(serve: Serve, coding: str) -> None:
    bomb = encoded(b"\0" * (16 * 1024 * 1024), coding)
    url = await serve(bomb, coding)
    with pytest.raises(ResponseTooLarge, match="/page"):
        await fetch(url, max_size=1_000_000)


async def test_a_stacked_bomb_still_stops_at_the_size_limit(serve: Serve) -> None:
    bomb = stacked(b"\0" * (64 * 1024 * 1024), ["zstd", "gzip", "gzip"])
    url = await serve(bomb, "zstd, gzip, gzip")
    with pytest.raises(ResponseTooLarge):
        await fetch(url, max_size=1_000_000)


async def test_decoding_errors_are_http_errors() -> None:
    assert issubclass(DecodingError, HTTPError)
