"""JSON objects given as text: ``crawl parse --meta`` and the ``@meta``/``@cb_kwargs``
contracts of ``crawl check`` read them alike and word their mistakes alike."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_object"]


def json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` read as a JSON object; a ValueError naming ``what`` otherwise, which each
    caller turns into its own kind of usage error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
