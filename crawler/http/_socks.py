"""SOCKS5 tunnels (RFC 1928, with RFC 1929 username/password), on trio streams.

The handshake is python-socks' (its trio backend): a well-kept implementation
of a protocol whose failure cases (method negotiation, auth sub-negotiation,
reply codes, the three address types) are easy to get subtly wrong by hand.
Its trio ``Proxy.connect`` opens the TCP connection to the proxy and returns
the tunnel as a plain ``trio.SocketStream``, which is exactly what our
connection setup needs: TLS with the origin (ALPN included) is then made
through it by ``open_stream`` as for a direct connection, and a plain-http
tunnel is unwrapped to its socket for the fast I/O path like any other.

What stays ours: turning its errors into the project's ``ProxyError`` /
``ConnectError`` naming the proxy without credentials, and the name
resolution rule: ``socks5://`` resolves the origin's name here,
``socks5h://`` sends the name to the proxy, which resolves it.
"""

from __future__ import annotations

import math
import socket
from typing import TYPE_CHECKING

import trio

from ._exceptions import ConnectError, ProxyError
from ._models import Request

if TYPE_CHECKING:
    from python_socks import ProxyError as SocksError

    from ._proxy import Proxy

__all__ = ["open_socks_stream"]

# RFC 1928 reply codes python-socks reports as ``error_code``: what they mean for
# someone reading a crawl log (python-socks' own wording is kept as the detail).
_REPLY_MEANINGS = {
    1: "general SOCKS server failure",
    2: "connection not allowed by the proxy's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the destination",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


async def open_socks_stream(
    request: Request, host: str, port: int, proxy: Proxy, target: str
) -> trio.abc.Stream:
    """A TCP stream to ``host:port`` through the SOCKS5 ``proxy``.

    The caller's deadline governs: python-socks is given none of its own.
    ``target`` is ``host:port`` as messages show it. python-socks is imported
    here, on the first SOCKS connection: a crawl without one does not load it.
    """
    from python_socks import ProxyError as SocksError
    from python_socks import ProxyTimeoutError, ProxyType
    from python_socks.async_.trio.v2 import Proxy as TrioSocksProxy

    username, password = proxy.socks_auth or (None, None)
    socks = TrioSocksProxy(
        ProxyType.SOCKS5,
        proxy.host,
        proxy.port,
        username=username,
        password=password,
        rdns=proxy.remote_dns,
    )
    try:
        tunnel = await socks.connect(host, port, timeout=math.inf)
    except socket.gaierror as exc:
        # socks5:// resolves the origin's name here: say which name failed.
        from ._network import describe_error

        reason = describe_error(exc, target)
        raise ConnectError(
            f"Could not connect to {request.url} via proxy {proxy.label}: {reason}",
            request=request,
            reason=reason,
        ) from None
    except ProxyTimeoutError:  # pragma: no cover - timeout=inf: ours fires first
        raise
    except SocksError as exc:
        raise _socks_error(exc, request, proxy, target) from None
    stream = tunnel.trio_stream
    assert isinstance(stream, trio.SocketStream)
    return stream


def _socks_error(exc: SocksError, request: Request, proxy: Proxy, target: str) -> ProxyError:
    code = None if exc.error_code is None else int(exc.error_code)
    detail = str(exc)
    if code in _REPLY_MEANINGS:
        reason = f"{_REPLY_MEANINGS[code]} (SOCKS reply {code}: {detail})"
    elif "authentication failure" in detail:
        reason = f"authentication failed: the proxy refused the username/password ({detail})"
    elif "No acceptable authentication" in detail:
        how = "the username/password given" if proxy.socks_auth else "no credentials"
        reason = f"authentication required: the proxy accepts none of our methods, {how} ({detail})"
    elif "closed unexpectedly" in detail:
        why = "were the credentials refused? " if proxy.socks_auth else ""
        reason = (
            f"the proxy closed the connection during the SOCKS5 handshake "
            f"({why}is it a SOCKS5 proxy?)"
        )
    else:
        reason = f"not a valid SOCKS5 answer, is it a SOCKS5 proxy? ({detail})"
    return ProxyError(
        f"SOCKS5 proxy {proxy.label} could not open a tunnel to {target} for {request.url}: "
        f"{reason}",
        request=request,
        proxy=proxy.label,
        reply_code=code,
    )
