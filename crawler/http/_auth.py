"""Authentication: a callable that adds credentials to a request before it is sent.

Anything ``Request -> Request`` is an auth; a ``(user, password)`` tuple is
Basic auth. Credentials are applied once, to the first request of an
exchange: RedirectMiddleware keeps the Authorization header on same-origin
hops and drops it when a redirect leaves the origin.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Callable

from ._models import Request

__all__ = ["AuthTypes", "BasicAuth", "BearerAuth", "build_auth"]

AuthCallable = Callable[[Request], Request]
AuthTypes = tuple[str | bytes, str | bytes] | AuthCallable


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class BasicAuth:
    """HTTP Basic (RFC 7617, UTF-8); the header value is computed once."""

    __slots__ = ("_header",)

    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        token = b64encode(_to_bytes(username) + b":" + _to_bytes(password)).decode("ascii")
        self._header = "Basic " + token

    def __call__(self, request: Request) -> Request:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BasicAuth([secure])"


class BearerAuth:
    """``Authorization: Bearer <token>``, for APIs that hand out tokens."""

    __slots__ = ("_header",)

    def __init__(self, token: str) -> None:
        self._header = "Bearer " + token

    def __call__(self, request: Request) -> Request:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BearerAuth([secure])"


def build_auth(auth: AuthTypes | None) -> AuthCallable | None:
    if auth is None or callable(auth):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return BasicAuth(auth[0], auth[1])
    raise TypeError(
        f"auth must be a (username, password) tuple or a callable(request) -> request, "
        f"got {type(auth).__name__}"
    )
