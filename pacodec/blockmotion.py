"""Side information of the 4×4 re-prediction, coded with contexts (format 2.0, pcz.md §14.5).

A refined predicted frame (refine.py) takes some 4×4 blocks from one of the GOP's
last decoded frames, displaced by a vector: per block a *choice* (0 keeps the base,
j takes reference j) and, for the blocks taken, a vector in [−4, 4]². Sprites cover
a few neighbouring blocks and move the same way for many frames, so both are
predictable from what the decoder already holds: the blocks around, and the choices
and vectors of the previous predicted frame of the GOP. Format 1.0 coded them with
one fixed table each, which on clip9 (pac-q8, GOP 250) was 37 of a P-frame's 77
bytes of side information and symbols; coding them with contexts cuts that to about
a third. Everything here is integers: the contexts come from decoded choices, never
from pixels, and the tables are integer constants (``motion_tables.py``) counted on
the training clips by ``tools/count_motion_tables.py``.

Choices are coded in two passes over the 4×4 grid, a checkerboard (blocks with
row + column even, then odd), each pass's blocks grouped by context (ascending,
raster order inside a group) like the residual passes (refine.py)::

    P = 1 if the previous P-frame took this block from a reference, else 0
    B = min(blocks around it (3×3, itself included) the previous P-frame took, 2)
    even blocks: context = 3·P + B                         (0 … 5)
    odd blocks:  context = 6 + 3·(3·P + B) + N, N = min(taken among the 4 neighbours, 2)

Then the vectors of the blocks taken, in raster order, each coded as its difference
from a predictor (dx then dy, each −8 … 8): the vector of the block to the left if
that block was taken, else of the block above if taken, else of this block in the
previous P-frame if taken there (context 1, 1, 2), else (0, 0) (context 0).
The first P-frame after an intra frame has no previous P-frame: all its P are 0.

Format 8.0 (pcz.md §14.10) codes the same field with more context. Where the GOP's
pixels are exact integers (its key frame came from the learned reference, as the
symbol model's pixel features ask), a block's choice context also says how much the
references changed around it (|Ref1 − Ref2| and |Ref1 − Ref3| over the block grown by
2 pixels, 4 and 3 bins): a sprite moves where the last frames moved. Elsewhere the
choices keep 2.0's contexts. A vector is predicted from the first block before it
(left, above, above right, above left, then this block in the previous P-frame) taken
from the *same* reference: the sprites that share a reference share a motion; its
table row says which kind of predictor it had and which reference, and dy's row also
whether dx met its prediction (sprites move along the maze's corridors). A half-pixel
offset's row also says the reference. What it earns: benchmarks/ablation.py's row
"7.x side-information contexts".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .entropy import Categorical
from .errors import FormatError
from .refine import _FAMILY, _box3, _cross4  # the same counts as the residual's contexts

MOTION_GRID = 4  # = refine.MOTION_BLOCK: the choices' blocks

SEARCH = 4  # vectors in [−SEARCH, SEARCH]² (= predict.SEARCH), 2.x … 11.x
SEARCH_12 = 8  # 12.x (§14.14): vectors in [−8, 8]²
FRACTIONS = 4  # 6.x: a taken block's half-pixel offset, fx + 2·fy (fx, fy ∈ {0, 1})
FRACTION_CONTEXTS = 5  # 0: no predicting block; 1 + the predicting block's fraction
DIFFS = 4 * SEARCH + 1  # a component's difference from its predictor: −8 … 8
CHOICE_CONTEXTS = 6 + 18
VECTOR_CONTEXTS = 3  # no predictor, a neighbour's, the previous P-frame's
REFERENCES = 4  # a choice's references 1 … 4
# Format 8.0 (§14.10):
ACTIVITY_BINS = (4, 3)  # |Ref1 − Ref2| in 4 bins, |Ref1 − Ref3| in 3, around the block
ACTIVITY_EDGES = ((0, 62, 510), (0, 254))  # a bin is the number of edges the sum exceeds
ACTIVITY_MARGIN = 2  # the 4×4 block grown by this many pixels on every side
ACTIVITIES = ACTIVITY_BINS[0] * ACTIVITY_BINS[1]
CHOICE_CONTEXTS_8 = CHOICE_CONTEXTS * ACTIVITIES
PREDICTOR_KINDS = 4  # none, an earlier block of the same reference, the previous P-frame's, another's
VECTOR_X_CONTEXTS_8 = PREDICTOR_KINDS * REFERENCES
VECTOR_Y_CONTEXTS_8 = 2 * VECTOR_X_CONTEXTS_8
FRACTION_CONTEXTS_8 = FRACTION_CONTEXTS * REFERENCES
# Format 12.0 (§14.14): a block of choice 4 names one of the GOP's older frames.
FAR = 13  # its index k: 0 the GOP's key frame, k = 1 … 12 the (3 + k)-th last decoded frame
FAR_CONTEXTS = 1 + FAR  # 0: no block before it of choice 4; else 1 + that block's k


@dataclass(frozen=True)
class MotionField:
    """One P-frame's re-prediction: choice (rows, cols) int64, vectors (rows, cols, 2)
    [dy, dx] int64, zero where the choice is 0."""

    choice: np.ndarray
    vectors: np.ndarray
    #: 6.x: (rows, cols) int64 half-pixel offsets fx + 2·fy of the blocks taken (the
    #: block is read at vector + (fy/2, fx/2)); None where the format has none (all 0).
    fraction: np.ndarray | None = None
    #: 12.x: (rows, cols) int64 far index k of the blocks of choice 4 (``FAR``), 0
    #: elsewhere; None where the format has none (choice 4 is then reference 4).
    far: np.ndarray | None = None

    @staticmethod
    def empty(rows: int, cols: int) -> "MotionField":
        return MotionField(np.zeros((rows, cols), np.int64), np.zeros((rows, cols, 2), np.int64))

    def fractions(self) -> np.ndarray:
        """The half-pixel offsets, zeros where the field has none."""
        return np.zeros(self.choice.shape, np.int64) if self.fraction is None else self.fraction

    def references(self) -> np.ndarray:
        """(rows, cols) int64: the index into the reference list (refine.reference_list)
        of each taken block, choice − 1 + its far index; −1 where the block is kept."""
        index = self.choice - 1
        if self.far is not None:
            index = index + np.where(self.choice == REFERENCES, self.far, 0)
        return index


@dataclass(frozen=True)
class WideTables:
    """Format 8.0's tables (§14.10), each row positive and summing to 2^16: choices in
    exact GOPs (CHOICE_CONTEXTS_8, 1 + REFERENCES), vector components dx
    (VECTOR_X_CONTEXTS_8, DIFFS) and dy (VECTOR_Y_CONTEXTS_8, DIFFS), half-pixel
    offsets (FRACTION_CONTEXTS_8, FRACTIONS)."""

    choice: np.ndarray
    vector_x: np.ndarray
    vector_y: np.ndarray
    fraction: np.ndarray

    def shapes_ok(self, diffs: int = DIFFS) -> bool:
        """Whether the tables have 8.x's shapes, vector rows of ``diffs`` entries (12.x: 33)."""
        return (np.shape(self.choice) == (CHOICE_CONTEXTS_8, 1 + REFERENCES)
                and np.shape(self.vector_x) == (VECTOR_X_CONTEXTS_8, diffs)
                and np.shape(self.vector_y) == (VECTOR_Y_CONTEXTS_8, diffs)
                and np.shape(self.fraction) == (FRACTION_CONTEXTS_8, FRACTIONS))


