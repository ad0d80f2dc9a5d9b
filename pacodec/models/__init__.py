"""Registered models. Families register themselves on import (see ``base.REGISTRY``).

A family is found, not listed: every module of this package (other than ``base``)
is imported, and so is every module that an installed distribution names under the
``pacodec.models`` entry-point group (a family kept outside pacodec). A module
registers its ids with ``base.register(ModelSpec(...))`` when imported; README.md,
"Adding a model family", says what one holds.
"""

from __future__ import annotations

from .base import REGISTRY, CodecModel, ModelSpec, build_model

#: Entry-point group of model families in other distributions.
ENTRY_POINT_GROUP = "pacodec.models"
_loaded = False


def family_modules() -> list[str]:
    """The modules that hold model families: this package's, then installed plug-ins."""
    import pkgutil
    from importlib.metadata import entry_points

    ours = sorted(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)
                  if m.name != "base" and not m.name.startswith("_"))
    return ours + [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    import importlib

    from ..errors import WeightsError

    for name in family_modules():
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a broken plug-in names itself, not a traceback
            raise WeightsError(f"model family {name}: cannot import ({exc})") from None
    _loaded = True


def registered_ids() -> list[str]:
    _load_families()
    return list(REGISTRY)


__all__ = ["REGISTRY", "CodecModel", "ModelSpec", "build_model", "registered_ids", "family_modules",
           "ENTRY_POINT_GROUP"]
