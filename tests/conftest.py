"""Options and hooks for the whole suite.

``--h11-api`` picks how HTTP/1.1 is driven (see ``crawler/http/_h11_fast.py``).

``@pytest.mark.needs(available, what)`` guards a test that needs something this
machine may lack (an IPv6 loopback, a tool, a server). Where it is missing the
test is skipped, except under CI (``CI=true``): CI is where the whole suite must
run, so there a missing piece fails the test, naming it, instead of letting the
test pass unseen as a skip.
"""

from __future__ import annotations

import os

import pytest

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--h11-api",
        choices=("auto", "fast", "public"),
        default="auto",
        help=(
            "HTTP/1.1 over h11's internals (fast), its public API only (public), or "
            "whichever the installed h11 allows (auto, the default); tests marked to "
            "run both still run both"
        ),
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        available, what = mark.args
        if available:
            continue
        if ON_CI:
            pytest.fail(f"{what} is missing, and CI must provide it", pytrace=False)
        pytest.skip(f"{what} is missing here")
