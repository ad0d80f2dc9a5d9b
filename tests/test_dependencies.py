"""Dependencies (issue 15, item 10): ale-py and scikit-learn are extras that only their
paths need, and a missing one is named with the extra that installs it; torch is a
range that includes what the suite runs with; PSNR is scikit-image's."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import numpy as np
import pytest

from conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower() for r in requirements}


def test_optional_paths_are_extras_and_the_tests_get_them():
    core = names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert not {"ale-py", "scikit-learn"} & core
    assert names(extras["atari"]) == {"ale-py"} and names(extras["kmeans"]) == {"scikit-learn"}
    assert {"ale-py", "scikit-learn"} <= names(extras["test"])  # the suite records Atari, fits kmeans
    assert "scikit-image" in core  # metrics (PSNR, SSIM) for compare, eval and decode's check
    makefile = (ROOT / "Makefile").read_text()
    assert "'.[test,bench,atari,kmeans,distributed]'" in makefile and "torch==2.13.0" in makefile


def test_torch_is_a_range_that_holds_the_tested_release():
    from packaging.requirements import Requirement
    import torch

    (spec,) = [Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == "torch"]
    assert len(spec.specifier) == 2 and not any(s.operator == "==" for s in spec.specifier)
    assert spec.specifier.contains(torch.__version__.split("+")[0])


def without(module: str, *args: str) -> subprocess.CompletedProcess:
    """The real CLI in a Python where ``module`` cannot be imported."""
    code = f"import sys; sys.modules[{module!r}] = None; from pacodec.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_atari_recording_without_ale_py_names_the_extra(tmp_path):
    out = tmp_path / "play.mkv"
    r = without("ale_py", "dataset", "atari", "-o", str(out), "--frames", "2")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("pacodec: error: recording Atari play needs ale-py, which is not "
                                "installed: pip install 'pacodec[atari]'")
    assert list(tmp_path.iterdir()) == []  # no output, no partial


def test_kmeans_without_scikit_learn_names_the_extra_and_decoding_needs_none(tmp_path):
    from pacodec.video import VideoWriter

    clip = tmp_path / "c.mkv"
    rng = np.random.default_rng(0)
    with VideoWriter(clip, fps=30, width=160, height=200) as out:
        for _ in range(2):
            out.write(rng.integers(0, 256, (200, 160, 3), dtype=np.uint8))
    r = without("sklearn", "encode", str(clip), "-o", str(tmp_path / "k.pcz"), "--model", "conv4",
                "--quantizer", "kmeans")
    assert r.returncode == 2 and "pip install 'pacodec[kmeans]'" in r.stderr, r.stderr
    assert not (tmp_path / "k.pcz").exists()
    # With scikit-learn the file is written; decoding it needs no scikit-learn.
    import pacodec

    pacodec.encode(clip, tmp_path / "k.pcz", model="conv4", quantizer="kmeans")
    r = without("sklearn", "decode", str(tmp_path / "k.pcz"), "-o", str(tmp_path / "k.mkv"), "-q")
    assert r.returncode == 0, r.stderr


def test_psnr_is_scikit_images_with_100_db_for_no_error():
    from skimage.metrics import peak_signal_noise_ratio

    from pacodec.metrics import PERFECT_PSNR_DB, psnr

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == peak_signal_noise_ratio(a, b, data_range=255)
    assert psnr(a, a.copy()) == PERFECT_PSNR_DB
    with pytest.raises(ValueError):
        psnr(a, b[:10])
