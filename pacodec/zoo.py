"""Weights as data with an identity: find by id, verify sha256, load safetensors.

``pacodec/weights/manifest.json`` (package data: it installs with the package) lists every shipped model: id, file, sha256, architecture
config, training data and epochs, the command that retrains it, and measured figures.
A directory passed as ``weights_dir`` (e.g. a training run's output) is searched
first, through its own ``manifest.json`` or a ``<id>.safetensors`` file. Nothing is
ever unpickled: safetensors stores tensors and a string-to-string metadata map.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from .errors import WeightsError
from .models import CodecModel, build_model
from .models.base import REGISTRY

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class WeightsEntry:
    model_id: str
    path: Path
    sha256: str
    entry: dict[str, Any]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> list[dict[str, Any]]:
    path = directory / MANIFEST
    if not path.is_file():
        return []
    try:
        models = json.loads(path.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: unreadable manifest ({exc})") from None
    return list(models)


def write_manifest_entry(directory: Path, entry: dict[str, Any]) -> None:
    """Add or replace the entry for ``entry['id']`` in ``directory/manifest.json``."""
    models = [m for m in read_manifest(directory) if m.get("id") != entry["id"]]
    models.append(entry)
    models.sort(key=lambda m: m["id"])
    (directory / MANIFEST).write_text(json.dumps({"models": models}, indent=2) + "\n")


#: A folder of weights searched before the shipped set when no ``weights_dir`` is given.
WEIGHTS_ENV = "PACODEC_WEIGHTS"


def find(model_id: str, weights_dir: Path | None = None) -> WeightsEntry | None:
    """The weights file of a model id, from ``weights_dir`` (else ``$PACODEC_WEIGHTS``)
    first, then the shipped set that installs with the package.

    An id that uses another id's network (``ModelSpec.weights_of``, e.g. pac-q3 from
    "pac") is found under its own manifest entry or, failing that, the network's.
    """
    if weights_dir is None and os.environ.get(WEIGHTS_ENV):
        weights_dir = Path(os.environ[WEIGHTS_ENV])
        if not weights_dir.is_dir():
            raise WeightsError(f"{WEIGHTS_ENV}={weights_dir}: not a folder")
    names = [model_id]
    if model_id in REGISTRY and REGISTRY[model_id].weights_of:
        names.append(REGISTRY[model_id].weights_of)
    for directory in ([Path(weights_dir)] if weights_dir else []) + [SHIPPED_DIR]:
        entries = {e.get("id"): e for e in read_manifest(directory)}
        for name in names:
            if name in entries:
                entry = entries[name]
                return WeightsEntry(model_id, directory / entry["file"], entry["sha256"], entry)
        if weights_dir and directory == Path(weights_dir):
            for name in names:
                loose = directory / f"{name}.safetensors"
                if loose.is_file():
                    return WeightsEntry(model_id, loose, sha256_of(loose), {})
    return None


def serialize(model: CodecModel, *, half_precision: bool = False) -> bytes:
    """A model's weights and config as safetensors bytes."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half_precision:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"model_id": model.model_id, "config": json.dumps(model.config_dict())}
    return save_safetensors_bytes(state, metadata=meta)


def save(model: CodecModel, path: Path, *, half_precision: bool = False) -> str:
    """Write weights to ``path``; return their sha256 (hex)."""
    data = serialize(model, half_precision=half_precision)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors: u64 header length, then a JSON header whose "__metadata__" we read.
    if len(data) < 8:
        raise ValueError("too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length beyond the file")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {})


def load_bytes(data: bytes, *, expected_id: str | None = None, name: str = "weights") -> CodecModel:
    """Build a model from safetensors bytes carrying their own id and config."""
    try:
        meta = _metadata(data)
        model_id = meta["model_id"]
        config = json.loads(meta["config"])
        state = load_safetensors_bytes(data)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{name}: not a pacodec safetensors file ({exc})") from None
    build_id = model_id
    if expected_id is not None and model_id != expected_id:
        spec = spec_of(expected_id)
        if spec.weights_of != model_id:
            raise WeightsError(f"{name}: holds {model_id!r}, expected {expected_id!r}")
        build_id = expected_id  # e.g. pac-q3 built from the shared "pac" weights
    model = build_model(build_id, config)
    want = model.state_dict()
    state = {k: v.to(want[k].dtype) if k in want else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{name}: weights do not fit {model_id} ({first})") from None
    model.eval()
    return model


def load(
    model_id: str,
    weights_dir: Path | None = None,
    *,
    expect_sha256: str | None = None,
    device: str = "cpu",
) -> tuple[CodecModel, str]:
    """Load a registered model's weights after checking their sha256.

    Returns the model (eval mode) and the sha256 of its weights file (hex). Raises
    WeightsError for an unknown id, missing weights, a file whose hash differs from the
    manifest, or (with ``expect_sha256``) from what a ``.pcz`` header names.
    """
    from .models import registered_ids

    if model_id not in registered_ids():
        raise unknown_id(model_id)
    found = find(model_id, weights_dir)
    if found is None:
        raise WeightsError(f"no weights for {model_id!r} (train them or pass --weights DIR)")
    try:
        data = found.path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{found.path}: cannot read weights ({exc.strerror})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != found.sha256:
        raise WeightsError(f"{found.path}: sha256 {actual[:16]}… differs from its manifest")
    if expect_sha256 is not None and actual != expect_sha256:
        raise WeightsError(
            f"weights of {model_id} have sha256 {actual[:16]}…, the file was made with "
            f"{expect_sha256[:16]}… (pass --weights with the matching weights)"
        )
    model = load_bytes(data, expected_id=model_id, name=str(found.path))
    return model.to(device), actual


def spec_of(model_id: str):
    from .models import registered_ids

    if model_id not in registered_ids():
        raise unknown_id(model_id)
    return REGISTRY[model_id]


def unknown_id(model_id: str) -> WeightsError:
    """The error for an id nobody registered, listing the ids a user can name."""
    from .models import registered_ids

    def natural(name: str) -> list:  # pac-q2 before pac-q10
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    known = ", ".join(sorted((i for i in registered_ids() if not REGISTRY[i].internal), key=natural))
    return WeightsError(f"unknown model id {model_id!r} (known: {known})")


__all__ = ["find", "load", "save", "serialize", "load_bytes", "sha256_of", "read_manifest",
           "write_manifest_entry", "SHIPPED_DIR", "WeightsEntry"]
