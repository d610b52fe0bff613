"""The Transport protocol, and the in-memory transport used to unit-test middleware.

A transport turns a Request into a Response (with an unread stream). The
connection pool is one; every middleware is another that wraps a transport, so
a chain is built by plain composition rather than registration magic.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ._models import Request, Response

__all__ = ["MockTransport", "Transport"]


@runtime_checkable
class Transport(Protocol):
    async def handle_request(self, request: Request) -> Response:
        """Send ``request``; return a Response whose body may still be unread."""
        ...

    async def aclose(self) -> None:
        """Release every resource (connections, files) the transport holds."""
        ...


Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport:
    """Answers each request by calling ``handler(request)``; for middleware unit tests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.closed = False

    async def handle_request(self, request: Request) -> Response:
        result = self.handler(request)
        response = await result if inspect.isawaitable(result) else result
        response.request = request
        return response

    async def aclose(self) -> None:
        self.closed = True
