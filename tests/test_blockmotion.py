"""Format 2.0's context-coded 4×4 re-prediction side information (blockmotion.py, pcz.md §14.4)."""

from __future__ import annotations

import numpy as np
import pytest

import pacodec
from pacodec import api
from pacodec.blockmotion import (CHOICE_CONTEXTS, DIFFS, FRACTION_CONTEXTS, FRACTIONS, SEARCH, VECTOR_CONTEXTS,
                                 MotionCoder, MotionField, _groups, choice_symbols)
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


def test_tables_are_what_the_format_says():
    assert CHOICE_TABLES.shape == (CHOICE_CONTEXTS, 5) and VECTOR_TABLES.shape == (VECTOR_CONTEXTS, DIFFS)
    assert FRACTION_TABLES.shape == (FRACTION_CONTEXTS, FRACTIONS)
    for table in (CHOICE_TABLES, VECTOR_TABLES, FRACTION_TABLES):
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


def test_writers_use_the_lowest_version_that_holds_the_file(tmp_path, clip, tiny_weights):
    """7.0 only for refined predicted frames (2.0's contexts, 3.0's key frames, 4.0's symbol
    model, 5.0's long-term reference, 6.0's half-pixel offsets, 7.0's wider symbol model);
    1.0 files of every other kind read as before."""
    cases = {("tiny-pac-hi", 4): "7.0", ("tiny-pac-hi", 1): "1.0", ("tiny-pac", 4): "1.0"}
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
