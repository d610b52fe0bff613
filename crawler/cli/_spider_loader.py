"""Finding spider classes by name in the project's spider modules.

Every module of every package in ``spider_modules`` is imported up front, so a
broken spider file or two spiders sharing a name are reported at start-up with
the files and lines to fix, not discovered half-way through a crawl.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..spider import Spider

__all__ = ["SpiderLoadError", "SpiderLoader", "load_spiders"]

_PACKAGE_DIR = Path(__file__).resolve().parent


class SpiderLoadError(Exception):
    """A spider module failed to import, a name is unknown or taken twice."""


@dataclass(frozen=True, slots=True)
class SpiderLoader:
    """The spiders of a project, by name."""

    spiders: Mapping[str, type[Spider]]
    modules: tuple[str, ...]
    project_dir: Path

    def names(self) -> list[str]:
        return sorted(self.spiders)

    def get(self, name: str) -> type[Spider]:
        """The spider class called ``name``; an unknown name lists the known ones."""
        try:
            return self.spiders[name]
        except KeyError:
            pass
        if not self.spiders:
            raise SpiderLoadError(
                f"Unknown spider {name!r}: no spiders found in spider_modules "
                f"{list(self.modules)} under {_display(self.project_dir)}"
            )
        message = f"Unknown spider {name!r}"
        import difflib  # for this message only

        close = difflib.get_close_matches(name, list(self.spiders), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        raise SpiderLoadError(f"{message}; known spiders: {', '.join(self.names())}")


def load_spiders(modules: Sequence[str], project_dir: Path) -> SpiderLoader:
    """Import ``modules`` (names or paths relative to ``project_dir``) and collect spiders."""
    project_dir = project_dir.resolve()
    root = str(project_dir)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    spiders: dict[str, type[Spider]] = {}
    for module in _modules(modules, project_dir):
        for cls in _spiders_in(module):
            other = spiders.setdefault(cls.name, cls)
            if other is not cls:
                raise SpiderLoadError(
                    f"Two spiders are named {cls.name!r}: {other.__qualname__} "
                    f"({_location(other)}) and {cls.__qualname__} ({_location(cls)})"
                )
    return SpiderLoader(spiders, tuple(modules), project_dir)


def _module_name(entry: str) -> str:
    """``spiders/`` and ``spiders/books.py`` are accepted as ``spiders`` and ``spiders.books``."""
    name = entry.strip().rstrip("/\\")
    name = name.removesuffix(".py")
    return name.replace("/", ".").replace("\\", ".")


def _modules(entries: Sequence[str], project_dir: Path) -> Iterator[ModuleType]:
    for entry in entries:
        name = _module_name(entry)
        module = _import(name, project_dir, top_level=True)
        yield module
        if hasattr(module, "__path__"):
            yield from _walk(module, project_dir)


def _walk(package: ModuleType, project_dir: Path) -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = _import(info.name, project_dir, top_level=False)
        yield module
        if info.ispkg:
            yield from _walk(module, project_dir)


def _import_from_project(top: str, project_dir: Path) -> None:
    """Import the top-level package ``top`` from ``project_dir`` itself.

    Left to sys.path, a plain ``spiders/`` directory (a namespace package)
    loses to any regular ``spiders`` package elsewhere on the path, and a
    package imported earlier from another project would be reused.
    """
    spec = importlib.machinery.PathFinder.find_spec(top, [str(project_dir)])
    if spec is None:
        return  # not in the project: an installed package, found the usual way
    current = sys.modules.get(top)
    if current is not None and _module_inside(current, project_dir):
        return
    for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
        del sys.modules[key]
    module = importlib.util.module_from_spec(spec)
    if spec.loader is None:  # namespace package: keep to the project's directory
        module.__path__ = [p for p in module.__path__ if _inside(Path(p), project_dir)]
    sys.modules[top] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[top]
        raise


def _module_inside(module: ModuleType, directory: Path) -> bool:
    file = getattr(module, "__file__", None)
    locations = [*getattr(module, "__path__", []), *([file] if file else [])]
    return any(_inside(Path(p), directory) for p in locations)


def _import(name: str, project_dir: Path, *, top_level: bool) -> ModuleType:
    try:
        if top_level:
            _import_from_project(name.partition(".")[0], project_dir)
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if top_level and (name == missing or name.startswith(missing + ".")):
            raise SpiderLoadError(
                f"Spider module {name!r} not found under {_display(project_dir)} "
                "(check spider_modules in settings.toml)"
            ) from None
        raise _import_failure(name, exc, project_dir) from exc
    except Exception as exc:
        raise _import_failure(name, exc, project_dir) from exc


def _import_failure(name: str, exc: Exception, project_dir: Path) -> SpiderLoadError:
    """Point at the line of the spider's own code that failed, not at importlib."""
    file: str | None = None
    line: int | None = None
    detail = str(exc)
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line, detail = exc.filename, exc.lineno, exc.msg
    else:
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if not f.filename.startswith("<") and not _inside(Path(f.filename), _PACKAGE_DIR)
        ]
        own = [f for f in frames if _inside(Path(f.filename), project_dir)]
        if own or frames:
            frame = (own or frames)[-1]
            file, line = frame.filename, frame.lineno
    where = f" ({_display(Path(file))}, line {line})" if file else ""
    return SpiderLoadError(
        f"Cannot import spider module {name!r}{where}: {type(exc).__name__}: {detail}"
    )


def _spiders_in(module: ModuleType) -> Iterator[type[Spider]]:
    for obj in list(vars(module).values()):
        if (
            isinstance(obj, type)
            and issubclass(obj, Spider)
            and obj is not Spider
            and obj.__module__ == module.__name__
            and obj.name
        ):
            yield obj


def _location(cls: type) -> str:
    try:
        file = inspect.getsourcefile(cls) or "?"
    except TypeError:
        return f"module {cls.__module__}"
    try:
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return _display(Path(file))
    return f"{_display(Path(file))}, line {line}"


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory)
    except OSError:
        return False


def _display(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative
