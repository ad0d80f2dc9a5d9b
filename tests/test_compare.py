"""`pacodec compare`: the same figures in either order, and no silent cut (issue 15, item 3)."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from pacodec.video import VideoWriter, fit


@pytest.fixture(scope="module")
def pcz(tmp_path_factory, clip, tiny_weights):
    import pacodec

    path = tmp_path_factory.mktemp("cmp") / "clip.pcz"
    pacodec.encode(clip, path, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    return path


def figures(*args: str) -> dict:
    r = run_cli("compare", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_either_order_gives_the_same_figures(clip, pcz, tiny_weights):
    """The source is 160×210, the .pcz 160×200: both orders compare at the coded size."""
    ab = figures(str(clip), str(pcz), "--weights", str(tiny_weights))
    ba = figures(str(pcz), str(clip), "--weights", str(tiny_weights))
    assert ab["frames"] == ba["frames"] == 20
    assert (ab["width"], ab["height"]) == (ba["width"], ba["height"]) == (160, 200)
    assert ab["psnr"] == pytest.approx(ba["psnr"], abs=1e-9) and ab["ssim"] == pytest.approx(ba["ssim"], abs=1e-9)
    assert ab["resized"] == [str(clip)] and ba["resized"] == [str(clip)]


def test_two_videos_of_different_sizes_compare_at_the_smaller(tmp_path, atari_frames):
    small, large = tmp_path / "small.mkv", tmp_path / "large.mkv"
    for path, (w, h) in ((small, (160, 200)), (large, (320, 400))):
        with VideoWriter(path, fps=30, width=w, height=h) as out:
            for frame in atari_frames[:5]:
                out.write(fit(frame, w, h))
    ab, ba = figures(str(small), str(large)), figures(str(large), str(small))
    assert (ab["width"], ab["height"]) == (ba["width"], ba["height"]) == (160, 200)
    assert ab["psnr"] == pytest.approx(ba["psnr"], abs=1e-9) and ab["psnr"] > 30


def test_unequal_frame_counts_are_refused_unless_asked(tmp_path, atari_frames):
    short, long = tmp_path / "short.mkv", tmp_path / "long.mkv"
    for path, n in ((short, 6), (long, 15)):
        with VideoWriter(path, fps=30, width=160, height=200) as out:
            for frame in atari_frames[:n]:
                out.write(frame)
    for args in ((short, long), (long, short)):
        r = run_cli("compare", *map(str, args))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert "6 frames" in line or "has 6" in line or " 6" in line, line
        assert "15" in line and "--frames 6" in line, line
    assert figures(str(long), str(short), "--frames", "6")["frames"] == 6
    r = run_cli("compare", str(long), str(short), "--frames", "10")
    assert r.returncode == 2 and "fewer than --frames 10" in r.stderr, r.stderr


def test_mp4_output_keeps_what_the_pcz_holds(tmp_path, clip, tiny_weights):
    """Issue 15, item 2: the default .mp4 (H.264 4:4:4) measures within 1 dB of the .pcz
    against the source; a 4:2:0 one loses far more, and decode says so in one note."""
    import pacodec

    pcz = tmp_path / "x.pcz"
    pacodec.encode(clip, pcz, model="tiny-pac-hi", weights_dir=tiny_weights, gop=4)
    held = figures(str(clip), str(pcz), "--weights", str(tiny_weights))["psnr"]
    r = run_cli("decode", str(pcz), "-o", str(tmp_path / "x.mp4"), "--weights", str(tiny_weights))
    assert r.returncode == 0 and "note" not in r.stderr, r.stderr
    assert figures(str(clip), str(tmp_path / "x.mp4"))["psnr"] > held - 1
    r = run_cli("decode", str(pcz), "-o", str(tmp_path / "y.mp4"), "--pix-fmt", "yuv420p",
                "--weights", str(tiny_weights))
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("pacodec: note: ")]
    assert len(notes) == 1 and "y.mp4" in notes[0] and "yuv444p" in notes[0], r.stderr
    assert figures(str(clip), str(tmp_path / "y.mp4"))["psnr"] < held - 1
    r = run_cli("decode", str(pcz), "-o", str(tmp_path / "z.mkv"), "--pix-fmt", "yuv420p",
                "--weights", str(tiny_weights))
    assert r.returncode == 2 and ".mp4 outputs only" in r.stderr, r.stderr


def test_the_demo_measures_the_file_it_hands_over(tmp_path, capsys):
    """Issue 15, item 2: `make demo` prints the PSNR of demo.mp4, the file the user gets,
    as `compare` measures it, beside the .pcz's; the two are within 1 dB."""
    import re

    from pacodec import api, demo
    from test_batch import make_clip

    clip = make_clip(tmp_path / "game.mkv", 4, frames=4)
    assert demo.main(["--video", str(clip), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    shown = {name: float(value) for name, value in
             re.findall(r"demo\.(pcz|mp4): PSNR ([\d.]+) dB", printed)}
    handed_over = api.compare(clip, tmp_path / "out" / "demo.mp4")["psnr"]
    assert shown["mp4"] == pytest.approx(handed_over, abs=0.006), printed
    assert abs(shown["mp4"] - shown["pcz"]) < 1.0, printed
