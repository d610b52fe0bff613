"""The test servers themselves must work, or every other test proves nothing."""

import trio

from tests.servers import serve_asgi, serve_h11


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-test", b"1")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def _raw_get(host: str, port: int) -> bytes:
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    await stream.aclose()
    return data


async def test_asgi_server_answers() -> None:
    async with serve_asgi(app) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        data = await _raw_get(host, int(port))
    assert data.startswith(b"HTTP/1.1 200")
    assert b"5\r\nhello\r\n" in data


async def test_h11_server_counts_connections() -> None:
    async with serve_h11(host="127.0.0.2") as server:
        data = await _raw_get(server.host, server.port)
        assert b"ok /x" in data
        assert server.connections_total == 1
        assert [r.target for r in server.requests] == ["/x"]