def activity(refs, rows: int, cols: int) -> np.ndarray:
    """8.x: (rows, cols) int64 0 … 11, 3·a1 + a2, of the references (most recent
    first; a reference past the last reads as the last): a1 bins Σ|Ref1 − Ref2|, a2
    Σ|Ref1 − Ref3|, each summed over the 3 channels and the block's pixels grown by
    ACTIVITY_MARGIN (cut by the frame), a bin the count of ACTIVITY_EDGES the sum
    exceeds. Integers only: the decoder reads it from its own exact frames."""
    import cv2

    first = np.ascontiguousarray(refs[0], np.uint8)
    h, w = first.shape[:2]
    ys = np.arange(rows) * MOTION_GRID
    xs = np.arange(cols) * MOTION_GRID
    y0, y1 = np.clip(ys - ACTIVITY_MARGIN, 0, h), np.clip(ys + MOTION_GRID + ACTIVITY_MARGIN, 0, h)
    x0, x1 = np.clip(xs - ACTIVITY_MARGIN, 0, w), np.clip(xs + MOTION_GRID + ACTIVITY_MARGIN, 0, w)
    bins = []
    for j, edges in zip((1, 2), ACTIVITY_EDGES):
        other = np.ascontiguousarray(refs[min(j, len(refs) - 1)], np.uint8)
        # |Ref1 − Refj| per byte (exact in uint8) and OpenCV's running sums of each
        # channel in int32 (a whole frame's channel sums to < 2^24), added over the
        # channels per block: the same integers as in int64, in a twentieth of the time.
        cs = cv2.integral(cv2.absdiff(first, other), sdepth=cv2.CV_32S)  # (h + 1, w + 1, 3)
        sums = (cs[y1][:, x1] - cs[y0][:, x1] - cs[y1][:, x0] + cs[y0][:, x0]).sum(axis=2)
        bins.append(sum((sums > e).astype(np.int64) for e in edges))
    return ACTIVITY_BINS[1] * bins[0] + bins[1]


