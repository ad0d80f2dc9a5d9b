"""Benchmark tools: BD-rate properties and a smoke run of two anchors (fast)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bdrate import bd_psnr, bd_rate, monotone  # noqa: E402

# A plausible RD curve: PSNR rising with log-rate.
ANCHOR = [(r, 20.0 + 6.0 * math.log2(r / 100.0)) for r in (100, 150, 220, 330, 500, 750)]


def scaled(curve, factor):
    return [(r * factor, p) for r, p in curve]


def test_identical_curves_give_zero():
    assert bd_rate(ANCHOR, ANCHOR) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(ANCHOR, ANCHOR) == pytest.approx(0.0, abs=1e-9)


def test_half_the_rate_is_minus_fifty_percent():
    assert bd_rate(ANCHOR, scaled(ANCHOR, 0.5)) == pytest.approx(-50.0, abs=0.5)
    assert bd_rate(ANCHOR, scaled(ANCHOR, 2.0)) == pytest.approx(100.0, abs=1.0)
    # Halving the rate on a 6 dB-per-doubling curve is +6 dB at equal rate.
    assert bd_psnr(ANCHOR, scaled(ANCHOR, 0.5)) == pytest.approx(6.0, abs=0.1)


def test_point_order_does_not_matter():
    assert bd_rate(ANCHOR[::-1], scaled(ANCHOR, 0.7)) == pytest.approx(-30.0, abs=0.5)


def test_too_few_points_is_none():
    assert bd_rate(ANCHOR[:3], ANCHOR[:3]) is None
    assert bd_rate(ANCHOR, ANCHOR[:3]) is None
    assert bd_psnr(ANCHOR[:3], ANCHOR) is None


def test_small_overlap_is_none():
    low = [(100, 20.0), (120, 21.0), (150, 22.0), (200, 23.0)]
    high = [(150, 22.5), (200, 23.4), (300, 24.0), (400, 25.0)]  # overlap 0.5 dB
    assert bd_rate(low, high) is None
    disjoint = [(r, p + 30.0) for r, p in low]
    assert bd_rate(low, disjoint) is None


def test_monotone_drops_dominated_and_lossless_points():
    points = [(100, 30.0), (200, 29.0), (150, 32.0), (300, 35.0), (400, 35.0), (500, 100.0)]
    assert monotone(points) == [(100, 30.0), (150, 32.0), (300, 35.0)]


# --- anchors on synthetic frames ------------------------------------------------------------


@pytest.fixture(scope="module")
def frames():
    """Five 160×200 frames: a maze-like pattern with a moving sprite (uint8 RGB)."""
    rng = np.random.default_rng(0)
    base = np.zeros((200, 160, 3), np.uint8)
    base[::20, :, 2] = 200
    base[:, ::16, 2] = 200
    base[10::20, 8::16] = (255, 184, 151)
    out = []
    for i in range(5):
        f = base.copy()
        f[80:96, 20 + 6 * i:36 + 6 * i] = (255, 255, 0)
        f += rng.integers(0, 3, f.shape, dtype=np.uint8)
        out.append(f)
    return out


def test_x264_444_anchor(frames):
    import anchors

    result = anchors.x264_444(frames, 30, 18)
    assert result.codec == "x264-444" and result.setting == "crf=18"
    assert result.frames == 5 and result.threads == anchors.THREADS
    raw = 5 * 160 * 200 * 3
    assert 100 < result.total_bytes < raw / 4
    assert 30.0 < result.psnr < 100.0
    assert 0.5 < result.ssim <= 1.0
    assert result.bpp == pytest.approx(8 * result.total_bytes / (5 * 160 * 200))
    row = result.row()
    assert set(row) == {"codec", "setting", "frames", "bytes_per_frame", "bpp", "psnr", "ssim",
                        "encode_fps", "decode_fps", "threads"}


def test_jpeg_anchor(frames):
    import anchors

    low = anchors.jpeg(frames, 30, 30)
    high = anchors.jpeg(frames, 30, 95)
    assert 0 < low.total_bytes < high.total_bytes < 5 * 160 * 200 * 3
    assert 15.0 < low.psnr < high.psnr < 100.0


def test_pacodec_hook_with_a_fake_api(frames, monkeypatch):
    """The pacodec part of rd.py against a stand-in API: families, sizes, failures."""
    import types

    import pacodec
    import rd

    def list_models():
        return [{"id": "pac-q1", "weights": True, "code_bytes": {"entropy": None}},
                {"id": "pac-q2", "weights": True, "code_bytes": {"entropy": None}},
                {"id": "conv4", "weights": False, "code_bytes": {"naive": 1}},
                {"id": "broken1", "weights": True, "code_bytes": {"naive": 1}}]

    def encode(src, dst, *, model, quantizer=None, force=False):
        if model == "broken1":
            raise RuntimeError("boom")
        with open(dst, "wb") as f:
            f.write(b"\0" * (1000 * int(model[-1])))
        return {"frames": len(frames), "file_bytes": 1000 * int(model[-1])}

    class FakeReader:
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return iter(f.copy() for f in frames)

    fake = types.ModuleType("pacodec.api")
    fake.list_models, fake.encode = list_models, encode
    monkeypatch.setitem(sys.modules, "pacodec.api", fake)
    monkeypatch.setattr(pacodec, "api", fake, raising=False)
    monkeypatch.setattr(pacodec, "open", FakeReader, raising=False)

    systems = rd.pacodec_systems()
    assert [(s.family, s.model, s.quantizer) for s in systems] == [
        ("pac-q", "pac-q1", "entropy"), ("pac-q", "pac-q2", "entropy"), ("broken", "broken1", "naive")]
    results = rd.run_pacodec(frames, 30, True, lambda message: None)
    assert [(r.codec, r.total_bytes, r.psnr) for r in results] == [
        ("pac-q", 1000, 100.0), ("pac-q", 2000, 100.0)]
