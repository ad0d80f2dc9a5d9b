"""Format 4.x on: predicted frames' residual symbols coded with a learned integer
network (pac-ctx; 7.x: pac-ctx2) (pacodec/symbolnet.py, pcz.md §14.7, §14.9)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pacodec
from pacodec import api, symbolnet, zoo
from pacodec.errors import WeightsError

from conftest import one_line

ROOT = Path(__file__).resolve().parents[1]


def random_net(seed: int, model_id: str = "pac-ctx") -> symbolnet.SymbolNet:
    """Weights at the bounds the format allows: the exactness argument's worst case."""
    rng = np.random.default_rng(seed)
    big = 1 << 15
    inputs, hidden = symbolnet.SHAPES[model_id]
    return symbolnet.SymbolNet({
        "W1": rng.integers(-big, big + 1, (inputs, hidden)),
        "b1": rng.integers(-(1 << 24), 1 << 24, hidden),
        "W2": rng.integers(-big, big + 1, (hidden, hidden)),
        "b2": rng.integers(-(1 << 24), 1 << 24, hidden),
        "W3": rng.integers(-big, big + 1, (hidden, symbolnet.ALPHABET)),
        "b3": rng.integers(-(1 << 24), 1 << 24, symbolnet.ALPHABET),
        "S": np.array([10, 14, 16])}, model_id)