def predictor8(choice: np.ndarray, vectors: np.ndarray, previous: "MotionField", r: int, c: int,
               j: int) -> tuple[int, np.ndarray]:
    """8.x: (kind, [dy, dx]) predicting the vector of block (r, c) taken from reference
    ``j``: of the blocks left, above, above right, above left (taken, decoded before it)
    and this block in the previous P-frame (taken there), in that order, the first
    taken from reference j (kind 1, or 2 for the previous P-frame's); else the first
    of them (kind 3); else (0, 0) (kind 0)."""
    cols = choice.shape[1]
    first = None
    for y, x in ((r, c - 1), (r - 1, c), (r - 1, c + 1), (r - 1, c - 1)):
        if y >= 0 and 0 <= x < cols and choice[y, x]:
            if choice[y, x] == j:
                return 1, vectors[y, x]
            if first is None:
                first = vectors[y, x]
    if previous.choice[r, c]:
        if previous.choice[r, c] == j:
            return 2, previous.vectors[r, c]
        if first is None:
            first = previous.vectors[r, c]
    if first is not None:
        return 3, first
    return 0, np.zeros(2, np.int64)


def predictors8(choice: np.ndarray, vectors: np.ndarray, previous: "MotionField", r: int, c: int,
                n: int) -> tuple[list[int], list]:
    """Encoder: ``predictor8`` of block (r, c) for each reference j = 1 … n, from one
    look at the blocks around (the search prices every reference's vectors for every
    candidate block): (kinds, [dy, dx] predictors), each a list indexed by j − 1."""
    cols = choice.shape[1]
    kinds, found = [0] * n, [None] * n
    first = None
    for y, x in ((r, c - 1), (r - 1, c), (r - 1, c + 1), (r - 1, c - 1)):
        if y >= 0 and 0 <= x < cols and choice[y, x]:
            j = int(choice[y, x])
            if j <= n and not kinds[j - 1]:
                kinds[j - 1], found[j - 1] = 1, vectors[y, x]
            if first is None:
                first = vectors[y, x]
    j = int(previous.choice[r, c])
    if j:
        if j <= n and not kinds[j - 1]:
            kinds[j - 1], found[j - 1] = 2, previous.vectors[r, c]
        if first is None:
            first = previous.vectors[r, c]
    for i in range(n):
        if not kinds[i]:
            kinds[i], found[i] = (3, first) if first is not None else (0, np.zeros(2, np.int64))
    return kinds, found


def choice_contexts(known: np.ndarray, previous: np.ndarray, parity: int) -> np.ndarray:
    """(rows, cols) contexts of the blocks of ``parity``, from the choices decoded so far
    (``known``; only the other parity's entries are read on odd blocks) and the
    previous P-frame's choices."""
    taken = previous != 0
    base = 3 * taken + np.minimum(_box3(taken), 2)
    if parity == 0:
        return base
    return 6 + 3 * base + np.minimum(_cross4(known != 0), 2)


def _parities(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:rows, :cols]
    parity = ((yy + xx) % 2).ravel()
    return np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)


def _groups(ctx: np.ndarray, contexts: int = CHOICE_CONTEXTS):
    order = np.argsort(ctx, kind="stable")
    counts = np.bincount(ctx, minlength=contexts)
    start = 0
    for c in np.flatnonzero(counts):
        yield int(c), order[start:start + counts[c]]
        start += counts[c]


def choice_passes(known: np.ndarray, previous: np.ndarray, act: np.ndarray | None = None):
    """(positions, contexts) of each choice pass: 2.0's contexts, or with ``act``
    (8.x, ``activity`` of exact references) 8.0's. The caller writes each pass's
    choices into ``known`` before asking for the next."""
    rows, cols = known.shape
    for parity, pos in enumerate(_parities(rows, cols)):
        ctx = choice_contexts(known, previous, parity).ravel()[pos]
        yield pos, ctx if act is None else ctx * ACTIVITIES + act.ravel()[pos]


def choice_symbols(choice: np.ndarray, previous: np.ndarray, act: np.ndarray | None = None):
    """(positions, contexts, values) of each choice pass of a known field (order within
    a context group is left to the coder)."""
    known = np.zeros_like(choice)
    for pos, ctx in choice_passes(known, previous, act):
        values = choice.ravel()[pos]
        yield pos, ctx, values
        known.ravel()[pos] = values


