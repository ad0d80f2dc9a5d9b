"""Format 2.0's context-coded 4×4 re-prediction side information (blockmotion.py, pcz.md §14.4),
and 8.0's wider contexts (§14.10)."""

from __future__ import annotations

import numpy as np
import pytest

import pacodec
from pacodec import api
from pacodec import motion_tables
from pacodec.blockmotion import (CHOICE_CONTEXTS, CHOICE_CONTEXTS_8, DIFFS, FRACTION_CONTEXTS, FRACTION_CONTEXTS_8,
                                 FRACTIONS, SEARCH, VECTOR_CONTEXTS, VECTOR_X_CONTEXTS_8, VECTOR_Y_CONTEXTS_8,
                                 MotionCoder, MotionField, WideTables, _groups, activity, choice_symbols, predictor8)
from pacodec.entropy import RangeDecoder, RangeEncoder
from pacodec.errors import FormatError
from pacodec.motion_tables import CHOICE_TABLES, FRACTION_TABLES, VECTOR_TABLES

ROWS, COLS = 50, 40


def coder() -> MotionCoder:
    return MotionCoder(CHOICE_TABLES, VECTOR_TABLES)


def sprite_field(rng: np.random.Generator, shift: int = 0) -> MotionField:
    """A few clusters of taken blocks (sprites) sharing a vector, and some stray ones."""
    choice = np.zeros((ROWS, COLS), np.int64)
    vectors = np.zeros((ROWS, COLS, 2), np.int64)
    for k in range(4):
        r, c = 5 + 10 * k, 4 + 8 * k + shift
        ref = 1 + k % 4
        choice[r:r + 3, c:c + 3] = ref
        vectors[r:r + 3, c:c + 3] = (k % 3 - 1, 1 - k % 2)
    for _ in range(6):
        r, c = rng.integers(0, ROWS), rng.integers(0, COLS)
        choice[r, c] = rng.integers(1, 5)
        vectors[r, c] = rng.integers(-SEARCH, SEARCH + 1, 2)
    vectors[choice == 0] = 0
    return MotionField(choice, vectors)


def roundtrip(field: MotionField, previous: MotionField) -> tuple[int, MotionField]:
    encoder = RangeEncoder()
    coder().encode(encoder, field, previous)
    words = encoder.get_compressed()
    decoder = RangeDecoder(words)
    back = coder().decode(decoder, ROWS, COLS, previous)
    assert decoder.maybe_exhausted()
    return 4 * len(words), back


def wide_tables() -> WideTables:
    return WideTables(motion_tables.CHOICE_TABLES_8, motion_tables.VECTOR_X_TABLES_8,
                      motion_tables.VECTOR_Y_TABLES_8, motion_tables.FRACTION_TABLES_8)


def wide_coder() -> MotionCoder:
    return MotionCoder(CHOICE_TABLES, VECTOR_TABLES, FRACTION_TABLES, wide_tables())


def test_tables_are_what_the_format_says():
    assert CHOICE_TABLES.shape == (CHOICE_CONTEXTS, 5) and VECTOR_TABLES.shape == (VECTOR_CONTEXTS, DIFFS)
    assert FRACTION_TABLES.shape == (FRACTION_CONTEXTS, FRACTIONS)
    wide = wide_tables()
    assert wide.choice.shape == (CHOICE_CONTEXTS_8, 5) and wide.fraction.shape == (FRACTION_CONTEXTS_8, FRACTIONS)
    assert wide.vector_x.shape == (VECTOR_X_CONTEXTS_8, DIFFS) and wide.vector_y.shape == (VECTOR_Y_CONTEXTS_8, DIFFS)
    for table in (CHOICE_TABLES, VECTOR_TABLES, FRACTION_TABLES, wide.choice, wide.vector_x, wide.vector_y,
                  wide.fraction):
        assert table.dtype == np.int32 and (table > 0).all() and (table.sum(axis=1) == 1 << 16).all()


@pytest.mark.parametrize("seed", range(4))
def test_fields_round_trip_exactly(seed):
    rng = np.random.default_rng(seed)
    previous = sprite_field(rng) if seed % 2 else MotionField.empty(ROWS, COLS)
    field = sprite_field(rng, shift=1)
    _, back = roundtrip(field, previous)
    np.testing.assert_array_equal(back.choice, field.choice)
    np.testing.assert_array_equal(back.vectors, field.vectors)


def with_fractions(field: MotionField, rng: np.random.Generator) -> MotionField:
    """``field`` with half-pixel offsets: a sprite's blocks share one, strays draw theirs."""
    fraction = np.where(field.choice != 0, rng.integers(0, FRACTIONS, field.choice.shape), 0)
    return MotionField(field.choice, field.vectors, fraction)