def random_features(seed: int, n: int, model_id: str = "pac-ctx") -> np.ndarray:
    """Features at their bounds: 0 … 31, x₂ −4 … 4; 7.x's signed ones −31 … 31."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 32, (n, symbolnet.SHAPES[model_id][0]))
    x[:, 2] = rng.integers(-4, 5, n)
    if model_id == "pac-ctx2":
        x[:, symbolnet.WIDE_AT:] = rng.integers(-31, 32, (n, len(symbolnet.WIDE_NAMES)))
    return x


def test_the_float64_products_are_the_integer_arithmetic_of_the_spec():
    """SymbolNet computes its sums as float64 matrix products; with integer terms far
    below 2^53 that is exact: the logits equal int64 arithmetic (numpy's integer matmul,
    no BLAS) bit for bit, for weights and inputs at their bounds."""
    for seed, model_id in ((0, "pac-ctx"), (1, "pac-ctx"), (2, "pac-ctx2"), (3, "pac-ctx2")):
        net, x = random_net(seed, model_id), random_features(seed, 5000, model_id)
        w, s = net.w, net.w["S"]
        h = np.clip((np.matmul(x, w["W1"]) + w["b1"]) >> s[0], 0, 255)
        h = np.clip((np.matmul(h, w["W2"]) + w["b2"]) >> s[1], 0, 255)
        want = (np.matmul(h, w["W3"]) + w["b3"]) >> s[2]
        assert np.array_equal(net.logits(x), want)
        assert 0 < (h > 0).mean() < 1  # the test's activations are neither all clipped nor all zero


def test_the_products_run_on_one_blas_thread_and_leave_the_callers_setting():
    """integer_mlp limits BLAS to one thread while it multiplies (small products, measured
    faster so) and restores whatever the caller had set."""
    from threadpoolctl import threadpool_info, threadpool_limits

    net, x = random_net(0, "pac-ctx2"), random_features(0, 300, "pac-ctx2")
    seen = []
    real = symbolnet._layer

    def spy(*args, **kwargs):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(*args, **kwargs)

    with threadpool_limits(limits=2, user_api="blas"):
        symbolnet._layer = spy
        try:
            net.logits(x)
        finally:
            symbolnet._layer = real
        after = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    assert seen and all(s == {1} for s in seen)
    assert after == {2}


def test_tables_of_repeated_feature_rows_are_each_rows_own_table():
    """SymbolNet.tables runs the network once per distinct row: with many repeats (as
    in a frame's black corridors) every row still gets exactly the table of its own
    features, in its own place."""
    net = zoo.load("pac-ctx2")[0].network()
    rng = np.random.default_rng(3)
    pool = random_features(11, 40, "pac-ctx2")
    x = pool[rng.integers(0, len(pool), 3000)]
    assert len(np.unique(x, axis=0)) < 0.8 * len(x)  # many rows share a table
    want = symbolnet.softmax_table(net.logits(x))
    assert np.array_equal(net.tables(x), want)
    assert np.array_equal(net.tables(x[:10]), want[:10])  # short batches: no sharing


def test_the_encoders_second_ask_reuses_the_rows_of_its_first_and_gets_the_same_tables(monkeypatch):
    """SymbolNet.distinct_tables (the encoder codes a frame's symbols after pricing
    them): every row gets its own table whether or not an earlier call saw it, and the
    network runs only on the rows that call did not see."""
    net = zoo.load("pac-ctx2")[0].network()
    rng = np.random.default_rng(5)
    pool = random_features(12, 60, "pac-ctx2")
    first, second = pool[rng.integers(0, 40, 2000)], pool[rng.integers(20, 60, 2000)]  # rows 20 … 39 shared
    want = symbolnet.softmax_table(net.logits(second))
    table, inverse, seen = net.distinct_tables(first)
    assert np.array_equal(table[inverse], symbolnet.softmax_table(net.logits(first)))
    ran = []
    real = net._logits
    monkeypatch.setattr(net, "_logits", lambda x: ran.append(len(x)) or real(x))
    table, inverse, _ = net.distinct_tables(second, seen, keep=False)
    assert np.array_equal(table[inverse], want)
    assert ran == [len(np.unique(pool[40:60], axis=0))]  # only the rows the first call had not seen


def test_rows_that_share_a_hash_still_get_their_own_tables(monkeypatch):
    """distinct_rows groups feature rows by a 64-bit hash and checks every row against
    its group: were every row to hash alike, each would still get its own table, from
    tables and from distinct_tables, with or without an earlier call's rows."""
    net = zoo.load("pac-ctx2")[0].network()
    rng = np.random.default_rng(8)
    pool = random_features(13, 50, "pac-ctx2")
    first, second = pool[rng.integers(0, 30, 500)], pool[rng.integers(15, 50, 500)]
    want_first, want_second = (symbolnet.softmax_table(net.logits(x)) for x in (first, second))
    monkeypatch.setattr(symbolnet, "row_keys", lambda x: np.zeros(len(x), np.uint64))
    distinct, inverse, _ = symbolnet.distinct_rows(second)
    assert np.array_equal(distinct[inverse], second.astype(np.int8))
    assert len(distinct) == len(np.unique(second, axis=0))
    assert np.array_equal(net.tables(second), want_second)
    table, inverse, seen = net.distinct_tables(first)
    assert np.array_equal(table[inverse], want_first)
    table, inverse, _ = net.distinct_tables(second, seen)
    assert np.array_equal(table[inverse], want_second)


def test_features_follow_the_earlier_channels_when_their_window_planes_are_kept():
    """FrameInputs keeps the window planes of the earlier channels from one pass to the
    next (both passes of a channel read the same ones): asked again with other
    earlier symbols, the features are those of fresh inputs, not the kept planes'."""
    rng = np.random.default_rng(21)
    h, w = 40, 48
    choice = rng.integers(0, 5, (h // 4, w // 4))
    vectors = rng.integers(-4, 5, (h // 4, w // 4, 2))
    base = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    refs = [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(4)]
    previous = rng.integers(-6, 7, (h, w, 3)) * (rng.random((h, w, 3)) < 0.2)

    def inputs():
        return symbolnet.FrameInputs(choice, previous, base, refs, 3, h, w, vectors=vectors, wide=True)

    kept = inputs()
    pos = np.flatnonzero(rng.random(h * w) < 0.5)
    for trial in range(3):
        known = rng.integers(-32, 33, (3, h, w)) * (rng.random((3, h, w)) < 0.3)
        for index in range(2, 6):
            assert np.array_equal(symbolnet.features(known, index, pos, kept),
                                  symbolnet.features(known, index, pos, inputs())), (trial, index)


def test_the_window_features_are_their_definition_at_every_pixel():
    """symbolnet.window (OpenCV on float32) is the spec's window sum and max over the
    (2k+1)² pixels around each, zero outside the plane, for the largest values its
    features feed it, at every pixel of planes with odd sizes."""
    rng = np.random.default_rng(7)
    for h, w, top in ((200, 160, 1), (17, 9, 64), (5, 3, 255)):
        plane = rng.integers(0, top + 1, (h, w)) * (rng.random((h, w)) < 0.4)
        for k in (1, 2):
            padded = np.pad(plane, k)
            stack = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(2 * k + 1) for dx in range(2 * k + 1)])
            assert np.array_equal(symbolnet.window(plane, k, "sum"), stack.sum(axis=0))
            assert np.array_equal(symbolnet.window(plane, k, "max"), stack.max(axis=0))


def test_the_softmax_in_float64_is_the_integer_division_of_the_spec():
    """softmax_table divides in float64 and truncates; that is the spec's integer floor
    for every row: random logits, near ties, one dominant value, and many values at the
    table's end (e = 0 … 1), against the same formula in int64."""
    rng = np.random.default_rng(11)
    rows = [rng.integers(-600, 600, (20000, 65)), rng.integers(-3, 3, (5000, 65)),
            np.where(rng.random((2000, 65)) < 0.02, 400, rng.integers(-2000, -180, (2000, 65)))]
    for z in rows:
        z = z.astype(np.int64)
        e = symbolnet.EXP[np.minimum(z.max(axis=1, keepdims=True) - z, 255)]
        want = e * ((1 << 16) - 65) // e.sum(axis=1, keepdims=True) + 1
        want[np.arange(len(z)), want.argmax(axis=1)] += (1 << 16) - want.sum(axis=1)
        assert np.array_equal(symbolnet.softmax_table(z), want)
        assert np.array_equal(symbolnet.softmax_table(z.astype(np.float64)), want)


def test_every_table_is_a_valid_coder_table_even_for_extreme_logits():
    z = np.array([[0] * 65, [10 ** 9] + [0] * 64, [-(10 ** 9)] * 64 + [5], list(range(0, 650, 10))], np.int64)
    f = symbolnet.softmax_table(z)
    assert (f >= 1).all() and (f.sum(axis=1) == 1 << 16).all()
    assert f[1, 0] == (1 << 16) - 64 and f[0, 0] == f[0, 1] + (1 << 16) - 65 * f[0, 1]


_TABLES = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_symbolnet import random_features
from pacodec import zoo
for model_id in ("pac-ctx", "pac-ctx2"):
    net = zoo.load(model_id)[0].network()
    print(hashlib.sha256(net.tables(random_features(7, 200000, model_id)).tobytes()).hexdigest())
"""


def test_the_tables_are_the_same_whatever_the_thread_count():
    """The shipped network's tables for the same features, computed under 1 and 2 BLAS
    and OpenMP threads in fresh processes, are identical."""
    code = _TABLES.format(root=str(ROOT), tests=str(ROOT / "tests"))
    digests = set()
    for threads in ("1", "2"):
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and [len(d) for d in digests.pop().split()] == [64, 64]


def drawn(count: int) -> np.ndarray:
    from tools.make_golden import reference_frames

    return reference_frames(count)


def encode(path: Path, frames: np.ndarray, **kwargs) -> tuple[Path, list[np.ndarray]]:
    recon = []
    with pacodec.Writer(path, model="pac-q8", fps=30, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
            writer._flush_pending()
            recon.append(np.array(writer._history[0]))
    return path, recon


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    frames = drawn(6)
    return encode(tmp_path_factory.mktemp("ctx") / "c.pcz", frames, gop=3), frames


def test_a_7x_file_names_the_symbol_model_and_decodes_to_the_encoders_frames(learned):
    """(Written as 12.0 now, which codes the symbols as 7.0 does with pac-ctx3's copy of
    pac-ctx2's network.)"""
    (path, recon), _ = learned
    facts = api.probe(path)
    assert facts["version"] == "12.0"
    assert [m["id"] for m in facts["models"]][2:] == ["pac-key", "pac-ctx3"]
    from pacodec.cli import render_info

    assert "\nsymbols     pac-ctx3  weights sha256 " in render_info(facts)  # not "key ref"
    with pacodec.open(path) as reader:
        decoded = [np.array(f) for f in reader]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, recon))  # exact: GOPs from the reference


def _key_frame(path: Path) -> np.ndarray:
    with pacodec.open(path) as reader:
        return reader._decode_record(next(iter(reader.pcz)), [])[0]


def test_predicted_frames_read_pixels_only_in_gops_from_the_reference(tmp_path, learned):
    """A key frame from the learned reference makes its GOP exact (the symbol model may
    read its pixels); one coded on its own (another maze) does not."""
    (path, _), _ = learned
    assert _key_frame(path).exact
    from pacodec.data import record_atari
    from pacodec.video import fit

    other = np.stack([fit(f, 160, 200) for f in record_atari(game="ms_pacman", frames=4, seed=3)])
    _, recon = encode(tmp_path / "o.pcz", other, gop=4)
    assert not getattr(_key_frame(tmp_path / "o.pcz"), "exact", False)
    with pacodec.open(tmp_path / "o.pcz") as reader:
        assert all(np.abs(np.array(a, int) - b).max() <= 1 for a, b in zip(reader, recon))


def test_encoding_is_byte_identical_run_to_run(tmp_path, learned):
    (path, _), frames = learned
    again, _ = encode(tmp_path / "again.pcz", frames, gop=3)
    assert again.read_bytes() == path.read_bytes()


def test_a_reader_without_the_files_symbol_model_refuses_it(tmp_path, learned):
    """A file made with another symbol model is refused by a reader that lacks it (one
    line, exit 2, no output); a reader given another model besides the shipped one
    decodes a shipped-model file with the one it names (weights are found by sha256)."""
    (path, recon), frames = learned
    weights = tmp_path / "w"
    weights.mkdir()
    model = zoo.load("pac-ctx3")[0]
    model.b3.add_(torch.arange(65, dtype=torch.int32))
    sha = zoo.save(model, weights / "pac-ctx3.safetensors")
    zoo.write_manifest_entry(weights, {"id": "pac-ctx3", "file": "pac-ctx3.safetensors", "sha256": sha})
    other, _ = encode(tmp_path / "other.pcz", frames[:3], gop=3, weights_dir=weights)
    assert api.probe(other)["models"][3]["weights_sha256"] == sha
    with pytest.raises(WeightsError, match="pac-ctx3|file was made with"):
        pacodec.open(other)
    r = subprocess.run([sys.executable, "-m", "pacodec", "decode", str(other), "-o", str(tmp_path / "o.mkv")],
                       capture_output=True, text=True)
    one_line(r, 2, "pac-ctx3")
    assert not (tmp_path / "o.mkv").exists()
    with pacodec.open(path, weights_dir=weights) as reader:
        assert all(np.array_equal(a, b) for a, b in zip(reader, recon))


@pytest.mark.parametrize("model_id", ["pac-ctx", "pac-ctx2"])
def test_manifest_entry_says_how_the_symbol_model_was_trained(model_id):
    entry = next(m for m in json.loads((zoo.SHIPPED_DIR / "manifest.json").read_text())["models"]
                 if m["id"] == model_id and not m.get("superseded"))
    data = (zoo.SHIPPED_DIR / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert entry["training"]["command"].startswith("python tools/train_symbol_model.py")
    assert not any("clip8" in d or "clip9" in d for d in entry["training"]["data"])
    levels = entry["measured"]["levels"]
    assert set(levels) == {"pac-q7", "pac-q8", "pac-q9", "pac-q10", "pac-q6"}


def test_manifest_entry_says_how_the_choice_model_was_trained():
    """pac-ctx3: its file is what the entry's sha256 names, its symbol network is the
    shipped pac-ctx2's (copied, §14.13), its choice network was trained on the training
    clips alone, and on the validation clip it codes the choices in fewer bytes than
    8.0's tables at every level."""
    entries = json.loads((zoo.SHIPPED_DIR / "manifest.json").read_text())["models"]
    entry = next(m for m in entries if m["id"] == "pac-ctx3" and not m.get("superseded"))
    data = (zoo.SHIPPED_DIR / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert entry["training"]["command"].startswith("python tools/train_choice_model.py")
    assert not any("clip8" in d or "clip9" in d for d in entry["training"]["data"])
    three, two = zoo.load("pac-ctx3")[0], zoo.load("pac-ctx2")[0]
    for name in ("W1", "b1", "W2", "b2", "W3", "b3", "S"):
        assert torch.equal(getattr(three, name), getattr(two, name))
    levels = entry["measured"]["levels"]
    assert set(levels) == {"pac-q7", "pac-q8", "pac-q9", "pac-q10", "pac-q6"}
    assert all(v["learned_bytes_per_frame"] < v["tables_8_bytes_per_frame"] for v in levels.values())


def test_the_encoders_learned_prices_are_what_the_model_codes_them_in(tmp_path, monkeypatch):
    """4.x encoders choose P-frame symbols with the symbol model's own code lengths
    (refine.RefineCoder._learned_prices). Priced in their own context, a frame's
    symbols cost what the range coder then spends on them with the model, to within
    the coder's two flush words: the pricer reads the same positions, signs and tables
    as the coder."""
    from pacodec import refine
    from pacodec.entropy import RangeEncoder

    seen = []
    real = refine.RefineCoder._learned_prices

    def spy(self, inputs, first):
        seen.append((self, inputs, first))
        return real(self, inputs, first)

    monkeypatch.setattr(refine.RefineCoder, "_learned_prices", spy)
    encode(tmp_path / "p.pcz", drawn(4), gop=4)
    assert seen
    checked = 0
    for coder, inputs, first in seen:
        flags = refine.block_flags(first)
        if not flags.any():
            continue
        price = real(coder, inputs, first)
        whole = price(first, (first,))[0]
        priced = float(whole.sum())
        at = np.flatnonzero(first)  # rd_optimize asks at the non-zero symbols: the same bits there
        assert np.array_equal(price(first, (first.reshape(-1)[at],), at)[0], whole.reshape(-1)[at])
        encoder = RangeEncoder()
        coder._encode_learned(encoder, first, refine._flagged_pixels(flags, *first.shape[:2]), inputs)
        spent = 32 * len(encoder.get_compressed())
        assert priced - 1 <= spent <= priced + 64, (priced, spent)
        checked += 1
    assert checked
