"""The Python API end to end with tiny models: files, accounting, seeking, outputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import pacodec
from pacodec import api
from pacodec.errors import InputError, OutputError, WeightsError
from pacodec.video import iter_frames


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, clip, tiny_weights):
    """The fixture clip encoded with tiny-conv under every fixed-width quantizer."""
    out = tmp_path_factory.mktemp("pcz")
    files = {}
    for q in ("none", "naive", "scale", "kmeans"):
        files[q] = out / f"{q}.pcz"
        api.encode(clip, files[q], model="tiny-conv", quantizer=q, weights_dir=tiny_weights)
    return files


ENTRIES = 8 * 50 * 40  # tiny-conv's code


@pytest.mark.parametrize("q,per_entry,params", [("none", 4, 0), ("naive", 1, 0), ("scale", 1, 8),
                                                ("kmeans", 1, 1024)])
def test_accounting_is_exact(encoded, q, per_entry, params):
    facts = api.probe(encoded[q])
    frames = facts["frames"]
    assert frames == 20
    assert sum(facts["parts"].values()) == facts["file_bytes"] == encoded[q].stat().st_size
    assert set(facts["parts"]) == {"header", "params", "codes", "framing", "index"}
    assert facts["parts"]["codes"] == ENTRIES * per_entry * frames
    expected_params = params if q == "kmeans" else params * frames
    assert facts["parts"]["params"] == expected_params
    assert facts["raw_bytes"] == frames * 160 * 200 * 3
    assert facts["ratio"] == pytest.approx(facts["raw_bytes"] / facts["file_bytes"])
    assert facts["codes_ratio"] == pytest.approx(facts["raw_bytes"] / facts["parts"]["codes"])
    assert (facts["source_width"], facts["source_height"]) == (160, 210)
    assert (facts["width"], facts["height"]) == (160, 200)
    assert facts["quantizer"] == q and facts["model"] == "tiny-conv"
    # Framing is a type byte, a varint length and a CRC32 a record; the index of a
    # short all-intra file holds one entry (test_pcz checks the long-run average).
    assert facts["parts"]["framing"] <= 8 * (frames + (q == "kmeans"))
    assert facts["parts"]["index"] <= 64


@pytest.mark.parametrize("q", ["none", "naive", "scale", "kmeans"])
def test_every_quantizer_round_trips_through_a_file(encoded, tiny_weights, atari_frames, q):
    from pacodec.zoo import load

    model, _ = load("tiny-conv", tiny_weights)
    with pacodec.open(encoded[q], weights_dir=tiny_weights) as reader:
        assert len(reader) == 20 and reader.quantizer == q
        frames = list(reader)
    assert len(frames) == 20 and frames[0].shape == (200, 160, 3) and frames[0].dtype == np.uint8
    # The file decodes to what the model makes of the (quantized) codes: the quantizer
    # loses at most its step, so the pictures stay close to the unquantized ones.
    direct = model.decode(model.encode(np.stack([f for f in atari_frames])))
    diff = np.abs(np.stack(frames).astype(int) - direct.astype(int))
    limit = 0 if q == "none" else 40
    assert diff.mean() <= max(limit / 10, 1.0) and (q != "none" or diff.max() <= 1)


def test_reader_seeks_and_exposes_header(encoded, tiny_weights):
    with pacodec.open(encoded["naive"], weights_dir=tiny_weights) as reader:
        frames = list(reader)
        assert reader.fps == 30 and reader.model == "tiny-conv" and len(reader.weights_sha256) == 64
        for i in (0, 7, 19, -1):
            assert np.array_equal(reader[i], frames[i])
        with pytest.raises(IndexError):
            reader[20]


def test_decode_to_mkv_is_what_open_yields(encoded, tiny_weights, tmp_path):
    out = tmp_path / "out.mkv"
    result = api.decode(encoded["naive"], out, weights_dir=tiny_weights)
    assert result["frames"] == 20 and out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]  # no partial left
    with pacodec.open(encoded["naive"], weights_dir=tiny_weights) as reader:
        for a, b in zip(reader, iter_frames(out)):
            assert np.array_equal(a, b)


def test_decode_at_source_size_and_to_pngs(encoded, tiny_weights, tmp_path):
    api.decode(encoded["naive"], tmp_path / "src.mkv", size="source", weights_dir=tiny_weights)
    first = next(iter_frames(tmp_path / "src.mkv"))
    assert first.shape == (210, 160, 3)
    api.decode(encoded["naive"], tmp_path / "pngs", weights_dir=tiny_weights)
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 20


def test_existing_output_needs_force(encoded, tiny_weights, tmp_path):
    out = tmp_path / "exists.mkv"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        api.decode(encoded["naive"], out, weights_dir=tiny_weights)
    assert out.read_bytes() == b"keep me"
    api.decode(encoded["naive"], out, weights_dir=tiny_weights, force=True)
    assert out.read_bytes() != b"keep me"


def test_failed_encode_leaves_no_partial(tmp_path, tiny_weights):
    out = tmp_path / "bad.pcz"
    with pytest.raises(InputError):
        with api.Writer(out, model="tiny-conv", weights_dir=tiny_weights) as writer:
            writer.write(np.zeros((200, 160, 3), np.uint8))
            writer.write(np.zeros((200, 160), np.uint8))  # not RGB
    assert list(tmp_path.iterdir()) == []  # neither the output nor a partial


def test_writer_streams_and_records_source_geometry(tmp_path, tiny_weights, atari_frames):
    out = tmp_path / "w.pcz"
    with pytest.warns(UserWarning, match="stretched to tiny-conv's 160x200"):
        with api.Writer(out, model="tiny-conv", quantizer="naive", fps=25, weights_dir=tiny_weights) as w:
            for frame in atari_frames[:5]:
                w.write(np.ascontiguousarray(frame[:, :150]))  # 150 wide: resized to 160
    facts = api.probe(out)
    assert facts["frames"] == 5 and facts["source_width"] == 150 and facts["fps"] == 25


def test_weights_other_than_the_files_are_refused(encoded, tmp_path, atari_frames):
    from pacodec.train import TrainConfig, train

    other = tmp_path / "other"
    train(TrainConfig(model_id="tiny-conv", out_dir=other, epochs=1, batch_size=4, seed=5), atari_frames[:4])
    with pytest.raises(WeightsError, match="made with"):
        pacodec.open(encoded["naive"], weights_dir=other)


def test_pac_entropy_round_trip_and_accounting(tmp_path, clip, tiny_weights):
    out = tmp_path / "pac.pcz"
    facts = api.encode(clip, out, model="tiny-pac", weights_dir=tiny_weights)
    assert facts["quantizer"] == "entropy" and facts["entropy_coder"] == "constriction-range-v1"
    assert sum(facts["parts"].values()) == facts["file_bytes"]
    assert facts["codes_fixed_width"] == 20 * 8 * 13 * 10
    with pacodec.open(out, weights_dir=tiny_weights) as reader:
        frames = list(reader)
        assert np.array_equal(reader[3], frames[3])
    assert len(frames) == 20
    with pytest.raises(InputError):
        api.encode(clip, tmp_path / "x.pcz", model="tiny-pac", quantizer="naive", weights_dir=tiny_weights)


SYMBOLS = """
import sys, torch, pacodec
torch.set_num_threads(int(sys.argv[1]))
with pacodec.open(sys.argv[2], weights_dir=sys.argv[3]) as r:
    print(r.symbol_digest())
