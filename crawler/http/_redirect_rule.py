"""What following one redirect changes: the one rule the client and the crawl share.

The client follows redirects itself (``RedirectMiddleware``); a crawl turns
each into a new scheduled request. Both ask this module what the next request
looks like, so a 302 after a PUT, or a redirect to another origin, is treated
the same way whichever path a request took.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = [
    "BODY_HEADERS",
    "CROSS_ORIGIN_DROPPED",
    "REDIRECT_STATUSES",
    "RedirectStep",
    "redirect_step",
]

#: Statuses that redirect, when they carry a Location.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Headers carrying credentials for the origin they were first sent to. This
#: client speaks to no proxy, so a Proxy-Authorization header given by hand
#: reaches the origin server like Authorization does, and leaks the same way.
CROSS_ORIGIN_DROPPED = frozenset({"authorization", "proxy-authorization", "cookie"})

#: Headers that describe a body: gone with the body when the method becomes GET.
BODY_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "content-type",
        "content-encoding",
        "content-language",
        "content-location",
    }
)


class RedirectStep(NamedTuple):
    """The changes one redirect makes to the request that is followed."""

    #: The method of the next request.
    method: str
    #: The body is dropped (the method became GET).
    drops_body: bool
    #: The target is another origin (scheme, host or port): credentials stay behind.
    cross_origin: bool

    def dropped(self, name: str) -> bool:
        """Whether header ``name`` (any case) must not go with the next request."""
        lowered = name.lower()
        return (self.drops_body and lowered in BODY_HEADERS) or (
            self.cross_origin and lowered in CROSS_ORIGIN_DROPPED
        )

    def kept(self, headers: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """The (name, value) pairs of ``headers`` that go on with the next request."""
        return ((k, v) for k, v in headers if not self.dropped(k))


def redirect_step(method: str, status: int, *, same_origin: bool) -> RedirectStep:
    """The changes a ``status`` redirect makes to a ``method`` request.

    The method follows RFC 9110 (15.4) as browsers apply it (the Fetch
    standard): 303 turns anything but HEAD into GET; 301 and 302 turn POST
    into GET, for historical reasons, and keep every other method; 307 and
    308 never change it. Credentials never follow a redirect to another
    origin, an https to http downgrade on the same host included.
    """
    new_method = method
    if (status == 303 and method not in ("GET", "HEAD")) or (
        status in (301, 302) and method == "POST"
    ):
        new_method = "GET"
    return RedirectStep(new_method, new_method != method, not same_origin)
