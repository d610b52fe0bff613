"""Options for the whole suite."""

from __future__ import annotations

import pytest


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
