"""Typed settings: layers, messages, -s parsing, domains, environment, spider options."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler.settings import (
    ENGINE_SPECS,
    DomainSettings,
    Settings,
    SettingsError,
    SettingsSources,
    find_settings_file,
    load_settings,
    load_sources,
    parse_override,
)
from crawler.settings._docs import markdown
from crawler.spider import Spider

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages show settings.toml relative to the current directory."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


class MySpider(Spider):
    name = "myspider"
    custom_settings: ClassVar[dict[str, Any]] = {"retry_times": 5, "max_pages": 50}
    options: ClassVar[dict[str, Any]] = {"site_url": "http://default/", "max_books": 10}


class OtherSpider(Spider):
    name = "other"


# -- layers -------------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path) -> None:
    if find_settings_file(tmp_path) is not None:
        pytest.skip("a settings.toml above the temporary directory")
    settings = load_settings(cwd=tmp_path)
    assert settings == Settings(project_dir=tmp_path.resolve())
    assert settings.concurrency == 64
    assert settings.retry_http_codes == (429, 500, 502, 503, 504)
    assert settings.max_response_size == 64 * 1024 * 1024
    assert settings.spider_modules == ("spiders",)
    assert settings.source_of("concurrency") == "default"


def test_five_layers_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        concurrency = 2          # file only
        download_delay = 1.0     # file < spider table
        max_pages = 10           # file < spider table < custom_settings
        retry_times = 1          # every layer: -s wins

        [spiders.myspider]
        download_delay = 2.5
        max_pages = 20
        retry_times = 3
        """,
    )
    settings = load_settings(path, ["retry_times=9"], spider=MySpider)
    assert (settings.concurrency, settings.download_delay) == (2, 2.5)
    assert (settings.max_pages, settings.retry_times) == (50, 9)
    assert settings.read_timeout == 30.0
    assert settings.source_of("read_timeout") == "default"
    assert settings.source_of("concurrency") == "settings.toml"
    assert settings.source_of("download_delay") == "settings.toml [spiders.myspider]"
    assert settings.source_of("max_pages") == "MySpider.custom_settings"
    assert settings.source_of("retry_times") == "-s"
    assert settings.project_dir == tmp_path.resolve()


def test_spider_table_applies_to_its_spider_only(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, "[spiders.myspider]\nconcurrency = 3\n"))
    assert sources.resolve(MySpider).concurrency == 3
    assert sources.resolve(OtherSpider).concurrency == 64
    assert sources.resolve().concurrency == 64


def test_later_s_wins_and_tables_merge(tmp_path: Path) -> None:
    sources = load_sources(
        write(tmp_path, ""),
        [
            "concurrency=4",
            "concurrency=5",
            'domains."a.com".max_connections=2',
            'domains."a.com".download_delay=3',
        ],
    )
    settings = sources.resolve()
    assert settings.concurrency == 5
    assert settings.for_domain("a.com") == DomainSettings(2, 3.0)


def test_log_level_flag_comes_after_s(tmp_path: Path) -> None:
    sources = load_sources(
        write(tmp_path, 'log_level = "ERROR"'),
        ["log_level=WARNING"],
        extra_overrides=[("--log-level", {"log_level": "debug"})],
    )
    settings = sources.resolve()
    assert settings.log_level == "DEBUG"
    assert settings.source_of("log_level") == "--log-level"


# -- messages -----------------------------------------------------------------


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, "concurency = 3\n"))
    assert str(info.value) == (
        "Unknown setting 'concurency' in settings.toml (did you mean 'concurrency'?)"
    )


def test_unknown_key_without_a_near_one(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, "zzzz = 3\n"))
    assert str(info.value) == "Unknown setting 'zzzz' in settings.toml"


class ScrapySpider(Spider):
    name = "scrapyish"
    custom_settings: ClassVar[dict[str, Any]] = {"CLOSESPIDER_ITEMCOUNT": 10}


