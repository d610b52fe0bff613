"""Spider discovery: packages, plain directories, duplicates, import failures, unknown names."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.cli._spider_loader import SpiderLoadError, load_spiders


@pytest.fixture(autouse=True)
def _isolated_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test's project imports its own ``spiders`` package and leaves no trace."""
    monkeypatch.chdir(tmp_path)
    saved_path = sys.path[:]
    saved_modules = dict(sys.modules)
    yield
    sys.path[:] = saved_path
    for name in set(sys.modules) - set(saved_modules):
        del sys.modules[name]
    # The loader replaces a ``spiders`` package imported earlier: put the original back.
    sys.modules.update(saved_modules)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


SPIDER = """\
from crawler import Spider


class {cls}(Spider):
    name = "{name}"
"""


def test_package_modules_and_subpackages(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spiders/__init__.py": "",
            "spiders/books.py": SPIDER.format(cls="Books", name="books"),
            "spiders/shop/__init__.py": "",
            "spiders/shop/items.py": SPIDER.format(cls="Items", name="items")
            + "\nclass Base(Spider):\n    pass\n",
        },
    )
    loader = load_spiders(["spiders"], tmp_path)
    assert loader.names() == ["books", "items"]
    assert loader.get("books").__module__ == "spiders.books"
    assert loader.get("items").__qualname__ == "Items"


def test_plain_directory_without_init(tmp_path: Path) -> None:
    write(tmp_path, {"myspiders/quotes.py": SPIDER.format(cls="Quotes", name="quotes")})
    loader = load_spiders(["myspiders/"], tmp_path)
    assert loader.names() == ["quotes"]


def test_single_module_entry(tmp_path: Path) -> None:
    write(tmp_path, {"one.py": SPIDER.format(cls="One", name="one")})
    assert load_spiders(["one"], tmp_path).names() == ["one"]


def test_imported_spiders_are_not_counted_twice(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spiders/__init__.py": "",
            "spiders/a.py": SPIDER.format(cls="A", name="a"),
            "spiders/b.py": "from spiders.a import A\n" + SPIDER.format(cls="B", name="b"),
        },
    )
    loader = load_spiders(["spiders", "spiders.a"], tmp_path)
    assert loader.names() == ["a", "b"]


def test_duplicate_names_point_at_both(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spiders/__init__.py": "",
            "spiders/first.py": SPIDER.format(cls="First", name="dup"),
            "spiders/second.py": "# a comment\n\n" + SPIDER.format(cls="Second", name="dup"),
        },
    )
    with pytest.raises(SpiderLoadError) as info:
        load_spiders(["spiders"], tmp_path)
    assert str(info.value) == (
        "Two spiders are named 'dup': First (spiders/first.py, line 4) "
        "and Second (spiders/second.py, line 6)"
    )


def test_import_error_names_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spiders/__init__.py": "",
            "spiders/good.py": SPIDER.format(cls="Good", name="good"),
            "spiders/bad.py": "import os\n\nVALUE = int('x')\n",
        },
    )
    with pytest.raises(SpiderLoadError) as info:
        load_spiders(["spiders"], tmp_path)
    assert str(info.value) == (
        "Cannot import spider module 'spiders.bad' (spiders/bad.py, line 3): "
        "ValueError: invalid literal for int() with base 10: 'x'"
    )


def test_missing_dependency_names_the_importing_line(tmp_path: Path) -> None:
    write(tmp_path, {"spiders/dep.py": "\nimport no_such_module_for_crawler_tests\n"})
    with pytest.raises(SpiderLoadError) as info:
        load_spiders(["spiders"], tmp_path)
    assert str(info.value) == (
        "Cannot import spider module 'spiders.dep' (spiders/dep.py, line 2): "
        "ModuleNotFoundError: No module named 'no_such_module_for_crawler_tests'"
    )


def test_failure_inside_a_library_points_at_the_spider_line(tmp_path: Path) -> None:
    write(tmp_path, {"spiders/rx.py": "import re\n\n\nPATTERN = re.compile('(')\n"})
    with pytest.raises(SpiderLoadError) as info:
        load_spiders(["spiders"], tmp_path)
    assert "(spiders/rx.py, line 4): error: missing ), unterminated subpattern" in str(info.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"spiders/broken.py": "x = 1\ndef (:\n"})
    with pytest.raises(SpiderLoadError) as info:
        load_spiders(["spiders"], tmp_path)
    assert str(info.value).startswith(
        "Cannot import spider module 'spiders.broken' (spiders/broken.py, line 2): SyntaxError: "
    )


def test_missing_spider_module(tmp_path: Path) -> None:
    with pytest.raises(SpiderLoadError) as info:
        load_spiders(["nothere"], tmp_path)
    assert str(info.value) == (
        "Spider module 'nothere' not found under . (check spider_modules in settings.toml)"
    )


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spiders/a.py": SPIDER.format(cls="Books", name="books"),
            "spiders/b.py": SPIDER.format(cls="Quotes", name="quotes"),
        },
    )
    loader = load_spiders(["spiders"], tmp_path)
    with pytest.raises(SpiderLoadError) as info:
        loader.get("boks")
    assert (
        str(info.value)
        == "Unknown spider 'boks' (did you mean 'books'?); known spiders: books, quotes"
    )
    with pytest.raises(SpiderLoadError) as info:
        loader.get("zzz")
    assert str(info.value) == "Unknown spider 'zzz'; known spiders: books, quotes"


def test_unknown_name_without_spiders(tmp_path: Path) -> None:
    (tmp_path / "spiders").mkdir()
    loader = load_spiders(["spiders"], tmp_path)
    with pytest.raises(SpiderLoadError, match="no spiders found in spider_modules"):
        loader.get("x")


def test_second_project_is_not_shadowed_by_the_first(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, {"spiders/__init__.py": "", "spiders/a.py": SPIDER.format(cls="A", name="first")})
    write(two, {"spiders/__init__.py": "", "spiders/b.py": SPIDER.format(cls="B", name="second")})
    assert load_spiders(["spiders"], one).names() == ["first"]
    assert load_spiders(["spiders"], two).names() == ["second"]
    assert sys.path[0] == str(two.resolve())
