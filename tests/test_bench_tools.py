"""Benchmark tools: BD-rate properties and a smoke run of two anchors (fast)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bdrate import bd_psnr, bd_rate, bd_rate_over, monotone  # noqa: E402

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


def test_bd_rate_over_a_range_is_bd_rate_over_the_overlap_and_follows_the_range():
    """Over the curves' overlap it is the bjontegaard package's figure; over a range
    where one curve's lead grows it moves, and outside either curve it is None."""
    test = [(r * (0.6 if p < 25 else 0.8), p) for r, p in ANCHOR]
    lo, hi = ANCHOR[0][1], ANCHOR[-1][1]
    assert bd_rate_over(ANCHOR, test, lo, hi) == pytest.approx(bd_rate(ANCHOR, test), abs=0.01)
    assert bd_rate_over(ANCHOR, test, lo, 24.0) < bd_rate_over(ANCHOR, test, 28.0, hi)
    assert bd_rate_over(ANCHOR, scaled(ANCHOR, 0.5), 22.0, 27.0) == pytest.approx(-50.0, abs=0.5)
    assert bd_rate_over(ANCHOR, test, lo - 1.0, hi) is None


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
                        "encode_fps", "decode_fps", "threads", "width", "height"}
    assert (row["width"], row["height"]) == (160, 200)


@pytest.mark.parametrize("family", ["aom-444-screen", "svtav1-420-scm", "vvenc-420"])
def test_ffmpeg_cli_anchors(frames, family):
    """The anchors PyAV lacks run through imageio-ffmpeg's binary: the rate is the raw
    stream's size, and a lower CRF/QP gives more bytes and a higher PSNR."""
    import anchors

    if anchors.ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed (the bench extra)")
    run = anchors.cli_anchor(family)
    fine, coarse = (run(frames, 30, s) for s in ((20, 50) if family != "vvenc-420" else (17, 40)))
    assert fine.codec == coarse.codec == family and fine.frames == 5
    assert coarse.total_bytes < fine.total_bytes < 5 * 160 * 200 * 3 / 4
    # 4:2:0 cannot hold these one-pixel coloured lines (about 20 dB at any rate).
    assert coarse.psnr < fine.psnr and fine.psnr > (30 if "444" in family else 15)


def test_bytes_at_interpolates_on_the_front():
    import rd

    points = [(100.0, 30.0), (400.0, 40.0), (300.0, 29.0)]  # (300, 29) is dominated
    assert rd.bytes_at(points, 35.0) == pytest.approx(200.0)  # log-linear: sqrt(100 * 400)
    assert rd.bytes_at(points, 30.0) == pytest.approx(100.0)
    assert rd.bytes_at(points, 41.0) is None and rd.bytes_at(points, 28.0) is None


def test_jpeg_anchor(frames):
    import anchors

    low = anchors.jpeg(frames, 30, 30)
    high = anchors.jpeg(frames, 30, 95)
    assert 0 < low.total_bytes < high.total_bytes < 5 * 160 * 200 * 3
    assert 15.0 < low.psnr < high.psnr < 100.0


def test_pacodec_system_through_real_files(frames, tmp_path, tiny_weights):
    """rd.py's pacodec path on a tiny model: sizes come from the file, quality is measured."""
    import rd

    source = tmp_path / "ref.mkv"
    rd.write_lossless(frames, 30, source)
    system = rd.System("tiny", "tiny-conv", "naive", weights_dir=tiny_weights)
    result = rd.run_system(system, source, frames, tmp_path)
    assert result.total_bytes == (tmp_path / "tiny-conv_naive.pcz").stat().st_size
    assert result.bytes_per_frame == pytest.approx(result.total_bytes / len(frames))
    assert 5.0 < result.psnr < 100.0


def test_pacodec_systems_cover_both_pac_curves(monkeypatch):
    import rd

    from pacodec import api

    fixed = {"none": 1, "naive": 1, "scale": 1, "kmeans": 1}
    monkeypatch.setattr(api, "list_models", lambda: [
        {"id": "pac-q2", "family": "pac", "weights": True, "code_bytes": {"entropy": None}},
        {"id": "pac", "family": "pac", "weights": True, "code_bytes": {"entropy": None}},
        {"id": "conv4", "family": "conv", "weights": True, "code_bytes": fixed},
        {"id": "vae-compact", "family": "vae", "weights": True,
         "code_bytes": {k: v for k, v in fixed.items() if k != "naive"}},
        {"id": "conv5", "family": "conv", "weights": False, "code_bytes": fixed}])
    systems = [(s.family, s.model, s.quantizer, s.gop) for s in rd.pacodec_systems()]
    from pacodec.predict import DEFAULT_GOP

    assert ("pac-q", "pac-q2", None, 1) in systems
    assert ("pac-p", "pac-q2", None, DEFAULT_GOP) in systems and ("pac-p32", "pac-q2", None, 32) in systems
    assert ("conv4", "conv4", "naive", 1) in systems
    # the VAE's codes are unbounded: naive is refused for it, so rd.py does not try it
    assert ("vae-compact", "vae-compact", "scale", 1) in systems
    assert ("vae-compact", "vae-compact", "naive", 1) not in systems
    assert all(m not in ("pac", "conv5") for _, m, _, _ in systems)


