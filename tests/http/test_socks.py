"""SOCKS5 proxies: socks5:// (names resolved here) and socks5h:// (by the proxy).

The end-to-end claims are proven against a real SOCKS5 server (pproxy) on
loopback, from the servers' side: pproxy logs each tunnel with its target as
the client sent it, and the origin records what reached it. Protocol details
pproxy cannot show (the address type on the wire, each reply code) are
checked against small raw trio servers that speak just enough SOCKS5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from crawler.http import Client, ConnectError, Proxy, ProxyError, ProxyRoutes
from tests.http.tls_sites import Certs, tls_site
from tests.proxies import PASSWORD, USER, run_pproxy
from tests.servers import serve_h11, serve_tcp

GUARD = 30


# -- a real SOCKS5 server ----------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "target"), [("socks5h", "localhost"), ("socks5", "127.0.0.1")])
async def test_plain_http_goes_through_the_socks_tunnel(
    tmp_path: Path, scheme: str, target: str
) -> None:
    with trio.fail_after(GUARD), run_pproxy(tmp_path) as socks:
        async with serve_h11() as origin:
            url = f"http://localhost:{origin.port}"
            async with Client(proxy=socks.url(scheme), trust_env=False) as client:
                first = await client.get(f"{url}/one?x=1")
                second = await client.get(f"{url}/two")
                counts = client.transport.connection_counts()  # type: ignore[attr-defined]
    assert (first.status_code, second.status_code) == (200, 200)
    # A tunnel: the origin gets origin-form targets and no proxy headers.
    assert [seen.target for seen in origin.requests] == ["/one?x=1", "/two"]
    assert origin.connections_total == 1  # one tunnel, kept alive
    for seen in origin.requests:
        assert "proxy-authorization" not in seen.headers
    # socks5h sent the name for the proxy to resolve; socks5 sent the address.
    assert f"-> {target}:{origin.port}" in socks.log
    label = f"http://localhost:{origin.port} via {scheme}://***@127.0.0.1:{socks.port}"
    assert label in counts
    assert PASSWORD not in repr(counts)


async def test_https_and_http2_inside_the_socks_tunnel(tmp_path: Path, certs: Certs) -> None:
    with trio.fail_after(GUARD), run_pproxy(tmp_path) as socks:
        async with tls_site(certs) as (url, seen):
            port = int(url.rsplit(":", 1)[1])
            async with Client(
                proxy=socks.url("socks5h"), http2=True, verify=certs.ca, trust_env=False
            ) as client:
                responses = [await client.get(f"https://localhost:{port}/p{i}") for i in range(3)]
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert seen.versions == {"2"}
    assert seen.paths == ["/p0", "/p1", "/p2"]
    assert len(seen.client_ports) == 1
    assert f"-> localhost:{port}" in socks.log


async def test_wrong_password_is_a_proxy_error_without_credentials(tmp_path: Path) -> None:
    with trio.fail_after(GUARD), run_pproxy(tmp_path) as socks:
        async with serve_h11() as origin:
            bad = socks.url("socks5h", USER, "wrong-pw")
            async with Client(proxy=bad, trust_env=False) as client:
                with pytest.raises(ProxyError) as caught:
                    await client.get(f"{origin.url}/x")
    error = caught.value
    assert error.proxy == f"socks5h://***@127.0.0.1:{socks.port}"
    assert error.proxy in str(error)
    assert "credentials" in str(error)
    assert "wrong-pw" not in str(error) and USER not in str(error)
    assert origin.requests == []
    assert f"Unauthorized SOCKS b'{USER}'" in socks.log


async def test_environment_all_proxy_may_be_socks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with trio.fail_after(GUARD), run_pproxy(tmp_path) as socks:
        monkeypatch.setenv("ALL_PROXY", socks.url("socks5h"))
        async with serve_h11() as origin, Client() as client:
            response = await client.get(f"http://localhost:{origin.port}/env")
    assert response.status_code == 200
    assert [seen.target for seen in origin.requests] == ["/env"]
    assert f"-> localhost:{origin.port}" in socks.log


async def test_a_socks_proxy_that_is_down_is_a_connect_error() -> None:
    async with serve_tcp(_hang_up) as port:
        pass  # closed again: nothing listens on the port now
    with trio.fail_after(GUARD):
        async with Client(proxy=f"socks5://u:pw@127.0.0.1:{port}", trust_env=False) as client:
            with pytest.raises(ConnectError) as caught:
                await client.get("http://localhost:9/")
    assert f"via proxy socks5://***@127.0.0.1:{port}" in str(caught.value)
    assert "connection refused" in str(caught.value)


# -- protocol details against raw servers ------------------------------------------------


async def _hang_up(stream: trio.SocketStream) -> None:
    await stream.aclose()


async def _read_exactly(stream: trio.SocketStream, n: int) -> bytes:
    data = b""
    for _ in range(n):
        if len(data) >= n:
            break
        chunk = await stream.receive_some(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


class FakeSocks:
    """Speaks SOCKS5 up to the CONNECT request, records it, and answers ``reply``.

    ``auth_ok`` None: no authentication (method 0); True/False: username/password
    (method 2), accepted or refused.
    """

    def __init__(self, reply: int = 4, auth_ok: bool | None = None) -> None:
        self.reply = reply
        self.auth_ok = auth_ok
        self.credentials: list[bytes] = []
        self.connects: list[tuple[int, bytes, int]] = []  # (ATYP, address, port)

    async def handle(self, stream: trio.SocketStream) -> None:
        head = await _read_exactly(stream, 2)
        await _read_exactly(stream, head[1])
        if self.auth_ok is None:
            await stream.send_all(b"\x05\x00")
        else:
            await stream.send_all(b"\x05\x02")
            ver_ulen = await _read_exactly(stream, 2)
            user = await _read_exactly(stream, ver_ulen[1])
            plen = await _read_exactly(stream, 1)
            password = await _read_exactly(stream, plen[0])
            self.credentials.append(user + b":" + password)
            await stream.send_all(b"\x01\x00" if self.auth_ok else b"\x01\x01")
            if not self.auth_ok:
                return
        request = await _read_exactly(stream, 4)
        atyp = request[3]
        if atyp == 1:
            address = await _read_exactly(stream, 4)
        elif atyp == 4:
            address = await _read_exactly(stream, 16)
        else:
            size = await _read_exactly(stream, 1)
            address = await _read_exactly(stream, size[0])
        port = int.from_bytes(await _read_exactly(stream, 2), "big")
        self.connects.append((atyp, address, port))
        await stream.send_all(bytes([5, self.reply, 0, 1, 0, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    ("scheme", "atyp", "address"),
    [("socks5h", 3, b"localhost"), ("socks5", 1, bytes([127, 0, 0, 1]))],
)
async def test_socks5h_sends_the_name_and_socks5_the_address(
    scheme: str, atyp: int, address: bytes
) -> None:
    fake = FakeSocks(reply=4)
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(fake.handle) as port,
            Client(proxy=f"{scheme}://127.0.0.1:{port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError) as caught:
                await client.get("http://localhost:8123/")
    assert fake.connects == [(atyp, address, 8123)]
    error = caught.value
    assert error.reply_code == 4
    assert "host unreachable" in str(error)
    assert f"{scheme}://127.0.0.1:{port}" in str(error)
    assert "localhost:8123" in str(error)


async def test_refused_credentials_are_named_as_such() -> None:
    fake = FakeSocks(auth_ok=False)
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(fake.handle) as port,
            Client(proxy=f"socks5h://alice:hunter2@127.0.0.1:{port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError) as caught:
                await client.get("http://localhost:8123/")
    assert fake.credentials == [b"alice:hunter2"]  # RFC 1929, as given in the URL
    assert fake.connects == []
    message = str(caught.value)
    assert "authentication failed" in message
    assert f"socks5h://***@127.0.0.1:{port}" in message
    assert "hunter2" not in message and "alice" not in message


async def test_a_proxy_that_wants_credentials_we_lack_says_so() -> None:
    offered: list[bytes] = []

    async def no_method(stream: trio.SocketStream) -> None:
        head = await _read_exactly(stream, 2)
        offered.append(await _read_exactly(stream, head[1]))
        await stream.send_all(b"\x05\xff")  # no acceptable method

    with trio.fail_after(GUARD):
        async with (
            serve_tcp(no_method) as port,
            Client(proxy=f"socks5://127.0.0.1:{port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError) as caught:
                await client.get("http://localhost:8123/")
    assert offered == [b"\x00"]  # no credentials in the URL: "no authentication" only
    assert "authentication required" in str(caught.value)
    assert "no credentials" in str(caught.value)


async def test_connection_refused_by_the_destination() -> None:
    fake = FakeSocks(reply=5, auth_ok=True)
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(fake.handle) as port,
            Client(proxy=f"socks5h://a:b@127.0.0.1:{port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError, match="connection refused by the destination"):
                await client.get("https://localhost:8443/")
    assert fake.connects == [(3, b"localhost", 8443)]


async def test_a_server_that_is_not_socks_is_a_clear_proxy_error() -> None:
    with trio.fail_after(GUARD):
        async with (
            serve_h11() as not_socks,
            Client(proxy=f"socks5h://127.0.0.1:{not_socks.port}", trust_env=False) as client,
        ):
            with pytest.raises(ProxyError) as caught:
                await client.get("http://localhost:8123/")
    message = str(caught.value)
    assert "is it a SOCKS5 proxy" in message
    assert f"socks5h://127.0.0.1:{not_socks.port}" in message


# -- parsing ----------------------------------------------------------------------------


def test_socks_urls_parse_with_redacted_credentials() -> None:
    proxy = Proxy("socks5h://us%40er:p%3Ass@proxy.test")
    assert proxy.port == 1080
    assert proxy.socks_auth == ("us@er", "p:ss")
    assert proxy.authorization is None  # no HTTP header for a SOCKS proxy
    assert proxy.label == "socks5h://***@proxy.test:1080"
    assert "p:ss" not in repr(proxy) and "p%3Ass" not in repr(proxy)
    assert (proxy.forwards, proxy.remote_dns) == (False, True)
    assert Proxy("socks5://proxy.test:1081").remote_dns is False
    assert Proxy("socks5://a:b@h") != Proxy("socks5://a:c@h")
    assert Proxy("socks5://h") != Proxy("socks5h://h")
    with pytest.raises(ValueError, match=r"socks4://proxy\.test"):
        Proxy("socks4://proxy.test")


def test_environment_routes_accept_socks() -> None:
    routes = ProxyRoutes.from_environment({"ALL_PROXY": "socks5h://h:1"})
    assert routes is not None
    assert routes.proxy_for("https", "example.com", None) == Proxy("socks5h://h:1")