@pytest.mark.parametrize(
    ("text", "overrides", "spider", "message"),
    [
        (
            "DOWNLOAD_DELAY = 2\n",
            (),
            None,
            "Unknown setting 'DOWNLOAD_DELAY' in settings.toml: "
            "DOWNLOAD_DELAY is Scrapy's name: use download_delay",
        ),
        (
            "[spiders.myspider]\nCONCURRENT_REQUESTS_PER_DOMAIN = 2\n",
            (),
            MySpider,
            "Unknown setting 'CONCURRENT_REQUESTS_PER_DOMAIN' in settings.toml "
            "[spiders.myspider]: CONCURRENT_REQUESTS_PER_DOMAIN is Scrapy's name: "
            "use max_connections_per_host",
        ),
        (
            "",
            (),
            ScrapySpider,
            "Unknown setting 'CLOSESPIDER_ITEMCOUNT' in ScrapySpider.custom_settings: "
            "CLOSESPIDER_ITEMCOUNT is Scrapy's name: use max_items",
        ),
        (
            "",
            ("ROBOTSTXT_OBEY=false",),
            None,
            "Unknown setting 'ROBOTSTXT_OBEY' from -s: ROBOTSTXT_OBEY is Scrapy's name: "
            "use obey_robots",
        ),
        (
            "",
            ("HTTPCACHE_ENABLED=true",),
            MySpider,
            "Unknown setting 'HTTPCACHE_ENABLED' from -s: HTTPCACHE_ENABLED is Scrapy's name: "
            "use http_cache",
        ),
        (
            "ITEM_PIPELINES = {a = 300}\n",
            (),
            None,
            "Unknown setting 'ITEM_PIPELINES' in settings.toml: ITEM_PIPELINES is Scrapy's "
            "name: use pipelines (an array of names in the order items pass through, not a "
            "table of priorities)",
        ),
    ],
)
def test_scrapy_names_name_ours(
    tmp_path: Path,
    text: str,
    overrides: tuple[str, ...],
    spider: type[Spider] | None,
    message: str,
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text), list(overrides), spider=spider)
    assert str(info.value) == message


def test_every_scrapy_name_points_at_a_real_setting() -> None:
    """A renamed setting must not leave the table pointing at a name that is gone."""
    from crawler.settings._schema import SCRAPY_SETTINGS

    for scrapy, advice in SCRAPY_SETTINGS.items():
        assert scrapy == scrapy.upper() and scrapy not in ENGINE_SPECS
        if not advice.startswith("there "):
            assert advice.split()[0] in ENGINE_SPECS, scrapy


def test_unknown_domain_key_suggests(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, '[domains."a.com"]\nmax_conections = 1\n'))
    assert str(info.value) == (
        "Unknown setting 'domains.\"a.com\".max_conections' in settings.toml "
        "(did you mean 'domains.\"a.com\".max_connections'?)"
    )


def test_wrong_type_from_s(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, ""), ["concurrency=abc"])
    assert (
        str(info.value) == "Setting 'concurrency' from -s must be an integer, got 'abc' (a string)"
    )


def test_wrong_type_in_spider_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[spiders.myspider]\nconcurrency = "8"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path, spider=MySpider)
    assert str(info.value) == (
        "Setting 'concurrency' in settings.toml [spiders.myspider] must be an integer, "
        "got '8' (a string)"
    )


def test_wrong_type_in_custom_settings(tmp_path: Path) -> None:
    class Bad(Spider):
        name = "bad"
        custom_settings: ClassVar[dict[str, Any]] = {"obey_robots": 1}

    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, ""), spider=Bad)
    assert str(info.value) == (
        "Setting 'obey_robots' in Bad.custom_settings must be a boolean (true or false), "
        "got 1 (an integer)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("concurrency = 0", "Setting 'concurrency' in settings.toml must be >= 1, got 0"),
        ("concurrency = true", "must be an integer, got true (a boolean)"),
        ("concurrency = 1.5", "must be an integer, got 1.5 (a float)"),
        ("download_delay = -1", "Setting 'download_delay' in settings.toml must be >= 0"),
        ("download_delay_jitter = 1.5", "must be <= 1"),
        ("retry_http_codes = [500, 99]", "must hold values from 100 to 599, not 99"),
        ("retry_http_codes = 500", "must be an array of integers, got 500 (an integer)"),
        ('pipelines = ["a", 1]', "must be an array of strings, got ['a', 1] (an array)"),
        ('log_level = "LOUD"', "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ('domains = "x"', "Setting 'domains' in settings.toml must be a table of tables"),
        ("[domains]\nx = 1", "Setting 'domains.x' in settings.toml must be a table"),
        ('[domains."a.com"]\nmax_connections = 0', "must be >= 1"),
        ("spiders = 3", "must hold [spiders.NAME] tables"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=r"^Setting") as info:
        load_settings(write(tmp_path, text))
    assert message in str(info.value)


def test_string_expected_from_s_says_how_to_quote(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, ""), ["user_agent=123"])
    assert "got 123 (an integer) (quote it: -s 'user_agent=\"123\"')" in str(info.value)


def test_numbers_widen_to_float_and_levels_normalise(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, 'download_delay = 2\nlog_level = "warning"\n'))
    assert settings.download_delay == 2.0
    assert isinstance(settings.download_delay, float)
    assert settings.log_level == "WARNING"


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, "concurrency = 1\nthis is not toml\n"))
    message = str(info.value)
    assert message.startswith("Cannot parse ")
    assert "settings.toml" in message
    assert "line 2" in message


