"""What a new user runs into first (issue 15, items 4 and 6): clear words for the wrong
kind of file or id, and a public API that `dir()`, type checkers and `-m` can see."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from pacodec.video import VideoWriter


def test_a_video_given_as_pcz_is_named_for_what_it_is(tmp_path, atari_frames):
    mkv = tmp_path / "game.mkv"
    with VideoWriter(mkv, fps=30, width=160, height=200) as out:
        out.write(atari_frames[0])
    for command in (("info", str(mkv)), ("decode", str(mkv), "-o", str(tmp_path / "o.mkv"))):
        r = run_cli(*command)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip() == f"pacodec: error: {mkv}: not a .pcz file (it looks like a Matroska/WebM video)"
    assert not (tmp_path / "o.mkv").exists()


def test_an_unknown_model_id_lists_the_known_ones(tmp_path, atari_frames):
    mkv = tmp_path / "game.mkv"
    with VideoWriter(mkv, fps=30, width=160, height=200) as out:
        out.write(atari_frames[0])
    r = run_cli("encode", str(mkv), "-o", str(tmp_path / "x.pcz"), "--model", "pac-q88")
    assert r.returncode == 2, r.stderr
    assert "unknown model id 'pac-q88' (known: " in r.stderr and "pac-q8," in r.stderr and "tiny-" not in r.stderr


def test_the_public_api_is_visible_and_typed():
    import pacodec

    for name in ("open", "Writer", "Reader", "encode", "decode", "probe", "compare", "list_models",
                 "PacodecError", "__version__"):
        assert name in dir(pacodec), name
        assert getattr(pacodec, name) is not None
    assert (ROOT / "pacodec" / "py.typed").is_file()
    for name in ("open", "Writer", "encode", "decode", "probe", "compare"):
        assert getattr(pacodec, name).__doc__, name


def test_python_dash_m_pacodec_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "pacodec", "--version"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    import pacodec

    assert r.returncode == 0 and r.stdout.strip() == f"pacodec {pacodec.__version__}", r.stderr


def test_a_device_this_machine_lacks_is_bad_input_not_a_bug(tmp_path, atari_frames):
    """--device cuda on a CPU-only torch (or no GPU) says so and exits 2; it was
    "internal error: AssertionError" and exit 1. A device that is no device at all too."""
    import torch

    mkv = tmp_path / "game.mkv"
    with VideoWriter(mkv, fps=30, width=160, height=200) as out:
        out.write(atari_frames[0])
    pcz = tmp_path / "x.pcz"
    r = run_cli("encode", str(mkv), "-o", str(tmp_path / "tpu.pcz"), "--device", "tpu")
    assert r.returncode == 2 and r.stderr.strip() == (
        "pacodec: error: device 'tpu': not a device pacodec runs on (cpu, cuda or cuda:N; available here: cpu)"), r.stderr
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert run_cli("encode", str(mkv), "-o", str(pcz), "-q").returncode == 0
    for command in (("encode", str(mkv), "-o", str(tmp_path / "cuda.pcz")),
                    ("decode", str(pcz), "-o", str(tmp_path / "cuda.mkv")),
                    ("train", "tiny-conv", "--data", str(mkv), "-o", str(tmp_path / "run"))):
        r = run_cli(*command, "--device", "cuda")
        assert r.returncode == 2, (command, r.stderr)
        assert "device 'cuda': no CUDA device is available" in r.stderr and "internal error" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["game.mkv", "x.pcz"]  # nothing else written


def test_models_lists_what_to_code_with_described_with_its_figures_at_its_defaults():
    """Issue 15, item 8: descriptions; internal ids (pac, pac-hi, pac-res, tiny-*) only
    with --all; figures from the manifest at each model's defaults (pac-q8: GOP 250)."""
    import json

    from pacodec import zoo

    manifest = {e["id"]: e for e in zoo.read_manifest(zoo.SHIPPED_DIR)}

    def at(model_id, quantizer, gop):
        return next(m for m in manifest[model_id]["measured_all"]
                    if m["quantizer"] == quantizer and m.get("gop", 1) == gop)

    r = run_cli("models")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line.strip()}
    for hidden in ("pac", "pac-hi", "pac-res", "tiny-conv", "tiny-pac", "tiny-pac-res", "tiny-pac-hi"):
        assert hidden not in lines, hidden
    pac_q8, conv4 = lines["pac-q8"], lines["conv4"]
    default_gop = at("pac-q8", "entropy", 250)
    assert "entropy, GOP 250" in pac_q8 and f"{default_gop['psnr']:.2f} dB" in pac_q8, pac_q8
    assert f"{default_gop['bytes_per_frame']:,.0f} B/frame" in pac_q8
    assert f"{at('pac-q8', 'entropy', 1)['psnr']:.2f} dB" not in pac_q8  # not the all-intra figure
    assert "pixel residual" in pac_q8  # its description
    naive = at("conv4", "naive", 1)
    assert "naive" in conv4 and f"{naive['psnr']:.2f} dB, {naive['bytes_per_frame']:,.0f} B/frame" in conv4
    assert "workshop conv4" in conv4

    everything = run_cli("models", "--all").stdout
    assert all(f"\n{i} " in everything for i in ("pac", "pac-res", "tiny-conv"))
    rows = {m["id"]: m for m in json.loads(run_cli("models", "--json").stdout)}
    assert "pac-res" not in rows and rows["pac-q8"]["defaults"] == {"quantizer": "entropy", "gop": 250}
    assert rows["pac-q8"]["measured"] == default_gop and rows["conv4"]["measured"] == naive
    rows = {m["id"]: m for m in json.loads(run_cli("models", "--json", "--all").stdout)}
    assert rows["pac-res"]["internal"] and not rows["pac-q8"]["internal"]


