"""Learned probabilities of predicted frames' residual symbols (format 4.0, pcz.md §14.7).

In 2.x and 3.x files a residual symbol of a predicted frame (refine.py) is coded with
one of 64 counted tables a pass, chosen by a hand-made context: how many symbols of
the earlier passes are non-zero around it. In 4.x files a small network gives every
symbol its own probability table, from what the decoder holds when it reaches that
symbol: the symbols of the earlier passes around it (a wider window, their signs),
the previous predicted frame's symbols there, the 4×4 block's re-prediction choice
and, where the GOP's pixels are exact (its key frame came from the learned
reference, §14.6), the decoder's own frames: how much the last frames disagree there
(something moves), the edges of the predicted frame, what the re-prediction changed.
Measured on the validation clip it codes the same symbols in 22–27 % fewer bytes
than the counted contexts (``tools/train_symbol_model.py``, the manifest's entry).

Everything that decides how bits are parsed is integers (DESIGN.md, "Determinism"):
integer features, int32 weights, integer accumulators, activations requantized by
arithmetic shifts, and a softmax by lookup table, so every machine builds the same
tables. The products and sums are computed as float64 matrix products, which is
exact: every term is an integer and every partial sum stays far below 2^53, so no
rounding happens in any order of summation (``_layer``).

Network (``INPUTS`` features -> ``HIDDEN`` -> ``HIDDEN`` -> ``ALPHABET`` logits)::

    h1 = min(max((x · W1 + b1) >> S1, 0), 255)
    h2 = min(max((h1 · W2 + b2) >> S2, 0), 255)
    z  = (h2 · W3 + b3) >> S3                       logits in units of 1/16 nat
    e  = EXP[min(max(z) − z, 255)]                  EXP[d] = ⌊2^16 · exp(−d/16) + 1/2⌋
    f  = ⌊e · (2^16 − 65) / Σe⌋ + 1, the remainder to the first largest: Σf = 2^16

(>> is the arithmetic shift, rounding toward −∞.) ``f`` is the symbol's table over
the 65 values −32 … 32 of the *signed* symbol, which is the residual symbol negated
when the earlier channels' symbols at that pixel sum below zero (their signs agree).
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError

ALPHABET = 65  # symbols −32 … 32 (refine max_residual = 32)
LEVELS = 5  # pac-q6 … pac-q10
REFERENCES = 4
HIDDEN = 32
TOTAL = 1 << 16
#: EXP[d] = round(2^16 · exp(−d / 16)), d = 0 … 255: the softmax's exponential.
EXP = np.floor(TOTAL * np.exp(-np.arange(256) / 16.0) + 0.5).astype(np.int64)

# Feature columns (x), all integers.
SCALAR_NAMES = (
    "earlier channel 1 |s| (min 4)", "earlier channel 2 |s| (min 4)", "Σ earlier s (−4 … 4)",
    "3×3 pixels with an earlier non-zero (0 … 9)", "Σ earlier |s| over 5×5 (min 15)",
    "4 neighbours non-zero, this channel (odd passes)", "Σ |s| of the 4 neighbours (min 8, odd passes)",
    "previous frame's |s| here (min 4)", "3×3 pixels with a previous non-zero (min 9)",
    "references' range here >> 3 (min 31)", "3×3 max of the references' range >> 3 (min 31)",
    "predicted frame's gradient >> 3 (min 31)", "|predicted − reference 1| >> 3 (min 31)",
    "predicted value >> 4", "pixel features present (0 or 1)",
)
SCALARS = len(SCALAR_NAMES)  # 15
PASS_AT = SCALARS  # one-hot of the pass (6)
LEVEL_AT = PASS_AT + 6  # one-hot of the refined level (5)
CHOICE_AT = LEVEL_AT + LEVELS  # one-hot of the 4×4 block's choice 0 … 4 (5)
INPUTS = CHOICE_AT + 1 + REFERENCES  # 31
PIXEL_COLUMNS = tuple(range(9, 15))


class FrameInputs:
    """What a predicted frame's symbol features read besides its own symbols, H×W
    planes: the 4×4 choice map, the previous predicted frame's symbols (zeros after a
    key frame) and, when ``pixels`` is true, the re-predicted base and the references."""

    def __init__(self, choice: np.ndarray, previous_symbols: np.ndarray | None, base: np.ndarray | None,
                 refs, level: int, height: int, width: int) -> None:
        from .refine import MOTION_BLOCK

        h, w = height, width
        self.shape = (h, w)
        self.level = int(level)
        blocks = np.asarray(choice, np.int64)
        self.choice = np.repeat(np.repeat(blocks, MOTION_BLOCK, 0), MOTION_BLOCK, 1)[:h, :w]
        prev = np.zeros((h, w, 3), np.int64) if previous_symbols is None else np.abs(np.asarray(previous_symbols, np.int64))
        self.prev = np.minimum(prev, 4).transpose(2, 0, 1)  # (3, H, W)
        # Per-frame planes of features 8 and 10, built once for all passes.
        self.prev_near = np.minimum(window(((prev != 0).any(axis=2)), 1, "sum"), 9)
        self.pixels = base is not None
        if self.pixels:
            b = np.asarray(base, np.int32)
            stack = np.stack([np.asarray(r) for r in refs[:REFERENCES]]).astype(np.int32)
            spread = stack.max(axis=0) - stack.min(axis=0)  # (H, W, 3)
            self.spread = np.minimum(spread >> 3, 31).transpose(2, 0, 1)
            self.spread_near = np.minimum(window(spread.max(axis=2), 1, "max") >> 3, 31)
            gx = np.abs(b - np.concatenate([b[:, 1:], b[:, -1:]], axis=1))
            gy = np.abs(b - np.concatenate([b[1:], b[-1:]], axis=0))
            self.grad = np.minimum((gx + gy) >> 3, 31).transpose(2, 0, 1)
            self.dref = np.minimum(np.abs(b - np.asarray(refs[0], np.int32)) >> 3, 31).transpose(2, 0, 1)
            self.value = (b >> 4).transpose(2, 0, 1)


def window(plane: np.ndarray, k: int, op: str) -> np.ndarray:
    """Sum or max of an H×W plane of small non-negative integers over the (2k+1)²
    window around every pixel, reading outside the plane as 0: an H×W int64 plane.
    OpenCV's box filter and dilation, on float32 holding integers whose sums stay far
    below 2²⁴, so exact in any order of summation (tests/test_symbolnet.py holds it to
    the definition)."""
    import cv2

    src = np.ascontiguousarray(plane, dtype=np.float32)
    size = (2 * k + 1, 2 * k + 1)
    if op == "sum":
        out = cv2.boxFilter(src, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    else:
        out = cv2.dilate(src, np.ones(size, np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(np.int64)


def features(known: np.ndarray, index: int, pos: np.ndarray, inputs: FrameInputs) -> np.ndarray:
    """(len(pos), INPUTS) int64 features of pass ``index``'s symbols at flat positions
    ``pos``, from ``known`` (3×H×W, the symbols of the earlier passes, zeros elsewhere)."""
    from .refine import CHANNEL_ORDER

    h, w = inputs.shape
    n = len(pos)
    x = np.zeros((n, INPUTS), np.int64)
    ys, xs = np.divmod(pos, w)
    i = index // 2
    channel = CHANNEL_ORDER[i]
    earlier = list(CHANNEL_ORDER[:i])
    if earlier:
        e = known[earlier].astype(np.int64)
        x[:, 0] = np.minimum(np.abs(e[0][ys, xs]), 4)
        if len(earlier) > 1:
            x[:, 1] = np.minimum(np.abs(e[1][ys, xs]), 4)
        x[:, 2] = np.clip(e.sum(axis=0)[ys, xs], -4, 4)
        x[:, 3] = window((e != 0).any(axis=0), 1, "sum")[ys, xs]
        x[:, 4] = np.minimum(window(np.abs(e).sum(axis=0), 2, "sum")[ys, xs], 15)
    if index % 2:
        m = np.pad(np.abs(known[channel].astype(np.int64)), 1)
        cross = [m[ys, xs + 1], m[ys + 2, xs + 1], m[ys + 1, xs], m[ys + 1, xs + 2]]
        x[:, 5] = sum((c != 0).astype(np.int64) for c in cross)
        x[:, 6] = np.minimum(sum(cross), 8)
    x[:, 7] = inputs.prev[channel][ys, xs]
    x[:, 8] = inputs.prev_near[ys, xs]
    if inputs.pixels:
        x[:, 9] = inputs.spread[channel][ys, xs]
        x[:, 10] = inputs.spread_near[ys, xs]
        x[:, 11] = inputs.grad[channel][ys, xs]
        x[:, 12] = inputs.dref[channel][ys, xs]
        x[:, 13] = inputs.value[channel][ys, xs]
        x[:, 14] = 1
    x[:, PASS_AT + index] = 1
    x[:, LEVEL_AT + inputs.level] = 1
    x[np.arange(n), CHOICE_AT + inputs.choice[ys, xs]] = 1
    return x


def flips(x: np.ndarray) -> np.ndarray:
    """−1 where the earlier channels' symbols at the pixel sum below zero, else 1."""
    return np.where(x[:, 2] < 0, -1, 1)


