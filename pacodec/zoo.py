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

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from .errors import WeightsError
from .device import available_devices, check_device  # noqa: F401 (re-exported: zoo.check_device)
from .inputs import open_regular
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
    with open_regular(path, error=WeightsError, what="a weights file") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> list[dict[str, Any]]:
    """The entries of ``directory/manifest.json`` (none if there is no manifest), each
    checked against the shape below; anything else is a WeightsError naming the file."""
    path = directory / MANIFEST
    if not path.is_file():
        return []
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: unreadable manifest ({exc})") from None
    return _checked_manifest(path, document)


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _checked_manifest(path: Path, document: Any) -> list[dict[str, Any]]:
    """The manifest's shape: ``{"models": [entry, ...]}``, each entry an object with
    ``id`` (text), ``file`` (a relative path inside the manifest's folder), ``sha256``
    (64 lowercase hex digits) and, where present, ``config``, ``training`` and
    ``measured`` objects (``measured.psnr`` and ``.bytes_per_frame`` numbers, as
    ``pacodec models`` prints them). Other keys are free.

    Written out rather than with a JSON-schema library: a handful of fields does not
    warrant a dependency, and the messages can say which entry and field is wrong.
    """
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise WeightsError(f'{path}: a manifest is {{"models": [...]}}, a list of entries')
    entries = document["models"]
    for k, entry in enumerate(entries):
        where = f"{path}: models[{k}]"
        if not isinstance(entry, dict):
            raise WeightsError(f"{where}: an entry is an object, got {type(entry).__name__}")
        for key in ("id", "file", "sha256"):
            if not isinstance(entry.get(key), str):
                raise WeightsError(f"{where}: {key!r} must be text, got {entry.get(key)!r}")
        where = f"{path}: model {entry['id']!r}"
        file = entry["file"]
        # The manifest names files beside it: an absolute path or ".." could make the
        # loader read any file of the system (a device such as /dev/zero never ends).
        if not file or "\x00" in file or Path(file).is_absolute() or ".." in Path(file).parts:
            raise WeightsError(f"{where}: 'file' must name a file in the manifest's folder, got {file!r}")
        if not _SHA256_HEX.fullmatch(entry["sha256"]):
            raise WeightsError(f"{where}: 'sha256' must be 64 lowercase hex digits")
        for key in ("config", "training", "measured"):
            if key in entry and not isinstance(entry[key], dict):
                raise WeightsError(f"{where}: {key!r} must be an object")
        if not isinstance(entry.get("superseded", False), bool):
            raise WeightsError(f"{where}: 'superseded' must be true or false")
        for key in ("psnr", "bytes_per_frame"):
            value = entry.get("measured", {}).get(key, 0.0)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise WeightsError(f"{where}: 'measured.{key}' must be a number")
        if entry.get("measured", {}).get("psnr") is not None and "bytes_per_frame" not in entry["measured"]:
            raise WeightsError(f"{where}: 'measured' gives a psnr without its bytes_per_frame")
    return list(entries)


def write_manifest_entry(directory: Path, entry: dict[str, Any]) -> None:
    """Add or replace the current entry for ``entry['id']`` in ``directory/manifest.json``
    (its superseded entries stay)."""
    models = [m for m in read_manifest(directory) if m.get("id") != entry["id"] or m.get("superseded")]
    models.append(entry)
    models.sort(key=lambda m: (m["id"], bool(m.get("superseded"))))
    (directory / MANIFEST).write_text(json.dumps({"models": models}, indent=2) + "\n")


def supersede(directory: Path, model_ids: list[str], new_sha256: str) -> list[str]:
    """Before new weights replace the current ones of ``model_ids`` in ``directory``:
    keep each current weights file whose sha256 differs from ``new_sha256`` under a name
    of its own (``<stem>-<sha256[:12]>.safetensors``) with an entry marked
    ``"superseded": true``, so files written with them still decode (a .pcz names its
    weights by sha256; ``find`` takes a superseded entry only when asked for its
    sha256). Returns the ids whose weights were kept this way."""
    import shutil

    kept = []
    for entry in read_manifest(directory):
        if entry["id"] not in model_ids or entry.get("superseded") or entry["sha256"] == new_sha256:
            continue
        old = directory / entry["file"]
        name = f"{Path(entry['file']).stem}-{entry['sha256'][:12]}.safetensors"
        if not (directory / name).exists():
            shutil.copyfile(old, directory / name)
        write_manifest_entry(directory, {**entry, "file": name, "superseded": True})
        kept.append(entry["id"])
    return kept


#: A folder of weights searched before the shipped set when no ``weights_dir`` is given.
WEIGHTS_ENV = "PACODEC_WEIGHTS"


