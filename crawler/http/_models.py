"""Request and Response, and the byte streams that carry their bodies.

A Response produced by a transport holds an unread ``stream``; ``aread()``
drains it once into ``content``. The stream owns the connection it reads from,
so closing it (or reading it to the end) is what hands the connection back to
the pool: that is why every path that stops early must call ``aclose()``.
"""

from __future__ import annotations

import codecs
import json as jsonlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from ._config import Timeout
from ._exceptions import (
    HTTPStatusError,
    ResponseNotRead,
    ResponseTooLarge,
    StreamClosed,
    StreamConsumed,
)
from ._headers import Headers, HeaderTypes
from ._urls import URL, QueryParams, encode_params

__all__ = ["AsyncByteStream", "ByteStream", "Request", "Response"]

_REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    413: "Content Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}  # fmt: skip


@runtime_checkable
class AsyncByteStream(Protocol):
    """An async iterable of body chunks that must be closed when abandoned."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class ByteStream:
    """A body that is already in memory."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes = b"") -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data

    async def aclose(self) -> None:
        pass


def _encode_body(content: bytes | str | None, data: Any, json: Any) -> tuple[bytes, str | None]:
    """Return the body bytes and the Content-Type it implies (if any)."""
    if content is not None:
        return (content.encode() if isinstance(content, str) else bytes(content)), None
    if data is not None:
        return encode_params(data).encode("ascii"), "application/x-www-form-urlencoded"
    if json is not None:
        body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return body.encode("utf-8"), "application/json"
    return b"", None


