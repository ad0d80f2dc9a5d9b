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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .entropy import Categorical
from .errors import FormatError
from .refine import _box3, _cross4  # the same counts as the residual's contexts

SEARCH = 4  # vectors in [−SEARCH, SEARCH]² (= predict.SEARCH)
FRACTIONS = 4  # 6.x: a taken block's half-pixel offset, fx + 2·fy (fx, fy ∈ {0, 1})
FRACTION_CONTEXTS = 5  # 0: no predicting block; 1 + the predicting block's fraction
DIFFS = 4 * SEARCH + 1  # a component's difference from its predictor: −8 … 8
CHOICE_CONTEXTS = 6 + 18
VECTOR_CONTEXTS = 3  # no predictor, a neighbour's, the previous P-frame's


@dataclass(frozen=True)
class MotionField:
    """One P-frame's re-prediction: choice (rows, cols) int64, vectors (rows, cols, 2)
    [dy, dx] int64, zero where the choice is 0."""

    choice: np.ndarray
    vectors: np.ndarray
    #: 6.x: (rows, cols) int64 half-pixel offsets fx + 2·fy of the blocks taken (the
    #: block is read at vector + (fy/2, fx/2)); None where the format has none (all 0).
    fraction: np.ndarray | None = None

    @staticmethod
    def empty(rows: int, cols: int) -> "MotionField":
        return MotionField(np.zeros((rows, cols), np.int64), np.zeros((rows, cols, 2), np.int64))

    def fractions(self) -> np.ndarray:
        """The half-pixel offsets, zeros where the field has none."""
        return np.zeros(self.choice.shape, np.int64) if self.fraction is None else self.fraction


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


def _groups(ctx: np.ndarray):
    order = np.argsort(ctx, kind="stable")
    counts = np.bincount(ctx, minlength=CHOICE_CONTEXTS)
    start = 0
    for c in np.flatnonzero(counts):
        yield int(c), order[start:start + counts[c]]
        start += counts[c]


def choice_symbols(choice: np.ndarray, previous: np.ndarray):
    """(pass, contexts, values) of each choice pass, in coding order within a context
    group is left to the coder; used by the coder and by the table count."""
    rows, cols = choice.shape
    known = np.zeros_like(choice)
    for parity, pos in enumerate(_parities(rows, cols)):
        ctx = choice_contexts(known, previous, parity).ravel()[pos]
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


def fraction_symbols(field: MotionField, previous: MotionField):
    """(context, fraction) of every block taken, in raster order (6.x)."""
    fraction = field.fractions()
    for r, c in zip(*np.nonzero(field.choice)):
        yield fraction_context(field.choice, fraction, previous, r, c), int(fraction[r, c])


def vector_symbols(field: MotionField, previous: MotionField):
    """(context, [dx − px + 8, dy − py + 8]) of every block taken, in raster order."""
    for r, c in zip(*np.nonzero(field.choice)):
        ctx, p = predictor(field.choice, field.vectors, previous, r, c)
        d = field.vectors[r, c] - p
        yield ctx, np.array([d[1], d[0]], np.int64) + 2 * SEARCH