def _predicting(choice: np.ndarray, previous: MotionField, r: int, c: int):
    """Which block predicts block (r, c)'s side information: (MotionField-like source,
    row, column) of the left block if taken, else the block above if taken, else this
    block in the previous P-frame if taken there; None if none is."""
    if c > 0 and choice[r, c - 1]:
        return None, r, c - 1
    if r > 0 and choice[r - 1, c]:
        return None, r - 1, c
    if previous.choice[r, c]:
        return previous, r, c
    return None


def predictor(field_choice: np.ndarray, field_vectors: np.ndarray, previous: MotionField,
              r: int, c: int) -> tuple[int, np.ndarray]:
    """(context, [dy, dx]) predicting block (r, c)'s vector from blocks before it in
    raster order and from the previous P-frame."""
    at = _predicting(field_choice, previous, r, c)
    if at is None:
        return 0, np.zeros(2, np.int64)
    source, y, x = at
    return (1, field_vectors[y, x]) if source is None else (2, source.vectors[y, x])


def fraction_context(choice: np.ndarray, fraction: np.ndarray, previous: MotionField, r: int, c: int) -> int:
    """6.x: the context of block (r, c)'s half-pixel offset: 1 + the offset of the block
    its vector predictor reads (``predictor``), else 0."""
    at = _predicting(choice, previous, r, c)
    if at is None:
        return 0
    source, y, x = at
    return 1 + int((fraction if source is None else source.fractions())[y, x])


def fraction_symbols(field: MotionField, previous: MotionField, wide: bool = False):
    """(context, fraction) of every block taken, in raster order (6.x; ``wide``: 8.x's
    context, REFERENCES × 6.x's + the block's reference − 1)."""
    fraction = field.fractions()
    for r, c in zip(*np.nonzero(field.choice)):
        ctx = fraction_context(field.choice, fraction, previous, r, c)
        yield wide_fraction_row(ctx, int(field.choice[r, c])) if wide else ctx, int(fraction[r, c])


def far_context(choice: np.ndarray, far: np.ndarray, previous: MotionField, r: int, c: int) -> int:
    """12.x: the context of block (r, c)'s far index: 1 + the far index of the first of
    the blocks left, above, above right, above left (decoded before it) and this block
    in the previous P-frame whose choice is 4, else 0."""
    cols = choice.shape[1]
    for y, x in ((r, c - 1), (r - 1, c), (r - 1, c + 1), (r - 1, c - 1)):
        if y >= 0 and 0 <= x < cols and choice[y, x] == REFERENCES:
            return 1 + int(far[y, x])
    if previous.choice[r, c] == REFERENCES and previous.far is not None:
        return 1 + int(previous.far[r, c])
    return 0


def far_symbols(field: MotionField, previous: MotionField):
    """12.x: (context, k) of every block of choice 4, in raster order."""
    for r, c in zip(*np.nonzero(field.choice == REFERENCES)):
        yield far_context(field.choice, field.far, previous, r, c), int(field.far[r, c])


def wide_vector_symbols(field: MotionField, previous: MotionField, search: int = SEARCH):
    """8.x: (dx's row, dy's row, dx − px + 2·search, dy − py + 2·search) of every block
    taken, in raster order (``predictor8``): dx's row REFERENCES · kind + choice − 1,
    dy's row twice that + 1 where dx differs from its prediction."""
    for r, c in zip(*np.nonzero(field.choice)):
        j = int(field.choice[r, c])
        kind, p = predictor8(field.choice, field.vectors, previous, r, c, j)
        dy, dx = (int(x) for x in field.vectors[r, c] - p)
        x_row, y_row = wide_vector_rows(kind, j, dx != 0)
        yield x_row, int(y_row), dx + 2 * search, dy + 2 * search


def vector_symbols(field: MotionField, previous: MotionField):
    """(context, [dx − px + 8, dy − py + 8]) of every block taken, in raster order."""
    for r, c in zip(*np.nonzero(field.choice)):
        ctx, p = predictor(field.choice, field.vectors, previous, r, c)
        d = field.vectors[r, c] - p
        yield ctx, np.array([d[1], d[0]], np.int64) + 2 * SEARCH


def _models(table) -> tuple[list[Categorical], np.ndarray]:
    """A table's rows as the coder's models, and each entry's bits; FormatError unless
    every row is positive and sums to 2^16."""
    table = np.asarray(table)
    if np.any(table <= 0) or np.any(table.sum(axis=1) != 1 << 16):
        raise FormatError("motion tables must be positive rows summing to 2^16")
    p = table.astype(np.float64) / float(1 << 16)
    return [Categorical(row, perfect=False) for row in p], -np.log2(p)