class Request:
    """One HTTP request as the transport sees it.

    Headers are validated here, so CR/LF injection fails before any I/O.
    """

    __slots__ = ("content", "extensions", "headers", "method", "timeout", "url")

    def __init__(
        self,
        method: str,
        url: URL | str,
        *,
        params: QueryParams | None = None,
        headers: HeaderTypes | None = None,
        content: bytes | str | None = None,
        data: Any = None,
        json: Any = None,
        timeout: Timeout | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.method = method.upper()
        if not self.method.isalpha() or not self.method.isascii():
            raise ValueError(f"Invalid HTTP method {method!r}")
        self.url = URL(url, params=params) if params or not isinstance(url, URL) else url
        self.headers = Headers(headers)
        self.content, content_type = _encode_body(content, data, json)
        if content_type and "content-type" not in self.headers:
            self.headers["Content-Type"] = content_type
        needs_length = self.content or self.method in ("POST", "PUT", "PATCH")
        if needs_length and not (
            "content-length" in self.headers or "transfer-encoding" in self.headers
        ):
            self.headers["Content-Length"] = str(len(self.content))
        self.headers.validate()
        self.timeout = timeout
        self.extensions: dict[str, Any] = extensions if extensions is not None else {}

    def __repr__(self) -> str:
        return f"<Request({self.method!r}, {str(self.url)!r})>"


_NO_TIME = timedelta(0)  # timedelta is immutable: one for every new response
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


class Response:
    """An HTTP response; body access is explicit about whether it has been read."""

    __slots__ = (
        "_content",
        "_encoding",
        "_text",
        "elapsed",
        "extensions",
        "headers",
        "history",
        "http_version",
        "is_closed",
        "is_stream_consumed",
        "max_size",
        "reason_phrase",
        "request",
        "status_code",
        "stream",
    )

    def __init__(
        self,
        status_code: int,
        *,
        headers: HeaderTypes | None = None,
        content: bytes | str | None = None,
        text: str | None = None,
        html: str | None = None,
        json: Any = None,
        stream: AsyncByteStream | None = None,
        request: Request | None = None,
        http_version: str = "HTTP/1.1",
        reason_phrase: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = Headers(headers)
        self.http_version = http_version
        self.reason_phrase = (
            reason_phrase if reason_phrase is not None else _REASONS.get(status_code, "")
        )
        self.request: Request | None = request
        self.history: list[Response] = []
        self.elapsed = _NO_TIME
        self.extensions: dict[str, Any] = extensions if extensions is not None else {}
        self.max_size: int | None = None
        self._encoding: str | None = None
        self._text: str | None = None
        self.is_closed = False
        self.is_stream_consumed = False
        if stream is not None:
            self.stream: AsyncByteStream = stream
            self._content: bytes | None = None
            return
        body, content_type = b"", None
        if html is not None:
            body, content_type = html.encode("utf-8"), "text/html; charset=utf-8"
        elif text is not None:
            body, content_type = text.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            body, content_type = _encode_body(content, None, json)
        if content_type and "content-type" not in self.headers:
            self.headers["Content-Type"] = content_type
        if "content-length" not in self.headers and "transfer-encoding" not in self.headers:
            self.headers["Content-Length"] = str(len(body))
        self.stream = ByteStream(body)
        self._content = body
        self.is_stream_consumed = True
        self.is_closed = True

    @classmethod
    def _adopt(cls, other: Response) -> Any:
        """Make an instance of ``cls`` (a subclass) that shares ``other``'s state."""
        new = cls.__new__(cls)
        for name in Response.__slots__:
            object.__setattr__(new, name, getattr(other, name))
        return new

    # -- body ------------------------------------------------------------------

    @property
    def url(self) -> URL:
        if self.request is None:
            raise RuntimeError("This response has no request, so it has no URL.")
        return self.request.url

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise ResponseNotRead()
        return self._content

    async def aread(self) -> bytes:
        """Read the whole body once.

        Drains the stream directly rather than through ``aiter_bytes``: an
        async generator per response costs measurably on the hot path.
        """
        if self._content is None:
            chunks = self._start_consuming()
            parts: list[bytes] = []
            size, limit = 0, self.max_size
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise self._too_large(limit)
                    parts.append(chunk)
            finally:
                await self._finish_consuming(chunks)
            self._content = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Yield the decoded body, enforcing ``max_size`` as it grows."""
        if self._content is not None and self.is_stream_consumed:
            if self._content:
                yield self._content
            return
        chunks = self._start_consuming()
        size, limit = 0, self.max_size
        try:
            async for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise self._too_large(limit)
                yield chunk
        finally:
            await self._finish_consuming(chunks)

    def _start_consuming(self) -> AsyncIterator[bytes]:
        if self.is_stream_consumed:
            raise StreamConsumed()
        if self.is_closed:
            raise StreamClosed()
        self.is_stream_consumed = True
        return aiter(self.stream)

    async def _finish_consuming(self, chunks: AsyncIterator[bytes]) -> None:
        # An async generator stopped early must be closed, or trio warns.
        closer = getattr(chunks, "aclose", None)
        stream: object = self.stream  # closed just below when it is its own iterator
        if closer is not None and chunks is not stream:
            await closer()
        await self.aclose()

    def _too_large(self, limit: int) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"Response body of {self.url} exceeds the maximum of {limit} bytes",
            request=self.request,
        )

    async def aclose(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            await self.stream.aclose()

    # -- decoding ----------------------------------------------------------------

    @property
    def charset_encoding(self) -> str | None:
        """The charset named in Content-Type, if it is one Python knows."""
        match = _HEADER_CHARSET.search(self.headers.get("content-type", ""))
        return _known_codec(match.group(1)) if match else None

    @property
    def encoding(self) -> str:
        """Content-Type charset, then an HTML ``<meta>`` charset, then UTF-8 or cp1252."""
        if self._encoding is None:
            enc = self.charset_encoding
            if enc is None:
                match = _META_CHARSET.search(self.content[:2048])
                enc = _known_codec(match.group(1).decode("ascii")) if match else None
            if enc is None:
                try:
                    self.content.decode("utf-8")
                    enc = "utf-8"
                except UnicodeDecodeError:
                    enc = "cp1252"
            self._encoding = enc
        return self._encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        self._encoding = value
        self._text = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.content.decode(self.encoding, errors="replace")
        return self._text

    def json(self, **kwargs: Any) -> Any:
        return jsonlib.loads(self.content, **kwargs)

    # -- status ------------------------------------------------------------------

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def raise_for_status(self) -> Response:
        if self.status_code < 400:
            return self
        kind = "Client error" if self.status_code < 500 else "Server error"
        assert self.request is not None
        raise HTTPStatusError(
            f"{kind} '{self.status_code} {self.reason_phrase}' for url '{self.url}'",
            request=self.request,
            response=self,
        )

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"