@pytest.mark.parametrize("seed", range(4))
def test_6_0_fields_with_half_pixel_offsets_round_trip_exactly(seed):
    rng = np.random.default_rng(seed)
    previous = with_fractions(sprite_field(rng), rng) if seed % 2 else MotionField.empty(ROWS, COLS)
    field = with_fractions(sprite_field(rng, shift=1), rng)
    half = MotionCoder(CHOICE_TABLES, VECTOR_TABLES, FRACTION_TABLES)
    encoder = RangeEncoder()
    half.encode(encoder, field, previous)
    decoder = RangeDecoder(encoder.get_compressed())
    back = half.decode(decoder, ROWS, COLS, previous)
    assert decoder.maybe_exhausted()
    np.testing.assert_array_equal(back.choice, field.choice)
    np.testing.assert_array_equal(back.vectors, field.vectors)
    np.testing.assert_array_equal(back.fraction, field.fraction)
    # A coder of a format without offsets refuses a field that has some.
    with pytest.raises(ValueError, match="half-pixel"):
        coder().encode(RangeEncoder(), field, previous)


def test_the_previous_frame_makes_a_sprite_that_stays_cheap():
    """The contexts read the previous P-frame: the same field costs less after itself
    than after an intra frame (and both decode to it)."""
    field = sprite_field(np.random.default_rng(7))
    after_itself, back = roundtrip(field, field)
    after_intra, _ = roundtrip(field, MotionField.empty(ROWS, COLS))
    np.testing.assert_array_equal(back.vectors, field.vectors)
    assert after_itself < after_intra


def test_a_vector_outside_the_search_range_is_corrupt():
    choice = np.zeros((ROWS, COLS), np.int64)
    choice[3, 3] = 1
    c = coder()
    encoder = RangeEncoder()
    for _, ctx, values in choice_symbols(choice, np.zeros_like(choice)):
        for k, members in _groups(ctx):
            encoder.encode(values[members].astype(np.int32), c._choice[k])
    encoder.encode(np.array([16, 16], np.int32), c._vector[0])  # (8, 8) from predictor (0, 0)
    with pytest.raises(FormatError, match="outside"):
        c.decode(RangeDecoder(encoder.get_compressed()), ROWS, COLS, MotionField.empty(ROWS, COLS))


def test_tables_of_the_wrong_shape_or_sum_are_refused():
    with pytest.raises(FormatError):
        MotionCoder(CHOICE_TABLES[:-1], VECTOR_TABLES)
    bad = VECTOR_TABLES.copy()
    bad[0, 0] += 1
    with pytest.raises(FormatError):
        MotionCoder(CHOICE_TABLES, bad)
    wide = wide_tables()
    with pytest.raises(FormatError):  # 8.0's tables with a row short
        MotionCoder(CHOICE_TABLES, VECTOR_TABLES, FRACTION_TABLES,
                    WideTables(wide.choice[:-1], wide.vector_x, wide.vector_y, wide.fraction))
    with pytest.raises(FormatError):  # 8.0 codes half-pixel offsets
        MotionCoder(CHOICE_TABLES, VECTOR_TABLES, None, wide)


def references(rng: np.random.Generator, m: int) -> list[np.ndarray]:
    """m frames of static maze with a few sprites moving between them."""
    maze = rng.integers(0, 256, (ROWS * 4, COLS * 4, 3)).astype(np.uint8)
    frames = []
    for t in range(m):
        f = maze.copy()
        for k in range(3):
            y, x = 20 + 50 * k, 10 + 40 * k + 3 * t
            f[y:y + 8, x:x + 8] = 255 - 60 * k
        frames.append(f)
    return frames


def test_activity_is_the_sums_the_format_defines():
    """§14.10's a1, a2 by the letter (slow loops) against blockmotion.activity, with
    fewer references than three (Ref_j past the last reads as the last)."""
    rng = np.random.default_rng(3)
    for m in (1, 2, 3, 4):
        refs = references(rng, m)
        act = activity(refs, ROWS, COLS)
        first = refs[0].astype(np.int64)
        for r, c in [(0, 0), (5, 3), (ROWS - 1, COLS - 1), (12, 20), (22, 5)]:
            win = first[max(4 * r - 2, 0):4 * r + 6, max(4 * c - 2, 0):4 * c + 6]
            sums = []
            for j in (1, 2):
                other = refs[min(j, m - 1)].astype(np.int64)[max(4 * r - 2, 0):4 * r + 6, max(4 * c - 2, 0):4 * c + 6]
                sums.append(int(np.abs(win - other).sum()))
            a1 = (sums[0] > 0) + (sums[0] > 62) + (sums[0] > 510)
            a2 = (sums[1] > 0) + (sums[1] > 254)
            assert act[r, c] == 3 * a1 + a2, (m, r, c)
        if m == 1:
            assert not act.any()  # a key frame's one reference: nothing moved
        else:
            assert act.max() == 3 * 3 + 2  # the sprites moved (with m = 2, Ref3 reads as Ref2)


