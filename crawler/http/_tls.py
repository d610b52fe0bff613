"""SSL contexts for outgoing connections.

Building a context and loading certifi's bundle costs milliseconds, so the
contexts for the common settings are built once per process and shared by
every pool; a context the caller made is used as given (except that a pool
with HTTP/2 sets its ALPN protocols, see ConnectionPool).
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

__all__ = ["VerifyTypes", "create_ssl_context"]

VerifyTypes = bool | str | ssl.SSLContext


def create_ssl_context(
    verify: VerifyTypes = True, *, alpn: tuple[str, ...] | list[str] | None = None
) -> ssl.SSLContext:
    """Return the context for ``verify``.

    ``True`` verifies against certifi's CA bundle (not the system store, so a
    crawl behaves the same on every machine); a string names a CA file or
    directory; ``False`` turns verification off; an ``SSLContext`` is returned
    untouched. ``alpn`` lists the protocols offered (``["h2", "http/1.1"]``).
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    alpn_key = tuple(alpn) if alpn else ()
    if isinstance(verify, bool):
        return _cached_context(verify, None, alpn_key)
    if isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ValueError(f"verify={path!r}: no such CA bundle file or directory")
        return _cached_context(True, path, alpn_key)
    raise TypeError(f"verify must be a bool, a CA bundle path or an ssl.SSLContext, not {verify!r}")


@lru_cache(maxsize=16)
def _cached_context(verify: bool, ca_path: str | None, alpn: tuple[str, ...]) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_path is not None and os.path.isdir(ca_path):
        context = ssl.create_default_context(capath=ca_path)
    elif ca_path is not None:
        context = ssl.create_default_context(cafile=ca_path)
    else:
        # Imported here, by the first https connection: a plain http crawl needs no CA.
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context
