"""Reading settings.toml and -s, and applying the layers in order.

Every layer is checked when it is applied, so an error names the layer it came
from ("in settings.toml [spiders.books]", "from -s").
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._model import DOMAIN_SPECS, ENGINE_SPECS, SETTINGS_FILE, Settings, empty_mapping
from ._schema import (
    SettingsError,
    Spec,
    convert,
    expand_env,
    format_key,
    option_spec,
    unknown_key_error,
)

if TYPE_CHECKING:
    from ..spider import Spider

__all__ = [
    "SettingsSources",
    "find_settings_file",
    "load_settings",
    "load_sources",
    "parse_override",
]

_TABLES = ("domains", "pipeline", "spiders")


@dataclass(frozen=True, slots=True)
class _Layer:
    label: str  # what source_of() reports
    where: str  # the phrase in messages: "in settings.toml", "from -s"
    table: Mapping[str, Any]
    per_spider: bool = False  # [spiders.NAME] and custom_settings
    shared: bool = False  # the top of settings.toml: engine settings only
    command_line: bool = False  # -s and the like: may name options of other spiders


class _Resolver:
    """Applies layers in order onto the defaults, checking each value on the way."""

    def __init__(self, specs: dict[str, Spec], also_known: Collection[str], lenient: bool):
        self.specs = specs
        self.also_known = also_known
        self.lenient = lenient
        self.values: dict[str, Any] = {name: spec.default for name, spec in specs.items()}
        self.sources: dict[str, str] = {}
        self.domains: dict[str, dict[str, Any]] = {}
        self.pipeline: dict[str, dict[str, Any]] = {}

    def apply(self, layer: _Layer) -> None:
        for key, value in layer.table.items():
            if key == "domains":
                self._apply_domains(value, layer)
            elif key == "pipeline":
                self._apply_pipeline(value, layer)
            elif key in self.specs:
                spec = self.specs[key]
                if layer.shared and key not in ENGINE_SPECS:
                    raise SettingsError(
                        f"Setting {key!r} {layer.where} is an option of one spider: set it "
                        "in its [spiders.NAME] table, its custom_settings or with -s"
                    )
                if layer.per_spider and spec.project_wide:
                    raise SettingsError(
                        f"Setting {key!r} {layer.where} applies to the whole project: set it "
                        "at the top level of settings.toml or with -s"
                    )
                self.values[key] = convert(spec, value, key, layer.where)
                self.sources[key] = layer.label
            elif key == "spiders":
                raise SettingsError(
                    f"Setting 'spiders' {layer.where}: [spiders.NAME] tables belong at the "
                    "top level of settings.toml"
                )
            elif self.lenient or (key in self.also_known and layer.command_line):
                continue
            else:
                known = [*self.specs, *_TABLES[:2]]
                if layer.command_line:
                    known.extend(self.also_known)
                raise unknown_key_error(key, layer.where, known)

    def _tables(self, value: Any, key: str, layer: _Layer) -> Iterator[tuple[str, Any]]:
        if not isinstance(value, dict):
            raise SettingsError(
                f"Setting {key!r} {layer.where} must be a table of tables, like "
                f'[{key}."NAME"], got {value!r}'
            )
        for name, entry in value.items():
            if not isinstance(entry, dict):
                raise SettingsError(
                    f"Setting {format_key((key, name))!r} {layer.where} must be a table, "
                    f"got {entry!r}"
                )
            yield name, entry

    def _apply_domains(self, value: Any, layer: _Layer) -> None:
        for host, entry in self._tables(value, "domains", layer):
            normal = host.lower().rstrip(".")
            target = self.domains.setdefault(normal, {})
            for name, item in entry.items():
                path = ("domains", host, name)
                spec = DOMAIN_SPECS.get(name)
                if spec is None:
                    raise unknown_key_error(path, layer.where, DOMAIN_SPECS)
                target[name] = convert(spec, item, path, layer.where)
                self.sources[format_key(("domains", normal, name))] = layer.label

    def _apply_pipeline(self, value: Any, layer: _Layer) -> None:
        for pipeline, entry in self._tables(value, "pipeline", layer):
            target = self.pipeline.setdefault(pipeline, {})
            for name, item in entry.items():
                path = ("pipeline", pipeline, name)
                target[name] = expand_env(item, path, layer.where)
                self.sources[format_key(path)] = layer.label

    def build(self, project_dir: Path, options: Collection[str]) -> Settings:
        engine = {name: self.values[name] for name in ENGINE_SPECS}
        return Settings(
            **engine,
            domains=MappingProxyType({h: MappingProxyType(e) for h, e in self.domains.items()}),
            pipeline=MappingProxyType({n: MappingProxyType(e) for n, e in self.pipeline.items()}),
            options=MappingProxyType({name: self.values[name] for name in options}),
            project_dir=project_dir,
            sources=MappingProxyType(self.sources),
        )


def _spider_specs(spider: type[Spider]) -> dict[str, Spec]:
    specs = dict(ENGINE_SPECS)
    for key, default in spider.options.items():
        if key in ENGINE_SPECS or key in _TABLES:
            raise SettingsError(
                f"Spider {spider.__name__} declares option {key!r}, which is an engine "
                "setting: set it in custom_settings instead"
            )
        specs[key] = option_spec(key, default, spider.__name__)
    return specs


@dataclass(frozen=True, slots=True)
class SettingsSources:
    """The raw layers of one run, read once; ``resolve()`` gives each spider its Settings."""

    project_dir: Path
    path: Path | None = None
    file: Mapping[str, Any] = field(default_factory=empty_mapping)
    spider_tables: Mapping[str, Mapping[str, Any]] = field(default_factory=empty_mapping)
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    @property
    def display_path(self) -> str:
        if self.path is None:
            return SETTINGS_FILE
        return _display(self.path)

    def resolve(
        self,
        spider: type[Spider] | None = None,
        *,
        also_known: Collection[str] = (),
        lenient: bool = False,
    ) -> Settings:
        """The settings of ``spider`` (or of the project when it is None).

        Spider options are known to their spider only: the top level of
        settings.toml takes engine settings alone. Keys in ``also_known``
        (options of the other spiders of this run) are skipped in ``-s``
        layers instead of being unknown; with
        ``lenient`` every unknown key is skipped, which is how the CLI reads
        spider_modules and log_level before the spiders are imported.
        """
        specs = ENGINE_SPECS if spider is None else _spider_specs(spider)
        resolver = _Resolver(specs, also_known, lenient)
        if spider is not None:
            for key in spider.options:
                resolver.sources[key] = f"{spider.__name__}.options"
        for layer in self._layers(spider):
            resolver.apply(layer)
        options = () if spider is None else tuple(spider.options)
        return resolver.build(self.project_dir, options)

    def _layers(self, spider: type[Spider] | None) -> Iterator[_Layer]:
        display = self.display_path
        yield _Layer(display, f"in {display}", self.file, shared=True)
        if spider is not None:
            table = self.spider_tables.get(spider.name)
            if table is not None:
                label = f"{display} [spiders.{format_key(spider.name)}]"
                yield _Layer(label, f"in {label}", table, per_spider=True)
            if spider.custom_settings:
                label = f"{spider.__name__}.custom_settings"
                yield _Layer(label, f"in {label}", spider.custom_settings, per_spider=True)
        for label, table in self.overrides:
            yield _Layer(label, f"from {label}", table, command_line=True)

    def check_spider_tables(self, names: Collection[str]) -> None:
        """Refuse a ``[spiders.NAME]`` table that names no spider (most likely a typo)."""
        for name in self.spider_tables:
            if name not in names:
                message = f"{self.display_path} has a [spiders.{format_key(name)}] table"
                message += f" but no spider is named {name!r}"
                import difflib  # for this message only

                close = difflib.get_close_matches(name, list(names), n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
                raise SettingsError(message)


def _display(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


# -- reading ------------------------------------------------------------------


def find_settings_file(start: Path | None = None) -> Path | None:
    """settings.toml in ``start`` (default: the current directory) or its nearest parent."""
    directory = (start or Path.cwd()).resolve()
    for candidate in (directory, *directory.parents):
        path = candidate / SETTINGS_FILE
        if path.is_file():
            return path
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"Cannot read {_display(path)}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"Cannot parse {_display(path)}: {exc}") from None


def parse_override(text: str) -> dict[str, Any]:
    """One ``-s KEY=VALUE``: a TOML assignment, or KEY = the text as a string.

    ``-s 'domains."example.com".max_connections=2'`` and ``-s retry_http_codes=[500]``
    are TOML; ``-s user_agent=my bot`` is not, so the value is taken as text.
    """
    if "=" not in text or text.startswith("=") or "\n" in text:
        raise SettingsError(f"-s {text!r}: expected KEY=VALUE")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        pass
    # The key ends at the first "=" after which it parses (quoted keys may hold "=").
    start = 0
    while (cut := text.find("=", start)) >= 0:
        key, raw = text[:cut], text[cut + 1 :]
        try:
            table = tomllib.loads(f"{key} = 0")
        except tomllib.TOMLDecodeError:
            start = cut + 1
            continue
        inner = table
        while True:
            ((name, value),) = inner.items()
            if not isinstance(value, dict):
                inner[name] = raw.strip()
                return table
            inner = value
    key = text.partition("=")[0].strip()
    raise SettingsError(f"-s {text!r}: {key!r} is not a valid setting name")


def _merge(into: dict[str, Any], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def load_sources(
    settings_path: Path | str | None = None,
    overrides: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    extra_overrides: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> SettingsSources:
    """Read settings.toml (``settings_path``, else found from ``cwd`` upwards) and ``-s`` values.

    ``extra_overrides`` are later layers with their own label, such as
    ``("--log-level", {"log_level": "DEBUG"})``.
    """
    path: Path | None
    if settings_path is not None:
        path = Path(settings_path)
        if path.is_dir():
            path = path / SETTINGS_FILE
        if not path.is_file():
            raise SettingsError(f"Settings file {str(path)!r} does not exist")
        path = path.resolve()
    else:
        path = find_settings_file(cwd)
    file: dict[str, Any] = _read_toml(path) if path is not None else {}
    spider_tables = file.pop("spiders", {})
    where = f"in {_display(path) if path is not None else SETTINGS_FILE}"
    if not isinstance(spider_tables, dict) or not all(
        isinstance(t, dict) for t in spider_tables.values()
    ):
        raise SettingsError(f"Setting 'spiders' {where} must hold [spiders.NAME] tables")
    cli: dict[str, Any] = {}
    for text in overrides:
        _merge(cli, parse_override(text))
    layers: list[tuple[str, Mapping[str, Any]]] = [("-s", cli)] if cli else []
    layers.extend(extra_overrides)
    project_dir = path.parent if path is not None else (cwd or Path.cwd()).resolve()
    return SettingsSources(project_dir, path, file, spider_tables, tuple(layers))


def load_settings(
    settings_path: Path | str | None = None,
    overrides: Sequence[str] = (),
    *,
    spider: type[Spider] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read and resolve in one step: the settings of ``spider``, or of the project."""
    return load_sources(settings_path, overrides, cwd=cwd).resolve(spider)
