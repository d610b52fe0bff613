"""Forward proxies: plain HTTP in absolute form, CONNECT tunnels for HTTPS, credentials.

Every claim is proven against a real tinyproxy on loopback, from the servers'
side: the origin records the headers it received (tinyproxy adds ``Via``; a
direct request has none) and tinyproxy logs each request it handled.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trustme

from crawler.http import (
    PROXY,
    Client,
    ConnectionPool,
    Limits,
    NoProxy,
    Proxy,
    ProxyError,
    ProxyRoutes,
    Request,
)
from crawler.http._proxy import _environment_proxies
from tests.http.tls_sites import Certs, tls_site
from tests.proxies import PASSWORD, USER, run_tinyproxy
from tests.servers import Reply, Seen, serve_h11, serve_tcp

GUARD = 20


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


# -- plain http: absolute form through the proxy ---------------------------------------


async def test_http_goes_through_the_proxy_with_its_credentials(tmp_path: Path) -> None:
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as origin, Client(proxy=proxy.url, trust_env=False) as client:
            first = await client.get(f"{origin.url}/one?x=1")
            second = await client.get(f"{origin.url}/two")
    assert (first.status_code, second.status_code) == (200, 200)
    assert [seen.target for seen in origin.requests] == ["/one?x=1", "/two"]
    for seen in origin.requests:
        assert "tinyproxy" in seen.headers.get("via", "")
        assert "proxy-authorization" not in seen.headers
        assert PASSWORD not in str(seen.headers)
    log = proxy.log
    assert f"GET {origin.url}/one?x=1" in log
    assert f"GET {origin.url}/two" in log


async def test_wrong_credentials_on_plain_http_give_the_proxys_407(tmp_path: Path) -> None:
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with (
            serve_h11() as origin,
            Client(proxy=proxy.url_with(USER, "wrong"), trust_env=False) as client,
        ):
            response = await client.get(f"{origin.url}/x")
    # The proxy's refusal is its response (as with httpx); tinyproxy 1.11 says 401
    # where RFC 9110 says 407, later versions 407.
    assert response.status_code in (401, 407)
    assert origin.requests == []


# -- https: CONNECT tunnels ----------------------------------------------------------------


async def test_https_goes_through_a_connect_tunnel(
    tmp_path: Path, server_context: ssl.SSLContext, ca_file: str
) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=server_context) as origin:
            with run_tinyproxy(tmp_path, [origin.port]) as proxy:
                async with Client(proxy=proxy.url, verify=ca_file, trust_env=False) as client:
                    response = await client.get(f"{origin.url}/secure")
                    again = await client.get(f"{origin.url}/again")
                    counts = client.transport.connection_counts()  # type: ignore[attr-defined]
    assert (response.status_code, again.status_code) == (200, 200)
    assert [seen.target for seen in origin.requests] == ["/secure", "/again"]
    # One tunnel, reused: the origin saw one TLS connection.
    assert origin.connections_total == 1
    seen = origin.requests[0]
    assert "proxy-authorization" not in seen.headers
    assert "via" not in seen.headers  # a tunnel: the proxy cannot touch what is inside
    assert f"CONNECT 127.0.0.1:{origin.port}" in proxy.log
    assert "/secure" not in proxy.log  # the path travelled encrypted
    label = f"https://127.0.0.1:{origin.port} via http://***@127.0.0.1:{proxy.port}"
    assert label in counts
    assert PASSWORD not in repr(counts)


async def test_http2_is_negotiated_through_the_tunnel(tmp_path: Path, certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with tls_site(certs) as (url, seen):
            port = int(url.rsplit(":", 1)[1])
            with run_tinyproxy(tmp_path, [port]) as proxy:
                async with Client(
                    proxy=proxy.url, http2=True, verify=certs.ca, trust_env=False
                ) as client:
                    responses = [await client.get(f"{url}/p{i}") for i in range(3)]
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert seen.versions == {"2"}
    assert len(seen.client_ports) == 1
    assert f"CONNECT 127.0.0.1:{port}" in proxy.log


async def test_refused_connect_is_a_proxy_error_without_credentials(
    tmp_path: Path, server_context: ssl.SSLContext, ca_file: str
) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=server_context) as origin:
            with run_tinyproxy(tmp_path, [origin.port]) as proxy:
                bad = proxy.url_with(USER, "wrong-pw")
                async with Client(proxy=bad, verify=ca_file, trust_env=False) as client:
                    with pytest.raises(ProxyError) as caught:
                        await client.get(f"{origin.url}/secure")
    error = caught.value
    assert error.status_code in (401, 407)  # tinyproxy 1.11 says 401, later ones 407
    assert error.proxy == f"http://***@127.0.0.1:{proxy.port}"
    assert str(error.status_code) in str(error)
    assert f"http://***@127.0.0.1:{proxy.port}" in str(error)
    assert "wrong-pw" not in str(error) and USER not in str(error)
    assert origin.connections_total == 0


async def test_connect_to_a_port_the_proxy_forbids_is_a_proxy_error(
    tmp_path: Path, server_context: ssl.SSLContext, ca_file: str
) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=server_context) as origin:
            with run_tinyproxy(tmp_path, [origin.port + 1]) as proxy:
                async with Client(proxy=proxy.url, verify=ca_file, trust_env=False) as client:
                    with pytest.raises(ProxyError) as caught:
                        await client.get(f"{origin.url}/")
    assert caught.value.status_code == 403
    assert origin.connections_total == 0


async def test_connect_answered_407_names_proxy_and_status() -> None:
    asked: list[bytes] = []

    async def refuse(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            head += chunk
        asked.append(head)
        await stream.send_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="p"\r\nContent-Length: 0\r\n\r\n'
        )

    with trio.fail_after(GUARD):
        async with (
            serve_tcp(refuse) as port,
            Client(proxy=f"http://alice:hunter2@127.0.0.1:{port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError) as caught:
                await client.get("https://origin.example:8443/")
    error = caught.value
    assert error.status_code == 407
    assert error.proxy == f"http://***@127.0.0.1:{port}"
    assert str(error) == (
        f"Proxy http://***@127.0.0.1:{port} refused CONNECT origin.example:8443 for "
        "https://origin.example:8443/: 407 Proxy Authentication Required"
    )
    request_line, *headers = asked[0].split(b"\r\n")
    assert request_line == b"CONNECT origin.example:8443 HTTP/1.1"
    assert b"Proxy-Authorization: Basic YWxpY2U6aHVudGVyMg==" in headers


async def test_garbage_answer_to_connect_is_a_proxy_error() -> None:
    async def babble(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)
        await stream.send_all(b"SSH-2.0-OpenSSH\r\n\r\n")

    with trio.fail_after(GUARD):
        async with (
            serve_tcp(babble) as port,
            Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError, match="invalid answer to CONNECT"):
                await client.get("https://origin.example/")


# -- the environment --------------------------------------------------------------------


async def test_environment_proxy_and_no_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as origin:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            async with Client() as client:
                await client.get(f"{origin.url}/via-env")
            monkeypatch.setenv("NO_PROXY", f"example.org, 127.0.0.1:{origin.port}")
            async with Client() as client:
                await client.get(f"{origin.url}/direct")
            monkeypatch.delenv("NO_PROXY")
            async with Client(trust_env=False) as client:
                await client.get(f"{origin.url}/untrusted")
    via = {seen.target: seen.headers.get("via", "") for seen in origin.requests}
    assert "tinyproxy" in via["/via-env"]
    assert via["/direct"] == "" and via["/untrusted"] == ""
    assert "/via-env" in proxy.log
    assert "/direct" not in proxy.log and "/untrusted" not in proxy.log


def test_no_proxy_rules() -> None:
    rules = NoProxy("example.com, .internal.net,*.corp, 10.0.0.0/8, 192.168.1.5:8080, [::1]")
    assert rules.matches("example.com", 80)
    assert rules.matches("www.Example.COM", 443)
    assert not rules.matches("badexample.com", 80)
    assert rules.matches("a.internal.net", 80) and rules.matches("internal.net", 80)
    assert rules.matches("x.corp", 80)
    assert rules.matches("10.1.2.3", 80) and not rules.matches("11.0.0.1", 80)
    assert rules.matches("192.168.1.5", 8080) and not rules.matches("192.168.1.5", 80)
    assert rules.matches("::1", 80)
    assert NoProxy("*").matches("anything", 1)
    assert not NoProxy("")


def test_environment_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "ALL_PROXY": "http://all:3128",
        "https_proxy": "http://lower:3128",
        "HTTPS_PROXY": "http://upper:3128",
        "no_proxy": "skip.me",
    }
    routes = ProxyRoutes.from_environment(env)
    assert routes is not None
    assert routes.proxy_for("http", "a.com", None) == Proxy("http://all:3128")
    assert routes.proxy_for("https", "a.com", None) == Proxy("http://lower:3128")
    assert routes.proxy_for("https", "x.skip.me", None) is None
    assert ProxyRoutes.from_environment({"NO_PROXY": "*"}) is None


def test_proxy_urls_are_checked_and_never_show_credentials() -> None:
    proxy = Proxy("http://us%40er:p%3Ass@proxy.example:3128")
    assert proxy.authorization == b"Basic dXNAZXI6cDpzcw=="  # us@er:p:ss
    assert "p%3Ass" not in repr(proxy) and "us%40er" not in repr(proxy)
    assert repr(proxy) == "Proxy('http://***@proxy.example:3128')"
    assert "p%3Ass" not in repr(ProxyRoutes.for_client(proxy, False))
    for bad, words in [
        ("socks4://u:pw@h:1080", "only http://"),
        ("https://h:443", "only http://"),
        ("http://u:pw@h:3128/path", "path"),
    ]:
        with pytest.raises(ValueError, match=words) as caught:
            Proxy(bad)
        assert "pw" not in str(caught.value)


# -- the pool: per-origin-host cap, request override -------------------------------------


async def test_per_host_cap_counts_proxied_and_direct_connections(tmp_path: Path) -> None:
    in_flight = peak = 0

    async def hold(seen: Seen) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.lowlevel.checkpoint()  # let any other granted request arrive too
        await trio.lowlevel.checkpoint()
        in_flight -= 1
        return Reply(200, [], b"ok")

    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with (
            serve_h11(hold) as origin,
            ConnectionPool(limits=Limits(max_connections_per_host=1)) as pool,
        ):
            via = Proxy(proxy.url)

            async def one(i: int) -> None:
                ext = {PROXY: via if i % 2 else None}
                request = Request("GET", f"{origin.url}/{i}", extensions=ext)
                response = await pool.handle_request(request)
                await response.aread()
                await response.aclose()

            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(one, i)
            assert pool._check_invariants() == []
    assert len(origin.requests) == 6
    assert peak == 1
    proxied = [s for s in origin.requests if "tinyproxy" in s.headers.get("via", "")]
    assert sorted(s.target for s in proxied) == ["/1", "/3", "/5"]


async def test_request_extension_turns_the_clients_proxy_off(tmp_path: Path) -> None:
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as origin, Client(proxy=proxy.url, trust_env=False) as client:
            await client.get(f"{origin.url}/off", extensions={PROXY: None})
            await client.get(f"{origin.url}/on")
    via = {seen.target: seen.headers.get("via", "") for seen in origin.requests}
    assert via["/off"] == "" and "tinyproxy" in via["/on"]


async def test_redirect_to_a_direct_origin_carries_no_proxy_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxy-Authorization is the connection's, not the request's: a redirect out of
    the proxy's reach has none to carry, and one through it re-sends them to the proxy."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with serve_h11() as target:

            def bounce(seen: Seen) -> Reply:
                return Reply(302, [("Location", f"{target.url}/landed")])

            async with serve_h11(bounce) as start:
                monkeypatch.setenv("HTTP_PROXY", proxy.url)
                monkeypatch.setenv("NO_PROXY", f"127.0.0.1:{target.port}")
                async with Client() as client:
                    response = await client.get(f"{start.url}/go")
    assert response.status_code == 200
    assert "tinyproxy" in start.requests[0].headers.get("via", "")
    landed = target.requests[0]
    assert landed.target == "/landed"
    assert "via" not in landed.headers and "proxy-authorization" not in landed.headers
    assert f"{start.url}/go" in proxy.log and "/landed" not in proxy.log


def test_unusable_proxies_are_refused_when_the_client_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks4://u:pw@127.0.0.1:1080")
    with pytest.raises(ValueError, match="all_proxy in the environment") as caught:
        Client()
    message = str(caught.value)
    assert "only http://" in message and "trust_env=False" in message
    assert "pw" not in message
    Client(trust_env=False)  # the environment ignored: fine
    with pytest.raises(ValueError, match="give the proxy to that transport"):
        Client(proxy="http://127.0.0.1:3128", transport=ConnectionPool())


async def test_max_connections_per_proxy_caps_every_origin_behind_it(tmp_path: Path) -> None:
    in_flight = peak = 0
    errors: list[str] = []
    queued: list[int] = []  # requests waiting in the pool when each one arrived
    pool = ConnectionPool(limits=Limits(max_connections_per_proxy=1))

    async def hold(seen: Seen) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        queued.append(sum(len(host.waiters) for host in pool._hosts.values()))
        errors.extend(pool._check_invariants())
        for _ in range(5):  # let any other granted request arrive too
            await trio.lowlevel.checkpoint()
        in_flight -= 1
        return Reply(200, [], b"ok")

    with trio.fail_after(GUARD), run_tinyproxy(tmp_path) as proxy:
        async with serve_h11(hold) as one, serve_h11(hold) as two, pool:
            via = Proxy(proxy.url)

            async def get(url: str) -> None:
                request = Request("GET", url, extensions={PROXY: via})
                response = await pool.handle_request(request)
                await response.aread()
                await response.aclose()

            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(get, f"{one.url}/p{i}")
                    nursery.start_soon(get, f"{two.url}/p{i}")
            assert pool._check_invariants() == []
    assert errors == []
    # One at a time through the proxy, though each origin's host allows 8: by the
    # time the first arrived, the seven others were queued in the pool.
    assert peak == 1
    assert queued[0] == 7 and queued == sorted(queued, reverse=True)
    assert len(one.requests) == 4 and len(two.requests) == 4
    assert all("tinyproxy" in s.headers.get("via", "") for s in one.requests + two.requests)


def test_max_connections_per_proxy_is_checked() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_connections_per_proxy must be an int >= 1"):
            Limits(max_connections_per_proxy=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "environ",
    [
        {"HTTP_PROXY": "http://up:1", "http_proxy": "http://low:2", "NO_PROXY": "a.test"},
        {"HTTPS_PROXY": "http://up:1", "https_proxy": "", "no_proxy": "b.test"},
        {"HTTP_PROXY": "http://cgi:1", "REQUEST_METHOD": "GET", "ALL_PROXY": "http://all:3"},
        {"http_proxy": "http://cgi:1", "REQUEST_METHOD": "GET", "Ftp_Proxy": "http://f:4"},
        {"PATH": "/bin"},
    ],
)
def test_the_environment_is_read_as_urllib_reads_it(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``urllib.request`` (a megabyte of memory), by the same rules."""
    import urllib.request

    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    expected = urllib.request.getproxies_environment()
    assert _environment_proxies(os.environ) == expected
    assert NoProxy.from_environment().matches("a.test", 80) == ("a.test" in expected.get("no", ""))
