"""A concurrent web-crawl and scraping engine on trio, and the HTTP client under it."""

from .http import *  # noqa: F403
from .http import __all__ as _http_names

__all__ = [*_http_names]
