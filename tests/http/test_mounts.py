"""Client(mounts=...): a transport per URL pattern, the most specific winning.

The mounted transports are real connection pools; which one carried a request
is read from the pools' own connection counts and from the servers' side
(tinyproxy adds a Via header to what it forwards).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from crawler.http import Client, ConnectionPool, Proxy, ProxyRoutes
from tests.proxies import run_tinyproxy
from tests.servers import Reply, Seen, serve_h11

GUARD = 30


def _through(proxy_url: str) -> ConnectionPool:
    return ConnectionPool(proxy_routes=ProxyRoutes.for_client(Proxy(proxy_url), False))


async def test_the_most_specific_mount_wins(tmp_path: Path) -> None:
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        proxied = _through(proxy.url)
        other = ConnectionPool()
        async with serve_h11() as origin:
            port = origin.port
            mounts = {
                "all://": proxied,  # everything through the proxy...
                f"http://localhost:{port}": other,  # ...but this origin on a pool of its own
                "all://127.0.0.1": None,  # ...and this host on the client's own pool
            }
            async with Client(mounts=mounts, trust_env=False) as client:
                for url in (f"http://localhost:{port}/mounted", f"http://127.0.0.1:{port}/default"):
                    response = await client.get(url)
                    assert response.status_code == 200
                own = client.transport
                counts = {
                    "proxied": proxied.connection_counts(),
                    "other": other.connection_counts(),
                    "own": own.connection_counts(),  # type: ignore[attr-defined]
                }
    assert [s.target for s in origin.requests] == ["/mounted", "/default"]
    assert not any("via" in s.headers for s in origin.requests)
    assert list(counts["other"]) == [f"http://localhost:{port}"]
    assert list(counts["own"]) == [f"http://127.0.0.1:{port}"]
    assert counts["proxied"] == {}


async def test_a_scheme_mount_routes_through_a_proxy_and_redirects_are_rerouted(
    tmp_path: Path,
) -> None:
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:

        def redirect_to_localhost(seen: Seen) -> Reply:
            if seen.target == "/start":
                return Reply(302, [("Location", f"http://localhost:{port}/end")], b"")
            return Reply(200, [], b"end")

        async with serve_h11(redirect_to_localhost) as origin:
            port = origin.port
            mounts = {"http://": _through(proxy.url), "all://*localhost": None}
            async with Client(mounts=mounts, trust_env=False) as client:
                response = await client.get(f"http://127.0.0.1:{port}/start")
    assert response.text == "end"
    via = {s.target: "tinyproxy" in s.headers.get("via", "") for s in origin.requests}
    assert via == {"/start": True, "/end": False}  # each hop routed by its own URL


def test_patterns_match_and_sort_as_httpx_documents() -> None:
    from crawler.http._mounts import URLPattern

    def match(pattern: str, url: tuple[str, str, int | None]) -> bool:
        return URLPattern(pattern).matches(*url)

    assert match("all://", ("https", "a.test", None))
    assert match("http://", ("http", "a.test", 8080))
    assert not match("http://", ("https", "a.test", None))
    assert match("all://example.com", ("https", "example.com", None))
    assert not match("all://example.com", ("https", "www.example.com", None))
    assert match("all://*example.com", ("https", "example.com", None))
    assert match("all://*example.com", ("https", "www.example.com", None))
    assert not match("all://*example.com", ("https", "notexample.com", None))
    assert not match("all://*.example.com", ("https", "example.com", None))
    assert match("all://*.example.com", ("https", "a.b.example.com", None))
    assert match("https://example.com:443", ("https", "example.com", None))
    assert not match("all://example.com:8080", ("https", "example.com", None))
    assert match("all://[::1]:8080", ("http", "::1", 8080))
    ordered = sorted(
        ["all://", "http://", "all://example.com", "all://example.com:1", "https://example.com"],
        key=lambda p: URLPattern(p).priority,
    )
    assert ordered == [
        "all://example.com:1",
        "https://example.com",
        "all://example.com",
        "http://",
        "all://",
    ]


def test_bad_mount_keys_and_values_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'http' is not a URL pattern"):
        Client(mounts={"http": ConnectionPool()})
    with pytest.raises(ValueError, match="invalid port 'x'"):
        Client(mounts={"all://h:x": ConnectionPool()})
    with pytest.raises(TypeError, match="Mount 'all://': expected a transport"):
        Client(mounts={"all://": "http://proxy:3128"})  # type: ignore[dict-item]
