"""Key frames of format 3.x: intra frames predicted from pac-key's learned reference (pcz.md §14.6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import pacodec
from pacodec import api, zoo
from pacodec.metrics import psnr
from pacodec.errors import FormatError, WeightsError
from pacodec.keyframe import KeyFrameCoder

SAMPLES = Path(__file__).resolve().parents[1] / "formats" / "samples"


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return zoo.load("pac-key")[0].reference()


def drawn(reference: np.ndarray, count: int) -> np.ndarray:
    """The reference with a disc moving right and a box moving down (a game's sprites),
    as the golden sample pac-q8-key is made."""
    from tools.make_golden import reference_frames

    return reference_frames(count)


def encode(path: Path, frames: np.ndarray, **kwargs) -> Path:
    with pacodec.Writer(path, fps=30, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, reference) -> tuple[Path, np.ndarray]:
    frames = drawn(reference, 6)
    return encode(tmp_path_factory.mktemp("key") / "k.pcz", frames, gop=3), frames


def test_the_reference_is_the_maze(reference):
    """The learned frame holds the maze's blue walls on black (not an untrained zero frame)."""
    r = reference.astype(int)
    blue = (r[..., 2] > r[..., 0] + 30) & (r[..., 2] > 40)
    assert 0.05 < blue.mean() < 0.5 and (r.max(axis=2) < 40).mean() > 0.5


def test_key_frames_come_from_the_reference_and_cost_a_fraction_of_an_own_frame(tmp_path, keyed):
    path, frames = keyed
    facts = api.probe(path)
    assert facts["version"] == "12.0" and [m["id"] for m in facts["models"]] == ["pac-q8", "pac-res", "pac-key", "pac-ctx3"]
    assert facts["intra_at"] == [0, 3] and facts["key_frames"] == {"own": 0, "reference": 2}
    own = api.probe(encode(tmp_path / "intra.pcz", frames[[0, 3]], gop=1))
    assert facts["bytes_by_type"]["intra"] * 3 < own["bytes_by_type"]["intra"]
    with pacodec.open(path) as reader:
        decoded = list(reader)
    assert min(psnr(b, a) for a, b in zip(decoded, frames)) > 33


def test_a_gop_from_the_reference_decodes_to_exact_integers(keyed):
    """No float network runs in such a GOP: every decode, seek and the golden sample's
    stored frames agree exactly, not within the 1 that float synthesis allows."""
    path, _ = keyed
    with pacodec.open(path) as reader:
        first = [f.copy() for f in reader]
        for i in (4, 0, 5, 3):
            assert np.array_equal(reader[i], first[i])
    with pacodec.open(SAMPLES / "pac-q8-key.pcz") as reader:
        for i, frame in enumerate(reader):
            want = cv2.imread(str(SAMPLES / "pac-q8-key" / f"frame_{i:06d}.png"))[..., ::-1]
            assert np.array_equal(frame, want), i


def test_footage_of_another_maze_codes_its_key_frames_on_their_own(tmp_path):
    """Ms. Pac-Man on the Atari: another maze, other colours; the reference would cost more."""
    from pacodec.data import record_atari
    from pacodec.video import fit

    frames = np.stack([fit(f, 160, 200) for f in record_atari(game="ms_pacman", frames=122, seed=5)][-2:])
    facts = api.probe(encode(tmp_path / "other.pcz", frames, gop=4))
    assert facts["key_frames"] == {"own": 1, "reference": 0}


def test_a_reader_without_the_files_reference_refuses_it(tmp_path, keyed):
    """A file names its reference by sha256: made with another reference, it is refused
    by a reader that lacks that one; a reader given another reference besides the shipped
    one decodes a shipped-reference file with the shipped one, the one it names."""
    path, frames = keyed
    weights = tmp_path / "w"
    weights.mkdir()
    model = zoo.load("pac-key")[0]
    model.frame.copy_(torch.flip(model.frame, dims=[1]))
    sha = zoo.save(model, weights / "pac-key.safetensors")
    zoo.write_manifest_entry(weights, {"id": "pac-key", "file": "pac-key.safetensors", "sha256": sha})
    other = encode(tmp_path / "other.pcz", frames[:2], gop=3, weights_dir=weights)
    assert api.probe(other)["models"][2]["weights_sha256"] == sha
    with pytest.raises(WeightsError, match="pac-key|file was made with"):
        pacodec.open(other)
    with pacodec.open(path) as a, pacodec.open(path, weights_dir=weights) as b:
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_key_frame_of_unknown_kind_is_a_format_error(reference):
    model, sha = api._load_model("pac-q8", None, "cpu")
    codec = api.Codec(model, sha, api._make_quantizer(model, None))
    coder = KeyFrameCoder(codec, api._predictor(model, None, "cpu").coder, reference)
    for payload in (b"", b"\x02\x00\x00\x00\x00"):
        with pytest.raises(FormatError, match="key frame"):
            coder.decode(payload)


def test_the_reference_model_codes_no_frames(tmp_path):
    src = tmp_path / "in.mkv"
    from pacodec.video import VideoWriter

    with VideoWriter(src, fps=30, width=160, height=200) as out:
        out.write(np.zeros((200, 160, 3), np.uint8))
    done = subprocess.run([sys.executable, "-m", "pacodec", "encode", str(src), "-o", str(tmp_path / "o.pcz"),
                           "--model", "pac-key"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "codes no frames" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.pcz").exists()


def test_manifest_entry_says_how_the_reference_was_learned():
    entry = next(e for e in zoo.read_manifest(zoo.SHIPPED_DIR) if e["id"] == "pac-key")
    assert entry["training"]["command"] == "python tools/make_key_reference.py"
    assert set(entry["training"]["data"]) == {f"../shared/data/pacman/clip{k}.mp4" for k in (0, 4, 5, 6, 7)}
    measured = entry["measured"]
    assert measured["reference_bytes_mean"] < measured["own_bytes_mean"]
    json.dumps(entry)
