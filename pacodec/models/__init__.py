"""Registered models. Families register themselves on import (see ``base.REGISTRY``)."""

from __future__ import annotations

from .base import REGISTRY, CodecModel, ModelSpec, build_model

_FAMILIES = ("conv", "pac", "fc", "vae")


def _load_families() -> None:
    import importlib

    for name in _FAMILIES:
        importlib.import_module(f"{__name__}.{name}")


def registered_ids() -> list[str]:
    _load_families()
    return list(REGISTRY)


__all__ = ["REGISTRY", "CodecModel", "ModelSpec", "build_model", "registered_ids"]
