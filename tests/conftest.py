"""Shared fixtures: real Ms. Pac-Man frames from ale-py and tiny trained models.

Nothing here reads the shared clips; tests that want them skip when absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 20


@pytest.fixture(scope="session")
def atari_frames() -> np.ndarray:
    """FRAMES real Ms. Pac-Man frames at the workshop geometry (200×160), seed 11."""
    from pacodec.data import record_atari
    from pacodec.video import fit

    frames = [fit(f, 160, 200) for f in record_atari(game="ms_pacman", frames=160, seed=11)]
    # Past the intro tune, so consecutive frames differ.
    return np.stack(frames[-FRAMES:])


@pytest.fixture(scope="session")
def clip(tmp_path_factory, atari_frames) -> Path:
    """The fixture frames as a lossless .mkv (at 160×210, so encoding resizes)."""
    from pacodec.video import VideoWriter, fit

    path = tmp_path_factory.mktemp("clip") / "atari.mkv"
    with VideoWriter(path, fps=30, width=160, height=210) as out:
        for frame in atari_frames:
            out.write(fit(frame, 160, 210))
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, atari_frames) -> Path:
    """A folder with tiny-conv, tiny-pac and tiny-pac-res weights trained briefly on the fixture
    frames, and tiny-pac-hi: tiny-pac's network with refinement tables counted on them."""
    from pacodec.train import TrainConfig, train

    out = tmp_path_factory.mktemp("weights")
    for model_id in ("tiny-conv", "tiny-pac"):
        train(TrainConfig(model_id=model_id, out_dir=out, epochs=2, batch_size=4, lr=3e-3), atari_frames)
    pairs = np.concatenate([atari_frames[:-1], atari_frames[1:]], axis=3)
    train(TrainConfig(model_id="tiny-pac-res", out_dir=out, epochs=2, batch_size=4, lr=3e-3), pairs)
    train(TrainConfig(model_id="tiny-pac-hi", out_dir=out, epochs=0, init=out / "tiny-pac.safetensors"),
          atari_frames)
    return out


_launcher: subprocess.Popen | None = None


def _launch(args: tuple[str, ...], cwd: Path | None, timeout: int) -> subprocess.CompletedProcess:
    """One CLI run in its own process, forked by tests/launcher.py (imports paid once)."""
    global _launcher
    import json
    import tempfile

    if _launcher is None or _launcher.poll() is not None:
        _launcher = subprocess.Popen([sys.executable, str(Path(__file__).with_name("launcher.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert json.loads(_launcher.stdout.readline()) == {"ready": True}
    with tempfile.TemporaryDirectory(prefix="pacodec-cli-") as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        request = {"args": list(args), "cwd": str(cwd) if cwd else None, "out": str(out), "err": str(err),
                   "timeout": timeout}
        _launcher.stdin.write(json.dumps(request) + "\n")
        status = json.loads(_launcher.stdout.readline())["status"]
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    cmd = ["pacodec", *args]
    if status is None:
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
    return subprocess.CompletedProcess(cmd, status, stdout, stderr)


def pytest_sessionfinish(session, exitstatus):
    """The launcher ends when its requests do."""
    if _launcher is not None and _launcher.poll() is None:
        _launcher.stdin.close()
        _launcher.wait(timeout=60)
        _launcher.stdout.close()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run the real ``pacodec`` entry point (``pacodec.cli.main``) in a process of its
    own: forked from a pre-imported launcher (tests/launcher.py), or, when ``env``
    sets variables, a fresh interpreter."""
    if not env:
        return _launch(args, cwd, timeout)
    cmd = [sys.executable, "-c", "from pacodec.cli import main; main()", *args]
    full_env = {**os.environ, **env}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


def one_line(r, status: int, *texts: str) -> str:
    """The run exited ``status`` with one ``pacodec: error:`` line holding ``texts``."""
    assert r.returncode == status, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacodec: error: "), r.stderr
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


#: The 4-frame fixture clip coded with tiny-conv + naive (test_hardening, test_safety;
#: other files code all 20 frames in a fixture of the same name).
@pytest.fixture(scope="module")
def pcz(tmp_path_factory, clip, tiny_weights) -> Path:
    import pacodec

    path = tmp_path_factory.mktemp("pcz") / "clip.pcz"
    pacodec.encode(clip, path, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights,
                   max_frames=4)
    return path
