"""``crawl new`` and ``crawl startproject``: files to start from, never over a user's work.

Both refuse rather than overwrite: a spider file that exists, a spider name
already taken (two spiders with one name would stop every crawl of the
project), a project directory that holds anything.
"""

from __future__ import annotations

import argparse
import ipaddress
import keyword
import re
from pathlib import Path
from urllib.parse import urlsplit

from ..settings import load_sources
from ._main import CommandError
from ._spider_loader import load_spiders
from ._templates import (
    PIPELINES_INIT,
    PROJECT_README,
    PYPROJECT,
    SPIDERS,
    STARTPROJECT_SPIDER,
)
from ._tools import TOOLS

__all__ = ["new_project", "new_spider"]

#: Words the command takes for itself: ``crawl list`` could never run a spider "list".
_COMMANDS = {"list", "settings", "status", *TOOLS}


def new_spider(args: argparse.Namespace) -> int:
    """Write ``spiders/NAME.py`` from a template, after every check has passed."""
    name: str = args.name
    if not name.isidentifier() or keyword.iskeyword(name):
        raise CommandError(
            f"Spider name {name!r} is not a Python identifier (letters, digits and _, "
            "not starting with a digit), which the module file needs"
        )
    if name in _COMMANDS:
        raise CommandError(f"Spider name {name!r} is a crawl command; choose another name")
    host, start_url = _site(args.domain)
    sources = load_sources(args.settings, [])
    project = sources.resolve(lenient=True)
    module = project.spider_modules[0] if project.spider_modules else "spiders"
    package = project.project_dir / Path(*module.removesuffix(".py").rstrip("/").split("."))
    target = package / f"{name}.py"
    if target.exists():
        raise CommandError(f"{_shown(target)} exists already; not overwriting it")
    if package.is_dir():
        loader = load_spiders(project.spider_modules, project.project_dir)
        if name in loader.spiders:
            other = loader.spiders[name]
            raise CommandError(
                f"A spider named {name!r} exists already ({other.__module__}.{other.__qualname__})"
            )
    else:
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("", encoding="utf-8")
    text = SPIDERS[args.template].substitute(
        name=name,
        class_name=_class_name(name),
        domain=args.domain,
        host=host,
        start_url=start_url,
        env_name=name.upper(),
    )
    target.write_text(text, encoding="utf-8")
    print(f"Wrote {_shown(target)}: run it with crawl {name}")
    return 0


def _site(domain: str) -> tuple[str, str]:
    """The ``allowed_domains`` entry and start URL for ``DOMAIN`` (``host``, ``host:port``
    or a URL); loopback hosts get http, others https."""
    parts = urlsplit(domain if "//" in domain else f"//{domain}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or parts.path not in ("", "/") or parts.query:
        raise CommandError(
            f"DOMAIN {domain!r} is not a host name, host:port or site URL "
            "(e.g. example.com or 127.0.0.1:8000)"
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    scheme = parts.scheme or ("http" if _is_loopback(host) else "https")
    return netloc, f"{scheme}://{netloc}/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _class_name(name: str) -> str:
    words = "".join(word.capitalize() for word in name.split("_"))
    return (words or "My") + "Spider"


def new_project(args: argparse.Namespace) -> int:
    """Write a project in ``args.directory`` (new, or empty) whose example spider runs."""
    from ..settings._docs import toml_template

    root: Path = args.directory
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise CommandError(f"{_shown(root)} exists and is not an empty directory")
    project = _project_name(root.resolve().name)
    files = {
        "settings.toml": toml_template(),
        "pyproject.toml": PYPROJECT.substitute(project=project),
        "README.md": PROJECT_README.substitute(project=project),
        "spiders/__init__.py": "",
        "spiders/quotes.py": STARTPROJECT_SPIDER,
        "pipelines/__init__.py": PIPELINES_INIT,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(
        f"Wrote a crawl project in {_shown(root)}; try:\n"
        f"  cd {_shown(root)}\n  crawl quotes -o quotes.jsonl"
    )
    return 0


def _project_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._").lower()
    return cleaned or "crawl-project"


def _shown(path: Path) -> str:
    from ._spider_loader import _display

    return _display(path)
