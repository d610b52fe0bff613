"""spider.stats: a spider's own counters, beside the engine's."""

from __future__ import annotations

import pytest

from crawler import CustomStats
from crawler.engine._stats import Stats


def test_inc_set_max_land_in_the_stats_dict() -> None:
    stats = Stats("s")
    custom = CustomStats(stats.custom)
    custom.inc("pages")
    custom.inc("pages", 2)
    custom.max("largest", 10)
    custom.max("largest", 4)
    custom.set("last", "/x")
    assert custom.get("pages") == 3 and custom.get("missing", 0) == 0
    assert stats.to_dict()["custom"] == {"largest": 10, "last": "/x", "pages": 3}


def test_bad_values_are_refused_naming_the_key() -> None:
    custom = CustomStats()
    with pytest.raises(TypeError, match="'when'"):
        custom.set("when", object())  # type: ignore[arg-type]
    custom.set("name", "x")
    with pytest.raises(TypeError, match=r"stats.inc\('name', 1\)"):
        custom.inc("name")
