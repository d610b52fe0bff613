"""How the crawl follows a page: which links it finds, what its requests say about
where they came from. Checked on what a real loopback server receives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from crawler import Request, Response, Spider
from tests.crawl.test_engine import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


class FollowAll(Spider):
    """Starts at the ``base`` option and follows every link of every page."""

    name = "follow_all"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/")

    def parse(self, response: Response) -> Iterator[Request]:
        yield from response.follow_all()


async def test_links_of_an_image_map_are_followed() -> None:
    pages = {
        "/": b'<img src="/map.png" usemap="#nav"><map name="nav">'
        b'<area shape="rect" coords="0,0,10,10" href="/north" alt="n">'
        b'<area shape="rect" coords="10,0,20,10" href="/south" alt="s"></map>'
        b'<a href="/about">about</a>',
    }

    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, pages.get(seen.target, b"<p>leaf</p>"))

    async with serve_h11(site) as server:
        stats, _ = await run(FollowAll, settings(server.url, obey_robots=False))
    assert Counter(seen.target for seen in server.requests) == Counter(
        {"/": 1, "/north": 1, "/south": 1, "/about": 1}
    )
    assert stats.pages == 4
