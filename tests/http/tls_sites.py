"""A hypercorn site over TLS (trustme certificates) that reports what it saw.

Shared by the HTTP/2 tests and the proxy tests (HTTP/2 through a CONNECT
tunnel); the ``certs`` fixture that makes the certificates is in conftest.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.servers import serve_asgi

MB = 1024 * 1024


@dataclass
class Certs:
    cert: str
    key: str
    ca: str


@dataclass
class Observed:
    """What the ASGI app saw: the ground truth for connection and stream counts."""

    versions: set[str] = field(default_factory=set)
    client_ports: set[int] = field(default_factory=set)
    in_flight: int = 0
    peak: int = 0
    paths: list[str] = field(default_factory=list)
    full: trio.Event = field(default_factory=trio.Event)
    hold_until: int = 0  # requests wait until this many are in flight at once


def make_app(seen: Observed) -> Callable[..., Awaitable[None]]:
    big = bytes(range(256)) * (10 * MB // 256)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.versions.add(scope["http_version"])
        seen.client_ports.add(scope["client"][1])
        seen.paths.append(scope["path"])
        seen.in_flight += 1
        seen.peak = max(seen.peak, seen.in_flight)
        try:
            if seen.hold_until:
                if seen.in_flight >= seen.hold_until:
                    seen.full.set()
                await seen.full.wait()
            digest = hashlib.sha256()
            size = 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                digest.update(chunk)
                size += len(chunk)
                if not message.get("more_body"):
                    break
            headers = [(b"content-type", b"application/json")]
            path = scope["path"]
            if path == "/big":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                step = 256 * 1024
                for pos in range(0, len(big), step):
                    end = pos + step
                    more = end < len(big)
                    await send(
                        {"type": "http.response.body", "body": big[pos:end], "more_body": more}
                    )
                return
            if path == "/redirect":
                headers = [(b"location", b"/gzip"), (b"set-cookie", b"sid=42; Path=/")]
                await send({"type": "http.response.start", "status": 302, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            cookie = dict(scope["headers"]).get(b"cookie", b"").decode()
            body = json.dumps(
                {"path": path, "size": size, "sha256": digest.hexdigest(), "cookie": cookie}
            ).encode()
            if path == "/gzip":
                headers.append((b"content-encoding", b"gzip"))
                body = gzip.compress(body)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            seen.in_flight -= 1

    return app


@asynccontextmanager
async def tls_site(
    certs: Certs, alpn: list[str] | None = None
) -> AsyncIterator[tuple[str, Observed]]:
    seen = Observed()
    async with serve_asgi(
        make_app(seen), certfile=certs.cert, keyfile=certs.key, alpn=alpn or ["h2", "http/1.1"]
    ) as url:
        yield url, seen