def wide_vector_rows(kind: int, j: int, dx_missed) -> tuple[int, object]:
    """8.x: (dx's row, dy's row) of a vector from reference ``j`` whose predictor is of
    ``kind``; ``dx_missed``: whether dx differs from its prediction (arrays allowed)."""
    row = REFERENCES * kind + j - 1
    return row, 2 * row + np.asarray(dx_missed, np.int64)


def wide_fraction_row(ctx: int, j: int) -> int:
    """8.x: a half-pixel offset's row from 6.x's context and the block's reference."""
    return REFERENCES * ctx + j - 1


class MotionCoder:
    """Codes a P-frame's MotionField given the previous one, with integer tables:
    ``choice_tables`` (CHOICE_CONTEXTS, 1 + references), ``vector_tables``
    (VECTOR_CONTEXTS, DIFFS), each row positive and summing to 2^16."""

    def __init__(self, choice_tables: np.ndarray, vector_tables: np.ndarray,
                 fraction_tables: np.ndarray | None = None, wide: WideTables | None = None,
                 far_tables: np.ndarray | None = None) -> None:
        choice_tables, vector_tables = np.asarray(choice_tables), np.asarray(vector_tables)
        if choice_tables.ndim != 2 or choice_tables.shape[0] != CHOICE_CONTEXTS \
                or vector_tables.shape != (VECTOR_CONTEXTS, DIFFS) or (
                fraction_tables is not None and np.shape(fraction_tables) != (FRACTION_CONTEXTS, FRACTIONS)):
            raise FormatError("motion tables have the wrong shape")
        self.choices = choice_tables.shape[1]
        self._choice, self.choice_bits = _models(choice_tables)
        self._vector, self.vector_bits = _models(vector_tables)
        #: 6.x: half-pixel offsets follow the vectors (None: the format has none).
        self.half_pel = fraction_tables is not None
        if self.half_pel:
            self._fraction, self.fraction_bits = _models(fraction_tables)
        #: 12.x (§14.14): choice 4 names the key frame or an older frame (a far index
        #: follows it), and vectors reach ±SEARCH_12 (8.x's tables 33 entries wide).
        self.far = far_tables is not None
        self.search = SEARCH_12 if self.far else SEARCH
        if self.far:
            if wide is None or np.shape(far_tables) != (FAR_CONTEXTS, FAR):
                raise FormatError("12.x motion tables have the wrong shape (or no 8.x contexts)")
            self._far, self.far_bits = _models(far_tables)
        #: 8.x (§14.10): wider contexts for choices (in exact GOPs), vectors and offsets.
        self.wide = wide is not None
        if self.wide:
            if not self.half_pel or not wide.shapes_ok(4 * self.search + 1):
                raise FormatError("8.x motion tables have the wrong shape (or no half-pixel offsets)")
            self._choice8, _ = _models(wide.choice)
            self._vector_x, self.vector_x_bits = _models(wide.vector_x)
            self._vector_y, self.vector_y_bits = _models(wide.vector_y)
            self._fraction8, self.fraction8_bits = _models(wide.fraction)
        #: 11.x (§14.13): the choices of exact GOPs coded with the network's tables
        #: (choicenet.ChoiceNet) at refined level ``level``; None: 8.x's tables.
        self.choice_net = None
        self.level = 0

    def use_choice_model(self, network, level: int) -> None:
        """Code choices in exact GOPs with ``network`` (choicenet.ChoiceNet, 11.x) at
        refined level ``level`` (0 … 4: pac-q6 … q10)."""
        self.choice_net, self.level = network, int(level)

    def _learned_passes(self, choice: np.ndarray, previous: MotionField, refs):
        """11.x: (positions, tables) of each choice pass, ``choice`` the field being
        filled (the decoder's known choices; the encoder's whole field, of which the
        odd pass reads only the even blocks)."""
        from .choicenet import frame_features, pass_features

        base = frame_features(refs, previous.choice, previous.vectors, self.level)
        for parity, pos in enumerate(_parities(*choice.shape)):
            yield pos, self.choice_net.tables(pass_features(base, choice, parity, pos))

    def _choice_models(self, refs, rows: int, cols: int):
        """(activity or None, the choice models): 8.x's contexts where ``refs`` (the
        GOP's exact frames) are given, else 2.0's."""
        if self.wide and refs is not None:
            return activity(refs, rows, cols), self._choice8
        return None, self._choice

    def encode(self, encoder, field: MotionField, previous: MotionField, refs=None) -> None:
        """Code ``field`` given the previous P-frame's; ``refs``: the references (most
        recent first) where the GOP's pixels are exact, else None (8.x reads them)."""
        if self.choice_net is not None and refs is not None:  # 11.x: a table per block, raster order
            if field.choice.max(initial=0) >= len(self.choice_net.w["C_b3"]):
                raise ValueError("11.x choices name references 1 … 4 only")
            for pos, tables in self._learned_passes(field.choice, previous, refs):
                encoder.encode(field.choice.ravel()[pos].astype(np.int32), _FAMILY, tables / float(1 << 16))
        else:
            act, models = self._choice_models(refs, *field.choice.shape)
            for _, ctx, values in choice_symbols(field.choice, previous.choice, act):
                for c, members in _groups(ctx, len(models)):
                    encoder.encode(values[members].astype(np.int32), models[c])
        if self.far:
            for ctx, k in far_symbols(field, previous):
                encoder.encode(np.array([k], np.int32), self._far[ctx])
        if self.wide:
            for x_row, y_row, dx, dy in wide_vector_symbols(field, previous, self.search):
                encoder.encode(np.array([dx], np.int32), self._vector_x[x_row])
                encoder.encode(np.array([dy], np.int32), self._vector_y[y_row])
        else:
            for ctx, symbols in vector_symbols(field, previous):
                encoder.encode(symbols.astype(np.int32), self._vector[ctx])
        if self.half_pel:
            for ctx, value in fraction_symbols(field, previous, self.wide):
                encoder.encode(np.array([value], np.int32), (self._fraction8 if self.wide else self._fraction)[ctx])
        elif field.fraction is not None and field.fraction.any():
            raise ValueError("half-pixel offsets need a format that codes them (6.x)")

    def decode(self, decoder, rows: int, cols: int, previous: MotionField, refs=None) -> MotionField:
        """The field ``encode`` coded (the same ``previous`` and ``refs``)."""
        choice = np.zeros((rows, cols), np.int64)
        if self.choice_net is not None and refs is not None:  # 11.x
            for pos, tables in self._learned_passes(choice, previous, refs):
                choice.ravel()[pos] = np.asarray(decoder.decode(_FAMILY, tables / float(1 << 16)), np.int64)
        else:
            act, models = self._choice_models(refs, rows, cols)
            for pos, ctx in choice_passes(choice, previous.choice, act):
                values = np.empty(len(pos), np.int64)
                for c, members in _groups(ctx, len(models)):
                    values[members] = decoder.decode(models[c], len(members))
                choice.ravel()[pos] = values
        far = None
        if self.far:
            far = np.zeros((rows, cols), np.int64)
            for r, c in zip(*np.nonzero(choice == REFERENCES)):
                far[r, c] = int(decoder.decode(self._far[far_context(choice, far, previous, r, c)], 1)[0])
        search = self.search
        vectors = np.zeros((rows, cols, 2), np.int64)
        for r, c in zip(*np.nonzero(choice)):
            if self.wide:
                j = int(choice[r, c])
                kind, p = predictor8(choice, vectors, previous, r, c, j)
                x_row, _ = wide_vector_rows(kind, j, False)
                dx = int(decoder.decode(self._vector_x[x_row], 1)[0]) - 2 * search
                _, y_row = wide_vector_rows(kind, j, dx != 0)
                dy = int(decoder.decode(self._vector_y[int(y_row)], 1)[0]) - 2 * search
            else:
                ctx, p = predictor(choice, vectors, previous, r, c)
                dx, dy = np.asarray(decoder.decode(self._vector[ctx], 2), np.int64) - 2 * SEARCH
            v = p + (dy, dx)
            if np.abs(v).max() > search:
                raise FormatError(f"a 4×4 block's vector {tuple(int(x) for x in v)} is outside ±{search}")
            vectors[r, c] = v
        if not self.half_pel:
            return MotionField(choice, vectors)
        fraction = np.zeros((rows, cols), np.int64)
        models = self._fraction8 if self.wide else self._fraction
        for r, c in zip(*np.nonzero(choice)):
            ctx = fraction_context(choice, fraction, previous, r, c)
            if self.wide:
                ctx = wide_fraction_row(ctx, int(choice[r, c]))
            fraction[r, c] = int(decoder.decode(models[ctx], 1)[0])
        return MotionField(choice, vectors, fraction, far)

    def _wide_bits_grid(self) -> np.ndarray:
        """Encoder, 8.x: (VECTOR_X_CONTEXTS_8, side, side, side²) bits of every vector
        [dy, dx] (raster order, each in ±SEARCH) by dx's row and predictor [py, px],
        built once: the search prices up to 5 references' 81 vectors for every candidate
        block, and the arithmetic per block was most of its time (the same sums)."""
        grid = getattr(self, "_bits_grid", None)
        if grid is None:
            search = self.search
            side = 2 * search + 1
            v = np.arange(-search, search + 1)
            dy, dx = (a.ravel() for a in np.meshgrid(v, v, indexing="ij"))  # raster [dy, dx]
            ex = dx[None, None, :] - v[None, :, None]  # (px, vectors): within ±2·SEARCH
            ey = dy[None, None, :] - v[:, None, None]  # (py, vectors)
            grid = np.empty((VECTOR_X_CONTEXTS_8, side, side, side * side))
            for x_row in range(VECTOR_X_CONTEXTS_8):
                y_rows = 2 * x_row + (ex != 0)  # (px, vectors)
                grid[x_row] = (self.vector_x_bits[x_row][ex + 2 * search]
                               + self.vector_y_bits[y_rows, ey + 2 * search])
            self._bits_grid = grid
        return grid

    def _wide_vector_bits(self, choice: np.ndarray, vectors: np.ndarray, previous: MotionField, r: int, c: int,
                          n: int) -> np.ndarray:
        """8.x: the bits of every vector (n, side², raster [dy, dx]) of block (r, c)
        taken from each reference of the list, index i = 0 … n − 1: choice i + 1, or
        (12.x) choice min(i + 1, 4), whose rows its vectors use."""
        classes = np.minimum(np.arange(n), REFERENCES - 1)
        kinds, found = predictors8(choice, vectors, previous, r, c, int(classes[-1]) + 1)
        p = np.array([[int(v[0]), int(v[1])] for v in found]) + self.search
        return self._wide_bits_grid()[REFERENCES * np.array(kinds)[classes] + classes, p[classes, 0], p[classes, 1]]

    def choose_vectors(self, costs: np.ndarray, blocks: np.ndarray, keep_cost: np.ndarray, price: float,
                       bit_price: float, rows: int, cols: int, previous: MotionField,
                       half=None) -> MotionField:
        """Encoder: the re-prediction of the candidate ``blocks`` (flat grid indices,
        ascending) given ``costs`` (n, references, (2·SEARCH+1)², squared error of each
        reference and vector [dy, dx] in raster order) and ``keep_cost`` (n, squared
        error keeping the base): in raster order, each block takes the reference and
        vector of least error + ``bit_price`` × the vector's bits from its predictor,
        if that plus ``price`` beats keeping the base. With ``half`` (6.x: costs (n, 8),
        integer vectors (n, 8, 2) and fractions (n, 8) of the half-pixel positions
        around each block's best integer vector, refine.half_pel_costs) those are
        options too, each with its offset's bits. 12.x: ``costs`` holds every reference
        of the list (refine.reference_list) at ±SEARCH_12; reference i ≥ 3 is choice 4
        with far index i − 3, and its bits include the index's."""
        search = self.search
        side = 2 * search + 1
        dy, dx = np.divmod(np.arange(side * side), side)
        dy, dx = dy - search, dx - search
        if costs.shape[2] != side * side or (costs.shape[1] > REFERENCES and not self.far):
            raise ValueError(f"the search's costs {costs.shape} do not fit vectors within ±{search}")
        choice = np.zeros((rows, cols), np.int64)
        far = np.zeros((rows, cols), np.int64)
        vectors = np.zeros((rows, cols, 2), np.int64)
        fraction = np.zeros((rows, cols), np.int64)
        if half is not None:
            half_costs, half_vectors, half_fractions = half
            best_ref = costs.reshape(len(blocks), costs.shape[1] * costs.shape[2]).argmin(axis=1) // costs.shape[2]
        # The references up to the last with a finite cost for each block (12.x's
        # search leaves most blocks' older references unsearched, at inf).
        searched = 1 + np.max(np.arange(costs.shape[1])[None] * np.isfinite(costs).any(axis=2), axis=1,
                              initial=0)
        # Bits never cost less than nothing: a block whose least cost (whole or half
        # pixel) plus ``price`` does not beat keeping the base keeps it whatever its
        # vectors' bits, and is not looked at (most of the candidates at the fine steps).
        least = costs.min(axis=(1, 2), initial=np.inf)
        if half is not None:
            least = np.minimum(least, half_costs.min(axis=1, initial=np.inf))
        for i in np.flatnonzero(least + price < keep_cost):
            r, c = divmod(int(blocks[i]), cols)
            m = int(searched[i])
            if self.wide:  # 8.x: the predictor and rows depend on the reference
                bits = self._wide_vector_bits(choice, vectors, previous, r, c, m)
                if self.far and m >= REFERENCES:  # 12.x: + the far index's bits
                    bits[REFERENCES - 1:] += self.far_bits[far_context(choice, far, previous, r, c)][
                        :m - REFERENCES + 1, None]
            else:
                ctx, p = predictor(choice, vectors, previous, r, c)
                bits = (self.vector_bits[ctx][dx - p[1] + 2 * SEARCH]
                        + self.vector_bits[ctx][dy - p[0] + 2 * SEARCH])[None, :]
            total = costs[i][:m] + bit_price * bits
            j, k = np.unravel_index(int(np.argmin(total)), total.shape)
            cost, vector, offset = costs[i][j, k], (dy[k], dx[k]), 0
            if half is not None:
                v = half_vectors[i]
                fctx = fraction_context(choice, fraction, previous, r, c)
                if self.wide:
                    jh = int(best_ref[i]) + 1
                    fbits = self.fraction8_bits[wide_fraction_row(fctx, min(jh, REFERENCES))]
                    # the whole vector's offset 0
                    fzero = self.fraction8_bits[wide_fraction_row(fctx, min(j + 1, REFERENCES))][0]
                    at = (v[:, 0] + search) * side + v[:, 1] + search  # whole parts, within ±search
                    hbits = bits[jh - 1][at] + fbits[half_fractions[i]]
                else:
                    fbits = self.fraction_bits[fctx]
                    fzero = fbits[0]
                    hbits = (self.vector_bits[ctx][np.clip(v[:, 1] - p[1] + 2 * SEARCH, 0, DIFFS - 1)]
                             + self.vector_bits[ctx][np.clip(v[:, 0] - p[0] + 2 * SEARCH, 0, DIFFS - 1)]
                             + fbits[half_fractions[i]])
                htotal = half_costs[i] + bit_price * hbits
                m = int(np.argmin(htotal))
                if htotal[m] < total[j, k] + bit_price * fzero:
                    j, cost, vector, offset = best_ref[i], half_costs[i][m], tuple(v[m]), int(half_fractions[i][m])
            if cost + price < keep_cost[i]:
                choice[r, c] = min(j + 1, REFERENCES)
                far[r, c] = max(j + 1 - REFERENCES, 0)
                vectors[r, c] = vector
                fraction[r, c] = offset
        return MotionField(choice, vectors, fraction if self.half_pel else None, far if self.far else None)


