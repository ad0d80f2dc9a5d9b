"""Format 12.0's far references (pcz.md §14.14): a 4×4 block of choice 4 names the GOP's
key frame or one of its older frames with a far index, at vectors within ±8."""

from __future__ import annotations

import numpy as np
import pytest

from pacodec import motion_tables as mt
from pacodec import refine
from pacodec.blockmotion import (FAR, FAR_CONTEXTS, REFERENCES, SEARCH_12, VECTOR_X_CONTEXTS_8, VECTOR_Y_CONTEXTS_8,
                                 MotionCoder, MotionField, WideTables, far_context)
from pacodec.entropy import RangeDecoder, RangeEncoder
from pacodec.errors import FormatError

ROWS, COLS = 50, 40


def far_coder() -> MotionCoder:
    wide = WideTables(mt.CHOICE_TABLES_8, mt.VECTOR_X_TABLES_12, mt.VECTOR_Y_TABLES_12, mt.FRACTION_TABLES_8)
    return MotionCoder(mt.CHOICE_TABLES, mt.VECTOR_TABLES, mt.FRACTION_TABLES, wide, mt.FAR_TABLES_12)


def far_field(rng: np.random.Generator, shift: int = 0) -> MotionField:
    """Sprites of 3×3 blocks, two of them from far references (choice 4 with K ≠ 0),
    vectors up to ±8, and stray blocks of every choice and far index."""
    choice = np.zeros((ROWS, COLS), np.int64)
    vectors = np.zeros((ROWS, COLS, 2), np.int64)
    far = np.zeros((ROWS, COLS), np.int64)
    for k in range(4):
        r, c = 5 + 10 * k, 4 + 8 * k + shift
        choice[r:r + 3, c:c + 3] = 1 + k % 4
        far[r:r + 3, c:c + 3] = 5 * (k // 2) if k % 4 == 3 else 0
        vectors[r:r + 3, c:c + 3] = (2 * k - 3, 7 - 2 * k)
    choice[45, 30:33], far[45, 30:33] = 4, 11  # a far sprite at the frame's end
    for _ in range(8):
        r, c = rng.integers(0, ROWS), rng.integers(0, COLS)
        choice[r, c] = rng.integers(1, 5)
        far[r, c] = rng.integers(0, FAR) if choice[r, c] == 4 else 0
        vectors[r, c] = rng.integers(-SEARCH_12, SEARCH_12 + 1, 2)
    vectors[choice == 0] = 0
    far[choice != 4] = 0
    fraction = np.where(choice != 0, rng.integers(0, 4, choice.shape), 0)
    return MotionField(choice, vectors, fraction, far)


def test_the_12_0_tables_are_what_the_format_says():
    width = 4 * SEARCH_12 + 1
    assert mt.VECTOR_X_TABLES_12.shape == (VECTOR_X_CONTEXTS_8, width)
    assert mt.VECTOR_Y_TABLES_12.shape == (VECTOR_Y_CONTEXTS_8, width)
    assert mt.FAR_TABLES_12.shape == (FAR_CONTEXTS, FAR)
    for table in (mt.VECTOR_X_TABLES_12, mt.VECTOR_Y_TABLES_12, mt.FAR_TABLES_12):
        assert table.dtype == np.int32 and (table > 0).all() and (table.sum(axis=1) == 1 << 16).all()


@pytest.mark.parametrize("seed", range(4))
def test_12_0_fields_round_trip_exactly(seed):
    rng = np.random.default_rng(seed)
    previous = far_field(rng) if seed % 2 else MotionField.empty(ROWS, COLS)
    field = far_field(rng, shift=1)
    encoder = RangeEncoder()
    far_coder().encode(encoder, field, previous)
    decoder = RangeDecoder(encoder.get_compressed())
    back = far_coder().decode(decoder, ROWS, COLS, previous)
    assert decoder.maybe_exhausted()
    for name in ("choice", "vectors", "fraction", "far"):
        np.testing.assert_array_equal(getattr(back, name), getattr(field, name), err_msg=name)


def test_a_far_index_takes_its_context_from_the_blocks_before_it():
    choice = np.zeros((ROWS, COLS), np.int64)
    far = np.zeros((ROWS, COLS), np.int64)
    previous = MotionField.empty(ROWS, COLS)
    assert far_context(choice, far, previous, 3, 3) == 0
    choice[2, 4], far[2, 4] = 4, 6  # above right
    assert far_context(choice, far, previous, 3, 3) == 7
    choice[3, 2], far[3, 2] = 4, 2  # left comes first
    assert far_context(choice, far, previous, 3, 3) == 3
    choice[3, 2] = 1  # a block of another choice is no predictor
    assert far_context(choice, far, previous, 3, 3) == 7
    prev_choice = np.zeros((ROWS, COLS), np.int64)
    prev_choice[10, 10] = 4
    prev_far = np.zeros((ROWS, COLS), np.int64)
    prev_far[10, 10] = 12
    prev = MotionField(prev_choice, np.zeros((ROWS, COLS, 2), np.int64), None, prev_far)
    assert far_context(np.zeros_like(choice), far, prev, 10, 10) == 13


def test_a_vector_beyond_8_is_corrupt():
    c = far_coder()
    field = MotionField(np.zeros((ROWS, COLS), np.int64), np.zeros((ROWS, COLS, 2), np.int64),
                        np.zeros((ROWS, COLS), np.int64), np.zeros((ROWS, COLS), np.int64))
    field.choice[0, 0] = 1
    field.vectors[0, 0] = (0, 8)
    encoder = RangeEncoder()
    c.encode(encoder, field, MotionField.empty(ROWS, COLS))
    back = c.decode(RangeDecoder(encoder.get_compressed()), ROWS, COLS, MotionField.empty(ROWS, COLS))
    assert tuple(back.vectors[0, 0]) == (0, 8)
    # Code dx = 9 from predictor (0, 0) by hand: ex = 25 in row 0.
    encoder = RangeEncoder()
    from pacodec.blockmotion import choice_symbols, _groups

    for _, ctx, values in choice_symbols(field.choice, np.zeros_like(field.choice)):
        for k, members in _groups(ctx):
            encoder.encode(values[members].astype(np.int32), c._choice[k])
    encoder.encode(np.array([25], np.int32), c._vector_x[0])
    encoder.encode(np.array([16], np.int32), c._vector_y[1])
    with pytest.raises(FormatError, match="outside ±8"):
        c.decode(RangeDecoder(encoder.get_compressed()), ROWS, COLS, MotionField.empty(ROWS, COLS))


def test_the_reference_list_keeps_11x_first_four():
    """§14.14: the last three, the key frame, then the older frames; the first four are
    the frames an 11.x record reads."""
    coder = refine.RefineCoder.__new__(refine.RefineCoder)
    coder.motion_coder = far_coder()
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(17)]  # 0 the newest, 16 the key frame
    listed = coder.reference_list(frames[:15] + [frames[16]])
    assert [int(f[0, 0, 0]) for f in listed] == [0, 1, 2, 16] + list(range(3, 15))
    assert [int(f[0, 0, 0]) for f in coder.reference_list([frames[0], frames[16]])] == [0, 16]
    assert len(coder.reference_list(frames)) == refine.REFERENCES_12


