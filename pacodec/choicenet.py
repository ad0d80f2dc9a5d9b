"""Learned probabilities of predicted frames' 4×4 re-prediction choices (format 11.0, pcz.md §14.13).

A predicted frame's 4×4 blocks each say which reference they are taken from (0: none,
1 … 4: blockmotion.py). Format 8.0 codes those choices with counted tables in 288
hand-made contexts (how many blocks the previous P-frame took around, how much the
last frames changed there, in a few bins). In 11.x files, where the GOP's pixels are
exact integers (its key frame came from the learned reference, §14.6), a small integer
network gives every choice its own table instead, from what the decoder holds when it
reaches the block: how much the references differ from the most recent one around it
at three scales (a sprite that moved leaves a trail in the last frames, one that
stands still none), whether a wall edge runs through it, which references the
previous P-frame took there and around and with which vector, the row (the score and
the maze's tunnels sit in rows of their own), and in the second pass which
references the four neighbours took. Measured on the validation clip it codes the
same choices in 23–27 % fewer bytes than 8.0's tables
(``tools/train_choice_model.py``, the manifest's entry of ``pac-ctx3``).

The network is the same integer arithmetic as the residual symbols' (symbolnet.py,
§14.7): integer features in −128 … 127, int32 weights, integer accumulators,
activations requantized by arithmetic shifts and clamped to 0 … 255, logits in 1/16
nat turned into a table summing to 2^16 by the lookup-table softmax
(``symbolnet.softmax_table``). Its weights travel in ``pac-ctx3`` beside the symbol
model's, under names prefixed ``C_``.
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError
from .symbolnet import distinct_rows, integer_mlp, softmax_table

GRID = 4  # the choices' blocks (blockmotion.MOTION_GRID)
CHOICES = 5  # 0 keeps the base, 1 … 4 a reference
LEVELS = 5  # pac-q6 … pac-q10
HIDDEN = 64
MARGINS = (0, 2, 6)  # the block grown by this many pixels on every side, cut by the frame
PAD = max(MARGINS)
#: The 8 neighbours of a block, (dy, dx) in this order.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))

FEATURE_NAMES = (
    *(f"bits of Σ|Ref1 − Ref{j}| over the block grown by {m}" for j in (2, 3, 4) for m in MARGINS),
    "bits of Σ|Ref1[x + 1] − Ref1[x]| over the block",
    *(f"previous choice == {v}" for v in range(CHOICES)),
    *(f"previous P-frame took block ({dy:+d}, {dx:+d})" for dy, dx in NEIGHBOURS),
    *(f"previous P-frame's blocks from reference {j} in the 3×3" for j in range(1, CHOICES)),
    "previous vector dy", "previous vector dx",
    "block row",
    *(f"neighbours (4) from reference {j}, odd pass" for j in range(1, CHOICES)),
    "odd pass",
    *(f"level == {k}" for k in range(LEVELS)),
)
INPUTS = len(FEATURE_NAMES)  # 40
ACT_AT, GRAD_AT, PREV_AT, AROUND_AT, PREV_REF_AT, VEC_AT, ROW_AT, NEAR_AT, PASS_AT, LEVEL_AT = (
    0, 9, 10, 15, 23, 27, 29, 30, 34, 35)
#: The tensors of the network in a weights file (pac-ctx3), with their shapes.
TENSORS = {"C_W1": (INPUTS, HIDDEN), "C_b1": (HIDDEN,), "C_W2": (HIDDEN, HIDDEN), "C_b2": (HIDDEN,),
           "C_W3": (HIDDEN, CHOICES), "C_b3": (CHOICES,), "C_S": (3,)}


def bits_of(s: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers below 2^53 (0 for 0): ⌊log2 s⌋ + 1, exactly
    (frexp reads the float's exponent; no logarithm is rounded)."""
    return np.frexp(np.asarray(s, np.float64))[1].astype(np.int64)