def count_wide(field: MotionField, previous: MotionField, refs, counts: dict[str, np.ndarray]) -> None:
    """Add one P-frame's 8.x symbols to ``counts`` (tools/count_motion_tables.py), in
    place: "choice" (CHOICE_CONTEXTS_8, …) where ``refs`` (exact frames) are given,
    else "choice2" (CHOICE_CONTEXTS, …), and "vector_x", "vector_y", "fraction"."""
    act = activity(refs, *field.choice.shape) if refs is not None else None
    for _, ctx, values in choice_symbols(field.choice, previous.choice, act):
        np.add.at(counts["choice2" if act is None else "choice"], (ctx, values), 1)
    if field.far is not None and "far" in counts:  # 12.x
        for ctx, k in far_symbols(field, previous):
            counts["far"][ctx, k] += 1
    search = (counts["vector_x"].shape[1] - 1) // 4
    for x_row, y_row, dx, dy in wide_vector_symbols(field, previous, search):
        counts["vector_x"][x_row, dx] += 1
        counts["vector_y"][y_row, dy] += 1
    for ctx, value in fraction_symbols(field, previous, True):
        counts["fraction"][ctx, value] += 1


def count(field: MotionField, previous: MotionField, choice_counts: np.ndarray,
          vector_counts: np.ndarray, fraction_counts: np.ndarray | None = None) -> None:
    """Add one P-frame's symbols to (CHOICE_CONTEXTS, choices), (VECTOR_CONTEXTS, DIFFS)
    and (6.x) (FRACTION_CONTEXTS, FRACTIONS) counts, in place (tools/count_motion_tables.py)."""
    for _, ctx, values in choice_symbols(field.choice, previous.choice):
        np.add.at(choice_counts, (ctx, values), 1)
    for ctx, symbols in vector_symbols(field, previous):
        np.add.at(vector_counts, (ctx, symbols), 1)
    if fraction_counts is not None:
        for ctx, value in fraction_symbols(field, previous):
            fraction_counts[ctx, value] += 1