def test_the_8_0_vector_predictor_prefers_a_block_of_the_same_reference():
    choice = np.zeros((ROWS, COLS), np.int64)
    vectors = np.zeros((ROWS, COLS, 2), np.int64)
    previous = MotionField.empty(ROWS, COLS)
    assert predictor8(choice, vectors, previous, 5, 5, 1)[0] == 0
    choice[5, 4], vectors[5, 4] = 2, (1, 1)  # left, another reference
    choice[4, 6], vectors[4, 6] = 1, (-2, 3)  # above right, the same
    kind, p = predictor8(choice, vectors, previous, 5, 5, 1)
    assert kind == 1 and tuple(p) == (-2, 3)
    kind, p = predictor8(choice, vectors, previous, 5, 5, 3)  # no block of reference 3: the first taken
    assert kind == 3 and tuple(p) == (1, 1)
    prev_choice = np.zeros_like(choice)
    prev_vectors = np.zeros_like(vectors)
    prev_choice[5, 5], prev_vectors[5, 5] = 3, (0, -4)
    kind, p = predictor8(choice, vectors, MotionField(prev_choice, prev_vectors), 5, 5, 3)
    assert kind == 2 and tuple(p) == (0, -4)


def test_the_encoders_predictors_of_every_reference_at_once_are_each_references_own():
    """predictors8 (the search's one look around a block for all its references) gives
    for each reference j the kind and vector predictor8 gives for j alone, with fewer
    references than choices name too."""
    from pacodec.blockmotion import predictors8

    rng = np.random.default_rng(9)
    for _ in range(300):
        choice = rng.integers(0, 5, (ROWS, COLS)) * (rng.random((ROWS, COLS)) < 0.4)
        vectors = rng.integers(-SEARCH, SEARCH + 1, (ROWS, COLS, 2))
        previous = MotionField(rng.integers(0, 5, (ROWS, COLS)) * (rng.random((ROWS, COLS)) < 0.5),
                               rng.integers(-SEARCH, SEARCH + 1, (ROWS, COLS, 2)))
        r, c, n = int(rng.integers(0, ROWS)), int(rng.integers(0, COLS)), int(rng.integers(1, 5))
        kinds, found = predictors8(choice, vectors, previous, r, c, n)
        for j in range(1, n + 1):
            kind, p = predictor8(choice, vectors, previous, r, c, j)
            assert kinds[j - 1] == kind and tuple(found[j - 1]) == tuple(p), (r, c, j)


def test_the_encoders_8_0_vector_prices_are_the_code_lengths_of_the_rows_the_format_names():
    """The search prices each vector from a grid built once (MotionCoder._wide_vector_bits,
    every reference's at once):
    for every reference, predictor and vector, the bits of dx in its row plus those of
    dy in the row 8.0 names for it (pcz.md §14.10), read from the tables themselves."""
    from pacodec.blockmotion import wide_vector_rows

    m = wide_coder()
    x_bits = -np.log2(np.asarray(motion_tables.VECTOR_X_TABLES_8, np.float64) / (1 << 16))
    y_bits = -np.log2(np.asarray(motion_tables.VECTOR_Y_TABLES_8, np.float64) / (1 << 16))
    rng = np.random.default_rng(2)
    side = 2 * SEARCH + 1
    for _ in range(40):
        choice = np.zeros((ROWS, COLS), np.int64)
        vectors = np.zeros((ROWS, COLS, 2), np.int64)
        r, c = rng.integers(1, ROWS), rng.integers(1, COLS - 1)
        if rng.random() < 0.8:  # a taken neighbour on the left predicts
            choice[r, c - 1], vectors[r, c - 1] = rng.integers(1, 5), rng.integers(-SEARCH, SEARCH + 1, 2)
        j = int(rng.integers(1, 5))
        kind, p = predictor8(choice, vectors, MotionField.empty(ROWS, COLS), r, c, j)
        got = m._wide_vector_bits(choice, vectors, MotionField.empty(ROWS, COLS), r, c, 4)[j - 1]
        for k in range(side * side):
            dy, dx = k // side - SEARCH - p[0], k % side - SEARCH - p[1]
            x_row, y_row = wide_vector_rows(kind, j, dx != 0)
            assert got[k] == x_bits[x_row, dx + 2 * SEARCH] + y_bits[int(y_row), dy + 2 * SEARCH]


