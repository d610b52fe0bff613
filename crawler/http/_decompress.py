"""DecompressMiddleware: undo Content-Encoding while the body streams.

Every decoder emits bounded pieces (``step`` bytes at most per piece), so the
size check in ``Response.aiter_bytes`` sees a gzip bomb grow one piece at a
time and stops it long before memory runs out. zlib and brotli can bound
their output natively; zstandard cannot, so its decoder counts what one input
chunk produced and stops at the response's ``max_size`` itself.

Headers are left as received (Content-Encoding and Content-Length describe
the bytes on the wire), as httpx does. A response without Content-Encoding,
or with ``identity``, keeps its stream untouched: no wrapper, no cost.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Protocol

import brotli
import zstandard

from ._exceptions import DecodingError, ResponseTooLarge
from ._models import AsyncByteStream, Request, Response
from ._transports import Transport

__all__ = ["SUPPORTED_ENCODINGS", "DecodingStream", "DecompressMiddleware"]

DEFAULT_STEP = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def flush(self) -> Iterator[bytes]: ...


class _ZlibDecoder:
    """gzip (with concatenated members) and deflate (zlib-wrapped or raw)."""

    __slots__ = ("_head", "_obj", "_step", "_wbits")

    def __init__(self, wbits: int | None, step: int) -> None:
        # wbits None: deflate, choose zlib or raw once the first two bytes are in.
        self._wbits = wbits
        self._step = step
        self._head = b""
        self._obj = zlib.decompressobj(wbits) if wbits is not None else None

    def decode(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        if obj is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            cmf, flg = data[0], data[1]
            zlib_wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._wbits = zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
            obj = self._obj = zlib.decompressobj(self._wbits)
        step = self._step
        while data:
            out = obj.decompress(data, step)
            if out:
                yield out
            data = obj.unconsumed_tail
            while len(out) == step and not data:
                # Output was cut at ``step``: zlib may hold more for no new input.
                out = obj.decompress(b"", step)
                if out:
                    yield out
                data = obj.unconsumed_tail
            if obj.eof:
                data = obj.unused_data
                if self._wbits != 16 + zlib.MAX_WBITS or not data.startswith(_GZIP_MAGIC):
                    return  # trailing bytes after the stream: ignored, as browsers do
                obj = self._obj = zlib.decompressobj(self._wbits)

    def flush(self) -> Iterator[bytes]:
        if self._obj is None:
            if self._head:
                raise zlib.error("deflate body shorter than its two-byte header")
            return
        out = self._obj.flush()
        if out:
            yield out


class _BrotliDecoder:
    __slots__ = ("_obj", "_step")

    def __init__(self, step: int) -> None:
        self._obj = brotli.Decompressor()
        self._step = step

    def decode(self, data: bytes) -> Iterator[bytes]:
        obj, step = self._obj, self._step
        if obj.is_finished():
            return
        out = obj.process(data, output_buffer_limit=step)
        if out:
            yield out
        while not obj.can_accept_more_data():
            out = obj.process(b"", output_buffer_limit=step)
            if not out:
                break
            yield out

    def flush(self) -> Iterator[bytes]:
        return iter(())


class _Sink:
    """Collects zstandard's output for one input chunk, refusing to exceed ``limit``."""

    __slots__ = ("chunks", "limit", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit: int | None = None

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            self.chunks.clear()
            raise _TooLarge()
        self.chunks.append(bytes(data))
        return len(data)


class _TooLarge(Exception):
    pass


class _ZstdDecoder:
    """zstd, across concatenated frames, via a writer so output comes in ``step`` pieces."""

    __slots__ = ("_sink", "_writer")

    def __init__(self, step: int, limit: int | None) -> None:
        self._sink = _Sink()
        self._sink.limit = limit
        # The writer only ever calls ``write``, which _Sink provides.
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            self._sink,  # type: ignore[arg-type]
            write_size=step,
            write_return_read=True,
        )

    def decode(self, data: bytes) -> Iterator[bytes]:
        sink = self._sink
        sink.size = 0
        self._writer.write(data)
        chunks, sink.chunks = sink.chunks, []
        yield from chunks

    def flush(self) -> Iterator[bytes]:
        return iter(())


SUPPORTED_ENCODINGS = ("gzip", "deflate", "br", "zstd")


