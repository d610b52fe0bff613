"""Meta keys the engine does not read, and what does their work here.

Two kinds: keys the engine once read and that became Request fields, and
Scrapy's meta keys. Either way a spider that sets one would be silently
ignored (a 404 it meant to handle would fail, a proxy it meant to use would
be bypassed): this names what to use instead once per key and crawl, so the
fix is obvious and the log is not flooded. Checking costs a set test only for
requests that carry meta, and nothing once every key has been reported.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MOVED_META_KEYS", "MovedMetaWarnings"]

log = logging.getLogger("crawler.engine")

#: Meta key -> what to use instead ("none yet" when nothing does its work).
MOVED_META_KEYS: dict[str, str] = {
    # Became Request keywords (Scrapy's keys of the same name included).
    "dont_retry": "Request(..., dont_retry=True)",
    "dont_redirect": "Request(..., dont_redirect=True)",
    "handle_httpstatus_all": "Request(..., handle_httpstatus_all=True) (the keyword, "
    'also named accept_statuses="all")',
    "handle_httpstatus_list": "Request(..., handle_httpstatus_list=[...]) (the keyword, "
    "also named accept_statuses=[...])",
    "retry": "Request(..., retry_any_method=True)",
    "retry_times": "request.retries (kept by the engine)",
    "redirect_times": "request.redirects (kept by the engine)",
    "cross_origin_redirect": "request.cross_origin_redirect (kept by the engine)",
    # Scrapy's.
    "proxy": 'Request(..., proxy="http://user:pass@proxy:port")',
    "dont_proxy": 'Request(..., proxy="") goes straight to the host',
    "cookiejar": "Request(..., session=NAME): each session has its own cookie jar",
    "dont_merge_cookies": "Request(..., session=NAME) with a session of its own, whose "
    "cookies stay apart",
    "download_timeout": "the download_timeout setting (per spider in custom_settings); "
    "none yet per request",
    "download_maxsize": "the max_response_size setting (per spider in custom_settings); "
    "none yet per request",
    "download_warnsize": "none yet",
    "max_retry_times": "the retry_times setting (per spider in custom_settings), or "
    "Request(..., dont_retry=True)",
    "download_slot": 'none yet: requests are paced per host ([domains."HOST"] settings)',
    "dont_cache": 'Request(..., headers={"Cache-Control": "no-store"}): the HTTP cache '
    "neither answers nor stores it",
    "referrer_policy": "the referer_policy setting (per spider in custom_settings), or a "
    "Referer header of your own",
    "dont_obey_robotstxt": "the obey_robots setting (false per spider in custom_settings); "
    "none yet per request",
    "bindaddress": "none yet",
    "autothrottle_dont_adjust_delay": "none yet: there is no latency-based throttling",
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
            advice = MOVED_META_KEYS[key]
            if not advice.startswith("none yet"):
                advice = "use " + advice
            log.warning(
                "spider %s: meta key %r (first seen on %s) is not read by the engine "
                "and is kept as plain meta; %s",
                self.spider,
                key,
                url,
                advice,
            )