def test_missing_settings_path(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_project_wide_setting_refused_per_spider(tmp_path: Path) -> None:
    path = write(tmp_path, '[spiders.myspider]\nspider_modules = ["x"]\n')
    with pytest.raises(SettingsError, match="applies to the whole project"):
        load_settings(path, spider=MySpider)


def test_spider_table_naming_no_spider(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, "[spiders.myspidr]\nconcurrency = 1\n"))
    sources.check_spider_tables(["myspidr"])
    with pytest.raises(SettingsError) as info:
        sources.check_spider_tables(["myspider", "other"])
    assert str(info.value) == (
        "settings.toml has a [spiders.myspidr] table but no spider is named 'myspidr' "
        "(did you mean 'myspider'?)"
    )


# -- -s parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concurrency=8", {"concurrency": 8}),
        ("download_delay=0.25", {"download_delay": 0.25}),
        ("obey_robots=false", {"obey_robots": False}),
        ("retry_http_codes=[500,503]", {"retry_http_codes": [500, 503]}),
        ('user_agent="quoted bot"', {"user_agent": "quoted bot"}),
        ("user_agent=foo", {"user_agent": "foo"}),
        ("user_agent=Mozilla/5.0 (X11)", {"user_agent": "Mozilla/5.0 (X11)"}),
        ("user_agent=", {"user_agent": ""}),
        ("site_url=http://127.0.0.1:8000/a?b=c", {"site_url": "http://127.0.0.1:8000/a?b=c"}),
        (
            'domains."example.com".max_connections=2',
            {"domains": {"example.com": {"max_connections": 2}}},
        ),
        (
            "pipeline.jsonl.path=out/items.jsonl",
            {"pipeline": {"jsonl": {"path": "out/items.jsonl"}}},
        ),
        (" concurrency = 3 ", {"concurrency": 3}),
        ('pipeline."a=b".path=x y', {"pipeline": {"a=b": {"path": "x y"}}}),
    ],
)
def test_parse_override(text: str, expected: dict[str, Any]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("concurrency", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("bad key=3", "'bad key' is not a valid setting name"),
    ],
)
def test_parse_override_errors(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_override(text)
    assert message in str(info.value)


def test_s_arrays_become_tuples(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), ["retry_http_codes=[500,503]", "pipelines=[]"])
    assert settings.retry_http_codes == (500, 503)
    assert settings.pipelines == ()


# -- domains ------------------------------------------------------------------


