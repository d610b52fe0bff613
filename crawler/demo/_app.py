"""The demo site as a raw ASGI application.

No web framework: the site is small, and a framework would be one more
dependency for a feature whose whole point is to work on a fresh machine
without a network. The app speaks real HTTP details on purpose (charset in
Content-Type, Content-Length, gzip when asked, 302 redirects, cookies, a
robots.txt) because crawls against it are meant to exercise the engine's
whole stack.

Sessions live in a signed cookie rather than a server-side table, so a crawl
that fetches /login a million times costs the server no memory.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import trio

from . import _templates as t
from ._books import books_page
from ._content import (
    AUTHORS_BY_SLUG,
    FAVOURITE_IDS,
    PAGE_SIZE,
    QUOTES,
    QUOTES_BY_TAG,
    Quote,
    page_count,
)
from ._sitemap import site_file

__all__ = ["DEMO_PASSWORD", "DEMO_USERNAME", "SESSION_COOKIE", "DemoApp", "demo_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
SESSION_COOKIE = "session"
MAX_BODY = 64 * 1024

HTML = b"text/html; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
FAVOURITES: tuple[Quote, ...] = tuple(q for q in QUOTES if q.id in FAVOURITE_IDS)


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: bytes = HTML
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _html(status: int, page: str, *headers: tuple[bytes, bytes]) -> _Reply:
    return _Reply(status, page.encode("utf-8"), HTML, list(headers))


def _redirect(location: str, *headers: tuple[bytes, bytes]) -> _Reply:
    body = f"Redirecting to {location}\n".encode()
    return _Reply(302, body, TEXT, [(b"location", location.encode("ascii")), *headers])


def _session_cookie(value: str) -> tuple[bytes, bytes]:
    return (b"set-cookie", f"{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax".encode())


_CLEAR_SESSION = (
    b"set-cookie",
    f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax".encode(),
)


class _Signer:
    """Signs session data into a cookie value (base64url JSON, a dot, base64url HMAC)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    def dump(self, data: dict[str, str]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
        payload = payload.rstrip(b"=")
        return (payload + b"." + self._mac(payload)).decode("ascii")

    def load(self, value: str | None) -> dict[str, str] | None:
        """The session, or None when the cookie is absent, forged or malformed."""
        if not value:
            return None
        payload, _, mac = value.encode("latin-1").partition(b".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return None
        return data


def _header(headers: list[tuple[bytes, bytes]], name: bytes, sep: bytes) -> bytes:
    return sep.join(value for key, value in headers if key == name)


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def _accepts_gzip(header: bytes) -> bool:
    for item in header.split(b","):
        coding, _, params = item.partition(b";")
        if coding.strip().lower() not in (b"gzip", b"x-gzip"):
            continue
        param = params.strip().lower()
        if not param.startswith(b"q="):
            return True
        try:
            return float(param[2:]) > 0
        except ValueError:
            return False
    return False


@lru_cache(maxsize=256)
def _gzip(body: bytes) -> bytes:
    """Pages repeat across requests, so the compressed forms are worth keeping."""
    return gzip.compress(body, compresslevel=6, mtime=0)


def _page_number(text: str) -> int | None:
    """Only the canonical spelling counts: /page/02/ is not a second copy of /page/2/."""
    if not (text.isascii() and text.isdigit()) or text != str(int(text)) or text == "0":
        return None
    return int(text)


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None if the client went away or sent too much."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class DemoApp:
    """The demo quotes site. One instance holds one process's worth of state.

    That state is only the signing key and whether /flaky/ has failed yet:
    /flaky/ answers 500 to the first request an instance sees and 200 after,
    so a crawler's retry is exercised exactly once and deterministically.
    """

    def __init__(self, *, slow_delay: float = 0.2, secret: bytes | None = None) -> None:
        self.slow_delay = slow_delay
        self._signer = _Signer(secret if secret is not None else secrets.token_bytes(32))
        self._flaky_failed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        session = self._signer.load(_cookie(_header(headers, b"cookie", b"; "), SESSION_COOKIE))
        body = b""
        if method == "POST":
            read = await _read_body(receive)
            if read is None:
                reply = _html(413, t.error_page(413, "Content Too Large", "Body too large.", None))
                await self._send(send, reply, head=False, gzip_ok=False)
                return
            body = read
        # robots.txt and the sitemaps name the site's own origin: see _sitemap.py.
        served = site_file(method, scope)
        if served is not None:
            reply = _Reply(200, *served)
        else:
            reply = await self._route(method, scope["path"], session, body)
        gzip_ok = _accepts_gzip(_header(headers, b"accept-encoding", b","))
        await self._send(send, reply, head=method == "HEAD", gzip_ok=gzip_ok)

    @staticmethod
    async def _send(send: Send, reply: _Reply, *, head: bool, gzip_ok: bool) -> None:
        body = reply.body
        headers = [(b"content-type", reply.content_type)]
        if reply.content_type == HTML:
            headers.append((b"vary", b"Accept-Encoding"))
            if gzip_ok:
                body = _gzip(body)
                headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        headers.extend(reply.headers)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _route(
        self, method: str, path: str, session: dict[str, str] | None, body: bytes
    ) -> _Reply:
        user = session.get("user") if session is not None else None
        parts = tuple(part for part in path.split("/") if part)
        allowed = ("GET", "HEAD", "POST") if parts == ("login",) else ("GET", "HEAD")
        if method not in allowed:
            message = f"{method} is not allowed on {path}; use {', '.join(allowed)}."
            page = t.error_page(405, "Method Not Allowed", message, user)
            return _html(405, page, (b"allow", ", ".join(allowed).encode()))
        match parts:
            case ():
                return self._quotes(path, QUOTES, 1, None, user)
            case ("page", number):
                return self._quotes(path, QUOTES, _page_number(number), None, user)
            case ("tag", tag):
                return self._quotes(path, QUOTES_BY_TAG.get(tag), 1, tag, user)
            case ("tag", tag, "page", number):
                return self._quotes(path, QUOTES_BY_TAG.get(tag), _page_number(number), tag, user)
            case ("author", slug) if slug in AUTHORS_BY_SLUG:
                return _html(200, t.author_page(AUTHORS_BY_SLUG[slug], user))
            case ("login",):
                if method == "POST":
                    return self._login(session, body)
                return self._login_form(session, None)
            case ("logout",):
                return _redirect("/", _CLEAR_SESSION)
            case ("private",):
                if user is None:
                    return _redirect("/login")
                return _html(200, t.private_page(FAVOURITES, user))
            case ("private-archive",):
                return _html(200, t.archive_page(user))
            case ("flaky",):
                return self._flaky(user)
            case ("slow",):
                await trio.sleep(self.slow_delay)
                return _html(200, t.message_page("Slow page", "Worth the wait.", user))
            case ("books", *rest):
                return _books(path, tuple(rest), user)
        return _not_found(path, user)

    @staticmethod
    def _quotes(
        path: str,
        quotes: tuple[Quote, ...] | None,
        page: int | None,
        tag: str | None,
        user: str | None,
    ) -> _Reply:
        if quotes is None or page is None:
            return _not_found(path, user)
        pages = page_count(len(quotes))
        if page > pages:
            return _not_found(f"{path} (there are {pages} pages)", user)
        start = (page - 1) * PAGE_SIZE
        html = t.quotes_page(
            quotes[start : start + PAGE_SIZE],
            page=page,
            pages=pages,
            tag=tag,
            user=user,
            favourites=FAVOURITE_IDS,
        )
        return _html(200, html)

    def _login_form(self, session: dict[str, str] | None, error: str | None) -> _Reply:
        """The form, with a CSRF token bound to the session cookie issued alongside it."""
        if session is not None and session.get("csrf"):
            user = session.get("user")
            return _html(200, t.login_page(session["csrf"], error, user))
        fresh = {"csrf": secrets.token_urlsafe(24)}
        page = t.login_page(fresh["csrf"], error, None)
        return _html(200, page, _session_cookie(self._signer.dump(fresh)))

    def _login(self, session: dict[str, str] | None, body: bytes) -> _Reply:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

        def value(name: str) -> str:
            return form.get(name, [""])[0]

        expected = session.get("csrf", "") if session is not None else ""
        if not expected or not _same(value("csrf_token"), expected):
            message = (
                "POST /login: the CSRF token is missing or does not match the session cookie; "
                "GET /login first and send back its csrf_token with the cookie it set."
            )
            return _html(400, t.error_page(400, "Bad Request", message, None))
        good_user = _same(value("username"), DEMO_USERNAME)
        good_password = _same(value("password"), DEMO_PASSWORD)
        if not (good_user and good_password):
            return self._login_form(session, "Invalid username or password.")
        fresh = {"csrf": secrets.token_urlsafe(24), "user": DEMO_USERNAME}
        return _redirect("/", _session_cookie(self._signer.dump(fresh)))

    def _flaky(self, user: str | None) -> _Reply:
        if not self._flaky_failed:
            self._flaky_failed = True
            message = "The first request to /flaky/ fails on purpose; ask again."
            return _html(500, t.error_page(500, "Internal Server Error", message, user))
        return _html(200, t.message_page("Flaky page", "Fine now, thanks for retrying.", user))


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that, unlike compare_digest on str, accepts any text."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _books(path: str, rest: tuple[str, ...], user: str | None) -> _Reply:
    """The bookshop (crawler/demo/_books.py); its links are relative, so /books needs its slash."""
    if path == "/books":
        return _redirect("/books/")
    page = books_page(rest)
    return _not_found(path, user) if page is None else _html(200, page)


def _not_found(what: str, user: str | None) -> _Reply:
    return _html(404, t.error_page(404, "Not Found", f"Nothing here: {what}", user))


demo_app = DemoApp()