def _layer(a: np.ndarray, w: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """⌊(a · w + b) · scale⌋ for integer-valued float64 arrays and scale = 2^−S: the
    spec's (a · w + b) >> S, exactly. The float64 matrix product is exact because every
    term and partial sum is an integer far below 2^53 (the caller checks the bounds), so
    no rounding happens in any order of summation, and scaling by a power of two is
    exact too. Faster than int64 arithmetic, which NumPy does without BLAS."""
    return np.floor((a @ w + b) * scale)


class SymbolNet:
    """The integer network of ``pac-ctx`` (weights: W1, b1, W2, b2, W3, b3 int32 and the
    shifts S int32 (3,)), mapping features to integer tables."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        shapes = {"W1": (INPUTS, HIDDEN), "b1": (HIDDEN,), "W2": (HIDDEN, HIDDEN), "b2": (HIDDEN,),
                  "W3": (HIDDEN, ALPHABET), "b3": (ALPHABET,), "S": (3,)}
        for name, shape in shapes.items():
            t = tensors.get(name)
            if t is None or tuple(t.shape) != shape:
                raise FormatError(f"symbol model tensor {name} is not {shape}")
        self.w = {k: np.asarray(tensors[k], np.int64) for k in shapes}
        self._float = {k: self.w[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2", "W3", "b3")}
        self._scales = [2.0 ** -int(v) for v in self.w["S"]]
        if np.any(np.abs(self.w["W1"]) > 1 << 15) or np.any(np.abs(self.w["W2"]) > 1 << 15) \
                or np.any(np.abs(self.w["W3"]) > 1 << 15) or np.any((self.w["S"] < 0) | (self.w["S"] > 40)):
            raise FormatError("symbol model weights are outside 16 bits or its shifts outside 0 … 40")

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) int features -> (n, ALPHABET) logits in 1/16 nat, integers held
        exactly in float64 (every |partial sum| < 2^45: features ≤ 31 and activations
        ≤ 255 in magnitude, weights ≤ 2^15, which the constructor checks)."""
        w, s = self._float, self._scales
        h = np.clip(_layer(np.ascontiguousarray(x, dtype=np.float64), w["W1"], w["b1"], s[0]), 0, 255)
        h = np.clip(_layer(h, w["W2"], w["b2"], s[1]), 0, 255)
        return _layer(h, w["W3"], w["b3"], s[2])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) int features -> (n, ALPHABET) int64 logits in 1/16 nat."""
        return self._logits(x).astype(np.int64)

    def tables(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) features -> (n, ALPHABET) int64 tables, rows summing to 2^16,
        every entry ≥ 1. The network runs once per distinct feature row (the same
        integers give the same table): in a predicted frame of this footage about a
        third of the rows are distinct (black corridors, no symbol near)."""
        if len(x) < 64 or x.min() < -128 or x.max() > 127:
            return softmax_table(self._logits(x))
        small = np.ascontiguousarray(x, dtype=np.int8)  # rows compared as bytes
        rows = small.view(np.dtype((np.void, small.shape[1]))).ravel()
        distinct, inverse = np.unique(rows, return_inverse=True)
        if len(distinct) > 0.8 * len(x):
            return softmax_table(self._logits(x))
        return softmax_table(self._logits(distinct.view(np.int8).reshape(len(distinct), -1)))[inverse.ravel()]


_EXP_FLOAT = EXP.astype(np.float64)


def softmax_table(z: np.ndarray) -> np.ndarray:
    """Integer logits (n, S) in 1/16 nat (int64, or integers in float64) -> integer
    tables (n, S) summing to 2^16: f = ⌊e · (2^16 − S) / Σe⌋ + 1, the remainder to the
    first largest.

    The quotient is computed in float64 and truncated, which is the integer floor
    exactly: e · (2^16 − S) < 2^33 and Σe < 2^23 are exact, and a quotient that is not
    an integer lies at least 1/Σe > 2^−23 from the integers around it, far more than
    the division's rounding (< 2^16 · 2^−53), so it never rounds onto one. (int64
    floor division took 70 % of the decoder's softmax.)"""
    n, size = z.shape
    e = _EXP_FLOAT[np.minimum(z.max(axis=1, keepdims=True) - z, 255).astype(np.intp)]
    f = (e * float(TOTAL - size) / e.sum(axis=1, keepdims=True)).astype(np.int64) + 1
    f[np.arange(n), f.argmax(axis=1)] += TOTAL - f.sum(axis=1)
    return f