"""


@pytest.mark.parametrize("model", ["tiny-pac", "tiny-pac-hi"])
def test_symbols_identical_across_thread_counts(tmp_path, clip, tiny_weights, model):
    """Encoded with 1 and 2 threads, each file decoded with the other count: the same
    symbols (so the same bits are parsed whichever count encodes or decodes)."""
    digests = set()
    for threads in (1, 2):
        out = tmp_path / f"pac{threads}.pcz"
        enc = ("import sys, torch; torch.set_num_threads(int(sys.argv[1])); from pacodec import api; "
               "api.encode(sys.argv[2], sys.argv[3], model=sys.argv[5], weights_dir=sys.argv[4])")
        subprocess.run([sys.executable, "-c", enc, str(threads), str(clip), str(out), str(tiny_weights), model],
                       check=True)
        got = subprocess.run([sys.executable, "-c", SYMBOLS, str(3 - threads), str(out), str(tiny_weights)],
                             check=True, capture_output=True, text=True).stdout.strip()
        digests.add(got)
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_list_models_reports_code_bytes():
    rows = {r["id"]: r for r in api.list_models()}
    assert rows["conv4"]["code_bytes"]["naive"] == 16640
    assert rows["conv4"]["code_bytes"]["none"] == 16640 * 4
    assert rows["conv5"]["code_bytes"]["naive"] == 8960
    assert "naive" not in rows["vae-compact"]["code_bytes"] and rows["vae-compact"]["code_bytes"]["scale"] == 520
    assert rows["conv4"]["geometry"] == {"width": 160, "height": 200}


def test_compare_identical_files_is_perfect(clip):
    result = api.compare(clip, clip)
    assert result["psnr"] == 100.0 and result["ssim"] == pytest.approx(1.0)