def _make_decoder(coding: str, step: int, limit: int | None) -> _Decoder | None:
    if coding in ("gzip", "x-gzip"):
        return _ZlibDecoder(16 + zlib.MAX_WBITS, step)
    if coding == "deflate":
        return _ZlibDecoder(None, step)
    if coding == "br":
        return _BrotliDecoder(step)
    if coding == "zstd":
        return _ZstdDecoder(step, limit)
    return None


def _codings(header: str) -> list[str]:
    """Content-Encoding names in the order they must be undone (last applied first)."""
    names = [c.strip().lower() for c in header.split(",")]
    return [c for c in reversed(names) if c and c != "identity"]


def _chain(decoder: _Decoder, chunks: Iterable[bytes], final: bool) -> Iterator[bytes]:
    for chunk in chunks:
        yield from decoder.decode(chunk)
    if final:
        yield from decoder.flush()


class DecodingStream:
    """Wraps a body stream, decoding it on the fly.

    A class with ``__anext__`` rather than an async generator, so that a body
    abandoned half-way leaves nothing for the garbage collector to finalise.
    """

    __slots__ = (
        "_codings",
        "_decoders",
        "_done",
        "_inner",
        "_iter",
        "_pending",
        "_response",
        "_step",
    )

    def __init__(self, response: Response, codings: list[str], step: int = DEFAULT_STEP) -> None:
        self._response = response
        self._inner: AsyncByteStream = response.stream
        self._iter: AsyncIterator[bytes] | None = None
        self._pending: Iterator[bytes] = iter(())
        self._decoders: list[_Decoder] | None = None
        self._codings = codings
        self._step = step
        self._done = False

    def __aiter__(self) -> DecodingStream:
        return self

    def _start(self) -> list[_Decoder]:
        # Built at first read, when the client has set max_size on the response.
        limit = self._response.max_size
        decoders = []
        for coding in self._codings:
            decoder = _make_decoder(coding, self._step, limit)
            if decoder is not None:  # unknown codings are skipped, as httpx does
                decoders.append(decoder)
        self._decoders = decoders
        return decoders

    def _pipeline(self, data: bytes, final: bool) -> Iterator[bytes]:
        decoders = self._decoders if self._decoders is not None else self._start()
        chunks: Iterable[bytes] = (data,) if data else ()
        for decoder in decoders:
            chunks = _chain(decoder, chunks, final)
        return iter(chunks)

    async def __anext__(self) -> bytes:
        while True:
            try:
                return next(self._pending)
            except StopIteration:
                pass
            except _TooLarge:
                raise self._too_large() from None
            except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
                raise self._error(exc) from None
            if self._done:
                raise StopAsyncIteration
            if self._iter is None:
                self._iter = aiter(self._inner)
            try:
                data = await anext(self._iter)
            except StopAsyncIteration:
                self._done = True
                self._pending = self._pipeline(b"", final=True)
                continue
            self._pending = self._pipeline(data, final=False)

    def _error(self, exc: Exception) -> DecodingError:
        request = self._response.request
        where = request.url if request is not None else "the response"
        header = self._response.headers.get("content-encoding", "")
        return DecodingError(
            f"Could not decode the body of {where} (Content-Encoding: {header}): {exc}",
            request=request,
        )

    def _too_large(self) -> ResponseTooLarge:
        request = self._response.request
        where = request.url if request is not None else "the response"
        return ResponseTooLarge(
            f"Response body of {where} exceeds the maximum of "
            f"{self._response.max_size} bytes once decompressed",
            request=request,
        )

    async def aclose(self) -> None:
        self._pending = iter(())
        iterator, self._iter = self._iter, None
        # An async-generator body (``ByteStream``) must be closed as an iterator
        # too; a class-based one is its own iterator and is closed once, below.
        inner: object = self._inner
        close = getattr(iterator, "aclose", None) if iterator is not inner else None
        try:
            if close is not None:
                await close()
        finally:
            await self._inner.aclose()


class DecompressMiddleware:
    """A transport that decodes gzip, deflate, br and zstd bodies from the one it wraps."""

    def __init__(self, transport: Transport, *, step: int = DEFAULT_STEP) -> None:
        self.transport = transport
        self._step = step

    async def handle_request(self, request: Request) -> Response:
        response = await self.transport.handle_request(request)
        values = response.headers.get_list("content-encoding")  # no KeyError when absent
        if values:
            codings = _codings(", ".join(values))
            if codings:
                response.stream = DecodingStream(response, codings, self._step)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