@pytest.mark.parametrize("seed", range(4))
def test_8_0_fields_round_trip_exactly_with_and_without_exact_references(seed):
    rng = np.random.default_rng(seed)
    previous = with_fractions(sprite_field(rng), rng) if seed % 2 else MotionField.empty(ROWS, COLS)
    field = with_fractions(sprite_field(rng, shift=1), rng)
    refs = references(rng, 1 + seed)
    for given in (refs, None):
        encoder = RangeEncoder()
        wide_coder().encode(encoder, field, previous, given)
        decoder = RangeDecoder(encoder.get_compressed())
        back = wide_coder().decode(decoder, ROWS, COLS, previous, given)
        assert decoder.maybe_exhausted()
        for a, b in ((back.choice, field.choice), (back.vectors, field.vectors), (back.fraction, field.fraction)):
            np.testing.assert_array_equal(a, b)


def test_8_0_choices_read_the_references_only_where_they_are_exact():
    """Without exact references 8.0 codes the choices with 2.0's contexts and tables;
    with them, in 8.0's contexts of the references' activity: a field coded with them
    does not read back without them."""
    rng = np.random.default_rng(11)
    field = with_fractions(sprite_field(rng), rng)
    previous = MotionField.empty(ROWS, COLS)
    coder_ = wide_coder()
    act, models = coder_._choice_models(None, ROWS, COLS)
    assert act is None and models is coder_._choice
    refs = references(rng, 3)
    act, models = coder_._choice_models(refs, ROWS, COLS)
    assert models is coder_._choice8 and np.array_equal(act, activity(refs, ROWS, COLS)) and act.any()
    encoder = RangeEncoder()
    coder_.encode(encoder, field, previous, refs)
    words = encoder.get_compressed()
    np.testing.assert_array_equal(coder_.decode(RangeDecoder(words), ROWS, COLS, previous, refs).choice,
                                  field.choice)
    try:
        blind = coder_.decode(RangeDecoder(words), ROWS, COLS, previous, None)
    except (FormatError, ValueError, RuntimeError):
        return
    assert not (np.array_equal(blind.choice, field.choice) and np.array_equal(blind.vectors, field.vectors))


def test_writers_use_the_lowest_version_that_holds_the_file(tmp_path, clip, tiny_weights):
    """12.0 only for refined predicted frames (2.0's contexts, 3.0's key frames, 4.0's
    symbol model, 5.0's long-term reference, 6.0's half-pixel offsets, 7.0's wider symbol
    model, 8.0's wider motion contexts, 9.0's flag contexts, 10.0's trimmed streams,
    11.0's choice model, 12.0's far references); 1.0 files of every other kind read as
    before."""
    cases = {("tiny-pac-hi", 4): "12.0", ("tiny-pac-hi", 1): "1.0", ("tiny-pac", 4): "1.0"}
    for (model, gop), version in cases.items():
        path = tmp_path / f"{model}-{gop}.pcz"
        facts = api.encode(clip, path, model=model, gop=gop, weights_dir=tiny_weights, max_frames=8)
        assert facts["version"] == version, (model, gop)
        with pacodec.open(path, weights_dir=tiny_weights) as reader:
            assert len(list(reader)) == 8


def test_a_2_0_stream_decodes_to_what_the_encoder_reconstructed(tmp_path, clip, tiny_weights, monkeypatch):
    """Closed loop through the real Writer: the decoder's frames are the encoder's own
    reconstruction (the side information's contexts carried from P-frame to P-frame),
    and seeking into the GOP gives the same frames as decoding in order."""
    from pacodec import refine

    monkeypatch.setattr(api, "SCENE_CUT_SHARE", float("inf"))  # one GOP: every later frame predicted

    seen: list[np.ndarray] = []
    original = refine.LayeredPredictor.encode
    from pacodec import zoo

    key_reference = zoo.load("pac-key")[0].reference()

    def keep(self, frame, refs):
        payload, out = original(self, frame, refs)
        if not (len(refs) == 1 and np.array_equal(refs[0], key_reference)):  # a key frame's try (§14.6)
            seen.append(np.array(out))
        return payload, out

    path = tmp_path / "v2.pcz"
    monkeypatch.setattr(refine.LayeredPredictor, "encode", keep)
    api.encode(clip, path, model="tiny-pac-hi", gop=12, weights_dir=tiny_weights, max_frames=12)
    with pacodec.open(path, weights_dir=tiny_weights) as reader:
        frames = [np.array(f) for f in reader]
        assert len(seen) == 11 and len(frames) == 12
        np.testing.assert_array_equal(np.stack(frames[1:]), np.stack(seen))
        np.testing.assert_array_equal(np.array(reader[11]), frames[11])
        np.testing.assert_array_equal(np.array(reader[6]), frames[6])
