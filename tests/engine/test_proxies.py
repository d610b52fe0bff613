"""Proxies in a crawl: Request(proxy=...) > [domains."HOST"] proxy > the proxy setting
> the environment, "" (or NO_PROXY) for none; meta={"proxy": ...} is reported, not read.

The origin says which requests came through tinyproxy (its Via header) and
tinyproxy's log lists what it forwarded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Request, Response, Settings, Spider
from crawler.frontier.sqlite import decode_request, encode_request
from crawler.settings import SettingsError
from tests.cli.helpers import BOOKS
from tests.cli.helpers import crawl_sync as cli
from tests.crawl.helpers import make_project, run, settings
from tests.proxies import PASSWORD, run_pproxy, run_tinyproxy
from tests.servers import serve_h11

_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def spider_for(requests: list[Request]) -> type[Spider]:
    class Paths(Spider):
        name = "paths"

        def start_requests(self) -> Iterator[Request]:
            for request in requests:
                yield request.replace(callback="parse")

        def parse(self, response: Response) -> Iterator[dict[str, Any]]:
            yield {"url": response.url}

    return Paths


async def crawl_paths(base: str, paths: dict[str, dict[str, Any]], **overrides: Any) -> None:
    requests = [Request(base + path, **fields) for path, fields in paths.items()]
    s = settings(base, obey_robots=False, retry_times=0, **overrides)
    stats, items = await run(spider_for(requests), s)
    assert len(items) == len(paths), stats


def proxied(server: Any) -> dict[str, bool]:
    return {seen.target: "tinyproxy" in seen.headers.get("via", "") for seen in server.requests}


async def test_request_proxy_beats_domains_beats_the_setting(tmp_path: Path) -> None:
    with run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as origin:
            await crawl_paths(
                origin.url,
                {"/setting": {}, "/request-off": {"proxy": ""}},
                proxy=proxy.url,
            )
            await crawl_paths(
                origin.url,
                {"/domain-off": {}, "/request-on": {"proxy": proxy.url}},
                proxy=proxy.url,
                domains={"127.0.0.1": {"proxy": ""}},
            )
            await crawl_paths(
                origin.url, {"/domain-on": {}}, domains={"127.0.0.1": {"proxy": proxy.url}}
            )
    assert proxied(origin) == {
        "/setting": True,
        "/request-off": False,
        "/domain-off": False,
        "/request-on": True,
        "/domain-on": True,
    }
    assert all("proxy-authorization" not in seen.headers for seen in origin.requests)
    for path in ("/setting", "/request-on", "/domain-on"):
        assert f"{origin.url}{path}" in proxy.log
    assert "/request-off" not in proxy.log and "/domain-off" not in proxy.log


async def test_environment_when_trusted_and_no_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as origin:
            monkeypatch.setenv("http_proxy", proxy.url)
            await crawl_paths(origin.url, {"/env": {}})
            await crawl_paths(origin.url, {"/untrusted": {}}, trust_env=False)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            await crawl_paths(origin.url, {"/no-proxy": {}})
            # NO_PROXY exempts the host from the setting's proxy too, as curl does;
            # a request's own proxy is above it.
            await crawl_paths(
                origin.url, {"/setting": {}, "/own": {"proxy": proxy.url}}, proxy=proxy.url
            )
    assert proxied(origin) == {
        "/env": True,
        "/untrusted": False,
        "/no-proxy": False,
        "/setting": False,
        "/own": True,
    }


async def test_meta_proxy_is_reported_once_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as origin:
            meta = {"proxy": proxy.url}
            with caplog.at_level(logging.WARNING, logger="crawler.engine"):
                await crawl_paths(origin.url, {"/a": {"meta": meta}, "/b": {"meta": meta}})
    assert proxied(origin) == {"/a": False, "/b": False}
    warned = [r.getMessage() for r in caplog.records if "'proxy'" in r.getMessage()]
    assert len(warned) == 1
    assert 'Request(..., proxy="http://user:pass@proxy:port")' in warned[0]
    assert PASSWORD not in caplog.text


def test_proxy_is_checked_carried_and_stored() -> None:
    request = Request("http://a.test/", proxy="http://u:pw@p.test:3128")
    for copy in (
        request.replace(url="http://a.test/2"),
        Request.from_dict(request.to_dict()),
        decode_request(None, None, encode_request(request)),
    ):
        assert copy.proxy == "http://u:pw@p.test:3128"
    off = decode_request(None, None, encode_request(Request("http://a.test/", proxy="")))
    assert off.proxy == ""
    plain = encode_request(Request("http://a.test/"))
    assert decode_request(None, None, plain).proxy is None
    assert "proxy" not in plain and plain.endswith(",[]]")  # records keep format 2's shape
    with pytest.raises(ValueError, match=r"proxy of http://a.test/: .*only http://") as caught:
        Request("http://a.test/", proxy="socks4://u:pw@p.test:1080")
    assert "pw" not in str(caught.value)


async def test_socks_proxies_from_the_setting_and_a_request(tmp_path: Path) -> None:
    with run_pproxy(tmp_path) as socks:
        async with serve_h11() as origin:
            base = f"http://localhost:{origin.port}"
            await crawl_paths(
                base,
                {"/setting": {}, "/request": {"proxy": socks.url("socks5")}},
                proxy=socks.url("socks5h"),
            )
    assert sorted(seen.target for seen in origin.requests) == ["/request", "/setting"]
    # One tunnel each way: by name (socks5h, the setting), by address (socks5, the request).
    assert f"-> localhost:{origin.port}" in socks.log
    assert f"-> 127.0.0.1:{origin.port}" in socks.log


async def test_a_bad_proxy_setting_is_refused_by_name() -> None:
    class Nothing(Spider):
        name = "nothing"

        def start_requests(self) -> Iterator[Request]:
            return iter(())

    bad = settings("", domains={"a.test": {"proxy": "ftp://u:pw@p.test"}})
    with pytest.raises(SettingsError, match=r"domains\.\"a\.test\"\.proxy.*only http://") as c:
        await run(Nothing, bad)
    assert "pw" not in str(c.value)


def test_settings_never_show_proxy_credentials() -> None:
    s = Settings(proxy="http://u:pw@p.test:3128", domains={"a.test": {"proxy": "http://v:x@q"}})
    text = repr(s)
    assert "http://***@p.test:3128" in text and "http://***@q" in text
    assert "pw" not in text and "v:x" not in text
    listed = repr(Settings(proxies=("socks5h://u:pw@p.test:1080", "http://v:x@q:3128")))
    assert "socks5h://***@p.test:1080" in listed and "http://***@q:3128" in listed
    assert "pw" not in listed and "v:x" not in listed


@pytest.mark.e2e
def test_crawl_settings_shows_proxies_without_credentials(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        'proxy = "http://alice:hunter2@p.test:3128"\n[domains."a.com"]\nproxy = ""\n',
        books=BOOKS,
    )
    result = cli(tmp_path, "settings", "books", "-s", 'domains."b.com".proxy="http://u:pw@q:1"')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert 'proxy = "http://***@p.test:3128"  # settings.toml' in lines
    assert 'domains."a.com".proxy = ""  # settings.toml' in lines
    assert 'domains."b.com".proxy = "http://***@q:1"  # -s' in lines
    assert "hunter2" not in result.stdout and "pw" not in result.stdout


def test_the_per_proxy_cap_setting_reaches_the_pool_limits() -> None:
    assert Settings(max_connections_per_proxy=2).limits().max_connections_per_proxy == 2
    assert Settings().limits().max_connections_per_proxy is None  # 0: unlimited
