"""Client behaviour against real loopback servers (and lifecycle over a mock transport)."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import trio
import trustme

from crawler.http import (
    MAX_COOKIE_SIZE,
    MAX_COOKIES_PER_DOMAIN,
    Client,
    Cookie,
    CookieError,
    Cookies,
    MockTransport,
    Request,
    Response,
    ResponseTooLarge,
    Timeout,
    TooManyRedirects,
    UnsupportedProtocol,
)
from crawler.http._client import USER_AGENT
from tests.servers import Reply, Seen, serve_asgi, serve_h11

# Every test here runs with h11's internals and with its public API only.
pytestmark = pytest.mark.usefixtures("h11_api")

Scope = dict[str, Any]


# -- the test site -------------------------------------------------------------------

BOMB_SIZE = 100 * 1024 * 1024


def _make_bomb() -> bytes:
    """100 MiB of zeros, gzipped (about 100 KB), built in slices to stay small here too."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))]
    return b"".join(parts) + compressor.flush()


_BOMB: list[bytes] = []


def bomb() -> bytes:
    if not _BOMB:
        _BOMB.append(_make_bomb())
    return _BOMB[0]


async def _body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


def _cookies_of(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


async def site(scope: Scope, receive: Any, send: Any) -> None:
    """A small site: login with a session cookie, redirects, echo, compressed bodies."""
    if scope["type"] != "http":
        return
    body = await _body(receive)
    path: str = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
    status, out_headers, out = 200, [(b"content-type", b"text/plain")], b""
    if path == "/login":
        form = parse_qs(body.decode())
        if form == {"user": ["alice"], "password": ["s3cret"]}:
            status = 303
            out_headers += [(b"location", b"/home"), (b"set-cookie", b"sid=alice-token; Path=/")]
        else:
            status, out = 403, b"bad credentials"
    elif path == "/home":
        if _cookies_of(headers).get("sid") == "alice-token":
            out = b"welcome alice"
        else:
            status, out = 401, b"log in first"
    elif path.endswith("/echo"):
        echo = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode(),
            "headers": headers,
            "body": body.decode("latin-1"),
        }
        out_headers = [(b"content-type", b"application/json")]
        out = json.dumps(echo).encode()
    elif path == "/set-cookie":
        out_headers += [(b"set-cookie", v.encode()) for v in query["c"]]
    elif path == "/redirect":
        status = int(query.get("status", ["302"])[0])
        out_headers.append((b"location", query["to"][0].encode()))
    elif path == "/loop":
        status = 302
        out_headers.append((b"location", b"/loop"))
    elif path == "/gzip":
        out_headers.append((b"content-encoding", b"gzip"))
        out = gzip.compress(b"compressed hello")
    elif path == "/bomb":
        out_headers.append((b"content-encoding", b"gzip"))
        out = bomb()
    else:
        status, out = 404, b"not found"
    await send({"type": "http.response.start", "status": status, "headers": out_headers})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_asgi(site) as base:
        yield base


@pytest.fixture
async def other_url() -> AsyncIterator[str]:
    """The same site on another loopback address: a different origin (and cookie host)."""
    async with serve_asgi(site, host="127.0.0.2") as base:
        yield base


class _Loopback(trio.abc.HostnameResolver):
    """Every name resolves to 127.0.0.1: real host names (with a trailing dot, under
    a public suffix) reach a loopback server, with no DNS involved."""

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    async def getnameinfo(self, sockaddr, flags):  # type: ignore[no-untyped-def]
        raise NotImplementedError


@pytest.fixture
async def port(url: str) -> AsyncIterator[int]:
    """The test site's port, reachable under any host name for the test's duration."""
    trio.socket.set_custom_hostname_resolver(_Loopback())
    try:
        yield int(url.rsplit(":", 1)[1])
    finally:
        trio.socket.set_custom_hostname_resolver(None)