def _padded_integral(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """OpenCV's int32 integral image (per channel) of ``plane`` with PAD zero pixels
    above and left of it and enough below and right for every block grown by
    max(MARGINS): zeros add nothing, so a block's window cut by the frame is a plain
    window of the padded plane, and every block's corners are strided slices."""
    import cv2

    h, w = plane.shape[:2]
    padded = cv2.copyMakeBorder(plane, PAD, PAD + GRID * rows - h, PAD, PAD + GRID * cols - w,
                                cv2.BORDER_CONSTANT, value=0)
    # int32 per channel (a frame's channel sums to < 2^24, three to < 2^26), added
    # over the channels once, so that every block's box is 4 reads of one plane (three
    # adds of strided planes: NumPy's reduce over a last axis of 3 is ten times slower).
    integral = cv2.integral(padded, sdepth=cv2.CV_32S)
    return integral[..., 0] + integral[..., 1] + integral[..., 2]


def _box_sums(integral: np.ndarray, rows: int, cols: int, margin: int) -> np.ndarray:
    """(rows, cols) int64 sums over the channels and each 4×4 block grown by
    ``margin`` (cut by the frame) from a ``_padded_integral``: I[y1, x1] − I[y0, x1] −
    I[y1, x0] + I[y0, x0]."""
    lo, hi = PAD - margin, PAD + GRID + margin
    y0, y1 = slice(lo, lo + GRID * rows, GRID), slice(hi, hi + GRID * rows, GRID)
    x0, x1 = slice(lo, lo + GRID * cols, GRID), slice(hi, hi + GRID * cols, GRID)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def frame_features(refs, prev_choice: np.ndarray, prev_vectors: np.ndarray, level: int) -> np.ndarray:
    """(rows, cols, INPUTS) int8 features of every block but the odd pass's (columns
    NEAR_AT … PASS_AT, zero here; ``pass_features`` fills them): ``refs`` the exact
    references, most recent first (one past the last reads as the last), the previous
    P-frame's choices (rows, cols) and vectors (rows, cols, 2) [dy, dx] (zeros after an
    intra frame), ``level`` 0 … 4 (pac-q6 … q10)."""
    import cv2

    rows, cols = prev_choice.shape
    x = np.zeros((rows, cols, INPUTS), np.int8)  # every feature is within −128 … 127
    first = np.ascontiguousarray(refs[0], np.uint8)
    for i, j in enumerate((1, 2, 3)):
        other = np.ascontiguousarray(refs[min(j, len(refs) - 1)], np.uint8)
        # |Ref1 − Refj| exact in uint8, OpenCV's running sums of each channel, added
        # over the channels per block: the same integers as in int64, in a tenth of
        # NumPy's time.
        integral = _padded_integral(cv2.absdiff(first, other), rows, cols)
        for k, m in enumerate(MARGINS):
            x[..., ACT_AT + 3 * i + k] = bits_of(_box_sums(integral, rows, cols, m))
    grad = np.zeros_like(first)
    grad[:, :-1] = cv2.absdiff(first[:, 1:], first[:, :-1])  # 0 in the last column
    x[..., GRAD_AT] = bits_of(_box_sums(_padded_integral(grad, rows, cols), rows, cols, 0))
    prev = np.asarray(prev_choice, np.int64)
    x[..., PREV_AT:PREV_AT + CHOICES] = prev[..., None] == np.arange(CHOICES)
    padded = np.pad(prev, 1)
    for i, (dy, dx) in enumerate(NEIGHBOURS):
        x[..., AROUND_AT + i] = padded[1 + dy:1 + dy + rows, 1 + dx:1 + dx + cols] != 0
    if prev.any():
        onehot = np.pad(x[..., PREV_AT + 1:PREV_AT + CHOICES], ((1, 1), (1, 1), (0, 0))).astype(np.int64)
        x[..., PREV_REF_AT:PREV_REF_AT + CHOICES - 1] = sum(
            onehot[1 + dy:1 + dy + rows, 1 + dx:1 + dx + cols] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    x[..., VEC_AT:VEC_AT + 2] = np.clip(prev_vectors, -128, 127)  # ±4 in a valid field
    x[..., ROW_AT] = np.minimum(np.arange(rows), 127)[:, None]
    x[..., LEVEL_AT + level] = 1
    return x


def pass_features(base: np.ndarray, known: np.ndarray, parity: int, pos: np.ndarray) -> np.ndarray:
    """(len(pos), INPUTS) features of pass ``parity``'s blocks at flat positions
    ``pos``: ``base`` (``frame_features``) and, in the odd pass, how many of each block's
    4 neighbours (in the frame) the first pass took from each reference (``known``: the
    choices decoded so far; the odd pass reads only even blocks)."""
    rows, cols = known.shape
    x = base.reshape(rows * cols, INPUTS)[pos]  # a copy (fancy indexing)
    if parity:
        for j in range(1, CHOICES):
            p = np.pad((known == j).astype(np.int64), 1)
            near = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
            x[:, NEAR_AT + j - 1] = near.ravel()[pos]
        x[:, PASS_AT] = 1
    return x


class ChoiceNet:
    """The integer network of 11.x choices (INPUTS -> HIDDEN -> HIDDEN -> CHOICES:
    40 -> 64 -> 64 -> 5, the arithmetic of symbolnet.SymbolNet) from the ``C_`` tensors
    of pac-ctx3."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        for name, shape in TENSORS.items():
            t = tensors.get(name)
            if t is None or tuple(np.shape(t)) != shape:
                raise FormatError(f"choice model tensor {name} is not {shape}")
        self.w = {k: np.asarray(tensors[k], np.int64) for k in TENSORS}
        if any(np.any(np.abs(self.w[k]) > 1 << 15) for k in ("C_W1", "C_W2", "C_W3")) \
                or np.any((self.w["C_S"] < 0) | (self.w["C_S"] > 40)):
            raise FormatError("choice model weights are outside 16 bits or its shifts outside 0 … 40")
        self._float = [self.w[k].astype(np.float64) for k in ("C_W1", "C_b1", "C_W2", "C_b2", "C_W3", "C_b3")]
        self._scales = [2.0 ** -int(v) for v in self.w["C_S"]]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) int features in −128 … 127 -> (n, CHOICES) logits in 1/16 nat,
        integers held exactly in float64 (|partial sums| < 2^40: 40 terms of at most
        127 · 2^15, or 64 of 255 · 2^15, and int32 biases)."""
        return integer_mlp(x, self._float, self._scales)

    def tables(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) features -> (n, CHOICES) int64 tables, rows summing to 2^16, every
        entry ≥ 1; the network runs once per distinct row (most blocks of a frame are
        corridor or wall that nothing crossed: a few hundred distinct rows of 2,000)."""
        if not len(x):
            return np.zeros((0, CHOICES), np.int64)
        if x.dtype != np.int8 and (x.min() < -128 or x.max() > 127):
            raise ValueError("choice features outside −128 … 127")
        distinct, inverse, _ = distinct_rows(x)
        return softmax_table(self.logits(distinct))[inverse]
