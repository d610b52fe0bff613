"""The package's shape, checked: who may import whom, and what is public.

These rules keep the architecture readable as it grows: the HTTP layer is a
library of its own with one public door (``crawler.http``), nothing outside it
reaches behind that door, and every public name is exported and documented.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import LAZY_LIBRARIES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "crawler"
# Code that must use only the HTTP layer's public door. The HTTP layer's own tests
# (tests/http/) test its internals and may look behind it.
DOOR_USERS = (
    "crawler",
    "spiders",
    "pipelines",
    "bench",
    *sorted(
        f"tests/{folder.name}"
        for folder in (ROOT / "tests").iterdir()
        if (folder / "__init__.py").exists() and folder.name != "http"
    ),
)
# The subpackages whose __init__ is a door: the names in its __all__ are public.
DOORS = (
    "crawler",
    "crawler.cli",
    "crawler.demo",
    "crawler.distributed",
    "crawler.engine",
    "crawler.frontier",
    "crawler.http",
    "crawler.jobs",
    "crawler.pipelines",
    "crawler.sessions",
    "crawler.settings",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # ``from crawler.http import _pool``
                yield node.lineno, f"{module}.{alias.name}"


def _python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_nothing_outside_the_http_layer_imports_its_private_modules() -> None:
    private = re.compile(r"^crawler\.http\._(?!_)")
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _python_files(*DOOR_USERS)
        if PACKAGE / "http" not in path.parents
        for line, module in _imports(path)
        if private.match(module)
    ]
    assert offenders == [], "use the names crawler.http exports:\n" + "\n".join(offenders)


def test_the_http_layer_depends_on_nothing_above_it() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _python_files("crawler/http")
        for line, module in _imports(path)
        if module.startswith("crawler.") and not module.startswith("crawler.http")
    ]
    assert offenders == [], "\n".join(offenders)


def test_the_shipped_package_does_not_import_the_example_project() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _python_files("crawler")
        for line, module in _imports(path)
        if module.split(".")[0] in ("spiders", "pipelines", "tests")
    ]
    assert offenders == [], "\n".join(offenders)


@pytest.mark.parametrize("door", DOORS)
def test_every_exported_name_exists_and_says_why_it_is_there(door: str) -> None:
    module = importlib.import_module(door)
    assert module.__doc__, f"{door} has no docstring"
    undocumented = []
    for name in module.__all__:
        assert hasattr(module, name), f"{door}.__all__ names {name!r}, which it lacks"
        value = getattr(module, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and not inspect.getdoc(value):
            undocumented.append(name)
    assert undocumented == [], f"{door}: public names without a docstring: {undocumented}"


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in helper modules (tests/servers.py, tests/*/helpers.py,
    conftest.py): a test module imported by another runs its module code twice over
    and cannot be moved or split without breaking its importers."""
    offenders = sorted(
        {
            f"{path.relative_to(ROOT)}:{line} imports from {module}"
            for path in _python_files("tests")
            for line, module in _imports(path)
            if module.split(".")[0] == "tests" and module.split(".")[-1].startswith("test_")
        }
    )
    assert offenders == [], "move what they share into a helper module:\n" + "\n".join(offenders)


def _public_definitions() -> Iterator[tuple[str, str, object]]:
    """(module, name, object) of every class and function that a public module (no
    ``_`` in its dotted name) defines and lists in ``__all__``. A private module's
    ``__all__`` speaks to its own package; a public module's speaks to users."""
    for path in _python_files("crawler"):
        name = _module_name(path)
        if path.name == "__main__.py" or any(p.startswith("_") for p in name.split(".")):
            continue
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public, None)
            if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(
                value, "__module__", ""
            ) == name:
                yield name, public, value


def test_every_public_class_and_function_is_exported_by_a_door() -> None:
    exported = {
        id(getattr(module, n))
        for module in map(importlib.import_module, DOORS)
        for n in module.__all__
    }
    missing = [
        f"{module}.{name}"
        for module, name, value in _public_definitions()
        if id(value) not in exported
    ]
    assert missing == [], (
        "public in their module but exported by no package door (export them, or make "
        f"the module private): {missing}"
    )


def _documented_imports() -> Iterator[tuple[str, str, str]]:
    """(file, module, name) of every ``from crawler... import name`` in the docs' code."""
    pattern = re.compile(r"^\s*from (crawler[\w.]*) import \(?([\w, ]+)\)?", re.M)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in pattern.finditer(doc.read_text(encoding="utf-8")):
            for name in match.group(2).split(","):
                if name.strip():
                    yield doc.name, match.group(1), name.strip().split(" as ")[0]


def test_every_name_the_docs_import_is_public() -> None:
    wrong = []
    for doc, module_name, name in _documented_imports():
        if any(part.startswith("_") for part in module_name.split(".")):
            wrong.append(f"{doc}: from {module_name} import {name} (a private module)")
            continue
        module = importlib.import_module(module_name)
        if name not in getattr(module, "__all__", ()):
            wrong.append(f"{doc}: from {module_name} import {name} (not exported)")
    assert wrong == [], "\n".join(wrong)


def test_the_package_ships_its_type_hints() -> None:
    """Without the marker, mypy treats ``crawler`` in a user's project as untyped."""
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'crawler = ["py.typed"]' in pyproject


@pytest.mark.e2e
def test_importing_the_package_loads_no_library_only_some_crawls_need() -> None:
    import subprocess
    import sys

    code = (
        "import sys, crawler, crawler.engine, crawler.cli, crawler.pipelines; "
        f"print(' '.join(m for m in {LAZY_LIBRARIES!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == []
