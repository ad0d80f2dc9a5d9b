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
7.x files use pac-ctx2 (pcz.md §14.9): 11 more features (``WIDE_NAMES``) and 64 hidden
units; 4.x … 6.x files pac-ctx, whose weights ship on.

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

import functools

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
INPUTS = CHOICE_AT + 1 + REFERENCES  # 31: the features of 4.x … 6.x files (pac-ctx)
#: Format 7.x (pac-ctx2) reads 11 more, after those 31: the exact values the 4.x
#: features cap at 4 (a green symbol of 12 says much about the red one at the same
#: pixel: on clip8 at pac-q10 the residuals of R and G correlate at 0.89), the colour
#: of the predicted pixel (which sprite: yellow Pac-Man moves R and G together, a blue
#: ghost B alone), and the previous frame's symbols, signed, also where this block's
#: vector comes from (a sprite's residual moves with it). Measured with float networks
#: on the training clips' symbols (clip8's code length): these features with 32 hidden
#: units −3.5 %, with 64 −6.7 %; 64 hidden units alone −0.9 %.
WIDE_NAMES = (
    "S[E1] (−31 … 31)", "S[E2] (−31 … 31)", "Σ S of the 4 neighbours (−31 … 31, odd passes)",
    "predicted R >> 4", "predicted G >> 4", "predicted B >> 4",
    "(predicted − reference 1) R >> 4", "(predicted − reference 1) G >> 4", "(predicted − reference 1) B >> 4",
    "previous frame's s here (−31 … 31)", "previous frame's s where the block's vector points (−31 … 31)",
)
WIDE_AT = INPUTS
INPUTS_7 = INPUTS + len(WIDE_NAMES)  # 42
#: (features, hidden units) of each symbol model id; a file's major version names its id.
#: pac-ctx3 (11.x) holds pac-ctx2's network and, beside it, the choices' (choicenet.py).
SHAPES = {"pac-ctx": (INPUTS, HIDDEN), "pac-ctx2": (INPUTS_7, 64), "pac-ctx3": (INPUTS_7, 64)}


class FrameInputs:
    """What a predicted frame's symbol features read besides its own symbols: the 4×4
    choice map, the previous predicted frame's symbols (zeros after a key frame) and,
    when ``pixels`` is true, the re-predicted base and the references. The features
    that read only these are built once a frame for all passes, as a table
    (``static``: per channel, one int8 plane per column of ``static_columns``) that each
    pass gathers its pixels' values from."""

    def __init__(self, choice: np.ndarray, previous_symbols: np.ndarray | None, base: np.ndarray | None,
                 refs, level: int, height: int, width: int, vectors: np.ndarray | None = None,
                 wide: bool = False) -> None:
        from .refine import MOTION_BLOCK

        h, w = height, width
        self.shape = (h, w)
        self.level = int(level)
        self.wide = wide
        self.pixels = base is not None
        blocks = np.asarray(choice, np.int64)
        self.choice = np.repeat(np.repeat(blocks, MOTION_BLOCK, 0), MOTION_BLOCK, 1)[:h, :w]
        self.choice_column = (CHOICE_AT + self.choice).ravel()
        # int16 and uint8 throughout: every value below is a byte or a symbol, and the
        # planes are built once a frame for the whole frame.
        signed = np.zeros((h, w, 3), np.int16) if previous_symbols is None else np.asarray(previous_symbols, np.int16)
        prev = np.abs(signed)
        planes = {7: np.minimum(prev, 4),  # (H, W, 3) or (H, W): one value for every channel
                  8: np.minimum(window(_any_channel(prev), 1, "sum"), 9)}
        if self.pixels:
            b = np.asarray(base, np.int16)
            r1 = np.asarray(refs[0], np.int16)
            high = np.array(refs[0], np.uint8)
            low = high.copy()
            for r in refs[1:REFERENCES]:
                np.maximum(high, r, out=high)
                np.minimum(low, r, out=low)
            spread = high - low  # (H, W, 3) uint8: the references' range
            gx = np.abs(b - np.concatenate([b[:, 1:], b[:, -1:]], axis=1))
            gy = np.abs(b - np.concatenate([b[1:], b[-1:]], axis=0))
            widest = np.maximum(np.maximum(spread[..., 0], spread[..., 1]), spread[..., 2])  # as _any_channel
            planes.update({9: spread >> 3,  # ≤ 31 for bytes
                           10: window(widest, 1, "max") >> 3,
                           11: np.minimum((gx + gy) >> 3, 31),
                           12: np.abs(b - r1) >> 3,
                           13: b >> 4,
                           14: np.ones((h, w), np.int8)})
        if wide:  # 7.x
            if vectors is None:
                raise ValueError("7.x symbol features need the 4×4 blocks' vectors")
            clipped = np.clip(signed, -31, 31)
            # 41: where a block taken from reference 1 (C = 1) comes from, the previous
            # frame's symbols there; C = 0 the pixel's own; C ≥ 2 none.
            moved = np.where((self.choice <= 1)[..., None], clipped, 0)
            rb, cb = np.nonzero(blocks == 1)
            if len(rb):
                span = np.arange(MOTION_BLOCK)
                yy, xx = rb[:, None] * MOTION_BLOCK + span, cb[:, None] * MOTION_BLOCK + span  # (m, 4)
                v = np.asarray(vectors, np.int64)[rb, cb]  # (m, 2) [dy, dx]
                sy, sx = np.clip(yy + v[:, :1], 0, h - 1), np.clip(xx + v[:, 1:], 0, w - 1)
                inside = (yy < h)[:, :, None] & (xx < w)[:, None, :]
                shape = inside.shape
                to_y, to_x = np.broadcast_to(yy[:, :, None], shape)[inside], np.broadcast_to(xx[:, None, :], shape)[inside]
                moved[to_y, to_x] = clipped[np.broadcast_to(sy[:, :, None], shape)[inside],
                                            np.broadcast_to(sx[:, None, :], shape)[inside]]
            planes.update({WIDE_AT + 9: clipped, WIDE_AT + 10: moved})
            if self.pixels:
                change = (b - r1) >> 4  # arithmetic shift: −16 … 15
                for ch in range(3):
                    planes[WIDE_AT + 3 + ch] = planes[13][..., ch]
                    planes[WIDE_AT + 6 + ch] = change[..., ch]
        self.static_columns = np.array(sorted(planes))
        # column-major (one contiguous plane per column): 3.7× faster to build than a row
        # per pixel, and as fast to gather from
        table = np.empty((3, len(planes), h, w), np.int8)  # every value within −128 … 127
        for k, column in enumerate(self.static_columns):
            plane = planes[column]
            table[:, k] = plane.transpose(2, 0, 1) if plane.ndim == 3 else plane
        self.static = table.reshape(3, len(planes), h * w)
        self._earlier = None  # earlier_windows' last planes and what they were made from

    def earlier_windows(self, known: np.ndarray, earlier) -> tuple[np.ndarray, np.ndarray]:
        """Features 3 and 4 of every pixel (flat int8 planes) from the ``earlier``
        channels of ``known``: the 3×3 pixels with a non-zero symbol there, and
        min(Σ |s| over the 5×5, 15). Both passes of a channel read the same earlier
        channels, so the planes are kept, with a copy of those channels, and reused
        while they are unchanged."""
        kept = self._earlier
        if kept is not None and kept[0] == tuple(earlier) \
                and all(np.array_equal(a, known[c]) for a, c in zip(kept[1], earlier)):
            return kept[2], kept[3]
        nonzero = known[earlier[0]] != 0
        magnitude = np.abs(known[earlier[0]])
        for c in earlier[1:]:
            nonzero |= known[c] != 0
            magnitude = magnitude + np.abs(known[c])
        near = window(nonzero, 1, "sum", np.int8).reshape(-1)
        spread = np.minimum(window(magnitude, 2, "sum", np.float32), 15).astype(np.int8).reshape(-1)
        self._earlier = (tuple(earlier), [known[c].copy() for c in earlier], near, spread)
        return near, spread


def _any_channel(planes: np.ndarray) -> np.ndarray:
    """H×W×3 -> H×W bool, any channel non-zero (NumPy's any(axis=2) is several times slower)."""
    return (planes[..., 0] != 0) | (planes[..., 1] != 0) | (planes[..., 2] != 0)


def window(plane: np.ndarray, k: int, op: str, dtype=np.int64) -> np.ndarray:
    """Sum or max of an H×W plane of small non-negative integers over the (2k+1)²
    window around every pixel, reading outside the plane as 0: an H×W plane of
    ``dtype`` (int64; a narrower one where the caller knows the values fit).
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
    return out.astype(dtype)


def features(known: np.ndarray, index: int, pos: np.ndarray, inputs: FrameInputs) -> np.ndarray:
    """(len(pos), INPUTS) int8 features (every one within −128 … 127) of pass
    ``index``'s symbols at flat positions ``pos``, from ``known`` (3×H×W, the symbols
    of the earlier passes, zeros elsewhere); (len(pos), INPUTS_7) for 7.x inputs
    (``inputs.wide``)."""
    from .refine import CHANNEL_ORDER

    h, w = inputs.shape
    n = len(pos)
    x = np.zeros((n, INPUTS_7 if inputs.wide else INPUTS), np.int8)
    i = index // 2
    channel = CHANNEL_ORDER[i]
    earlier = CHANNEL_ORDER[:i]
    x[:, inputs.static_columns] = inputs.static[channel][:, pos].T
    if earlier:
        here = np.stack([known[c].reshape(-1)[pos] for c in earlier])  # (len(earlier), n)
        x[:, 0] = np.minimum(np.abs(here[0]), 4)
        if len(earlier) > 1:
            x[:, 1] = np.minimum(np.abs(here[1]), 4)
        x[:, 2] = np.clip(here.sum(axis=0), -4, 4)
        near, spread = inputs.earlier_windows(known, earlier)
        x[:, 3] = near[pos]
        x[:, 4] = spread[pos]
        if inputs.wide:
            x[:, WIDE_AT:WIDE_AT + len(earlier)] = np.clip(here, -31, 31).T
    if index % 2:
        m = np.pad(known[channel], 1).reshape(-1)
        ys, xs = np.divmod(pos, w)
        at = ys * (w + 2) + xs  # the top left of each pixel's 3×3 in the padded plane
        cross = np.stack([m[at + 1], m[at + 2 * (w + 2) + 1], m[at + w + 2], m[at + w + 4]])  # up, down, left, right
        x[:, 5] = (cross != 0).sum(axis=0)
        x[:, 6] = np.minimum(np.abs(cross).sum(axis=0), 8)
        if inputs.wide:
            x[:, WIDE_AT + 2] = np.clip(cross.sum(axis=0), -31, 31)
    x[:, PASS_AT + index] = 1
    x[:, LEVEL_AT + inputs.level] = 1
    x[np.arange(n), inputs.choice_column[pos]] = 1
    return x


def flips(x: np.ndarray) -> np.ndarray:
    """−1 where the earlier channels' symbols at the pixel sum below zero, else 1."""
    return np.where(x[:, 2] < 0, -1, 1)


def _layer(a: np.ndarray, w: np.ndarray, b: np.ndarray, scale: float, hidden: bool = True) -> np.ndarray:
    """⌊(a · w + b) · scale⌋ for integer-valued float64 arrays and scale = 2^−S: the
    spec's (a · w + b) >> S, exactly, clipped to the activations' 0 … 255 for a
    ``hidden`` layer. The float64 matrix product is exact because every term and
    partial sum is an integer far below 2^53 (the caller checks the bounds), so no
    rounding happens in any order of summation, and scaling by a power of two is exact
    too. Faster than int64 arithmetic, which NumPy does without BLAS. In place after
    the product: one array, not one for each step (at a few thousand rows, fresh arrays
    of megabytes cost about three times the arithmetic in page faults, on this
    machine; a pass's few hundred rows gain little)."""
    out = a @ w
    out += b
    out *= scale
    np.floor(out, out=out)
    if hidden:
        np.clip(out, 0, 255, out=out)
    return out


@functools.lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def integer_mlp(x: np.ndarray, w: list[np.ndarray], scales: list[float]) -> np.ndarray:
    """The three layers of §14.7's arithmetic: int features (n, k) -> logits (n, m),
    integers held exactly in float64, for weights and biases ``w`` = [W1, b1, W2, b2,
    W3, b3] (float64) and ``scales`` 2^−S.

    The products run on one BLAS thread (threadpoolctl; the caller's setting is restored
    after): a pass's few hundred distinct rows are too small to split, and on 2 cores
    two threads decoded clip8 at pac-q10 no faster when the machine was idle and at a
    third of the speed when another process held the other core."""
    with _blas().limit(limits=1, user_api="blas"):
        h = _layer(np.ascontiguousarray(x, dtype=np.float64), w[0], w[1], scales[0])
        h = _layer(h, w[2], w[3], scales[1])
        return _layer(h, w[4], w[5], scales[2], hidden=False)


class SymbolNet:
    """The integer network of ``pac-ctx`` or ``pac-ctx2`` (``model_id``; weights: W1, b1,
    W2, b2, W3, b3 int32 of the shapes ``SHAPES`` names and the shifts S int32 (3,)),
    mapping features to integer tables."""

    def __init__(self, tensors: dict[str, np.ndarray], model_id: str = "pac-ctx") -> None:
        inputs, hidden = SHAPES[model_id]
        self.wide = inputs == INPUTS_7  # 7.x features
        shapes = {"W1": (inputs, hidden), "b1": (hidden,), "W2": (hidden, hidden), "b2": (hidden,),
                  "W3": (hidden, ALPHABET), "b3": (ALPHABET,), "S": (3,)}
        for name, shape in shapes.items():
            t = tensors.get(name)
            if t is None or tuple(t.shape) != shape:
                raise FormatError(f"symbol model tensor {name} is not {shape}")
        self.w = {k: np.asarray(tensors[k], np.int64) for k in shapes}
        self._float = [self.w[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
        self._scales = [2.0 ** -int(v) for v in self.w["S"]]
        if np.any(np.abs(self.w["W1"]) > 1 << 15) or np.any(np.abs(self.w["W2"]) > 1 << 15) \
                or np.any(np.abs(self.w["W3"]) > 1 << 15) or np.any((self.w["S"] < 0) | (self.w["S"] > 40)):
            raise FormatError("symbol model weights are outside 16 bits or its shifts outside 0 … 40")

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) int features -> (n, ALPHABET) logits in 1/16 nat, integers held
        exactly in float64 (every |partial sum| < 2^46: at most 64 terms, features ≤ 31
        and activations ≤ 255 in magnitude, weights ≤ 2^15, which the constructor checks)."""
        return integer_mlp(x, self._float, self._scales)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) int features -> (n, ALPHABET) int64 logits in 1/16 nat."""
        return self._logits(x).astype(np.int64)

    def tables(self, x: np.ndarray) -> np.ndarray:
        """(n, INPUTS) features -> (n, ALPHABET) int64 tables, rows summing to 2^16,
        every entry ≥ 1. The network runs once per distinct feature row (the same
        integers give the same table): in a predicted frame of this footage about a
        third of the rows are distinct (black corridors, no symbol near)."""
        if len(x) and (x.min() < -128 or x.max() > 127):  # no int8 rows to group
            return softmax_table(self._logits(x))
        table, inverse, _ = self.distinct_tables(x, keep=False)
        return table[inverse]

    def distinct_tables(self, x: np.ndarray, seen=None, keep: bool = True):
        """The tables of ``x``'s distinct feature rows (m, ALPHABET) int64, inverse (n,)
        (row i's table is table[inverse[i]]: a frame's symbols need about a third as
        many tables as rows, and their code lengths and probabilities likewise), and
        with ``keep`` (the rows' ``row_keys``, sorted; those rows; their tables) for a
        later call's ``seen``, whose rows the network does not run again: the encoder
        prices a frame's symbols and then codes them, asking about mostly the same
        rows twice, and a table is a function of its row alone."""
        if len(x) and (x.min() < -128 or x.max() > 127):
            raise ValueError("symbol features outside −128 … 127")
        distinct, inverse, keys = distinct_rows(x)
        out = np.empty((len(distinct), ALPHABET), np.int64)
        todo = np.ones(len(distinct), bool)
        if seen is not None and len(seen[0]) and len(distinct):
            known_keys, known_rows, known_tables = seen
            at = np.minimum(np.searchsorted(known_keys, keys), len(known_keys) - 1)
            hit = (known_keys[at] == keys) & (known_rows[at] == distinct).all(axis=1)
            out[hit], todo = known_tables[at[hit]], ~hit
        if todo.any():
            out[todo] = softmax_table(self._logits(distinct[todo]))
        if not keep:
            return out, inverse, None
        order = np.argsort(keys, kind="stable")
        return out, inverse, (keys[order], distinct[order], out[order])


# Odd 64-bit multipliers of a row's 8-byte words (any odd constants would do): a hash
# only groups rows; every row is then compared with its group's whole bytes.
_WORD_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                      0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9],
                     dtype=np.uint64)


