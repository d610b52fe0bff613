"""docs/settings.md and the settings.toml template, written from the declarations.

Generated rather than hand-kept so that the reference cannot drift from the
code; a test compares docs/settings.md with ``markdown()``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from ._model import DOMAIN_SPECS, ENGINE_SPECS, MiB
from ._schema import SCRAPY_SETTINGS, Spec, format_key

__all__ = ["main", "markdown", "toml_template", "toml_value"]

_TYPE_NAMES: dict[Any, str] = {
    int: "integer",
    float: "number",
    bool: "boolean",
    str: "string",
    tuple[int, ...]: "array of integers",
    tuple[str, ...]: "array of strings",
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{format_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def _limits(spec: Spec) -> str:
    parts = []
    if spec.minimum is not None and spec.maximum is not None:
        parts.append(f"{spec.minimum:g} to {spec.maximum:g}")
    elif spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.choices:
        parts.append("one of " + ", ".join(f"`{c}`" for c in spec.choices))
    if spec.item_range is not None:
        parts.append("each from {} to {}".format(*spec.item_range))
    if spec.project_wide:
        parts.append("project-wide (not per spider)")
    return "; ".join(parts)


def _default_note(spec: Spec) -> str:
    if spec.name == "max_response_size":
        return f" ({spec.default // MiB} MiB)"
    return ""


_INTRO = """\
# Settings

Settings are read once, at start-up, and checked there: an unknown key is an
error that suggests the nearest known one, a value of the wrong type or out of
range is an error naming the key and where the value came from.

## Where values come from

Later layers win:

1. the built-in defaults listed below;
2. `settings.toml`: the file given with `--settings PATH`, else the first
   `settings.toml` found in the current directory or its parents (without one,
   the defaults apply and `spiders/` in the current directory is searched);
3. the `[spiders.NAME]` table of `settings.toml`, for the spider `NAME` only;
4. the spider class's `custom_settings` dict;
5. `-s KEY=VALUE` on the command line (repeatable); `--log-level` comes last.

`crawl settings NAME` prints the resolved settings of a spider and where each
value came from.

## `-s KEY=VALUE`

The whole argument is read as one TOML assignment, so values have TOML types
and keys may be dotted:

```
crawl books -s concurrency=16 -s retry_http_codes=[500,503]
crawl books -s 'domains."example.com".max_connections=2'
crawl books -s user_agent=mybot      # not valid TOML: taken as the string "mybot"
crawl books -s 'user_agent="123"'    # quotes make a string of a number
```

## Environment variables

`${NAME}` inside a string is replaced by the environment variable `NAME`
(an error names the setting when it is unset); `$${NAME}` stays literal. A
value that is exactly `"${NAME}"` for a setting that is not a string is read as
a TOML value, so `concurrency = "${CONCURRENCY}"` gives an integer.

## Spider options

A spider declares its own settings in `options` with their defaults:

```python
class Books(Spider):
    name = "books"
    options = {"site_url": "http://127.0.0.1:8000/", "max_books": 100}
```

They are then known keys for that spider only, typed by their default (a
`None` default accepts any value): set them in `[spiders.books]`, in
`custom_settings` or with `-s site_url=...` (not at the top level of
`settings.toml`, which holds the settings shared by every spider), and read
them as `self.settings["site_url"]`. When several spiders run at once, a `-s`
option applies to those that declare it.

## Engine settings

| setting | type | default | limits |
|---|---|---|---|
"""


def markdown() -> str:
    lines = [_INTRO.rstrip("\n")]
    for spec in ENGINE_SPECS.values():
        lines.append(
            f"| [`{spec.name}`](#{spec.name}) | {_TYPE_NAMES[spec.hint]} | "
            f"`{toml_value(spec.default)}`{_default_note(spec)} | {_limits(spec)} |"
        )
    lines.append("")
    for spec in ENGINE_SPECS.values():
        lines += [f"### {spec.name}", "", spec.doc, ""]
        lines.append(f"Type: {_TYPE_NAMES[spec.hint]}. Default: `{toml_value(spec.default)}`.")
        lines.append("")
    lines += [
        "## Tables",
        "",
        '### `[domains."HOST"]`',
        "",
        "Politeness for one host. A host uses its own table, then those of its parent",
        'domains: `www.example.com` also uses `[domains."example.com"]`. Each key is',
        "taken from the nearest table that sets it, else from the global setting.",
        "",
    ]
    for spec in DOMAIN_SPECS.values():
        lines.append(f"- `{spec.name}` ({_TYPE_NAMES[spec.hint]}, {_limits(spec)}): {spec.doc}")
    lines += [
        "",
        "### `[pipeline.NAME]`",
        "",
        "Options of the pipeline `NAME`, free-form; each pipeline documents its own.",
        'Example: `[pipeline.jsonl] path = "items.jsonl"`.',
        "",
        "### `[spiders.NAME]`",
        "",
        "Settings for the spider `NAME` only: any engine setting that is not",
        "project-wide, its own options, and `domains` / `pipeline` tables. A table",
        "naming no known spider is an error.",
        "",
        *_scrapy_section(),
    ]
    return "\n".join(lines)


def _scrapy_section() -> list[str]:
    """Scrapy's names, from the same table that the error for each of them quotes."""
    lines = [
        "## Scrapy's setting names",
        "",
        "A Scrapy setting name anywhere a setting is read (settings.toml, `[spiders.NAME]`,",
        "`custom_settings`, `-s`) is an error that names the setting to use instead, or",
        "says there is none and what to do:",
        "",
        "| Scrapy | here |",
        "|---|---|",
    ]
    for name, advice in sorted(SCRAPY_SETTINGS.items()):
        if not advice.startswith("there "):
            ours, _, rest = advice.partition(" ")
            advice = f"`{ours}` {rest}".rstrip()
        lines.append(f"| `{name}` | {advice} |")
    lines.append("")
    return lines


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, 86)]


def toml_template() -> str:
    lines = [
        "# Settings of this crawl project; docs/settings.md explains each one.",
        "# Every setting is listed with its default, commented out: uncomment to change it.",
        "# Precedence: defaults < this file < [spiders.NAME] < custom_settings < -s KEY=VALUE.",
        '# "${NAME}" in a string is replaced by the environment variable NAME.',
        "",
    ]
    for spec in ENGINE_SPECS.values():
        doc = spec.doc.replace("`", "")
        limits = _limits(spec)
        lines += _comment(f"{doc} ({limits})" if limits else doc)
        lines.append(f"# {spec.name} = {toml_value(spec.default)}{_default_note(spec)}")
        lines.append("")
    lines += [
        *_comment(
            "Politeness for one host and its subdomains: max_connections (default "
            "max_connections_per_host) and download_delay (default download_delay); "
            'its proxy ("" for none; default: the proxy setting).'
        ),
        '# [domains."example.com"]',
        "# max_connections = 2",
        "# download_delay = 1.0",
        "",
        *_comment("Options of each pipeline named in pipelines."),
        "# [pipeline.jsonl]",
        '# path = "items.jsonl"',
        "",
        *_comment("Settings and options for one spider only."),
        "# [spiders.myspider]",
        "# concurrency = 8",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crawler.settings._docs", description="Print the settings reference."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="docs/settings.md")
    group.add_argument("--toml", action="store_true", help="a commented settings.toml")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown() if args.markdown else toml_template())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
