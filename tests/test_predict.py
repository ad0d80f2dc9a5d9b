"""Predicted frames: closed loop, seeking, GOP rules, determinism, damage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import pacodec
from pacodec import api
from pacodec.errors import InputError
from pacodec.pcz import PczReader
from pacodec.predict import MOVE, RESIDUAL, SKIP, PFrame, motion_prediction


@pytest.fixture(scope="module")
def predictive(tmp_path_factory, clip, tiny_weights):
    out = tmp_path_factory.mktemp("p") / "p.pcz"
    api.encode(clip, out, model="tiny-pac", weights_dir=tiny_weights, gop=8)
    return out


def test_gop_structure_and_accounting(predictive):
    facts = api.probe(predictive)
    assert facts["gop"] == 8 and facts["frames"] == 20
    assert (facts["intra_frames"], facts["predicted_frames"]) == (3, 17)
    assert [m["id"] for m in facts["models"]] == ["tiny-pac", "tiny-pac-res"]
    assert sum(facts["parts"].values()) == facts["file_bytes"]
    assert facts["bytes_by_type"]["intra"] + facts["bytes_by_type"]["predicted"] \
        == facts["parts"]["codes"] + facts["parts"]["framing"]


def test_seeking_gives_the_pixels_of_decoding_from_the_start(predictive, tiny_weights):
    with pacodec.open(predictive, weights_dir=tiny_weights) as reader:
        frames = list(reader)
        for i in range(len(frames)):
            assert np.array_equal(reader[i], frames[i]), i


def test_frames_read_one_index_at_a_time_decode_each_record_once(predictive, tiny_weights, monkeypatch):
    """reader[i] in a loop continues from the last frame it decoded instead of decoding
    the GOP from its intra frame again (quadratic in the GOP's length); going back, or
    to another GOP, starts again from that GOP's intra frame, with the same pixels."""
    with pacodec.open(predictive, weights_dir=tiny_weights) as reader:
        frames = list(reader)
        decoded: list[int] = []
        decode = reader._decode_record

        def counting(record, history):
            decoded.append(record.index)
            return decode(record, history)

        monkeypatch.setattr(reader, "_decode_record", counting)
        for i in range(len(frames)):
            assert np.array_equal(reader[i], frames[i]), i
        assert decoded == list(range(len(frames)))
        decoded.clear()
        for i in (13, 13, 10, 3, 19, 17):  # back in a GOP, to earlier and later GOPs (GOP 8)
            assert np.array_equal(reader[i], frames[i]), i
        assert decoded == [8, 9, 10, 11, 12, 13, 8, 9, 10, 0, 1, 2, 3, 16, 17, 18, 19, 16, 17]


def test_gop_1_is_the_intra_family(clip, tiny_weights, tmp_path):
    a, b = tmp_path / "gop1.pcz", tmp_path / "intra.pcz"
    api.encode(clip, a, model="tiny-pac", weights_dir=tiny_weights, gop=1)
    with api.Writer(b, model="tiny-pac", weights_dir=tiny_weights, gop=1, fps=30) as w:
        from pacodec.video import iter_frames

        for frame in iter_frames(clip):
            w.write(frame)
    assert a.read_bytes() == b.read_bytes()
    assert api.probe(a)["predicted_frames"] == 0


def test_gop_above_1_needs_a_predicting_model(clip, tiny_weights, tmp_path):
    with pytest.raises(InputError, match="cannot predict"):
        api.encode(clip, tmp_path / "x.pcz", model="tiny-conv", weights_dir=tiny_weights, gop=4)
    assert not (tmp_path / "x.pcz").exists()


ENCODE = ("import sys; from pacodec import api; "
          "api.encode(sys.argv[1], sys.argv[2], model='tiny-pac', weights_dir=sys.argv[3], gop=8)")


def test_encoding_is_byte_identical_run_to_run(clip, tiny_weights, tmp_path, predictive):
    again = tmp_path / "again.pcz"
    subprocess.run([sys.executable, "-c", ENCODE, str(clip), str(again), str(tiny_weights)], check=True)
    assert again.read_bytes() == predictive.read_bytes()


def test_refined_predictive_encoding_is_byte_identical_run_to_run(clip, tiny_weights, tmp_path):
    """The refined levels' P-frames (multi-reference search, rate–distortion choices)
    too: another process writes the same bytes."""
    first, again = tmp_path / "first.pcz", tmp_path / "again.pcz"
    api.encode(clip, first, model="tiny-pac-hi", weights_dir=tiny_weights, gop=8)
    code = ENCODE.replace("'tiny-pac'", "'tiny-pac-hi'")
    subprocess.run([sys.executable, "-c", code, str(clip), str(again), str(tiny_weights)], check=True)
    assert api.probe(first)["predicted_frames"] > 0
    assert again.read_bytes() == first.read_bytes()


def test_closed_loop_reconstruction_matches_the_decoder(tiny_weights, atari_frames):
    from pacodec.models import build_model  # noqa: F401
    from pacodec.zoo import load

    intra, _ = load("tiny-pac", tiny_weights)
    predictor = api._predictor(intra, tiny_weights, "cpu")
    ref = atari_frames[0]
    payload, recon = predictor.coder.encode(atari_frames[1], ref)
    assert np.array_equal(predictor.coder.decode(payload, ref), recon)


def test_pack_unpack_round_trip(tiny_weights):
    from pacodec.zoo import load

    intra, _ = load("tiny-pac", tiny_weights)
    coder = api._predictor(intra, tiny_weights, "cpu").coder
    rng = np.random.default_rng(0)
    modes = rng.choice([SKIP, MOVE, RESIDUAL], size=(coder.rows, coder.cols)).astype(np.uint8)
    vectors = rng.integers(-4, 5, (coder.rows, coder.cols, 2))
    vectors[modes == SKIP] = 0
    symbols = rng.integers(-3, 4, (coder.tables.shape[0], int((modes == RESIDUAL).sum()))).astype(np.int32)
    back = coder.unpack(coder.pack(PFrame(modes, vectors, symbols)))
    assert np.array_equal(back.modes, modes) and np.array_equal(back.vectors, vectors)
    assert np.array_equal(back.symbols, symbols)


def test_motion_prediction_moves_blocks():
    ref = np.zeros((32, 32, 3), np.uint8)
    ref[10, 12] = 255
    vectors = np.zeros((2, 2, 2), np.int64)
    vectors[0, 0] = (2, -1)  # block (0,0) reads from 2 rows down, 1 column left
    pred = motion_prediction(ref, vectors)
    assert pred[8, 13].tolist() == [255, 255, 255]


def test_damage_spreads_to_dependent_frames_until_the_next_intra(predictive, tiny_weights, tmp_path):
    data = bytearray(predictive.read_bytes())
    with open(predictive, "rb") as f:
        record = PczReader(f).record(2)  # a predicted frame of the first GOP
    data[record.offset + 8] ^= 0x10
    broken = tmp_path / "broken.pcz"
    broken.write_bytes(bytes(data))
    with pacodec.open(broken, salvage=True, weights_dir=tiny_weights) as reader:
        frames = list(reader)
        assert len(frames) == 20
        assert reader.damaged == list(range(2, 8))  # frame 8 is intra again
        assert np.array_equal(frames[2], frames[1])