class MotionCoder:
    """Codes a P-frame's MotionField given the previous one, with integer tables:
    ``choice_tables`` (CHOICE_CONTEXTS, 1 + references), ``vector_tables``
    (VECTOR_CONTEXTS, DIFFS), each row positive and summing to 2^16."""

    def __init__(self, choice_tables: np.ndarray, vector_tables: np.ndarray,
                 fraction_tables: np.ndarray | None = None) -> None:
        choice_tables, vector_tables = np.asarray(choice_tables), np.asarray(vector_tables)
        if choice_tables.ndim != 2 or choice_tables.shape[0] != CHOICE_CONTEXTS \
                or vector_tables.shape != (VECTOR_CONTEXTS, DIFFS) or (
                fraction_tables is not None and np.shape(fraction_tables) != (FRACTION_CONTEXTS, FRACTIONS)):
            raise FormatError("motion tables have the wrong shape")
        tables = (choice_tables, vector_tables) + (() if fraction_tables is None else (np.asarray(fraction_tables),))
        for t in tables:
            if np.any(t <= 0) or np.any(t.sum(axis=1) != 1 << 16):
                raise FormatError("motion tables must be positive rows summing to 2^16")
        self.choices = choice_tables.shape[1]
        self._choice = [Categorical(row / float(1 << 16), perfect=False) for row in choice_tables.astype(np.float64)]
        self._vector = [Categorical(row / float(1 << 16), perfect=False) for row in vector_tables.astype(np.float64)]
        self.vector_bits = -np.log2(vector_tables / float(1 << 16))
        self.choice_bits = -np.log2(choice_tables / float(1 << 16))
        #: 6.x: half-pixel offsets follow the vectors (None: the format has none).
        self.half_pel = fraction_tables is not None
        if self.half_pel:
            table = np.asarray(fraction_tables, np.float64) / float(1 << 16)
            self._fraction = [Categorical(row, perfect=False) for row in table]
            self.fraction_bits = -np.log2(table)

    def encode(self, encoder, field: MotionField, previous: MotionField) -> None:
        for _, ctx, values in choice_symbols(field.choice, previous.choice):
            for c, members in _groups(ctx):
                encoder.encode(values[members].astype(np.int32), self._choice[c])
        for ctx, symbols in vector_symbols(field, previous):
            encoder.encode(symbols.astype(np.int32), self._vector[ctx])
        if self.half_pel:
            for ctx, value in fraction_symbols(field, previous):
                encoder.encode(np.array([value], np.int32), self._fraction[ctx])
        elif field.fraction is not None and field.fraction.any():
            raise ValueError("half-pixel offsets need a format that codes them (6.x)")

    def decode(self, decoder, rows: int, cols: int, previous: MotionField) -> MotionField:
        choice = np.zeros((rows, cols), np.int64)
        for parity, pos in enumerate(_parities(rows, cols)):
            ctx = choice_contexts(choice, previous.choice, parity).ravel()[pos]
            values = np.empty(len(pos), np.int64)
            for c, members in _groups(ctx):
                values[members] = decoder.decode(self._choice[c], len(members))
            choice.ravel()[pos] = values
        vectors = np.zeros((rows, cols, 2), np.int64)
        for r, c in zip(*np.nonzero(choice)):
            ctx, p = predictor(choice, vectors, previous, r, c)
            dx, dy = np.asarray(decoder.decode(self._vector[ctx], 2), np.int64) - 2 * SEARCH
            v = p + (dy, dx)
            if np.abs(v).max() > SEARCH:
                raise FormatError(f"a 4×4 block's vector {tuple(int(x) for x in v)} is outside ±{SEARCH}")
            vectors[r, c] = v
        if not self.half_pel:
            return MotionField(choice, vectors)
        fraction = np.zeros((rows, cols), np.int64)
        for r, c in zip(*np.nonzero(choice)):
            ctx = fraction_context(choice, fraction, previous, r, c)
            fraction[r, c] = int(decoder.decode(self._fraction[ctx], 1)[0])
        return MotionField(choice, vectors, fraction)

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
        options too, each with its offset's bits."""
        side = 2 * SEARCH + 1
        dy, dx = np.divmod(np.arange(side * side), side)
        dy, dx = dy - SEARCH, dx - SEARCH
        choice = np.zeros((rows, cols), np.int64)
        vectors = np.zeros((rows, cols, 2), np.int64)
        fraction = np.zeros((rows, cols), np.int64)
        if half is not None:
            half_costs, half_vectors, half_fractions = half
            best_ref = costs.reshape(len(blocks), -1).argmin(axis=1) // costs.shape[2]
        for i, flat in enumerate(blocks):
            r, c = divmod(int(flat), cols)
            ctx, p = predictor(choice, vectors, previous, r, c)
            bits = (self.vector_bits[ctx][dx - p[1] + 2 * SEARCH] + self.vector_bits[ctx][dy - p[0] + 2 * SEARCH])
            total = costs[i] + bit_price * bits[None, :]
            j, k = np.unravel_index(int(np.argmin(total)), total.shape)
            cost, vector, offset = costs[i][j, k], (dy[k], dx[k]), 0
            if half is not None:
                fbits = self.fraction_bits[fraction_context(choice, fraction, previous, r, c)]
                v = half_vectors[i]
                hbits = (self.vector_bits[ctx][np.clip(v[:, 1] - p[1] + 2 * SEARCH, 0, DIFFS - 1)]
                         + self.vector_bits[ctx][np.clip(v[:, 0] - p[0] + 2 * SEARCH, 0, DIFFS - 1)]
                         + fbits[half_fractions[i]])
                htotal = half_costs[i] + bit_price * hbits
                m = int(np.argmin(htotal))
                if htotal[m] < total[j, k] + bit_price * fbits[0]:
                    j, cost, vector, offset = best_ref[i], half_costs[i][m], tuple(v[m]), int(half_fractions[i][m])
            if cost + price < keep_cost[i]:
                choice[r, c] = j + 1
                vectors[r, c] = vector
                fraction[r, c] = offset
        return MotionField(choice, vectors, fraction if self.half_pel else None)


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