def test_domain_lookup_exact_then_parents_then_global(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        max_connections_per_host = 6
        download_delay = 0.5

        [domains."example.com"]
        max_connections = 2
        download_delay = 3

        [domains."Fast.Example.com"]
        download_delay = 0
        """,
    )
    settings = load_settings(path)
    assert settings.for_domain("example.com") == DomainSettings(2, 3.0)
    assert settings.for_domain("www.example.com") == DomainSettings(2, 3.0)
    # Each key from the nearest table that sets it.
    assert settings.for_domain("fast.example.com") == DomainSettings(2, 0.0)
    assert settings.for_domain("a.FAST.example.com.") == DomainSettings(2, 0.0)
    assert settings.for_domain("notexample.com") == DomainSettings(6, 0.5)
    assert settings.for_domain("example.org") == DomainSettings(6, 0.5)
    assert settings.source_of('domains."example.com".max_connections') == "settings.toml"
    assert settings.source_of('domains."fast.example.com".download_delay') == "settings.toml"


def test_ip_addresses_match_only_themselves() -> None:
    settings = Settings(domains={"0.1": {"max_connections": 1}, "127.0.0.1": {"download_delay": 2}})
    assert settings.for_domain("127.0.0.1") == DomainSettings(8, 2.0)
    assert settings.for_domain("10.0.0.1") == DomainSettings(8, 0.0)
    assert settings.for_domain("[::1]") == DomainSettings(8, 0.0)


def test_domain_tables_per_spider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[domains."a.com"]\nmax_connections = 4\n'
        '[spiders.myspider.domains."a.com"]\ndownload_delay = 1\n',
    )
    sources = load_sources(path)
    assert sources.resolve(MySpider).for_domain("a.com") == DomainSettings(4, 1.0)
    assert sources.resolve(OtherSpider).for_domain("a.com") == DomainSettings(4, 0.0)


# -- environment ----------------------------------------------------------------


def test_env_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWL_TEST_AGENT", "bot/2")
    monkeypatch.setenv("CRAWL_TEST_CONC", "12")
    monkeypatch.setenv("CRAWL_TEST_TOKEN", "s3cret")
    path = write(
        tmp_path,
        """
        user_agent = "${CRAWL_TEST_AGENT} (+$${NOT_EXPANDED})"
        concurrency = "${CRAWL_TEST_CONC}"
        [pipeline.upload]
        headers = { Authorization = "Bearer ${CRAWL_TEST_TOKEN}" }
        """,
    )
    settings = load_settings(path)
    assert settings.user_agent == "bot/2 (+${NOT_EXPANDED})"
    assert settings.concurrency == 12
    assert settings.pipeline_options("upload") == {"headers": {"Authorization": "Bearer s3cret"}}


def test_env_unset_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRAWL_TEST_UNSET", raising=False)
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, 'user_agent = "x ${CRAWL_TEST_UNSET}"'))
    assert str(info.value) == (
        "Setting 'user_agent' in settings.toml refers to environment variable "
        "'CRAWL_TEST_UNSET', which is not set"
    )


def test_env_value_of_the_wrong_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWL_TEST_CONC", "many")
    with pytest.raises(SettingsError, match="must be an integer, got 'many'"):
        load_settings(write(tmp_path, 'concurrency = "${CRAWL_TEST_CONC}"'))


# -- spider options -------------------------------------------------------------


def test_spider_options_defaults_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[spiders.myspider]\nsite_url = "http://table/"\n')
    sources = load_sources(path, ["max_books=3"])
    settings = sources.resolve(MySpider)
    assert settings["site_url"] == "http://table/"
    assert settings["max_books"] == 3
    assert settings["concurrency"] == 64
    assert settings.source_of("site_url") == "settings.toml [spiders.myspider]"
    assert settings.source_of("max_books") == "-s"
    assert "site_url" in settings
    assert settings.get("missing", "x") == "x"
    with pytest.raises(KeyError):
        settings["missing"]


def test_option_defaults_source() -> None:
    settings = SettingsSources(Path(".")).resolve(MySpider)
    assert settings["site_url"] == "http://default/"
    assert settings.source_of("site_url") == "MySpider.options"


def test_options_are_typed_by_their_default(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, ""), ["max_books=many"], spider=MySpider)
    assert (
        str(info.value) == "Setting 'max_books' from -s must be an integer, got 'many' (a string)"
    )


def test_options_known_only_for_their_spider(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, ""), ["site_url=http://x/"])
    assert sources.resolve(MySpider)["site_url"] == "http://x/"
    with pytest.raises(SettingsError, match="Unknown setting 'site_url' from -s"):
        sources.resolve(OtherSpider)
    # Running both: the option goes to the spider that declares it.
    other = sources.resolve(OtherSpider, also_known={"site_url"})
    assert "site_url" not in other


def test_options_not_at_the_top_of_the_file(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, 'site_url = "x"'))
    with pytest.raises(SettingsError) as info:
        sources.resolve(MySpider)
    assert str(info.value) == (
        "Setting 'site_url' in settings.toml is an option of one spider: set it in its "
        "[spiders.NAME] table, its custom_settings or with -s"
    )
    with pytest.raises(SettingsError, match=r"Unknown setting 'site_url' in settings\.toml"):
        sources.resolve(OtherSpider)


def test_option_in_another_spiders_table_is_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, '[spiders.other]\nsite_ur = "x"\n')
    with pytest.raises(SettingsError) as info:
        load_sources(path).resolve(OtherSpider, also_known={"site_url"})
    assert str(info.value) == "Unknown setting 'site_ur' in settings.toml [spiders.other]"


def test_option_named_like_an_engine_setting() -> None:
    class Clash(Spider):
        name = "clash"
        options: ClassVar[dict[str, Any]] = {"concurrency": 3}

    with pytest.raises(SettingsError, match="declares option 'concurrency'"):
        SettingsSources(Path(".")).resolve(Clash)


def test_none_default_accepts_anything(tmp_path: Path) -> None:
    class Loose(Spider):
        name = "loose"
        options: ClassVar[dict[str, Any]] = {"extra": None}

    assert load_settings(write(tmp_path, ""), ["extra=[1,2]"], spider=Loose)["extra"] == [1, 2]


# -- the object -------------------------------------------------------------------


def test_pipeline_options_merge_and_copy(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'pipelines = ["jsonl"]\n[pipeline.jsonl]\npath = "a.jsonl"\nindent = 2\n'
    )
    settings = load_settings(path, ["pipeline.jsonl.path=b.jsonl"])
    options = settings.pipeline_options("jsonl")
    assert options == {"path": "b.jsonl", "indent": 2}
    options["path"] = "changed"
    assert settings.pipeline_options("jsonl")["path"] == "b.jsonl"
    assert settings.pipeline_options("csv") == {}
    assert settings.source_of("pipeline.jsonl.path") == "-s"
    assert settings.source_of("pipeline.jsonl.indent") == "settings.toml"


def test_to_dict_is_plain_data(tmp_path: Path) -> None:
    path = write(tmp_path, '[domains."a.com"]\nmax_connections = 1\n[pipeline.x]\ny = 1\n')
    data = load_settings(path, ["site_url=u"], spider=MySpider).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["retry_http_codes"] == [429, 500, 502, 503, 504]
    assert data["domains"] == {"a.com": {"max_connections": 1}}
    assert data["pipeline"] == {"x": {"y": 1}}
    assert data["site_url"] == "u"
    assert set(ENGINE_SPECS) <= set(data)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.concurrency = 3  # type: ignore[misc]


def test_timeout_and_limits() -> None:
    settings = Settings(connect_timeout=0, read_timeout=2.0, max_connections_per_host=3)
    timeout = settings.timeout()
    assert timeout.as_tuple() == (None, 2.0, 30.0, 60.0)
    limits = settings.limits()
    assert (limits.max_connections, limits.max_connections_per_host) == (100, 3)


def test_find_settings_file_walks_up(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_settings_file(nested) == path.resolve()
    settings = load_settings(cwd=nested)
    assert settings.project_dir == tmp_path.resolve()


def test_settings_path_may_be_a_directory(tmp_path: Path) -> None:
    write(tmp_path, "concurrency = 7")
    assert load_settings(tmp_path).concurrency == 7


# -- shipped files ------------------------------------------------------------------


def test_docs_are_generated_from_the_schema() -> None:
    shipped = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert shipped == markdown(), (
        "run: python -m crawler.settings._docs --markdown > docs/settings.md"
    )


def test_shipped_settings_toml_documents_every_key() -> None:
    text = (ROOT / "settings.toml").read_text(encoding="utf-8")
    tomllib.loads(text)
    lines = text.splitlines()
    for name in ENGINE_SPECS:
        index = next(
            (i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{name} =")), None
        )
        assert index is not None, f"{name} is missing from settings.toml"
        assert lines[index - 1].startswith("# "), f"{name} has no comment above it"
    load_settings(ROOT / "settings.toml")
