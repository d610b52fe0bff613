"""``{spider}`` in a configured path: one rule for every place that takes one.

Export paths, job directories and ``-o`` files may hold ``{spider}`` so that one
setting serves every spider; each of them fills it in here, so they cannot
disagree about what it means.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SPIDER_FIELD", "for_spider"]

#: The placeholder a path template may hold.
SPIDER_FIELD = "{spider}"


def for_spider(template: str | os.PathLike[str], spider_name: str) -> Path:
    """``template`` with every ``{spider}`` replaced by ``spider_name``."""
    return Path(os.fspath(template).replace(SPIDER_FIELD, spider_name))