# -- other shapes (issue 15, item 5) ---------------------------------------------------
def _disc_video(path, width, height, frames=2):
    """A white disc of radius height/3 at the centre of a dark frame: round only while
    the aspect ratio is kept."""
    import numpy as np

    yy, xx = np.mgrid[:height, :width]
    with VideoWriter(path, fps=30, width=width, height=height) as out:
        for k in range(frames):
            frame = np.full((height, width, 3), 20, np.uint8)
            frame[(yy - height / 2) ** 2 + (xx - width / 2 - k) ** 2 <= (height / 3) ** 2] = 235
            out.write(frame)


def _disc_extent(frame):
    """(columns, rows) the bright disc spans."""

    bright = frame.mean(axis=2) > 128
    return int(bright.any(axis=0).sum()), int(bright.any(axis=1).sum())


def test_a_wide_video_is_stretched_with_a_warning_or_letterboxed_with_fit_pad(tmp_path):
    import json

    from pacodec.video import iter_frames

    src = tmp_path / "wide.mkv"
    _disc_video(src, 640, 360)
    # stretch, the default: one warning line on stderr (none with -q); the file stays 1.0
    stretched = tmp_path / "s.pcz"
    r = run_cli("encode", str(src), "-o", str(stretched), "--gop", "1")
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if line.startswith("pacodec: warning:")]
    assert len(warning) == 1 and "aspect ratio" in warning[0] and "pad" in warning[0], r.stderr
    assert "Warning" not in r.stderr  # not Python's two-line warnings format
    r = run_cli("-q", "encode", str(src), "-o", str(stretched), "--gop", "1", "--force")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    facts = json.loads(run_cli("info", str(stretched), "--json").stdout)
    assert facts["version"] == "1.0" and "fit" not in facts

    # pad: no warning, a 1.1 file that says where the picture is
    padded = tmp_path / "p.pcz"
    r = run_cli("encode", str(src), "-o", str(padded), "--gop", "1", "--fit", "pad")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    facts = json.loads(run_cli("info", str(padded), "--json").stdout)
    assert facts["version"] == "1.1" and facts["fit"] == "pad" and facts["picture"] == [0, 55, 160, 90]
    assert "fit pad, picture 160x90 at (0, 55)" in run_cli("info", str(padded)).stdout

    # decoded at the coded size: black bars above and below, the disc still round
    coded = tmp_path / "coded.mkv"
    assert run_cli("-q", "decode", str(padded), "-o", str(coded)).returncode == 0
    frame = next(iter_frames(coded))
    assert frame.shape == (200, 160, 3)
    assert frame[:45].mean() < 3 and frame[-45:].mean() < 3 and frame[60:140].mean() > 20  # lossy: near black
    w, h = _disc_extent(frame)
    assert abs(w - h) <= 2, (w, h)
    assert run_cli("-q", "decode", str(stretched), "-o", str(tmp_path / "sc.mkv")).returncode == 0
    w, h = _disc_extent(next(iter_frames(tmp_path / "sc.mkv")))
    assert h > 2 * w  # stretched: the disc became a tall ellipse

    # decoded at the source size: the picture cropped out and resized back, bars gone
    source = tmp_path / "source.mkv"
    assert run_cli("-q", "decode", str(padded), "-o", str(source), "--size", "source").returncode == 0
    frame = next(iter_frames(source))
    original = next(iter_frames(src))
    assert frame.shape == original.shape == (360, 640, 3)
    assert _disc_extent(frame) == pytest.approx(_disc_extent(original), abs=8)
    # the top and bottom rows are the source's dark-grey field, not bars squeezed in
    assert frame[:20].mean() > 10 and frame[-20:].mean() > 10
    # compare letterboxes the source as the encoder did, in either order
    r1 = json.loads(run_cli("compare", str(src), str(padded), "--json").stdout)
    r2 = json.loads(run_cli("compare", str(padded), str(src), "--json").stdout)
    assert r1["psnr"] == r2["psnr"] > 25 and r1["fit"] == "pad"


def test_atari_s_own_frames_are_not_warned_about(tmp_path, clip):
    """160x210 Atari frames squeezed to 160x200 (5 %) are what every model trained on."""
    r = run_cli("encode", str(clip), "-o", str(tmp_path / "a.pcz"), "--gop", "1", "--max-frames", "1")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_help_and_readme_say_what_happens_to_the_aspect_ratio():
    r = run_cli("encode", "--help")
    text = " ".join(r.stdout.split())
    assert "--fit" in text and "aspect ratio" in text and "letterbox" in text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "--fit pad" in readme and "aspect ratio" in readme


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    """`pacodec models --all | head -2`: was "internal error: BrokenPipeError", exit 1."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "from pacodec.cli import main; main()", "models", "--all"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader goes away before the listing is written
    stderr = p.stderr.read().decode()
    p.wait(timeout=300)
    assert p.returncode in (0, 141) and "internal error" not in stderr and "Traceback" not in stderr, stderr
