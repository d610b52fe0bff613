"""Which failures are worth another attempt."""

from __future__ import annotations

from crawler.engine._retry import RetryPolicy
from crawler.engine._robots import RobotsUnavailable
from crawler.http import ConnectError, LocalProtocolError, ReadTimeout, UnsupportedProtocol
from crawler.request import Request


def policy() -> RetryPolicy:
    return RetryPolicy(retry_times=2, retry_http_codes=(503,), backoff=0.5, backoff_max=1.0)


def test_network_failures_are_retried() -> None:
    request = Request("http://a.test/")
    for error in (ConnectError("refused"), ReadTimeout("slow")):
        assert policy().delay_for(request, 1, error=error) is not None


def test_requests_that_cannot_be_sent_are_not_retried() -> None:
    request = Request("http://a.test/")
    for error in (LocalProtocolError("bad header"), UnsupportedProtocol("ftp")):
        assert policy().delay_for(request, 1, error=error) is None


def test_requests_keep_their_own_copy_of_meta() -> None:
    shared = {"page": 1}
    first, second = Request("http://a.test/1", meta=shared), Request("http://a.test/2", meta=shared)
    first.meta["page"] = 2
    assert second.meta == {"page": 1}
    assert shared == {"page": 1}


def test_robots_unavailable_is_retried_only_once_robots_txt_is_fetched_again() -> None:
    request = Request("http://a.test/")
    later = RobotsUnavailable("robots.txt down", "HTTP 500", retry_in=5.0)
    assert policy().delay_for(request, 1, error=later) is None  # beyond backoff_max (1 s)
    soon = RobotsUnavailable("robots.txt down", "HTTP 500", retry_in=0.75)
    delay = policy().delay_for(request, 1, error=soon)
    assert delay is not None and delay >= 0.75
