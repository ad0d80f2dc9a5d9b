"""Golden files pin the format and decoding across versions (DESIGN.md, Determinism).

Decoded symbols must match their recorded digest exactly; decoded pixels come from
float networks and may differ by rounding between CPUs, so they may differ by 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import pacodec
from pacodec import api

from test_pcz_spec import parse_pcz

SAMPLES = Path(__file__).resolve().parents[1] / "formats" / "samples"
NAMES = sorted(p.stem for p in SAMPLES.glob("*.json"))


def test_there_are_golden_samples():
    assert "conv4-naive" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_golden_info_is_unchanged(name):
    expected = json.loads((SAMPLES / f"{name}.json").read_text())
    facts = api.probe(SAMPLES / f"{name}.pcz")
    facts.pop("file")
    assert facts == expected["info"]
    assert sum(facts["parts"].values()) == facts["file_bytes"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_parses_by_the_spec_alone(name):
    data = (SAMPLES / f"{name}.pcz").read_bytes()
    expected = json.loads((SAMPLES / f"{name}.json").read_text())["info"]
    parsed = parse_pcz(data)
    assert parsed["coded"] == (expected["width"], expected["height"])
    assert [m[0] if isinstance(m, tuple) else m for m in parsed["models"]]
    assert len(parsed["frames"]) == expected["frames"]
    assert parsed["gop"] == expected["gop"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_symbols_and_pixels(name):
    expected = json.loads((SAMPLES / f"{name}.json").read_text())
    with pacodec.open(SAMPLES / f"{name}.pcz") as reader:
        assert reader.symbol_digest() == expected["symbols_sha256"]
        frames = list(reader)
    stored = sorted((SAMPLES / name).glob("frame_*.png"))
    assert len(stored) == len(frames) == expected["info"]["frames"]
    for frame, path in zip(frames, stored):
        want = cv2.imread(str(path))[..., ::-1]
        assert np.abs(frame.astype(int) - want.astype(int)).max() <= 1, path.name


def test_info_of_a_predictive_file_names_both_models_and_bytes_by_frame_type():
    from pacodec.cli import render_info

    facts = api.probe(SAMPLES / "pac-q3-gop4.pcz")
    text = render_info(facts)
    intra, predicted = facts["bytes_by_type"]["intra"], facts["bytes_by_type"]["predicted"]
    assert intra + predicted + facts["parts"]["header"] + facts["parts"]["index"] == facts["file_bytes"]
    for m in facts["models"]:
        assert f"{m['id']}  weights sha256 {m['weights_sha256']}" in text
    assert [m["id"] for m in facts["models"]] == ["pac-q3", "pac-res"]
    assert (f"intra {intra:,} bytes in {facts['intra_frames']} frames "
            f"({intra / facts['intra_frames']:.1f} a frame)") in text
    assert f"predicted {predicted:,} bytes in {facts['predicted_frames']} frames" in text
