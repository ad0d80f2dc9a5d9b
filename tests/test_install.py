"""pacodec as a user installs it (issue 15, item 1): a wheel built from the checkout,
installed into a fresh virtual environment outside it, carries the shipped weights,
and encodes and decodes with the default model there; ``python -m pacodec`` works.

The fresh environment gets pacodec from the wheel alone; its dependencies (torch, PyAV,
...) are borrowed from the running environment through a ``.pth`` line, so the test
needs no network. A ``.pth`` line only appends a path: the editable install's own
``.pth`` hooks there are not run, so nothing can reach the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh venv holding only the pacodec wheel."""
    top = tmp_path_factory.mktemp("install")
    wheels = top / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)], cwd=top)
    (wheel,) = wheels.glob("pacodec-*.whl")
    venv = top / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)])
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_wheel_carries_the_weights_and_codes_outside_the_checkout(installed, tmp_path, atari_frames):
    from pacodec.video import VideoWriter

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PACODEC_WEIGHTS")}
    where = run([str(installed), "-c", "import pacodec, pacodec.zoo as z; print(pacodec.__file__); "
                 "print(z.SHIPPED_DIR); print(pacodec.__version__)"], cwd=tmp_path, env=env).stdout.split()
    assert str(installed.parent.parent) in where[0] and str(ROOT) not in where[0], where
    assert (Path(where[1]) / "manifest.json").is_file()
    clip = tmp_path / "clip.mkv"
    with VideoWriter(clip, fps=30, width=160, height=200) as out:
        for frame in atari_frames[:6]:
            out.write(frame)
    models = json.loads(run([str(installed), "-m", "pacodec", "models", "--json"], cwd=tmp_path, env=env).stdout)
    assert {m["id"]: m["weights"] for m in models}.get("pac-q8") is True
    run([str(installed), "-m", "pacodec", "encode", str(clip), "-o", "x.pcz", "-q"], cwd=tmp_path, env=env)
    run([str(installed), "-m", "pacodec", "decode", "x.pcz", "-o", "x.mkv", "-q"], cwd=tmp_path, env=env)
    quality = json.loads(run([str(installed), "-m", "pacodec", "compare", str(clip), "x.mkv", "--json"],
                             cwd=tmp_path, env=env).stdout)
    assert quality["frames"] == 6 and quality["psnr"] > 30
    version = run([str(installed), "-m", "pacodec", "--version"], cwd=tmp_path, env=env).stdout
    assert version.strip() == f"pacodec {where[2]}"


def test_pacodec_weights_points_elsewhere(tmp_path, tiny_weights, atari_frames):
    """$PACODEC_WEIGHTS is searched like --weights: tiny models found without the flag."""
    from conftest import run_cli
    from pacodec.video import VideoWriter

    clip = tmp_path / "clip.mkv"
    with VideoWriter(clip, fps=30, width=160, height=200) as out:
        for frame in atari_frames[:3]:
            out.write(frame)
    r = run_cli("encode", str(clip), "-o", str(tmp_path / "t.pcz"), "--model", "tiny-conv",
                "--quantizer", "naive", "-q", env={"PACODEC_WEIGHTS": str(tiny_weights)})
    assert r.returncode == 0, r.stderr
    r = run_cli("encode", str(clip), "-o", str(tmp_path / "u.pcz"), "--model", "tiny-conv", "-q",
                env={"PACODEC_WEIGHTS": str(tmp_path / "nowhere")})
    assert r.returncode == 2 and "PACODEC_WEIGHTS" in r.stderr, r.stderr
