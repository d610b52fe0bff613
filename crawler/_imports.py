"""Objects named in settings by import path: ``"module:Name"`` or ``"module.Name"``."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportPathError", "import_object"]


class ImportPathError(LookupError):
    """What was wrong with an import path, in words to put after the setting's name.

    ``not_a_path`` is set when the text is no ``module:Name`` at all (so a caller
    may say what else it could have been: a built-in pipeline's name, say)."""

    def __init__(self, message: str, *, not_a_path: bool = False) -> None:
        super().__init__(message)
        self.not_a_path = not_a_path


def import_object(spec: str) -> Any:
    """The object ``spec`` names; ImportPathError says why there is none."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ImportPathError(
            "name it by import path, 'module:ClassName' or 'module.ClassName'", not_a_path=True
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportPathError(f"cannot import module {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportPathError(f"module {module_name!r} has no attribute {attr!r}") from None