def row_keys(x: np.ndarray) -> np.ndarray:
    """(n, k) int8 rows (k ≤ 64) -> (n,) uint64 hashes of their bytes (equal rows,
    equal hashes; unequal rows almost never)."""
    n, k = x.shape
    words = -(-k // 8)
    padded = np.zeros((n, 8 * words), np.int8)
    padded[:, :k] = x
    w = padded.view(np.uint64)
    h = w[:, 0] * _WORD_MIX[0]
    for i in range(1, words):
        h ^= w[:, i] * _WORD_MIX[i]
        h *= _WORD_MIX[(i + 3) % len(_WORD_MIX)]
    return h ^ (h >> np.uint64(31))


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct rows of ``x`` as int8 (m, k), inverse (n,), their ``row_keys`` (m,)):
    x == distinct[inverse]. Grouped by a hash of each row (sorting 64-bit integers is
    several times faster than sorting rows as byte strings) and checked against the
    whole rows; on a collision, NumPy's unique of the rows as bytes."""
    small = np.ascontiguousarray(x, dtype=np.int8)
    keys, first, inverse = np.unique(row_keys(small), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    distinct = small[first]
    if not np.array_equal(distinct[inverse], small):  # two rows share a hash
        rows = small.view(np.dtype((np.void, small.shape[1]))).ravel()
        unique, inverse = np.unique(rows, return_inverse=True)
        distinct, inverse = unique.view(np.int8).reshape(len(unique), -1), inverse.ravel()
        keys = row_keys(distinct)
    return distinct, inverse, keys


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
    d = z.max(axis=1, keepdims=True) - z
    np.minimum(d, 255, out=d)
    e = _EXP_FLOAT[d.astype(np.intp)]
    total = e.sum(axis=1, keepdims=True)
    e *= float(TOTAL - size)  # in place, as in _layer: the same products and quotients
    e /= total
    f = e.astype(np.int64)
    f += 1
    f[np.arange(n), f.argmax(axis=1)] += TOTAL - f.sum(axis=1)
    return f
