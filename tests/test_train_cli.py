"""Training and dataset commands through the real CLI: outputs, resume, torchrun, Atari."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pacodec import zoo

from conftest import ROOT, run_cli


def _log(out: Path, model_id: str = "tiny-conv") -> list[dict[str, str]]:
    with open(out / f"{model_id}.log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_writes_weights_manifest_log_and_checkpoint_then_resumes(tmp_path, clip):
    out = tmp_path / "run"
    r = run_cli("-q", "train", "tiny-conv", "--data", str(clip), "--epochs", "1", "--batch-size", "4",
                "-o", str(out))
    assert r.returncode == 0, r.stderr
    weights = out / "tiny-conv.safetensors"
    assert weights.is_file()
    entry = {e["id"]: e for e in zoo.read_manifest(out)}["tiny-conv"]
    assert entry["sha256"] == zoo.sha256_of(weights) and entry["training"]["epochs"] == 1
    assert entry["training"]["command"].startswith("pacodec train tiny-conv")
    assert (out / "tiny-conv.checkpoint.safetensors").is_file()
    state = json.loads((out / "tiny-conv.checkpoint.json").read_text())
    assert state["epoch"] == 1 and state["model_id"] == "tiny-conv"
    rows = _log(out)
    assert [row["epoch"] for row in rows] == ["1"] and rows[0]["frames"] == "20"
    model, _ = zoo.load("tiny-conv", out)  # the weights load and carry their config
    assert model.code_shape == (8, 50, 40)

    r = run_cli("-q", "train", "tiny-conv", "--data", str(clip), "--epochs", "2", "--batch-size", "4",
                "--resume", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert [row["epoch"] for row in _log(out)] == ["1", "2"]
    assert json.loads((out / "tiny-conv.checkpoint.json").read_text())["epoch"] == 2
    assert {e["id"]: e for e in zoo.read_manifest(out)}["tiny-conv"]["training"]["epochs"] == 2


def test_block_option_is_refused_for_models_without_blocks(tmp_path, clip):
    r = run_cli("-q", "train", "tiny-conv", "--data", str(clip), "--block", "3", "-o", str(tmp_path))
    assert r.returncode == 2 and "--block" in r.stderr


def test_set_overrides_the_config_and_the_weights_carry_it(tmp_path, clip):
    out = tmp_path / "run"
    r = run_cli("-q", "train", "tiny-conv", "--data", str(clip), "--epochs", "1", "--batch-size", "4",
                "--set", "channels=[4, 6]", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert f"weights {out / 'tiny-conv.safetensors'} sha256" in r.stdout, r.stdout
    entry = {e["id"]: e for e in zoo.read_manifest(out)}["tiny-conv"]
    assert entry["config"]["channels"] == [4, 6] and "--set 'channels=[4, 6]'" in entry["training"]["command"]
    model, _ = zoo.load("tiny-conv", out)
    assert model.code_shape == (6, 50, 40)
    for bad in ("nope=1", "channels"):
        r = run_cli("-q", "train", "tiny-conv", "--data", str(clip), "--set", bad, "-o", str(tmp_path / "x"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--set" in r.stderr, r.stderr
        assert not (tmp_path / "x").exists()


def test_pca_start_trains_a_block_with_zero_epochs_and_says_so(tmp_path, clip):
    out = tmp_path / "run"
    r = run_cli("-q", "train", "vanilla-fc-500", "--block", "3", "--pca", "--epochs", "0",
                "--set", "code=4", "--data", str(clip), "--val", str(clip), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = _log(out, "vanilla-fc-500.block03")
    assert [row["epoch"] for row in rows] == ["0"] and float(rows[0]["val_loss"]) > 0  # the start
    assert "started from the principal components of 20 frames" in r.stdout, r.stdout
    facts = json.loads((out / "vanilla-fc-500.block03.json").read_text())
    assert facts["training"]["init"] == "pca" and facts["training"]["epochs"] == 0
    assert "--pca" in facts["training"]["command"]
    for args in (["tiny-conv", "--pca"], ["vanilla-fc-compact", "--pca"], ["vanilla-fc-500", "--epochs", "0"]):
        r = run_cli("-q", "train", *args, "--data", str(clip), "-o", str(tmp_path / "x"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / "x").exists()


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "pacodec.cli", "--version"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("pacodec ")


@pytest.mark.slow
def test_torchrun_two_processes_agree_and_learn(tmp_path, clip):
    """``torchrun -m pacodec.cli train``: DDP over gloo, 2 ranks, 10 frames each."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "pacodec.cli", "-q", "train",
           "tiny-conv", "--data", str(clip), "--epochs", "3", "--batch-size", "2", "--lr", "3e-3",
           "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    rows = _log(out)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert all(row["frames"] == "20" for row in rows)  # two shards of 10
    losses = [float(row["train_loss"]) for row in rows]
    assert losses[-1] < losses[0], losses
    digests = [(out / f"tiny-conv.rank{r}.digest").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert (out / "tiny-conv.safetensors").is_file()


def test_dataset_atari_writes_n_frames_deterministically(tmp_path):
    from pacodec import video

    paths = []
    for name, seed in (("a", "5"), ("b", "5")):
        path = tmp_path / f"{name}.mkv"
        r = run_cli("-q", "dataset", "atari", "--frames", "50", "--seed", seed, "-o", str(path))
        assert r.returncode == 0, r.stderr
        paths.append(path)
    a, b = (np.stack(list(video.iter_frames(p))) for p in paths)
    assert len(a) == 50 and a.shape[1:] == (210, 160, 3)
    assert np.array_equal(a, b)  # same seed, same frames
    # (50 frames are all the intro tune, before the agent moves, so seeds agree there too.)


# -- a run is never destroyed; its losses are shown (issue 15, item 7) --------------
def test_a_rerun_into_a_run_s_folder_is_refused_unless_resumed_or_forced(tmp_path, clip):
    out = tmp_path / "run"
    args = ("train", "tiny-conv", "--data", str(clip), "--val", str(clip), "--epochs", "1",
            "--batch-size", "4", "-o", str(out))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    # Each epoch's losses on the terminal, the same figures as the CSV's.
    row = _log(out)[0]
    assert f"epoch 1/1: train loss {row['train_loss']}, val loss {row['val_loss']}" in r.stdout, r.stdout
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    r = run_cli(*args[:-2], "--seed", "7", "-o", str(out))
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "already holds a training run of tiny-conv" in r.stderr
    assert "--resume" in r.stderr and "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files  # untouched

    r = run_cli("-q", *args[:-2], "--seed", "7", "--force", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("epoch 1/1") == 0  # -q: no epoch lines
    assert [row["epoch"] for row in _log(out)] == ["1"]  # started over, not appended
    assert (out / "tiny-conv.safetensors").read_bytes() != files["tiny-conv.safetensors"]


def test_losses_go_to_tensorboard_where_it_is_installed(tmp_path, clip):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    r = run_cli("-q", "train", "tiny-conv", "--data", str(clip), "--val", str(clip), "--epochs", "2",
                "--batch-size", "4", "-o", str(out))
    assert r.returncode == 0, r.stderr
    events = EventAccumulator(str(out / "tensorboard" / "tiny-conv"))
    events.Reload()
    rows = _log(out)
    for tag, column in (("loss/train", "train_loss"), ("loss/val", "val_loss")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([float(row[column]) for row in rows], rel=1e-5)


TOY_FAMILY = '''
from pacodec.models.base import ModelSpec, register
from pacodec.models.conv import ConvAutoencoder, ConvConfig
from pacodec.models.base import config_from

register(ModelSpec("toy-conv", "toy", lambda o: ConvAutoencoder("toy-conv", config_from(ConvConfig, {"channels": (4,), **(o or {})})),
                   "a toy family from another distribution"))
'''


def test_a_model_family_from_another_distribution_is_found_and_trains(tmp_path, clip):
    """Families are discovered (this package's modules and the ``pacodec.models`` entry
    points), not listed by hand: a plug-in installed beside pacodec adds its ids."""
    site = tmp_path / "site"
    (site / "toy_family-0.1.dist-info").mkdir(parents=True)
    (site / "toy_family.py").write_text(TOY_FAMILY)
    (site / "toy_family-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-family\nVersion: 0.1\n")
    (site / "toy_family-0.1.dist-info" / "entry_points.txt").write_text("[pacodec.models]\ntoy = toy_family\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = run_cli("models", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {m["id"]: m for m in json.loads(r.stdout)}
    assert rows["toy-conv"]["description"] == "a toy family from another distribution"
    assert "pac-q8" in rows  # pacodec's own families are still all there
    out = tmp_path / "run"
    r = run_cli("-q", "train", "toy-conv", "--data", str(clip), "--epochs", "1", "--batch-size", "4",
                "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert (out / "toy-conv.safetensors").is_file()
