"""`family_for(name)`: a model family's object, its module imported by name on first use (keeps rooms acyclic)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ioncannon.job.families import UnknownFamily, family_info

if TYPE_CHECKING:
    from ioncannon.engine.families.base import Family

_LOADED: dict[str, Family] = {}


def family_for(name: str) -> Family:
    """The family called `name` (sd15, sdxl, flux); UnknownFamily when this version cannot run it."""
    if name not in _LOADED:
        info = family_info(name)
        module_name = f"ioncannon.engine.families.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise UnknownFamily(f"{info.label} is not available in this version of ioncannon; pick another model "
                                "family.") from None
        _LOADED[name] = module.FAMILY
    return _LOADED[name]
