"""What the session tests share: a members-only site with server-side sessions and
the spider that logs in to it."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

from crawler import Request, Response, Session, Spider

ALICE_PASSWORD = "alice-Pa55-" + secrets.token_hex(4)
BOB_PASSWORD = "bob-Pa55-" + secrets.token_hex(4)


class Members:
    """CSRF form login, server-side sessions (``sid`` cookie) that the test can expire.

    ``log`` holds, for every request, (method, path, user the server saw or None).
    """

    USERS = {"alice": ALICE_PASSWORD, "bob": BOB_PASSWORD}
    ORDERS = {"alice": ("A1", "A2", "A3"), "bob": ("B1", "B2")}

    def __init__(self, items: int = 30, expire_after: int = 0) -> None:
        self.items = items
        self.expire_after = expire_after
        self.sessions: dict[str, str] = {}
        self.pending: dict[str, str] = {}
        self.logins: Counter[str] = Counter()
        self.log: list[tuple[str, str, str | None]] = []
        self.served_items = 0
        self.expired = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        header = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode()
        cookies = dict(part.strip().split("=", 1) for part in header.split(";") if "=" in part)
        user = self.sessions.get(cookies.get("sid", ""))
        method, path = scope["method"], scope["path"]
        self.log.append((method, path, user))
        status, headers, page = self.route(method, path, user, cookies, body)
        headers = [(b"content-type", b"text/html; charset=utf-8"), *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": page.encode()})

    def route(
        self, method: str, path: str, user: str | None, cookies: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], str]:
        if path == "/login":
            return self.login(method, cookies, body)
        if user is None:
            return 302, [(b"location", f"/login?next={path}".encode())], ""
        account = f'<span class="account-name">{user}</span>'
        if path == "/account":
            return 200, [], account
        if path == "/items/":
            links = "".join(f'<a class="item" href="/items/{n}">{n}</a>' for n in range(self.items))
            return 200, [], account + links
        if path.startswith("/items/"):
            self.served_items += 1
            if self.expire_after and self.served_items == self.expire_after and not self.expired:
                self.expired = True
                self.sessions.clear()  # every session ends after this page
            return 200, [], f'{account}<h1 class="item">{path[7:]}</h1>'
        if path == "/orders":
            links = "".join(
                f'<a class="order" href="/orders/{o}">{o}</a>' for o in self.ORDERS[user]
            )
            return 200, [], account + links
        if path.startswith("/orders/"):
            order = path[8:]
            if order not in self.ORDERS[user]:
                return 404, [], "not yours"
            return 200, [], f'{account}<span class="order">{order}</span>'
        return 404, [], "not found"

    def login(
        self, method: str, cookies: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], str]:
        if method == "GET":
            pre, csrf = secrets.token_hex(8), secrets.token_hex(8)
            self.pending[pre] = csrf
            form = (
                '<form id="login" action="/login" method="post">'
                f'<input type="hidden" name="csrf" value="{csrf}">'
                '<input name="username"><input type="password" name="password">'
                '<input type="submit" value="Log in"></form>'
            )
            return 200, [(b"set-cookie", f"pre={pre}; Path=/; HttpOnly".encode())], form
        fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if self.pending.get(cookies.get("pre", "")) != fields.get("csrf"):
            return 400, [], "bad csrf token"
        name = fields.get("username", "")
        if self.USERS.get(name) != fields.get("password"):
            return 200, [], '<p class="error">Wrong username or password</p>'
        sid = secrets.token_hex(16)
        self.sessions[sid] = name
        self.logins[name] += 1
        return 302, [(b"location", b"/account"), (b"set-cookie", f"sid={sid}; Path=/".encode())], ""


class MemberSpider(Spider):
    """Logs in as ``user`` and scrapes every item behind the login."""

    name = "members"
    options = {"base": "", "user": "alice", "password": ""}

    login_url = "/login"  # a path: resolved against each response's URL

    async def login(self, session: Session) -> None:
        page = await session.get(self.settings["base"] + self.login_url)
        await session.submit_form(
            page,
            "#login",
            {"username": self.settings["user"], "password": self.settings["password"]},
            expect=".account-name",
        )

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/items/", callback=self.parse)

    def parse(self, response: Response) -> Iterator[Request]:
        yield from response.follow_all(css="a.item", callback=self.parse_item)

    def parse_item(self, response: Response) -> dict[str, Any]:
        return {
            "item": response.css_first("h1.item").text(),
            "owner": response.css_first(".account-name").text(),
        }