def test_a_block_naming_a_reference_the_decoder_lacks_is_corrupt():
    base = np.zeros((8, 8, 3), np.uint8)
    refs = [np.full((8, 8, 3), 10 * (i + 1), np.uint8) for i in range(6)]
    choice = np.zeros((2, 2), np.int64)
    vectors = np.zeros((2, 2, 2), np.int64)
    far = np.zeros((2, 2), np.int64)
    choice[0, 1], far[0, 1] = REFERENCES, 2  # reads refs[5]
    out = refine.apply_motion(base, refs, choice, vectors, None, far)
    assert (out[:4, 4:] == 60).all() and (out[4:] == 0).all()
    far[0, 1] = 3  # refs[6]: there is none
    with pytest.raises(FormatError, match="reference 7 of 6"):
        refine.apply_motion(base, refs, choice, vectors, None, far)


def test_a_frame_that_stood_still_codes_and_decodes(tmp_path):
    """A 12.x P-frame with no block worth searching (the picture did not move) after
    one with blocks taken from far references: nothing to search, nothing to take."""
    import pacodec

    frame = np.full((200, 160, 3), 40, np.uint8)
    frame[100:120, 20:140] = (200, 60, 20)
    frames = [frame] * 3
    for t in range(6):  # a block that changes and comes back, then the picture stands still
        f = frame.copy()
        f[40:48, 40 + 2 * t:48 + 2 * t] = 255 * (t % 2)
        frames.append(f)
    frames += [frames[-1]] * 3
    with pacodec.Writer(tmp_path / "a.pcz", model="pac-q8", fps=30) as writer:
        recon = []
        for f in frames:
            writer.write(f)
            writer._flush_pending()
            recon.append(np.array(writer._history[0]))
    assert pacodec.api.probe(tmp_path / "a.pcz")["version"] == "12.0"
    with pacodec.open(tmp_path / "a.pcz") as reader:
        decoded = [np.array(f) for f in reader]
    assert len(decoded) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(recon, decoded))


@pytest.mark.parametrize("half", [False, True])
def test_a_search_with_no_block_to_look_at_takes_none(half):
    """choose_vectors with no candidate block (a still frame: no 4×4 block's error
    exceeds the price) returns a field of nothing taken rather than failing."""
    coder = far_coder()
    side = 2 * SEARCH_12 + 1
    costs = np.zeros((0, 16, side * side))
    extra = (np.zeros((0, 8)), np.zeros((0, 8, 2), np.int64), np.zeros((0, 8), np.int64)) if half else None
    field = coder.choose_vectors(costs, np.zeros(0, np.int64), np.zeros(0), 800.0, 200.0, ROWS, COLS,
                                 MotionField.empty(ROWS, COLS), extra)
    assert field.choice.shape == (ROWS, COLS) and not field.choice.any() and not field.far.any()
