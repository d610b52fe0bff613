"""docs/testing-spiders.md stays true: its example test module runs, as written, here.

The module is taken from the guide's code block (the one starting with its
file name), its fixture recorded from the demo site served on loopback, as the
guide records it, and each of its test functions is run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from crawler import Client
from crawler.demo import DemoApp
from tests.servers import serve_asgi

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "testing-spiders.md"
MODULE = "# tests/test_myspider.py"


def example_module() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.M | re.S)
    [module] = [block for block in blocks if block.startswith(MODULE + "\n")]
    return str(module)


async def test_the_guide_example_tests_pass_on_a_page_recorded_from_the_demo_site(
    tmp_path: Path,
) -> None:
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    async with serve_asgi(DemoApp()) as url, Client() as client:
        page = await client.get(url + "/")
    assert page.status_code == 200
    (fixtures / "quotes-page-1.html").write_bytes(page.content)
    source = example_module()
    path = tmp_path / "test_myspider.py"
    path.write_text(source, encoding="utf-8")
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "test_myspider"}
    exec(compile(source, str(GUIDE), "exec"), namespace)
    tests = [name for name in namespace if name.startswith("test_")]
    assert tests == ["test_a_page_of_quotes", "test_an_author_page_written_inline"]
    for name in tests:
        await namespace[name]()


async def test_a_broken_example_would_fail_here(tmp_path: Path) -> None:
    """The check above can fail: the same module, with an assertion the page breaks."""
    source = example_module().replace("assert len(items) == 10", "assert len(items) == 11")
    namespace: dict[str, Any] = {"__file__": str(tmp_path / "t.py"), "__name__": "t"}
    exec(compile(source, str(GUIDE), "exec"), namespace)
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    async with serve_asgi(DemoApp()) as url, Client() as client:
        (fixtures / "quotes-page-1.html").write_bytes((await client.get(url + "/")).content)
    with pytest.raises(AssertionError):
        await namespace["test_a_page_of_quotes"]()
