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
