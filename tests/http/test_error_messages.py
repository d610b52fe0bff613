"""Network errors say what the operating system said, by its errno name, and where.

trio reports a refused connect as "all attempts to connect to host:port
failed", with the refusal itself inside an exception group: the messages here
must name the refusal, not the wrapper.
"""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from crawler.http import Client, ConnectError, ReadError, RemoteProtocolError
from tests.http.pools import GUARD
from tests.servers import serve_tcp


async def test_a_refused_connect_names_the_refusal_and_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/nothing"
        with trio.fail_after(GUARD):
            async with Client() as client:
                with pytest.raises(ConnectError) as info:
                    await client.get(url)
    refused = f"connection refused to 127.0.0.1:{port} (ECONNREFUSED)"
    assert str(info.value) == f"Could not connect to {url}: {refused}"
    assert info.value.reason == refused


async def test_a_reset_connection_names_the_reset() -> None:
    async def resetter(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000)
        # SO_LINGER with a zero timeout: closing sends RST instead of FIN.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    with trio.fail_after(GUARD):
        async with serve_tcp(resetter) as port, Client() as client:
            url = f"http://127.0.0.1:{port}/reset"
            with pytest.raises(ReadError) as info:
                await client.get(url)
    # Whether the reset comes before or after the head is read is up to the kernel.
    message = str(info.value)
    assert message.startswith(f"Connection to {url} failed while reading")
    assert message.endswith(": connection reset by peer (ECONNRESET)")


async def test_a_stray_101_is_named_as_such() -> None:
    async def switcher(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        while await stream.receive_some(65536):  # until the client hangs up
            pass

    with trio.fail_after(GUARD):
        async with serve_tcp(switcher) as port, Client() as client:
            url = f"http://127.0.0.1:{port}/plain"
            with pytest.raises(RemoteProtocolError) as info:
                await client.get(url)
    assert str(info.value) == (
        f"{url} answered 101 Switching Protocols to a request that asked for no upgrade"
    )
