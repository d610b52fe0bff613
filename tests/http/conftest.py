"""Which h11 implementation the HTTP/1.1 connection uses, chosen per run or per test.

``crawler.http._h11_fast`` uses h11's internals when the installed h11 allows
it and its public API otherwise. ``--h11-api=public`` runs the HTTP tests on
the fallback; the ``h11_api`` fixture (``@pytest.mark.usefixtures("h11_api")``)
runs a test under both in every run, so neither goes untested by default.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crawler.http import _h11_fast


@pytest.fixture(autouse=True, scope="session")
def _h11_api_for_the_run(request: pytest.FixtureRequest) -> Iterator[None]:
    choice = request.config.getoption("h11_api")
    if choice == "auto":
        yield
        return
    if choice == "fast" and not _h11_fast.FAST:
        pytest.exit(f"--h11-api=fast: h11's internals are not usable: {_h11_fast.REASON}")
    before = _h11_fast.use(choice == "fast")
    yield
    _h11_fast.use(before)


@pytest.fixture(params=["fast", "public"])
def h11_api(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with h11's internals, then with its public API only."""
    fast = request.param == "fast"
    if fast and not _h11_fast.FAST:
        pytest.skip(f"h11's internals are not usable here: {_h11_fast.REASON}")
    before = _h11_fast.use(fast)
    assert _h11_fast.active() is fast
    yield request.param
    _h11_fast.use(before)
