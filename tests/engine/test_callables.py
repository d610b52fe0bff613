"""Callbacks that are not spider methods: any callable in an in-memory crawl, refused
with a clear error in a --job crawl, whose requests store callbacks by name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from crawler import Request, Response, Spider
from crawler.http import HTTPError
from tests.cli.helpers import FAST, crawl, read_jsonl
from tests.crawl import helpers
from tests.crawl.helpers import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


def respond(seen: Seen) -> Reply:
    if seen.target == "/missing":
        return Reply(404, HTML, b"gone")
    return Reply(200, HTML, b"<p>ok</p>")


def tag(response: Response, label: str) -> dict[str, Any]:
    return {"label": label, "path": response.url.path}


async def test_functions_lambdas_and_partials_are_callbacks_in_memory() -> None:
    failures: list[str] = []

    def failed(request: Request, error: HTTPError) -> None:
        failures.append(request.url.rsplit("/", 1)[1])

    async def coroutine(response: Response) -> dict[str, Any]:
        return tag(response, "coroutine")

    def generator(response: Response) -> Iterator[Any]:
        yield tag(response, "generator")
        # The callable survives the scheduler, a redirect's replace() and cb_kwargs.
        yield Request(
            str(response.url.copy_with(path="/next")),
            callback=lambda r, n: tag(r, f"lambda {n}"),
            cb_kwargs={"n": 2},
        )

    async with serve_h11(respond) as server:
        url = server.url

        class Callables(Spider):
            name = "callables"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/p", callback=partial(tag, label="partial"))
                yield Request(url + "/c", callback=coroutine)
                yield Request(url + "/g", callback=generator)
                yield Request(url + "/missing", callback=coroutine, errback=failed)

        stats, items = await run(Callables, settings("", obey_robots=False, retry_times=0))
    assert sorted((i["label"], i["path"]) for i in items) == [
        ("coroutine", "/c"),
        ("generator", "/g"),
        ("lambda 2", "/next"),
        ("partial", "/p"),
    ]
    assert failures == ["missing"] and stats.callback_errors == 0


def test_a_callback_that_is_not_callable_is_refused_where_it_is_made() -> None:
    with pytest.raises(TypeError, match="callback must be callable or the name of a spider"):
        Request("http://h/", callback=42)  # type: ignore[arg-type]


LAMBDA_SPIDER = """\
from crawler import Request, Spider


class Lambdas(Spider):
    name = "lambdas"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)

    def parse(self, response):
        yield {"path": response.url.path}
        yield response.follow("/named", callback=self.parse)
        yield response.follow("/lambda", callback=lambda r: {"path": "never"})
"""


@pytest.mark.e2e
async def test_a_job_refuses_a_callback_that_is_not_a_method_naming_it_and_the_url(
    tmp_path: Path,
) -> None:
    helpers.make_project(tmp_path, FAST, lambdas=LAMBDA_SPIDER)
    out = tmp_path / "items.jsonl"
    async with serve_h11(respond) as server:
        start = "start=" + json.dumps(server.url + "/")
        result = await crawl(
            tmp_path, "lambdas", "-s", start, "-O", str(out), "--job", str(tmp_path / "job")
        )
    stderr = result.stderr.decode()
    assert (
        f"callback Lambdas.parse.<locals>.<lambda> of GET {server.url}/lambda is not a "
        "method of the spider" in stderr
    ), stderr
    assert sorted(i["path"] for i in read_jsonl(out)) == ["/", "/named"]
    assert not any(seen.target == "/lambda" for seen in server.requests)
