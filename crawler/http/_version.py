"""The package's version, the one place it is written: pyproject.toml reads it from here
and the HTTP client's User-Agent names it.

A constant rather than ``importlib.metadata.version("crawler")``: importing
``importlib.metadata`` loads ``email``, ``zipfile`` and ``csv`` too, over a
megabyte of memory in every crawl, for one string in the User-Agent.
"""

__version__ = "0.1.0"
