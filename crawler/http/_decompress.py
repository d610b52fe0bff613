"""DecompressMiddleware: undo Content-Encoding while the body streams.

Every decoder emits bounded pieces (``step`` bytes at most per piece), so the
size check in ``Response.aiter_bytes`` sees a gzip bomb grow one piece at a
time and stops it long before memory runs out. zlib, brotli and zstd (through
``compression.zstd`` or its backport) all bound their output natively.

A body must end where its compressed stream ends: one cut short (a dropped
connection on a close-delimited body, a server that lied in Content-Length)
raises ``DecodingError`` instead of passing for a whole, shorter page.

Stacks of codings are undone by an explicit loop over the stages, not nested
generators, and each stage's decoder is built when the first byte reaches it,
so a header listing thousands of codings costs neither stack nor memory; more
than ``MAX_CODINGS`` is refused anyway, as curl and urllib3 do.

Headers are left as received (Content-Encoding and Content-Length describe
the bytes on the wire), as httpx does. A response without Content-Encoding,
with only ``identity``, or with a coding we do not know keeps its stream
untouched: no wrapper, no cost, and the header still says what the bytes are.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from ._exceptions import DecodingError
from ._models import AsyncByteStream, Request, Response
from ._transports import Transport

if TYPE_CHECKING:
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd

# brotli and zstd are imported by the first response that needs them: most crawls
# never get one, and the two cost them about 0.7 MB of memory.
_ZSTD_MODULE = "compression.zstd" if sys.version_info >= (3, 14) else "backports.zstd"


def _zstd() -> ModuleType:
    import importlib

    return importlib.import_module(_ZSTD_MODULE)


__all__ = ["MAX_CODINGS", "SUPPORTED_ENCODINGS", "DecodingStream", "DecompressMiddleware"]

DEFAULT_STEP = 64 * 1024
MAX_CODINGS = 5
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_TRUNCATED = "the body ends inside its compressed stream (truncated)"


class _Truncated(Exception):
    """The body ended inside a compressed stream."""


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def flush(self) -> Iterator[bytes]: ...


class _ZlibDecoder:
    """gzip (with concatenated members) and deflate (zlib-wrapped or raw)."""

    __slots__ = ("_head", "_obj", "_skip", "_started", "_step", "_wbits")

    def __init__(self, wbits: int | None, step: int) -> None:
        # wbits None: deflate, choose zlib or raw once the first two bytes are in.
        self._wbits = wbits
        self._step = step
        self._head = b""
        self._obj: zlib._Decompress | None = None
        self._started = False  # a first stream was opened
        self._skip = False  # trailing bytes after the last stream: ignored, as browsers do

    def _open(self, data: bytes) -> bytes:
        """Start the next stream; b"" while its first bytes are still to come."""
        data = self._head + data
        if len(data) < 2:
            self._head = data
            return b""
        self._head = b""
        if self._wbits is None:
            cmf, flg = data[0], data[1]
            zlib_wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._wbits = zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
        elif self._started and not data.startswith(_GZIP_MAGIC):
            self._skip = True
            return b""
        self._started = True
        self._obj = zlib.decompressobj(self._wbits)
        return data

    def decode(self, data: bytes) -> Iterator[bytes]:
        step = self._step
        while data and not self._skip:
            obj = self._obj
            if obj is None:
                data = self._open(data)
                obj = self._obj
                if obj is None or not data:
                    return
            while True:
                out = obj.decompress(data, step)
                if out:
                    yield out
                data = obj.unconsumed_tail
                # Output cut at ``step`` may leave more inside zlib for no new input.
                if obj.eof or (not data and len(out) < step):
                    break
            if not obj.eof:
                return
            data = obj.unused_data
            self._obj = None
            if self._wbits != 16 + zlib.MAX_WBITS:
                self._skip = True  # deflate is one stream; gzip may hold several members

    def flush(self) -> Iterator[bytes]:
        if self._obj is not None or (self._head and not self._started):
            raise _Truncated()
        return iter(())


class _BrotliDecoder:
    __slots__ = ("_obj", "_step")

    def __init__(self, step: int) -> None:
        import brotli

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
        if not self._obj.is_finished():
            raise _Truncated()
        return iter(())


def _starts_zstd_frame(data: bytes) -> bool:
    # A standard frame, or a skippable one (magic 0x184D2A50 to 0x184D2A5F, little-endian).
    return data.startswith(_ZSTD_MAGIC) or (data[0] & 0xF0 == 0x50 and data[1:4] == b"\x2a\x4d\x18")


class _ZstdDecoder:
    """zstd, across concatenated frames."""

    __slots__ = ("_head", "_obj", "_skip", "_started", "_step")

    def __init__(self, step: int) -> None:
        self._step = step
        self._head = b""
        self._obj: zstd.ZstdDecompressor | None = None
        self._started = False
        self._skip = False

    def _open(self, data: bytes) -> bytes:
        data = self._head + data
        if self._started:
            if len(data) < 4:
                self._head = data
                return b""
            if not _starts_zstd_frame(data):
                self._skip = True
                return b""
        self._head = b""
        self._started = True
        self._obj = _zstd().ZstdDecompressor()
        return data

    def decode(self, data: bytes) -> Iterator[bytes]:
        step = self._step
        while data and not self._skip:
            obj = self._obj
            if obj is None:
                data = self._open(data)
                obj = self._obj
                if obj is None or not data:
                    return
            out = obj.decompress(data, step)
            if out:
                yield out
            while not obj.eof and not obj.needs_input:
                out = obj.decompress(b"", step)
                if not out:
                    break
                yield out
            if not obj.eof:
                return
            data = obj.unused_data
            self._obj = None

    def flush(self) -> Iterator[bytes]:
        if self._obj is not None:
            raise _Truncated()
        return iter(())


def _is_decoding_error(exc: Exception) -> bool:
    """Whether ``exc`` is zlib's, brotli's or zstd's complaint about the data; the latter
    two are looked for only if loaded, as a decoder of theirs must have been to raise."""
    if isinstance(exc, zlib.error):
        return True
    brotli = sys.modules.get("brotli")
    if brotli is not None and isinstance(exc, brotli.error):
        return True
    zstd = sys.modules.get(_ZSTD_MODULE)
    return zstd is not None and isinstance(exc, zstd.ZstdError)


SUPPORTED_ENCODINGS = ("gzip", "deflate", "br", "zstd")
_KNOWN = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})


def _make_decoder(coding: str, step: int) -> _Decoder:
    if coding == "deflate":
        return _ZlibDecoder(None, step)
    if coding == "br":
        return _BrotliDecoder(step)
    if coding == "zstd":
        return _ZstdDecoder(step)
    return _ZlibDecoder(16 + zlib.MAX_WBITS, step)  # gzip, x-gzip


def _codings(header: str) -> list[str]:
    """Content-Encoding names in the order they must be undone (last applied first)."""
    names = [c.strip().lower() for c in header.split(",")]
    return [c for c in reversed(names) if c and c != "identity"]


class _Pipeline:
    """Pushes wire bytes through the stages and pulls decoded pieces out, one at a time.

    Pull-driven, so a piece only ever exists between two stages and memory stays
    bounded by ``step`` per stage whatever the compression ratio. A stage's decoder
    is built when its first byte arrives; a stage that never gets one decodes an
    empty body, which is fine (a 204 or HEAD reply that says ``gzip``).
    """

    __slots__ = ("_codings", "_decoders", "_done", "_flushed", "_pending", "_step")

    def __init__(self, codings: list[str], step: int) -> None:
        n = len(codings)
        self._codings = codings
        self._step = step
        self._decoders: list[_Decoder | None] = [None] * n
        self._pending: list[Iterator[bytes]] = [iter(())] * n
        self._flushed = [False] * n
        self._done = [False] * n

    def feed(self, data: bytes) -> None:
        """Hand the first stage more wire bytes; only once ``pull`` returned None."""
        if data:
            self._pending[0] = self._decoder(0).decode(data)

    def _decoder(self, i: int) -> _Decoder:
        decoder = self._decoders[i]
        if decoder is None:
            decoder = self._decoders[i] = _make_decoder(self._codings[i], self._step)
        return decoder

    def pull(self, wire_done: bool) -> bytes | None:
        """The next decoded piece; None when the first stage needs more wire bytes.
        Raises StopIteration once every stage has ended."""
        pending, flushed, done = self._pending, self._flushed, self._done
        last = len(pending) - 1
        i = last
        while True:  # each pass moves a piece one stage on, or a stage one step to its end
            piece = next(pending[i], None)
            if piece is not None:
                if i == last:
                    if piece:
                        return piece
                    continue
                i += 1
                pending[i] = self._decoder(i).decode(piece)
                continue
            if i > 0 and not done[i - 1]:
                i -= 1  # this stage has used up its input: get more from the one before
                continue
            if i == 0 and not wire_done:
                return None
            if not flushed[i]:
                flushed[i] = True
                decoder = self._decoders[i]
                if decoder is not None:
                    pending[i] = decoder.flush()
                continue
            done[i] = True
            if i == last:
                raise StopIteration
            i += 1


class DecodingStream:
    """Wraps a body stream, decoding it on the fly.

    A class with ``__anext__`` rather than an async generator, so that a body
    abandoned half-way leaves nothing for the garbage collector to finalise.
    """

    __slots__ = ("_done", "_inner", "_iter", "_pipeline", "_response")

    def __init__(self, response: Response, codings: list[str], step: int = DEFAULT_STEP) -> None:
        self._response = response
        self._inner: AsyncByteStream = response.stream
        self._iter: AsyncIterator[bytes] | None = None
        self._pipeline = _Pipeline(codings, step)
        self._done = False

    def __aiter__(self) -> DecodingStream:
        return self

    async def __anext__(self) -> bytes:
        pipeline = self._pipeline
        while True:
            try:
                piece = pipeline.pull(self._done)
            except StopIteration:
                raise StopAsyncIteration from None
            except _Truncated:
                raise self._error(
                    "the body ends before its compressed stream (truncated)"
                ) from None
            except Exception as exc:
                if not _is_decoding_error(exc):
                    raise
                raise self._error(str(exc)) from None
            if piece is not None:
                return piece
            if self._iter is None:
                self._iter = aiter(self._inner)
            try:
                pipeline.feed(await anext(self._iter))
            except StopAsyncIteration:
                self._done = True

    def _error(self, why: str) -> DecodingError:
        return _decoding_error(self._response, f"could not decode the body: {why}")

    async def aclose(self) -> None:
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


def _decoding_error(response: Response, why: str) -> DecodingError:
    request = response.request
    where = request.url if request is not None else "the response"
    header = ", ".join(response.headers.get_list("content-encoding"))
    if len(header) > 80:
        header = header[:80] + "..."
    return DecodingError(f"{where} (Content-Encoding: {header}): {why}", request=request)


class DecompressMiddleware:
    """A transport that decodes gzip, deflate, br and zstd bodies from the one it wraps."""

    def __init__(self, transport: Transport, *, step: int = DEFAULT_STEP) -> None:
        self.transport = transport
        self._step = step

    async def handle_request(self, request: Request) -> Response:
        response = await self.transport.handle_request(request)
        values = response.headers.get_list("content-encoding")  # no KeyError when absent
        if not values:
            return response
        codings = _codings(values[0] if len(values) == 1 else ", ".join(values))
        if len(codings) > MAX_CODINGS:
            await response.aclose()
            raise _decoding_error(
                response,
                f"{len(codings)} codings stacked; at most {MAX_CODINGS} are decoded",
            )
        if codings and _KNOWN.issuperset(codings):
            response.stream = DecodingStream(response, codings, self._step)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
