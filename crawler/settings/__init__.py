"""Typed settings: built-in defaults < settings.toml < [spiders.NAME] < custom_settings < -s.

The engine gets one frozen ``Settings`` per spider whose attributes already
have their final types; ``load_sources()`` reads the layers once and
``SettingsSources.resolve(spider)`` applies them, checking every value on the
way so that an error names the key and where it came from.

``python -m crawler.settings._docs --markdown`` writes docs/settings.md and
``--toml`` the commented settings.toml template, both from the declarations
in ``_settings_model``.
"""

from ._layers import SettingsSources as SettingsSources
from ._layers import find_settings_file as find_settings_file
from ._layers import load_settings as load_settings
from ._layers import load_sources as load_sources
from ._layers import parse_override as parse_override
from ._model import ENGINE_SPECS as ENGINE_SPECS
from ._model import SETTINGS_FILE as SETTINGS_FILE
from ._model import DomainSettings as DomainSettings
from ._model import Settings as Settings
from ._schema import SettingsError as SettingsError

__all__ = [
    "ENGINE_SPECS",
    "SETTINGS_FILE",
    "DomainSettings",
    "Settings",
    "SettingsError",
    "SettingsSources",
    "find_settings_file",
    "load_settings",
    "load_sources",
    "parse_override",
]

if __name__ == "__main__":
    # Also ``python -m crawler.settings._docs``, which the package does not
    # import first and so runs without runpy's warning.
    from ._docs import main

    raise SystemExit(main())