def find(model_id: str, weights_dir: Path | None = None, sha256: str | None = None) -> WeightsEntry | None:
    """The weights file of a model id, from ``weights_dir`` (else ``$PACODEC_WEIGHTS``)
    first, then the shipped set that installs with the package.

    An id that uses another id's network (``ModelSpec.weights_of``, e.g. pac-q3 from
    "pac") is found under its own manifest entry or, failing that, the network's.
    With ``sha256`` (what a .pcz header names) an entry of the id with exactly those
    weights is taken first, in any folder, superseded entries included: a file written
    before its weights were retrained still finds the weights it was made with.
    Otherwise, and when none has them, the id's current entry.
    """
    if weights_dir is None and os.environ.get(WEIGHTS_ENV):
        weights_dir = Path(os.environ[WEIGHTS_ENV])
        if not weights_dir.is_dir():
            raise WeightsError(f"{WEIGHTS_ENV}={weights_dir}: not a folder")
    names = [model_id]
    if model_id in REGISTRY and REGISTRY[model_id].weights_of:
        names.append(REGISTRY[model_id].weights_of)
    directories = ([Path(weights_dir)] if weights_dir else []) + [SHIPPED_DIR]
    if sha256 is not None:
        for directory in directories:
            for entry in read_manifest(directory):
                if entry["id"] in names and entry["sha256"] == sha256:
                    return WeightsEntry(model_id, directory / entry["file"], entry["sha256"], entry)
    for directory in directories:
        entries = {e["id"]: e for e in read_manifest(directory) if not e.get("superseded")}
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


#: safetensors' own bound on its JSON header (the Rust reader refuses more).
MAX_HEADER_BYTES = 100_000_000


def _tensor_bytes(header: Any) -> int:
    """The bytes of tensor data a parsed safetensors header accounts for: the largest
    end of its ``data_offsets``. Raises ValueError when the header is not that shape."""
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(x) is int and x >= 0 for x in offsets) or offsets[0] > offsets[1]):
            raise ValueError(f"tensor {name!r} has no valid data_offsets")
        end = max(end, offsets[1])
    return end


def read_weights(path: Path) -> bytes:
    """The bytes of a safetensors file, and not one more than its header accounts for.

    Anything but a regular file is refused before a byte is read (it is opened without
    blocking, so a FIFO cannot hang us, and a device such as /dev/zero never ends);
    so is a file whose size is not the 8 + header + tensor bytes its header states.
    """
    with open_regular(path, error=WeightsError, what="a weights file") as f:
        try:
            st = os.fstat(f.fileno())
            head = f.read(8)
            n = int.from_bytes(head, "little")
            if len(head) < 8 or n > min(MAX_HEADER_BYTES, st.st_size - 8):
                raise WeightsError(f"{path}: not a safetensors file (no header of the length it states)")
            header_bytes = f.read(n)
            try:
                end = _tensor_bytes(json.loads(header_bytes))
            except ValueError as exc:
                raise WeightsError(f"{path}: not a safetensors file ({exc})") from None
            if 8 + n + end != st.st_size:
                raise WeightsError(f"{path}: {st.st_size} bytes, but its safetensors header "
                                   f"accounts for {8 + n + end}")
            data = head + header_bytes + f.read(end)
        except OSError as exc:
            raise WeightsError(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    if len(data) != st.st_size:
        raise WeightsError(f"{path}: the file changed while it was read")
    return data


def _metadata(data: bytes) -> tuple[str, dict[str, Any]]:
    """(model id, config) from a safetensors header's ``__metadata__``.

    Not safetensors.safe_open: it opens a path, and load() must read the id and config
    from the very bytes whose sha256 it checked (a path can change between the check
    and a second read); safetensors has no metadata reader for bytes."""
    if len(data) < 8:
        raise ValueError("too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length beyond the file")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ValueError("the header's __metadata__ is not an object")
    model_id, config = meta.get("model_id"), meta.get("config")
    if not isinstance(model_id, str) or not isinstance(config, str):
        raise ValueError("its metadata lacks the text fields model_id and config")
    config = json.loads(config)
    if not isinstance(config, dict):
        raise ValueError(f"its config is not a JSON object: {config!r:.60}")
    return model_id, config


def load_bytes(data: bytes, *, expected_id: str | None = None, name: str = "weights") -> CodecModel:
    """Build a model from safetensors bytes carrying their own id and config."""
    try:
        model_id, config = _metadata(data)
        state = load_safetensors_bytes(data)
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise WeightsError(f"{name}: not a pacodec safetensors file ({exc})") from None
    build_id = model_id
    if expected_id is not None and model_id != expected_id:
        spec = spec_of(expected_id)
        if spec.weights_of != model_id:
            raise WeightsError(f"{name}: holds {model_id!r}, expected {expected_id!r}")
        build_id = expected_id  # e.g. pac-q3 built from the shared "pac" weights
    try:
        model = build_model(build_id, config)
    except WeightsError as exc:
        raise WeightsError(f"{name}: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError,
            OverflowError, RuntimeError) as exc:  # a config value of the wrong type or range
        raise WeightsError(f"{name}: its config does not build {build_id} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
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

    check_device(device)
    if model_id not in registered_ids():
        raise unknown_id(model_id)
    found = find(model_id, weights_dir, expect_sha256)
    if found is None:
        raise WeightsError(f"no weights for {model_id!r} (train them or pass --weights DIR)")
    data = read_weights(found.path)
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


__all__ = ["find", "load", "check_device", "available_devices", "save", "serialize", "load_bytes", "sha256_of",
           "read_manifest", "write_manifest_entry", "supersede", "read_weights", "SHIPPED_DIR", "WeightsEntry"]
