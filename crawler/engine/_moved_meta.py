"""Meta keys the engine once read, and the Request fields that replaced them.

A spider written for the old keys would now be silently ignored (a 404 it
meant to handle would fail, a POST it meant to retry would not be): this
names the new keyword once per key and crawl, so the fix is obvious and the
log is not flooded. Checking costs a set lookup only for requests that carry
meta, and nothing once every key has been reported.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MOVED_META_KEYS", "MovedMetaWarnings"]

log = logging.getLogger("crawler.engine")

#: Old meta key -> what to use instead.
MOVED_META_KEYS: dict[str, str] = {
    "dont_retry": "Request(..., dont_retry=True)",
    "dont_redirect": "Request(..., dont_redirect=True)",
    "handle_httpstatus_all": 'Request(..., accept_statuses="all")',
    "handle_httpstatus_list": "Request(..., accept_statuses=[...])",
    "retry": "Request(..., retry_any_method=True)",
    "retry_times": "request.retries (kept by the engine)",
    "redirect_times": "request.redirects (kept by the engine)",
    "cross_origin_redirect": "request.cross_origin_redirect (kept by the engine)",
}


class MovedMetaWarnings:
    """Logs one warning per moved key a crawl's requests still carry in ``meta``.

    ``unwarned`` is the set of keys not reported yet: the caller tests it (and
    ``isdisjoint``) inline, so a request without moved keys costs no call.
    """

    __slots__ = ("spider", "unwarned")

    def __init__(self, spider: str) -> None:
        self.spider = spider
        self.unwarned: set[str] = set(MOVED_META_KEYS)

    def report(self, meta: dict[str, Any], url: str) -> None:
        for key in sorted(self.unwarned.intersection(meta)):
            self.unwarned.discard(key)
            log.warning(
                "spider %s: meta key %r (first seen on %s) is no longer read by the engine "
                "and is kept as plain meta; use %s",
                self.spider,
                key,
                url,
                MOVED_META_KEYS[key],
            )
