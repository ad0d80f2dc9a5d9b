"""Format 11.x: predicted frames' 4×4 choices coded with a learned integer network
(pac-ctx3's ``C_`` tensors; pacodec/choicenet.py, pcz.md §14.13)."""

from __future__ import annotations

import numpy as np
import pytest

from pacodec import blockmotion as bm
from pacodec import choicenet as cn
from pacodec import motion_tables as mt
from pacodec import zoo
from pacodec.entropy import RangeDecoder, RangeEncoder
from pacodec.errors import FormatError
from pacodec.symbolnet import softmax_table


def random_net(seed: int) -> cn.ChoiceNet:
    """Weights at the bounds the format allows: the exactness argument's worst case."""
    rng = np.random.default_rng(seed)
    big = 1 << 15
    return cn.ChoiceNet({
        "C_W1": rng.integers(-big, big + 1, (cn.INPUTS, cn.HIDDEN)),
        "C_b1": rng.integers(-(1 << 24), 1 << 24, cn.HIDDEN),
        "C_W2": rng.integers(-big, big + 1, (cn.HIDDEN, cn.HIDDEN)),
        "C_b2": rng.integers(-(1 << 24), 1 << 24, cn.HIDDEN),
        "C_W3": rng.integers(-big, big + 1, (cn.HIDDEN, cn.CHOICES)),
        "C_b3": rng.integers(-(1 << 24), 1 << 24, cn.CHOICES),
        "C_S": np.array([12, 14, 16])})


def frames_with_motion(seed: int, n: int = 4) -> list[np.ndarray]:
    """References, most recent first: a maze-like frame with squares moving in it."""
    rng = np.random.default_rng(seed)
    background = (rng.random((200, 160, 3)) < 0.05).astype(np.uint8) * 120
    out = []
    for t in range(n):
        f = background.copy()
        for k in range(5):
            y, x = 20 + 35 * k, (17 * k + 3 * t) % 150
            f[y:y + 9, x:x + 9] = (255, 255 - 40 * k, 40 * k)
        out.append(f)
    return out


def brute_features(refs, prev_choice, prev_vectors, level, known, r, c, odd) -> np.ndarray:
    """§14.13's table, one block at a time, written from the spec's words."""
    h, w = refs[0].shape[:2]
    rows, cols = prev_choice.shape
    x = np.zeros(cn.INPUTS, np.int64)
    ref = [np.asarray(f, np.int64) for f in refs]
    for j in (2, 3, 4):
        other = ref[min(j, len(ref)) - 1]
        for i, m in enumerate((0, 2, 6)):
            ys = slice(max(4 * r - m, 0), min(4 * r + 4 + m, h))
            xs = slice(max(4 * c - m, 0), min(4 * c + 4 + m, w))
            x[3 * (j - 2) + i] = int(np.abs(ref[0][ys, xs] - other[ys, xs]).sum()).bit_length()
    g = 0
    for y in range(4 * r, min(4 * r + 4, h)):
        for xx in range(4 * c, min(4 * c + 4, w - 1)):
            g += int(np.abs(ref[0][y, xx + 1] - ref[0][y, xx]).sum())
    x[9] = g.bit_length()
    x[10 + prev_choice[r, c]] = 1

    def at(grid, y, xx):
        return grid[y, xx] if 0 <= y < rows and 0 <= xx < cols else 0

    for i, (dy, dx) in enumerate(cn.NEIGHBOURS):
        x[15 + i] = at(prev_choice, r + dy, c + dx) != 0
    for j in range(1, 5):
        x[22 + j] = sum(at(prev_choice, r + dy, c + dx) == j for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        if odd:
            x[29 + j] = sum(at(known, r + dy, c + dx) == j for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)))
    x[27:29] = prev_vectors[r, c]
    x[29] = r
    x[34] = odd
    x[35 + level] = 1
    return x


def test_features_are_the_spec_table():
    """frame_features + pass_features give §14.13's 40 features, checked block by block
    against the table's words on frames where every feature takes several values."""
    refs = frames_with_motion(0, 3)  # three references: Ref4 reads as Ref3
    rng = np.random.default_rng(1)
    prev = rng.integers(0, 5, (50, 40)) * (rng.random((50, 40)) < 0.3)
    vectors = rng.integers(-4, 5, (50, 40, 2)) * (prev[..., None] != 0)
    known = rng.integers(0, 5, (50, 40)) * (rng.random((50, 40)) < 0.4)
    base = cn.frame_features(refs, prev, vectors, 3)
    for odd, pos in enumerate(bm._parities(50, 40)):
        x = cn.pass_features(base, known, odd, pos)
        for i in rng.choice(len(pos), 60, replace=False):
            r, c = divmod(int(pos[i]), 40)
            assert np.array_equal(x[i], brute_features(refs, prev, vectors, 3, known, r, c, odd)), (r, c, odd)
    assert len(np.unique(base[..., 0])) > 3 and base[..., 9].max() > 0