def test_rd_curves_join_quality_levels_only():
    import rd

    assert rd.family_of("pac-q3") == rd.family_of("pac-q1") == "pac-q"
    assert rd.family_of("conv4") != rd.family_of("conv5")  # two models, not one curve
    assert rd.family_of("vanilla-fc-compact") == "vanilla-fc-compact"


def test_bd_table_lists_only_curves():
    """Single models (a point per quantizer) get no BD-rate rows; the pac curve does."""
    import rd
    from anchors import AnchorResult

    def point(codec, rate, psnr):
        return AnchorResult(codec=codec, setting="s", frames=10, total_bytes=int(rate * 10), width=160,
                            height=200, psnr=psnr, ssim=0.9, ssim_every=1, encode_s=1.0, decode_s=1.0,
                            threads=2)

    results = [point("x264-intra-444", r, p) for r, p in ((900, 28), (1500, 30), (2500, 32), (4000, 34))]
    results += [point("pac-q", r, p) for r, p in ((800, 28.5), (1300, 30.2), (2100, 31.5), (3500, 33))]
    results += [point("conv4", 16650, 30.4), point("conv4", 16660, 30.3)]
    rows = rd.bd_table(results, ["pac-q", "conv4"])
    assert {row["test"] for row in rows} == {"pac-q"}
    assert rows[0]["anchor"] == "x264-intra-444" and rows[0]["bd_rate_percent"] < 0


def test_seed_table_only_remeasures_the_named_models_and_keeps_the_rest(tmp_path):
    """`seed_table.py --only X` replaces X's rows and keeps the others from the last CSV,
    in the table's order, with numbers read back as numbers."""
    import csv

    import seed_table

    def row(model, quant, psnr):
        return {"type": model, "quantization": quant, "epochs_trained": "PCA + 0", "model_bytes": 10.0,
                "code_bytes_per_frame": 16000.0, "codes_ratio": 6.0, "ratio": 5.99, "psnr": psnr,
                "ssim": 0.9, "ssim_every": 1.0, "encode_fps": 1.0, "decode_fps": 2.0, "frames": 3.0,
                "status": "measured", "weights": "/elsewhere/x.safetensors", "command": f"pacodec train {model}"}

    path = tmp_path / "seed_table.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=seed_table.CSV_COLUMNS)
        writer.writeheader()
        writer.writerows([row("conv4", "none", 30.0), row("vanilla-fc-1000", "none", 29.0)])
    old = seed_table.previous_rows(path)
    assert old[0]["psnr"] == 30.0 and old[0]["epochs_trained"] == "PCA + 0"
    merged = seed_table.merge([row("vanilla-fc-1000", "naive", 35.0)], old, {"vanilla-fc-1000"})
    assert [(r["type"], r["quantization"], r["psnr"]) for r in merged] == [
        ("vanilla-fc-1000", "naive", 35.0), ("conv4", "none", 30.0)]
    text = seed_table.render(merged, Path("clip9.mp4"), 1)
    assert "| vanilla-fc-1000 | naive | PCA + 0 |" in text
    assert "- `vanilla-fc-1000`: `pacodec train vanilla-fc-1000`" in text  # how the unshipped row was made
    assert seed_table.previous_rows(tmp_path / "absent.csv") == []


def test_replot_redraws_the_plot_from_the_csv(tmp_path):
    """``rd.py --replot`` reads rd.csv back (with dominated pac points) and draws rd.png."""
    import rd
    from anchors import AnchorResult

    def point(codec, rate, psnr):
        return AnchorResult(codec=codec, setting=f"{rate}", frames=10, total_bytes=int(rate * 10), width=160,
                            height=200, psnr=psnr, ssim=0.9, ssim_every=1, encode_s=1.0, decode_s=1.0,
                            threads=2)

    results = [point("x264-intra-444", r, p) for r, p in ((900, 28), (1500, 30), (2500, 32))]
    results += [point("pac-q", r, p) for r, p in ((800, 28.5), (1300, 30.2), (2100, 29.0), (3500, 33))]
    rd.write_csv([r.row() | {"clip": "c.mp4"} for r in results], tmp_path / "rd.csv", rd.CSV_COLUMNS)
    back = rd.read_results(tmp_path / "rd.csv")
    assert [(p.codec, p.bytes_per_frame, p.psnr, p.width, p.height) for p in back["c.mp4"]] == [
        (r.codec, r.bytes_per_frame, r.psnr, 160, 200) for r in results]
    assert rd.main(["--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "rd.png").stat().st_size > 10_000


# JCTVC-E137 (the JCT-VC's BD-rate sheet, PCHIP), its published examples as (kbit/s,
# PSNR) points and results; the same pairs and figures are in Netflix VMAF's tests of
# its BD-rate calculator (python/test/bd_rate_calculator_test.py).
JCTVC_E137 = [
    ([(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
     [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
     -0.465215420752807),
    ([(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
     [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
     -1.8779823450567612),
]


@pytest.mark.parametrize("anchor,test,percent", JCTVC_E137)
def test_bd_rate_matches_the_published_jctvc_examples(anchor, test, percent):
    assert bd_rate(anchor, test) == pytest.approx(percent, abs=1e-6)
