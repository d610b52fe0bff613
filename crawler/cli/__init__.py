"""The ``crawl`` command: run spiders, list them, show settings and job status."""

from ._main import main as main

__all__ = ["main"]