def test_the_float64_products_are_the_integer_arithmetic_of_the_spec():
    """ChoiceNet computes its sums as float64 matrix products: with weights and inputs
    at their bounds the logits equal int64 arithmetic bit for bit, and the tables are
    rows of positive integers summing to 2^16."""
    rng = np.random.default_rng(2)
    for seed in (0, 1):
        net = random_net(seed)
        x = rng.integers(-128, 128, (4000, cn.INPUTS))
        w, s = net.w, net.w["C_S"]
        h = np.clip((np.matmul(x, w["C_W1"]) + w["C_b1"]) >> s[0], 0, 255)
        h = np.clip((np.matmul(h, w["C_W2"]) + w["C_b2"]) >> s[1], 0, 255)
        want = (np.matmul(h, w["C_W3"]) + w["C_b3"]) >> s[2]
        assert np.array_equal(net.logits(x), want)
        assert 0 < (h > 0).mean() < 1
        t = net.tables(x)
        assert np.array_equal(t, softmax_table(want)) and (t >= 1).all() and (t.sum(axis=1) == 1 << 16).all()


def test_weights_outside_the_bounds_are_refused():
    good = {k: v for k, v in random_net(3).w.items()}
    with pytest.raises(FormatError, match="C_W2"):
        cn.ChoiceNet({**good, "C_W2": np.zeros((cn.HIDDEN, 3))})
    with pytest.raises(FormatError, match="16 bits"):
        cn.ChoiceNet({**good, "C_W1": good["C_W1"] * 0 + (1 << 15) + 1})
    with pytest.raises(FormatError, match="shifts"):
        cn.ChoiceNet({**good, "C_S": np.array([1, 2, 41])})
    with pytest.raises(ValueError, match="−128"):
        random_net(3).tables(np.full((2, cn.INPUTS), 200))


def coder_with(net) -> bm.MotionCoder:
    wide = bm.WideTables(mt.CHOICE_TABLES_8, mt.VECTOR_X_TABLES_8, mt.VECTOR_Y_TABLES_8, mt.FRACTION_TABLES_8)
    coder = bm.MotionCoder(mt.CHOICE_TABLES, mt.VECTOR_TABLES, mt.FRACTION_TABLES, wide)
    if net is not None:
        coder.use_choice_model(net, 2)
    return coder


def test_a_field_decodes_to_itself_and_the_network_is_what_codes_it():
    """MotionCoder with the shipped choice network: a field coded where the references
    are exact decodes to itself; decoded with 8.0's tables instead, the same bytes give
    another field (the network's tables are what parse them); where the references are
    not exact the network is not used (8.x's bytes)."""
    net = zoo.load("pac-ctx3")[0].choice_network()
    refs = frames_with_motion(4, 4)
    rng = np.random.default_rng(5)
    choice = rng.integers(1, 5, (50, 40)) * (rng.random((50, 40)) < 0.15)
    vectors = rng.integers(-2, 3, (50, 40, 2)) * (choice[..., None] != 0)
    fraction = rng.integers(0, 4, (50, 40)) * (choice != 0)
    field = bm.MotionField(choice, vectors, fraction)
    previous = bm.MotionField(np.roll(choice, 1, axis=1), np.roll(vectors, 1, axis=1), np.roll(fraction, 1, axis=1))

    def code(coder, exact):
        enc = RangeEncoder()
        coder.encode(enc, field, previous, refs if exact else None)
        return enc.get_compressed()

    def decode(coder, words, exact):
        return coder.decode(RangeDecoder(words), 50, 40, previous, refs if exact else None)

    learned, tables = coder_with(net), coder_with(None)
    words = code(learned, True)
    got = decode(learned, words, True)
    assert np.array_equal(got.choice, choice) and np.array_equal(got.vectors, vectors)
    assert np.array_equal(got.fraction, fraction)
    assert not np.array_equal(code(tables, True), words)
    try:
        other = decode(tables, words, True).choice
    except (FormatError, ValueError, RuntimeError):
        other = None
    assert other is None or not np.array_equal(other, choice)
    assert np.array_equal(code(learned, False), code(tables, False))  # not exact: 8.x's contexts


def test_the_choices_tables_depend_on_the_level_and_the_pass():
    """The level and the pass are inputs: the same block gets other tables at another
    level and in the other pass, so a decoder at the wrong level parses other choices."""
    net = zoo.load("pac-ctx3")[0].choice_network()
    refs = frames_with_motion(6, 4)
    zeros = np.zeros((50, 40), np.int64)
    base = [cn.frame_features(refs, zeros, np.zeros((50, 40, 2), np.int64), k) for k in range(5)]
    pos = np.arange(0, 2000, 2)
    tables = [net.tables(cn.pass_features(b, zeros, 0, pos)) for b in base]
    assert all(not np.array_equal(tables[0], t) for t in tables[1:])
    assert not np.array_equal(net.tables(cn.pass_features(base[0], zeros, 1, pos)), tables[0])
