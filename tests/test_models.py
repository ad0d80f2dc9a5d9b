"""Models: the contract's shapes and ranges, the channel layout, weights loading safely."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pacodec import zoo
from pacodec.errors import WeightsError
from pacodec.models import REGISTRY, build_model, registered_ids
from pacodec.models.base import frames_to_tensor, tensor_to_frames


@pytest.mark.parametrize("model_id,shape", [("conv4", (128, 13, 10)), ("conv5", (256, 7, 5)),
                                            ("pac-q3", (128, 13, 10))])
def test_code_shapes_match_the_workshop(model_id, shape):
    model = build_model(model_id)
    assert model.code_shape == shape
    codes = model.encode(np.zeros((2, 200, 160, 3), np.uint8))
    assert codes.shape == (2, *shape) and codes.dtype == np.float32
    assert model.decode(codes).shape == (2, 200, 160, 3)


def test_conv_codes_lie_in_unit_interval():
    model = build_model("conv4")
    frames = np.random.default_rng(0).integers(0, 256, (2, 200, 160, 3), dtype=np.uint8)
    codes = model.encode(frames)
    assert codes.min() >= 0.0 and codes.max() <= 1.0


def test_channels_are_transposed_not_reshaped():
    frame = np.zeros((1, 4, 6, 3), np.uint8)
    frame[..., 0] = 200  # pure red
    tensor = frames_to_tensor(frame)
    assert tensor.shape == (1, 3, 4, 6)
    assert torch.allclose(tensor[0, 0], torch.full((4, 6), 200 / 255)) and torch.all(tensor[0, 1:] == 0)
    assert np.array_equal(tensor_to_frames(tensor), frame)


def test_every_registered_id_builds():
    for model_id in registered_ids():
        model = build_model(model_id)
        assert model.model_id == model_id and REGISTRY[model_id].family == model.family


def test_unknown_id_is_a_weights_error():
    with pytest.raises(WeightsError, match="unknown model id"):
        build_model("conv9")


def test_weights_round_trip_and_hash_check(tmp_path):
    model = build_model("tiny-conv")
    sha = zoo.save(model, tmp_path / "tiny-conv.safetensors")
    zoo.write_manifest_entry(tmp_path, {"id": "tiny-conv", "file": "tiny-conv.safetensors", "sha256": sha})
    loaded, got = zoo.load("tiny-conv", tmp_path)
    assert got == sha
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="file was made with"):
        zoo.load("tiny-conv", tmp_path, expect_sha256="0" * 64)
    # A tampered file no longer matches its manifest.
    data = bytearray((tmp_path / "tiny-conv.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "tiny-conv.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="differs from its manifest"):
        zoo.load("tiny-conv", tmp_path)


def test_junk_weights_are_refused(tmp_path):
    (tmp_path / "tiny-conv.safetensors").write_bytes(b"\x10" + bytes(20))
    with pytest.raises(WeightsError):
        zoo.load("tiny-conv", tmp_path)


def test_half_precision_storage_loads_as_float32(tmp_path):
    model = build_model("tiny-conv")
    data = zoo.serialize(model, half_precision=True)
    loaded = zoo.load_bytes(data, expected_id="tiny-conv")
    first = next(iter(loaded.parameters()))
    assert first.dtype == torch.float32


def test_pac_tables_are_frozen_integers():
    model = build_model("tiny-pac")
    model.freeze_tables()
    tables = model.entropy_tables()
    assert tables.dtype == np.int32 and np.all(tables.sum(axis=1) == 1 << 16)


def test_manifest_of_shipped_weights_matches_files():
    for entry in zoo.read_manifest(zoo.SHIPPED_DIR):
        path = zoo.SHIPPED_DIR / entry["file"]
        assert zoo.sha256_of(path) == entry["sha256"], entry["id"]
        assert entry["id"] in registered_ids()
        assert {"config", "training"} <= set(entry)
        json.dumps(entry)


def test_deepen_conv_maps_a_shallow_models_stages_onto_a_deeper_one(tmp_path):
    """tools/deepen_conv.py: conv4's up.k is conv5's up.(k+1); --init then fills every
    stage the two share, and only the new innermost stage stays as initialised."""
    import importlib.util

    from safetensors.torch import load_file

    from conftest import ROOT
    from pacodec import zoo
    from pacodec.models import build_model
    from pacodec.train import init_from

    spec = importlib.util.spec_from_file_location("deepen_conv", ROOT / "tools" / "deepen_conv.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    shallow = build_model("conv4", {"channels": (4, 8)})
    deep = build_model("conv5", {"channels": (4, 8, 16)})
    zoo.save(shallow, tmp_path / "s.safetensors")
    assert tool.main([str(tmp_path / "s.safetensors"), str(tmp_path / "d.safetensors")]) == 0
    init_from(deep, tmp_path / "d.safetensors")
    mine, theirs = deep.state_dict(), shallow.state_dict()
    for name, value in theirs.items():
        stage, rest = name.split(".", 2)[1], name.split(".", 2)[2]
        moved = f"up.{int(stage) + 1}.{rest}" if name.startswith("up.") else name
        assert torch.equal(mine[moved], value), name
    assert set(load_file(str(tmp_path / "d.safetensors"))) <= set(mine)
