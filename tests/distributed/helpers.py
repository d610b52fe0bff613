"""What the shared-crawl tests share: a site on two loopback hosts that counts every
fetch (by path and by the fetching worker's User-Agent), and a spider for it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from crawler import Request, Response, Spider
from tests.servers import serve_asgi

HOSTS = ("127.0.0.1", "127.0.0.2")


class TwoHostSite:
    """Pages ``/p/0`` .. ``/p/N-1`` spread over two hosts: page i links to pages 2i+1 and
    2i+2 (on the host each lives on) and back to page 0, so every page is reached once
    and most links are duplicates. ``delay`` slows each answer, to keep a crawl going
    long enough to act on it midway; ``hold_from`` holds it there."""

    def __init__(self, pages: int, delay: float = 0.0, hold_from: int = 0) -> None:
        self.pages = pages
        self.delay = delay
        # Pages from this number on are answered only once ``release`` is set (0: none
        # held): a crawl stays midway for as long as a test needs.
        self.hold_from = hold_from
        self.release = trio.Event()
        self.bases: list[str] = []
        self.hits: Counter[str] = Counter()  # "host:port/p/i" -> fetches
        self.by_agent: Counter[str] = Counter()
        self.changed = trio.Event()

    def url(self, i: int) -> str:
        return f"{self.bases[i % len(self.bases)]}/p/{i}"

    def all_urls(self) -> set[str]:
        return {self.url(i) for i in range(self.pages)}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        host, port = scope["server"]
        path = scope["path"]
        self.hits[f"http://{host}:{port}{path}"] += 1
        agent = dict(scope["headers"]).get(b"user-agent", b"").decode()
        self.by_agent[agent] += 1
        self.changed.set()
        self.changed = trio.Event()
        if self.delay:
            await trio.sleep(self.delay)
        number = path[3:]
        if self.hold_from and number.isdigit() and int(number) >= self.hold_from:
            await self.release.wait()
        status, body = 404, b"not found"
        if path.startswith("/p/") and path[3:].isdigit() and int(path[3:]) < self.pages:
            i = int(path[3:])
            links = [self.url(j) for j in (2 * i + 1, 2 * i + 2) if j < self.pages]
            links.append(self.url(0))
            anchors = "".join(f'<a href="{href}">x</a>' for href in links)
            status, body = 200, f"<html><body><h1>{i}</h1>{anchors}</body></html>".encode()
        headers = [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def wait_for(self, predicate: Any) -> None:
        """Until ``predicate()`` holds, woken by each fetch (bounded: 60 s)."""
        with trio.fail_after(60):
            while not predicate():
                await self.changed.wait()


@asynccontextmanager
async def serve_two_hosts(site: TwoHostSite) -> AsyncIterator[TwoHostSite]:
    async with serve_asgi(site, HOSTS[0]) as first, serve_asgi(site, HOSTS[1]) as second:
        site.bases = [first, second]
        yield site


class TwoHostSpider(Spider):
    """One item per page; follows every link."""

    name = "twohosts"
    options = {"start": ""}

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["start"])

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": str(response.url)}
        yield from response.follow_all()


# The same spider as a project's module, for the crawl command.
SPIDER_SOURCE = """
from crawler import Request, Spider


class TwoHostSpider(Spider):
    name = "twohosts"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"])

    def parse(self, response):
        yield {"url": str(response.url)}
        yield from response.follow_all()
"""


class CuttableRelay:
    """A TCP relay to Redis that a test can cut and restore: one worker loses Redis
    while the others keep it. Cut connections are closed; new ones are closed at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self._scopes: set[trio.CancelScope] = set()

    async def handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(_pipe, client, server, nursery.cancel_scope)
                        nursery.start_soon(_pipe, server, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)

    def cut(self) -> None:
        self.up = False
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self.up = True


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        async for data in source:
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()
