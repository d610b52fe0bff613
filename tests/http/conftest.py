"""Fixtures of the HTTP layer's tests: the h11 implementation, TLS certificates.

Which h11 implementation the HTTP/1.1 connection uses is chosen per run or per test.

``crawler.http._h11_fast`` uses h11's internals when the installed h11 allows
it and its public API otherwise. ``--h11-api=public`` runs the HTTP tests on
the fallback; the ``h11_api`` fixture (``@pytest.mark.usefixtures("h11_api")``)
runs a test under both in every run, so neither goes untested by default.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from crawler.http import _h11_fast
from tests.http.tls_sites import Certs


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


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    where = tmp_path_factory.mktemp("certs")
    paths = Certs(str(where / "cert.pem"), str(where / "key.pem"), str(where / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(paths.cert)
    for pem in leaf.cert_chain_pems[1:]:
        pem.write_to_path(paths.cert, append=True)
    leaf.private_key_pem.write_to_path(paths.key)
    ca.cert_pem.write_to_path(paths.ca)
    return paths