def echoed(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# -- cookies -------------------------------------------------------------------------


async def test_login_cookie_persists_across_requests(url: str) -> None:
    async with Client() as client:
        denied = await client.get(url + "/home")
        assert denied.status_code == 401
        response = await client.post(url + "/login", data={"user": "alice", "password": "s3cret"})
        assert response.status_code == 200 and response.text == "welcome alice"
        assert [r.status_code for r in response.history] == [303]
        assert response.request is not None and response.request.method == "GET"
        assert client.cookies["sid"] == "alice-token"
        again = await client.get(url + "/home")
        assert again.text == "welcome alice"
        client.cookies.clear()
        assert (await client.get(url + "/home")).status_code == 401


async def test_wrong_form_is_refused_server_side(url: str) -> None:
    async with Client() as client:
        response = await client.post(url + "/login", data={"user": "alice", "password": "x"})
    assert response.status_code == 403 and "sid" not in client.cookies


async def test_secure_cookie_is_not_stored_or_sent_over_http(url: str) -> None:
    async with Client() as client:
        await client.get(url + "/set-cookie", params={"c": "s=1; Secure"})
        assert "s" not in client.cookies
        # Even a Secure cookie placed in the jar by hand stays off plain http.
        client.cookies.set_cookie(Cookie("s", "1", "127.0.0.1", secure=True, host_only=True))
        client.cookies.set_cookie(Cookie("p", "2", "127.0.0.1", host_only=True))
        seen = echoed(await client.get(url + "/echo"))
    assert seen["headers"]["cookie"] == "p=2"


async def test_secure_cookie_goes_over_https_only(url: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with serve_asgi(site, certfile=str(pem), keyfile=str(pem)) as https_url:
        assert https_url.startswith("https://127.0.0.1:")
        async with Client(verify=context) as client:
            params = [("c", "s=1; Secure"), ("c", "p=2")]
            await client.get(https_url + "/set-cookie", params=params)
            over_https = echoed(await client.get(https_url + "/echo"))
            over_http = echoed(await client.get(url + "/echo"))  # same host, other port
    assert over_https["headers"]["cookie"] == "s=1; p=2"
    assert over_http["headers"]["cookie"] == "p=2"


async def test_cookie_for_another_domain_is_rejected(url: str) -> None:
    async with Client() as client:
        await client.get(
            url + "/set-cookie", params=[("c", "f=1; Domain=example.com"), ("c", "ok=1")]
        )
        assert list(client.cookies) == ["ok"]


async def test_trailing_dot_domain_cookie_does_not_reach_other_sites(port: int) -> None:
    async with Client() as client:
        await client.get(
            f"http://www.evil.test.:{port}/set-cookie", params={"c": "td=1; Domain=test."}
        )
        victim = echoed(await client.get(f"http://victim.test.:{port}/echo"))
        plain = echoed(await client.get(f"http://victim.test:{port}/echo"))
    assert "cookie" not in victim["headers"] and "cookie" not in plain["headers"]


async def test_public_suffix_domain_cookie_is_refused(port: int) -> None:
    async with Client() as client:
        await client.get(f"http://a.co.uk:{port}/set-cookie", params={"c": "ps=1; Domain=co.uk"})
        await client.get(
            f"http://www.example.co.uk:{port}/set-cookie",
            params={"c": "ok=1; Domain=Example.CO.UK."},
        )
        other = echoed(await client.get(f"http://b.co.uk:{port}/echo"))
        sibling = echoed(await client.get(f"http://shop.example.co.uk.:{port}/echo"))
    assert "cookie" not in other["headers"]
    assert sibling["headers"]["cookie"] == "ok=1"


async def test_cookie_header_stays_bounded_however_many_cookies_a_site_sets() -> None:
    hops = 10

    def responder(seen: Seen) -> Reply:
        hop = int(seen.target.rsplit("/", 1)[1])
        if hop == hops:
            return Reply(200, [], b"end")
        headers = [("Set-Cookie", f"h{hop}c{i}={'v' * 100}") for i in range(12)]
        headers.append(("Set-Cookie", f"big{hop}={'b' * MAX_COOKIE_SIZE}"))
        return Reply(302, [*headers, ("Location", f"/hop/{hop + 1}")])

    async with serve_h11(responder) as server, Client() as client:
        response = await client.get(server.url + "/hop/0")
    assert response.status_code == 200 and len(response.history) == hops
    sent = [_cookies_of(seen.headers) for seen in server.requests]
    assert not any(name.startswith("big") for cookies in sent for name in cookies)
    assert len(sent[-1]) == MAX_COOKIES_PER_DOMAIN  # 120 were set: the oldest went
    assert "h9c11" in sent[-1] and "h0c0" not in sent[-1]


async def test_cookie_value_a_header_cannot_carry_is_refused_when_set(url: str) -> None:
    async with Client() as client:
        with pytest.raises(CookieError, match=r"'a'.*Latin-1"):
            client.cookies["a"] = "€"
        seen = echoed(await client.get(url + "/echo"))
    assert "cookie" not in seen["headers"]


async def test_cookies_are_per_host(url: str, other_url: str) -> None:
    async with Client() as client:
        await client.get(url + "/set-cookie", params={"c": "mine=1"})
        here = echoed(await client.get(url + "/echo"))
        there = echoed(await client.get(other_url + "/echo"))
    assert here["headers"]["cookie"] == "mine=1"
    assert "cookie" not in there["headers"]


async def test_client_and_request_cookies_are_merged(url: str) -> None:
    async with Client(cookies={"a": "client", "b": "client"}) as client:
        seen = echoed(await client.get(url + "/echo", cookies={"b": "request", "c": "3"}))
        assert seen["headers"]["cookie"] == "a=client; b=request; c=3"
        client.cookies = {"z": "9"}
        seen = echoed(await client.get(url + "/echo"))
    assert seen["headers"]["cookie"] == "z=9"


# -- redirects and auth ------------------------------------------------------------------


async def test_auth_is_kept_same_origin_and_dropped_cross_origin(url: str, other_url: str) -> None:
    expected = "Basic " + base64.b64encode(b"user:pa ss").decode()
    async with Client(auth=("user", "pa ss")) as client:
        direct = echoed(await client.get(url + "/echo"))
        same = echoed(await client.get(url + "/redirect", params={"to": "/echo"}))
        cross = echoed(await client.get(url + "/redirect", params={"to": other_url + "/echo"}))
    assert direct["headers"]["authorization"] == expected
    assert same["headers"]["authorization"] == expected
    assert "authorization" not in cross["headers"]


async def test_proxy_authorization_is_kept_same_origin_and_dropped_cross_origin(
    url: str, other_url: str
) -> None:
    # Proxy credentials given by hand go to the origin server (no proxy is in
    # play), so they must not follow a redirect to another one.
    headers = {"Proxy-Authorization": "Basic cHJveHk6cHc="}
    async with Client() as client:
        same = echoed(await client.get(url + "/redirect", params={"to": "/echo"}, headers=headers))
        cross = echoed(
            await client.get(url + "/redirect", params={"to": other_url + "/echo"}, headers=headers)
        )
    assert same["headers"]["proxy-authorization"] == "Basic cHJveHk6cHc="
    assert "proxy-authorization" not in cross["headers"]


async def test_cookie_param_dropped_cross_origin(url: str, other_url: str) -> None:
    async with Client() as client:
        response = await client.get(
            url + "/redirect", params={"to": other_url + "/echo"}, cookies={"t": "1"}
        )
    assert "cookie" not in echoed(response)["headers"]


async def test_redirect_loop_raises(url: str) -> None:
    async with Client(max_redirects=5) as client:
        with pytest.raises(TooManyRedirects, match="Exceeded 5 redirects"):
            await client.get(url + "/loop")


async def test_redirect_to_ftp_is_refused(url: str) -> None:
    async with Client() as client:
        with pytest.raises(UnsupportedProtocol, match=r"ftp://example\.com/file"):
            await client.get(url + "/redirect", params={"to": "ftp://example.com/file"})


async def test_follow_redirects_off(url: str) -> None:
    async with Client(follow_redirects=False) as client:
        response = await client.get(url + "/redirect", params={"to": "/echo"})
        assert response.status_code == 302 and response.headers["location"] == "/echo"
        followed = await client.get(
            url + "/redirect", params={"to": "/echo"}, follow_redirects=True
        )
        assert followed.status_code == 200


async def test_307_keeps_method_and_body(url: str) -> None:
    async with Client() as client:
        response = await client.put(
            url + "/redirect", params={"to": "/echo", "status": "307"}, content=b"payload"
        )
    seen = echoed(response)
    assert (seen["method"], seen["body"]) == ("PUT", "payload")


# -- request building ------------------------------------------------------------------


async def test_base_url_and_params_merging(url: str) -> None:
    async with Client(base_url=url + "/api") as client:
        seen = echoed(await client.get("/echo?a=1", params={"b": "2 3"}))
        absolute = echoed(await client.get(url + "/echo"))
    assert seen["path"] == "/api/echo"
    assert parse_qs(seen["query"]) == {"a": ["1"], "b": ["2 3"]}
    assert absolute["path"] == "/echo"


async def test_bodies_arrive_server_side(url: str) -> None:
    async with Client() as client:
        as_json = echoed(await client.post(url + "/echo", json={"k": [1, "é"]}))
        as_form = echoed(await client.patch(url + "/echo", data={"a": "1", "b": "x y"}))
        as_bytes = echoed(await client.request("POST", url + "/echo", content=b"\x00raw"))
    assert json.loads(as_json["body"].encode("latin-1")) == {"k": [1, "é"]}
    assert as_json["headers"]["content-type"] == "application/json"
    assert parse_qs(as_form["body"]) == {"a": ["1"], "b": ["x y"]}
    assert as_form["method"] == "PATCH"
    assert as_form["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert as_bytes["body"] == "\x00raw"


def test_the_user_agent_names_the_installed_version() -> None:
    """The version is a constant in the package, read by the build: it must be the one
    the installed distribution's metadata gives."""
    from importlib.metadata import version

    assert f"crawler/{version('crawler')}" == USER_AGENT


async def test_default_and_custom_headers(url: str) -> None:
    async with Client(headers={"X-Client": "1"}) as client:
        seen = echoed(await client.get(url + "/echo", headers={"Accept": "text/html"}))
    headers = seen["headers"]
    assert headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("crawler/")
    assert headers["accept-encoding"] == "gzip, deflate, br, zstd"
    assert headers["accept"] == "text/html" and headers["x-client"] == "1"


async def test_callable_auth_and_url_credentials(url: str) -> None:
    def token(request: Request) -> Request:
        request.headers["Authorization"] = "Token abc"
        return request

    async with Client(auth=token) as client:
        seen = echoed(await client.get(url + "/echo"))
        assert seen["headers"]["authorization"] == "Token abc"
    userinfo_url = url.replace("http://", "http://me:p%40ss@")
    async with Client() as client:
        seen = echoed(await client.get(userinfo_url + "/echo"))
    assert seen["headers"]["authorization"] == "Basic " + base64.b64encode(b"me:p@ss").decode()


async def test_methods_reach_the_server(url: str) -> None:
    async with Client() as client:
        for method in ("get", "delete", "options", "put", "post", "patch"):
            response = await getattr(client, method)(url + "/echo")
            assert echoed(response)["method"] == method.upper()
        head = await client.head(url + "/echo")
    assert head.status_code == 200 and head.content == b""


async def test_relative_url_without_base_url_is_refused() -> None:
    async with Client() as client:
        with pytest.raises(UnsupportedProtocol, match="no base_url"):
            await client.get("/path")


# -- bodies ----------------------------------------------------------------------------


async def test_gzip_body_is_decoded(url: str) -> None:
    async with Client() as client:
        response = await client.get(url + "/gzip")
    assert response.text == "compressed hello"
    assert response.headers["content-encoding"] == "gzip"
    assert response.elapsed.total_seconds() > 0


async def test_gzip_bomb_is_stopped_with_bounded_memory(url: str) -> None:
    bomb()  # built before measuring
    limit = 4 * 1024 * 1024
    async with Client(max_response_size=limit) as client:
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge, match=f"/bomb exceeds the maximum of {limit}"):
                await client.get(url + "/bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * limit  # far below the 100 MiB the bomb expands to


async def test_default_limit_applies_to_the_bomb(url: str) -> None:
    async with Client() as client:
        assert client.max_response_size == 64 * 1024 * 1024
        with pytest.raises(ResponseTooLarge, match="67108864 bytes"):
            await client.get(url + "/bomb")


# -- connections, streaming, lifecycle ----------------------------------------------------


def _slow_body(seen: Seen) -> Reply:
    # Bodies past the pool's eager-read limit are streamed; the abandoned one is
    # large enough that it can never have arrived whole before it is abandoned.
    size = 4_000_000 if seen.target == "/abandoned" else 300_000
    return Reply(200, [("Content-Type", "text/plain")], b"x" * size)


async def test_stream_releases_the_connection_and_repr_shows_it() -> None:
    async with serve_h11(_slow_body) as server, Client() as client:
        assert repr(client) == "<Client [0 active, 0 idle]>"
        async with client.stream("GET", server.url + "/big") as response:
            assert repr(client) == "<Client [1 active, 0 idle]>"
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
        assert size == 300_000
        assert repr(client) == "<Client [0 active, 1 idle]>"
        await client.get(server.url + "/again")
        assert server.connections_total == 1
        async with client.stream("GET", server.url + "/abandoned"):
            pass  # left unread: closed on exit, not leaked
        assert repr(client) == "<Client [0 active, 0 idle]>"


async def test_stream_aread(url: str) -> None:
    async with Client() as client, client.stream("GET", url + "/gzip") as response:
        assert await response.aread() == b"compressed hello"


async def test_closing_releases_every_connection() -> None:
    async with serve_h11() as server:
        client = Client()
        await client.get(server.url + "/a")  # used without `async with`: opens lazily
        assert server.open_now == 1
        await client.aclose()
        with trio.fail_after(5):
            while server.open_now:
                await server.closed.wait()
        assert client.is_closed


async def test_lifecycle_rules() -> None:
    transport = MockTransport(lambda request: Response(200, text="ok"))
    client = Client(transport=transport)
    assert repr(client) == "<Client [0 active, 0 idle]>"
    async with client:
        with pytest.raises(RuntimeError, match=r"^Cannot open a client instance more than once$"):
            async with client:
                pass
        assert (await client.get("http://h.test/")).text == "ok"
    assert transport.closed
    with pytest.raises(RuntimeError, match="client has been closed"):
        await client.get("http://h.test/")
    with pytest.raises(RuntimeError, match="Cannot reopen"):
        async with client:
            pass


async def test_lazily_opened_client_cannot_be_entered() -> None:
    client = Client(transport=MockTransport(lambda request: Response(200)))
    await client.get("http://h.test/")
    with pytest.raises(RuntimeError, match="more than once"):
        async with client:
            pass
    await client.aclose()


async def test_send_and_build_request() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200, content=b"body")

    async with Client(
        transport=MockTransport(handler), base_url="http://h.test/v1/", timeout=3.0
    ) as client:
        request = client.build_request("GET", "items", params={"p": 1}, timeout=None)
        response = await client.send(request)
    assert response.content == b"body" and response.max_size == client.max_response_size
    assert str(seen[0].url) == "http://h.test/v1/items?p=1"
    assert seen[0].timeout == Timeout(None)
    assert client.timeout == Timeout(3.0)


async def test_send_fills_in_the_client_timeout_and_per_request_redirects() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(302, headers={"Location": "/next"}) if len(seen) == 1 else Response(200)

    async with Client(transport=MockTransport(handler), timeout=7.0) as client:
        response = await client.send(Request("GET", "http://h.test/"), follow_redirects=False)
    assert response.status_code == 302 and len(seen) == 1
    assert seen[0].timeout == Timeout(7.0)


def test_http2_builds_an_http2_pool() -> None:
    assert "HTTP/2" in repr(Client(http2=True).transport)


def test_client_cookies_accepts_a_jar() -> None:
    jar = Cookies()
    jar.set("a", "1", domain="h.test")
    client = Client(cookies=jar, transport=MockTransport(lambda r: Response(200)))
    assert client.cookies.get("a", domain="h.test") == "1"
    assert client.cookies is not jar  # the client keeps its own jar


def _redirecting(seen: Seen) -> Reply:
    if seen.target == "/start":
        return Reply(302, [("Location", "/middle")], b"moved")
    if seen.target == "/middle":
        return Reply(301, [("Location", "/end")])
    return Reply(200, [], b"arrived")


async def test_redirect_hops_reuse_one_connection() -> None:
    async with serve_h11(_redirecting) as server, Client() as client:
        response = await client.get(server.url + "/start")
        assert response.text == "arrived"
        assert [r.content for r in response.history] == [b"moved", b""]
        assert [r.target for r in server.requests] == ["/start", "/middle", "/end"]
        assert server.connections_total == 1
        assert repr(client) == "<Client [0 active, 1 idle]>"


class Chunks:
    """A class-based body stream, like the pool's: nothing left for the GC to finalise."""

    def __init__(self, data: bytes, size: int = 65536) -> None:
        self._parts = iter([data[i : i + size] for i in range(0, len(data), size)])

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._parts)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        pass


async def test_max_response_size_none_disables_the_limit() -> None:
    big = b"x" * (3 * 1024 * 1024)
    transport = MockTransport(lambda request: Response(200, stream=Chunks(big)))
    async with Client(transport=transport, max_response_size=None) as client:
        assert (await client.get("http://h.test/")).content == big
    async with Client(transport=transport, max_response_size=1024) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get("http://h.test/")
