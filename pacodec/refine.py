"""The refinement layer of pac-q6 … pac-q10: a base frame's pixel residual, context-coded.

The pac transform (stride 16) saturates near 31.5 dB on clip9 whatever its rate, while
the footage allows far more. A refined id codes a frame in two layers: the base, a
pac quality level (its latents entropy-coded as usual), then the residual of the
decoder's base frame, per subpixel::

    r = frame − base                    (int16)
    s = sign(r) · ⌊(|r| + 3Δ/8) / Δ⌋    clamped to −R…R
    out = clip(base + Δ · s, 0, 255)

a dead-zone quantizer: rounding up from 3/8 of a step rather than 1/2 leaves the many
small residuals at zero, which on clip9 saves about 30 % of the layer's bytes for
0.3 dB at Δ = 16, far better than a coarser step would trade. Only the encoder
rounds; the decoder reads symbols. The symbols are coded in six passes:
channels in the order G, R, B, and within a channel first the pixels with y + x even,
then the odd ones (a checkerboard). A symbol's context is an integer computed only
from symbols of earlier passes, never from pixels (so nothing a float decides changes
how bits are parsed):

    p = min(Σ |s| over the earlier channels at this pixel, 3)
    q = 0, 1, 2, 3 for 0, 1–2, 3–5, 6–9 pixels of the 3×3 window around it with a
        non-zero symbol in an earlier channel
    n = min(non-zero symbols of this channel among its 4 neighbours, 3) on odd
        pixels (the neighbours are even pixels, decoded in the pass before), else 0
    context = (4·p + q)·4 + n           (64 contexts a pass)

Predicted frames first re-predict 4×4 blocks where that pays, each from one of
REFERENCES decoded frames of the GOP (a symbol per block naming the reference, 0 for
none, and a vector for each taken: sprites move inside blocks of static maze, which
the base P-frame's 16×16 vectors cannot follow, and animate in short cycles, so their
look is often in a frame before the last). In 4.x files these are the GOP's last
decoded frames; from 5.0 on the last 3 and the GOP's intra frame, which holds the maze
a sprite uncovers as the intra frame coded it, where the recent frames hold the sprite
or the error its passing left (an error under Δ/2 no residual symbol can remove, so it
stays for the rest of the GOP). From 6.0 on a block taken may also sit half a pixel
right, down or both from its vector (``half_pel_planes``: the rounded integer mean of
the pixels around): the game's pixels are scaled to the frame's, so a sprite moves
by fractions of a pixel and its look half a pixel off is often what the last frames
hold. The encoder picks blocks by what their residual will cost (``_residual_cost``),
not by their squared error. Then they code one flag per 16×16 block (does
it hold a non-zero symbol?) and only the flagged blocks' pixels: the changes sit in a
few blocks, and coding the static rest as zeros cost about an eighth of the layer.
Their symbols are chosen rate–distortion optimised (``rd_optimize``), not within 5/8
of a step as intra frames' are: a sprite's edge pixel that costs more bits than the
squared error it removes is worth stays at the prediction.

Each (pass, context) has an int32 table over −R…R summing to 2^16, counted from
training frames (``count_symbols``) and frozen into the weights. (Format 4.x codes
predicted frames' symbols with a learned integer network instead: symbolnet.py.) Within a pass the
symbols are grouped by context (contexts ascending, raster order inside a group) and
each group is range-coded with its table in one call (constriction).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from .entropy import Categorical, RangeDecoder, RangeEncoder, TrimmedDecoder, trimmed_stream
from .errors import FormatError

CHANNEL_ORDER = (1, 0, 2)  # G first: it predicts R and B best
PASSES = 2 * len(CHANNEL_ORDER)
CONTEXTS = 64
FLAG_BLOCK = 16  # predicted frames flag which 16×16 blocks hold a non-zero symbol
MOTION_BLOCK = 4  # predicted frames may re-predict 4×4 blocks from a reference (sprites)
REFERENCES = 4  # ... from 4 decoded frames of the GOP: 4.x the last 4 (8 measured no better), 5.x the last 3 and its intra frame
REFERENCES_12 = 16  # 12.x: the last 15 and its intra frame (reference_list); more need vectors beyond ±4
# Encoder's choice (12.x): the search looks at the last 3 frames and the key frame within
# ±4 (all 4.x … 11.x could); only the blocks that none of them predicts for less than
# FAR_SEARCH_SHARE × motion_price() are searched again in every reference within ±8.
# Measured on 120 frames (the first 12.0 tables; study runs, one core each): at share 1
# (about 200 of clip8 pac-q10's 236 blocks a frame searched again) the same bytes as at 3
# (54) at 60 % of its speed; at 3, 5 and 8, clip8 pac-q8 110.9, 111.2 and 112.6 B a frame
# at 37.28, 37.25 and 37.30 dB, clip7 pac-q10 207.1, 207.4 and 210.4 at 40.96, 40.95 and
# 40.96, clip8 pac-q10 243.2, 243.2 and 245.0 at 41.25, 41.26 and 41.28, encoding 11.1,
# 13.1 and 13.9 frames a second. (11.x: 125.6 at 37.19, 249.1 at 41.08, 272.1 at 41.35.)
FAR_SEARCH_SHARE = 5.0
MOTION_LAMBDA = 800.0  # squared error a re-predicted block must save (encoder's choice only)
RD_MAX_ERROR = 4.0  # ... which never leave a subpixel further than 4Δ from its source
# λ of a predicted frame's rate–distortion choices in units of Δ² (rd_optimize), and the
# weight of an error where the source stands still (persistence_weight): encoder
# choices only. Measured on the validation clip (clip8, pac-q7 … q10, GOP 250): with
# λ = 2Δ² and no weight, PSNR fell by about 2 dB over a GOP as dropped errors piled up
# where nothing moved; λ = Δ² with weight 4 costs 10.6 % fewer bytes at equal PSNR
# (BD-rate), weight 4 alone 8.5 %, weight 16 only 5.5 % (it spends on noise).
RD_SCALE = 1.0
PERSIST = 4.0
LEARNED_PRICES = True  # 4.x: rd_optimize prices symbols with the symbol model (encoder's choice)
HALF_PAD = 9  # = blockmotion.SEARCH_12 + 1: how far half_pel_planes pads a reference
# Encoder's choice: 4×4 re-prediction by the residual's estimated cost (squared error
# after dead-zone quantization + λ·bits, a non-zero symbol s estimated at A + B·log2|s|
# bits), not by the raw squared error. Measured on 120 frames at pac-q7 … q10 against
# the raw error: (A, B) = (1, 1) −2.4 % BD-rate on clip8 and −3.0 % on clip0 (training);
# (1.5, 1.5) −1.7 %, (1, 2) −2.2 %, (0.5, 1) −1.5 %, (1, 0.5) −1.2 %, (3, 2) +1.0 % on clip8.
# Not at the coarsest step (pac-q6, Δ = 64), where a non-zero symbol is rare and costs
# far more than the estimate: on clip9 (120 frames) it cost 54 % more bytes for 0.6 dB.
MOTION_RD = True
MOTION_RD_MAX_STEP = 40
RD_CANDIDATES = 8  # ... priced for the vectors of least squared error of each block and reference
RATE_A, RATE_B = 1.0, 1.0
# Encoder's choice (4.x on): the first rd_optimize pass, which picks the 16×16 blocks the
# symbol model then prices, screens with the counted tables of the level this many
# steps denser (the densest level screens with its own). A level's own tables were
# counted on the symbols its encoder chose when they priced the final choice, so at
# pac-q6 (Δ = 64) they make a non-zero symbol so dear that the screen drops blocks the
# model would keep, and the level settles far below its curve. Measured whole clips,
# pac-q6 … q10, against each level's own tables: pac-q6 on clip9 38.1 B a frame at
# 34.92 dB (was 31.2 at 31.64), on clip8 59.5 at 31.89 (was 54.9 at 29.02); q7 … q10
# within ±1 % (study sweeps).
SCREEN_LEVELS = 1
# Encoder's choice: each refined level's λ in units of its RD_SCALE · Δ² (pac-q6 … q10),
# chosen on the training clips (benchmarks/lambda_sweep.py, whole clips, GOP 250): a
# level's point at another λ is worth taking when it buys PSNR for less log-rate than
# the step to the next level does. At 1.6 Δ² instead of Δ², pac-q10 spends 9-13 % fewer
# bytes on clip0 and clip4 … clip7 for 0.06-0.19 dB less (clip6: 0.55): its last
# residual symbols bought little (at 0.6 Δ², 25-35 % more bytes for 0.1-0.15 dB, clip6
# 1.0 dB; benchmarks/results/lambda_sweep.csv). 2 Δ² saved 1-2 % more on clip4 … clip6 but cost clip6 another 0.28 dB, and
# from 2.5 Δ² on clip7 saved nothing more (from 4 Δ², more bytes: the frames after a
# poorer one need more). pac-q7 … q9 measured best at Δ². pac-q6 stays at 5 Δ², the
# level of the smallest files (above): 2 Δ² would buy 1.2 dB for 9-12 % more bytes
# (clip0, clip7), cheaper than the step to pac-q7, and `--lambda 0.4` gives that.
LEVEL_RD_SCALE = (5.0, 1.0, 1.0, 1.0, 1.6)
# Encoder's choice (8.0 on): the price of a bit of a taken block's vector and offset, in
# units of the quarter of motion_price() that every level used before (pac-q6 … q10).
# pac-q6's residual λ (5 Δ² = 20,480 a bit) is 7× that quarter (3,072), so its vectors
# were nearly free beside its symbols; at 4 quarters, with 8.0's contexts, pac-q6 codes
# clip8 in 37.8 B a frame at 29.16 dB instead of 45.4 at 29.72 (clip0 37.7 at 29.53
# instead of 44.9 at 29.99): 0.2-0.35 of log-rate a dB, where the curve between pac-q6
# and q7 trades 0.1 (whole clips, study runs). Doubling it at q7 … q10 cost 7.0 about
# 1 % (BD over q7 … q10, clip8 and clip0), so they keep one quarter.
LEVEL_VECTOR_PRICE = (4.0, 1.0, 1.0, 1.0, 1.0)


def _rate_by_magnitude(max_symbol: int) -> np.ndarray:
    v = np.arange(max_symbol + 1, dtype=np.float32)
    return np.where(v > 0, RATE_A + RATE_B * np.log2(np.maximum(v, 1)), 0).astype(np.float32)


_Q_OF_COUNT = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3], dtype=np.int32)  # 3×3 counts 0…9


def quantize_residual(frame: np.ndarray, base: np.ndarray, step: int, max_symbol: int) -> np.ndarray:
    """H×W×3 uint8 frame and base -> H×W×3 int32 symbols (dead zone: up from 3/8 of a step)."""
    r = frame.astype(np.int32) - base.astype(np.int32)
    s = np.sign(r) * ((8 * np.abs(r) + 3 * step) // (8 * step))
    return np.clip(s, -max_symbol, max_symbol).astype(np.int32)


def apply_residual(base: np.ndarray, symbols: np.ndarray, step: int) -> np.ndarray:
    """The refined frame: clip(base + Δ·s) as uint8."""
    return np.clip(base.astype(np.int32) + step * symbols, 0, 255).astype(np.uint8)


def _box3(mask: np.ndarray) -> np.ndarray:
    """Count of true values in each pixel's 3×3 window (zero outside the frame)."""
    from .symbolnet import window

    return window(mask, 1, "sum")


_CROSS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)


def _cross4(mask: np.ndarray) -> np.ndarray:
    """Count of true values among each pixel's 4 neighbours (zero outside the frame).
    OpenCV's correlation on float32 0/1 values, exact (sums of at most 4 ones)."""
    import cv2

    src = np.ascontiguousarray(mask, dtype=np.float32)
    return cv2.filter2D(src, -1, _CROSS, borderType=cv2.BORDER_CONSTANT).astype(np.int64)


class Checkerboard:
    """Pixel positions of the two parities of an H×W frame, raster order (flat indices)."""

    def __init__(self, height: int, width: int) -> None:
        yy, xx = np.mgrid[:height, :width]
        parity = ((yy + xx) % 2).ravel()
        self.shape = (height, width)
        self.positions = (np.flatnonzero(parity == 0), np.flatnonzero(parity == 1))


def _earlier_contexts(planes: np.ndarray, i: int) -> np.ndarray:
    """4·(4·p + q) over the whole H×W plane of the i-th channel in CHANNEL_ORDER, from
    the symbols of the channels before it in ``planes`` (3×H×W); zeros for the first."""
    if i == 0:
        return np.zeros(planes.shape[1:], np.int64)
    earlier = planes[list(CHANNEL_ORDER[:i])]
    p = np.minimum(np.abs(earlier).sum(axis=0), 3)
    return 4 * (4 * p + _Q_OF_COUNT[_box3((earlier != 0).any(axis=0))])


def _neighbour_counts(plane: np.ndarray) -> np.ndarray:
    """n: min(non-zero symbols among each pixel's 4 neighbours in ``plane``, 3)."""
    return np.minimum(_cross4(plane != 0), 3)


def pass_contexts(known: np.ndarray, index: int, board: Checkerboard) -> np.ndarray:
    """Contexts (0…63) of pass ``index``'s pixels, from the symbols of earlier passes.

    ``known`` is 3×H×W int32 (channel planes) holding the symbols decoded so far (zero
    elsewhere); only entries of earlier passes are read.
    """
    i, parity = divmod(index, 2)
    pos = board.positions[parity]
    ctx = _earlier_contexts(known, i).ravel()[pos]
    if parity == 1:
        ctx = ctx + _neighbour_counts(known[CHANNEL_ORDER[i]]).ravel()[pos]
    return ctx


def _grid(h: int, w: int, block: int) -> tuple[int, int]:
    """Rows and columns of block×block blocks covering an H×W frame from the top left."""
    return -(-h // block), -(-w // block)


def _block_sum(values: np.ndarray, block: int) -> np.ndarray:
    """Sum of an H×W(×C) array over block×block blocks (zero-padded at the edges)."""
    h, w = values.shape[:2]
    rows, cols = _grid(h, w, block)
    flat = values
    if values.ndim == 3:  # the channels added one by one: 14× faster than .sum(axis=-1), same order
        v = values.view(np.uint8) if values.dtype == bool else values
        flat = v[..., 0].astype(np.int64 if v.dtype.kind in "bu" else v.dtype)
        for c in range(1, v.shape[2]):
            flat = flat + v[..., c]
    if (rows * block, cols * block) != (h, w):
        padded = np.zeros((rows * block, cols * block), flat.dtype)
        padded[:h, :w] = flat
        flat = padded
    return flat.reshape(rows, block, cols, block).sum(axis=(1, 3))


def _expand(blocks: np.ndarray, block: int, h: int, w: int) -> np.ndarray:
    return np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:h, :w]


def _residual_cost(d: np.ndarray, step: int, max_symbol: int, lam: float, rate: np.ndarray) -> np.ndarray:
    """Encoder: the cost of coding prediction errors ``d`` (…, 3, 4, 4, float32) as
    residual symbols, summed over each block: the squared error the dead-zone quantizer
    leaves plus ``lam`` × the estimated bits of its symbols (``rate``, bits by |s|)."""
    a = np.abs(d)
    s = np.minimum(np.floor((8 * a + 3 * step) / (8 * step)), max_symbol)
    e = a - step * s
    return (e * e).sum(axis=(-3, -2, -1)) + lam * rate[s.astype(np.int64)].sum(axis=(-3, -2, -1))


def _block_targets(frame: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Encoder: the 4×4 blocks (flat grid indices) of ``frame`` as (n, 1, 3, 4, 4)
    float32, and where some of them cross the frame's edge an (n, 1, 1, 4, 4) mask of
    their pixels inside it (else None): what the searches subtract predictions from."""
    h, w = frame.shape[:2]
    r, c = np.divmod(blocks, _grid(h, w, MOTION_BLOCK)[1])
    span = np.arange(MOTION_BLOCK)
    ys, xs = r[:, None] * MOTION_BLOCK + span, c[:, None] * MOTION_BLOCK + span  # (n, 4) each
    inside = (ys < h)[:, :, None] & (xs < w)[:, None, :]  # (n, 4, 4)
    target = frame[np.minimum(ys, h - 1)[:, :, None], np.minimum(xs, w - 1)[:, None, :]]
    target = target.astype(np.float32).transpose(0, 3, 1, 2)[:, None]
    return target, None if inside.all() else inside[:, None, None]


def _squared(d: np.ndarray) -> np.ndarray:
    """Σ d² over each block of (n, m, 3, 4, 4) errors: (n, m). float32 is exact here:
    every sum of 48 squared byte differences is below 2²⁴."""
    return np.einsum("nvcab,nvcab->nv", d, d)


def motion_costs(frame: np.ndarray, base: np.ndarray, refs, price: float, residual=None, search: int = 4,
                 windows=None, threads: int = 1):
    """Encoder: the 4×4 blocks worth searching (flat grid indices of those whose error
    against ``base`` exceeds ``price``), that error (n,), and the squared error of each
    from every reference and vector (n, len(refs), (2·search+1)²; vectors [dy, dx] in
    raster order, reading beyond the frame as the nearest edge pixel). With ``residual``
    (step, max_symbol, λ, bits by |s|) the costs are those of ``_residual_cost``: what
    coding the block's residual after that prediction would cost, not its raw error.
    ``windows``: the references as ``reference_windows`` laid them out, if the caller keeps them."""
    h, w = frame.shape[:2]
    rows, cols = _grid(h, w, MOTION_BLOCK)
    cur = frame.astype(np.int32)
    if residual is None:
        best = _block_sum((cur - base.astype(np.int32)) ** 2, MOTION_BLOCK).astype(np.float64)
    else:
        d0 = np.pad((cur - base.astype(np.int32)).astype(np.float32),
                    ((0, rows * MOTION_BLOCK - h), (0, cols * MOTION_BLOCK - w), (0, 0)))
        d0 = d0.reshape(rows, MOTION_BLOCK, cols, MOTION_BLOCK, 3).transpose(0, 2, 4, 1, 3)
        best = _residual_cost(d0, *residual).astype(np.float64)
    candidates = np.flatnonzero(best.ravel() > price)
    return candidates, best.ravel()[candidates], search_costs(frame, candidates, refs, search, residual, windows, threads)


#: How far ``reference_windows`` pads a reference: the widest search (blockmotion.SEARCH_12).
SEARCH_PAD = 8


class Windows(NamedTuple):
    """Encoder: every 4×4 window of a reference as the search reads it (``reference_windows``)."""

    table: np.ndarray  # (rows · cols, 48) float32: each window's 3×4×4 values, contiguous
    energy: np.ndarray  # (rows · cols,) float32: the sum of each window's squares
    cols: int


def reference_windows(ref: np.ndarray) -> Windows:
    """Encoder: every 4×4 window of a reference, padded by its edge pixels SEARCH_PAD
    above and left and SEARCH_PAD + MOTION_BLOCK below and right. The search gathers
    whole windows by flat index (``np.take``), 10× faster than fancy indexing a strided
    sliding_window_view; one new reference a frame costs about 2 ms to lay out."""
    pad = SEARCH_PAD
    p = np.pad(ref, ((pad, pad + MOTION_BLOCK), (pad, pad + MOTION_BLOCK), (0, 0)), mode="edge")
    rows, cols = p.shape[0] - MOTION_BLOCK + 1, p.shape[1] - MOTION_BLOCK + 1
    out = np.empty((rows, cols, p.shape[2], MOTION_BLOCK, MOTION_BLOCK), np.float32)
    for a in range(MOTION_BLOCK):  # 16 plane copies: faster than copying the window view
        for b in range(MOTION_BLOCK):
            out[:, :, :, a, b] = p[a:a + rows, b:b + cols]
    table = out.reshape(rows * cols, -1)
    return Windows(table, np.einsum("wk,wk->w", table, table), cols)


def encoder_threads() -> int:
    """Threads the encoder's searches may use: torch's setting (``torch.set_num_threads``;
    batch gives each worker its share), which the codec's networks use as well."""
    import torch

    return max(1, torch.get_num_threads())


_POOL: dict[int, ThreadPoolExecutor] = {}


def _map(work, items, threads: int) -> list:
    """``[work(i) for i in items]``, over ``threads`` threads where more than one (the
    searches' NumPy gathers and products release the GIL; results are the same)."""
    if threads <= 1 or len(items) <= 1:
        return [work(i) for i in items]
    pool = _POOL.get(threads)
    if pool is None:
        pool = _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pacodec-search")
    return list(pool.map(work, items))


def search_costs(frame: np.ndarray, blocks: np.ndarray, refs, search: int, residual=None,
                 windows=None, threads: int = 1) -> np.ndarray:
    """Encoder: ``motion_costs``' costs of the 4×4 ``blocks`` (flat grid indices) from
    every reference of ``refs`` and vector within ±``search``: (n, len(refs), (2·search+1)²).
    ``windows``: each reference's ``reference_windows``, if the caller keeps them;
    ``threads``: the references are searched on that many threads."""
    side = 2 * search + 1
    costs = np.zeros((len(blocks), len(refs), side * side), np.float64)
    if not len(blocks):
        return costs
    h, w = frame.shape[:2]
    _, cols = _grid(h, w, MOTION_BLOCK)
    r, c = np.divmod(blocks, cols)
    target, inside = _block_targets(frame, blocks)
    n = len(blocks)
    target = target.reshape(n, -1)
    if inside is not None:
        inside = np.broadcast_to(inside, (n, 1, 3, MOTION_BLOCK, MOTION_BLOCK)).reshape(n, 1, -1)
    dy, dx = np.divmod(np.arange(side * side), side)  # the vectors in raster order
    at = SEARCH_PAD - search
    ys, xs = r[:, None] * MOTION_BLOCK + dy + at, c[:, None] * MOTION_BLOCK + dx + at  # (n, vectors): padded
    each = np.arange(n)[:, None]
    square = np.einsum("nk,nk->n", target, target)[:, None]

    def one(j: int) -> None:
        win = windows[j] if windows is not None else reference_windows(refs[j])
        index = ys * win.cols + xs
        got = np.take(win.table, index.ravel(), axis=0).reshape(n, side * side, -1)  # every vector at once
        if inside is None:
            # Σ (w − t)² = Σ w² − 2 Σ w·t + Σ t², every term an integer below 2²⁴: exact
            # in float32 in any order, so the same costs as the differences' squares.
            sq = win.energy[index] - 2 * np.matmul(got, target[:, :, None])[..., 0] + square
        else:
            sq = _squared(((got - target[:, None]) * inside).reshape(n, side * side, 3, MOTION_BLOCK, MOTION_BLOCK))
        if residual is None:
            costs[:, j] = sq
            return
        # The residual's cost only for the RD_CANDIDATES vectors of least squared error
        # (the others are not taken): pricing all 81 took 4× the search.
        near = np.argpartition(sq, RD_CANDIDATES, axis=1)[:, :RD_CANDIDATES]
        d = got[each, near] - target[:, None]
        if inside is not None:
            d *= inside
        costs[:, j] = np.inf
        costs[each, j, near] = _residual_cost(d.reshape(n, RD_CANDIDATES, 3, MOTION_BLOCK, MOTION_BLOCK), *residual)

    _map(one, range(len(refs)), threads)
    return costs


def _widen(costs: np.ndarray, small: int, large: int) -> np.ndarray:
    """Costs of vectors within ±``small`` (n, m, (2·small+1)²) on the grid of ±``large``,
    inf at the vectors not searched."""
    n, m, _ = costs.shape
    side, wide = 2 * small + 1, 2 * large + 1
    out = np.full((n, m, wide, wide), np.inf)
    o = large - small
    out[:, :, o:o + side, o:o + side] = costs.reshape(n, m, side, side)
    return out.reshape(n, m, wide * wide)


def choose_motion(frame: np.ndarray, base: np.ndarray, refs, price: float = MOTION_LAMBDA
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Encoder, format 1.x: which 4×4 blocks to take from a reference (``refs``, the
    most recent first) displaced by a vector in [−4, 4]² instead of the base P-frame,
    where that saves more than ``price`` of squared error (the first least error, in
    reference then raster vector order). Returns (choice (rows, cols) int: 0 keeps the
    base, j takes ``refs[j − 1]``; vectors (rows, cols, 2) [dy, dx])."""
    from .predict import SEARCH

    h, w = frame.shape[:2]
    rows, cols = _grid(h, w, MOTION_BLOCK)
    choice = np.zeros((rows, cols), np.int64)
    vectors = np.zeros((rows, cols, 2), np.int64)
    candidates, keep, costs = motion_costs(frame, base, refs, price, search=SEARCH)
    if not candidates.size:
        return choice, vectors
    flat = costs.reshape(len(candidates), -1)
    pick = flat.argmin(axis=1)
    take = flat[np.arange(len(candidates)), pick] + price < keep
    j, k = np.divmod(pick, costs.shape[2])
    dy, dx = np.divmod(k, 2 * SEARCH + 1)
    choice.ravel()[candidates[take]] = j[take] + 1
    vectors.reshape(-1, 2)[candidates[take]] = np.stack([dy - SEARCH, dx - SEARCH], 1)[take]
    return choice, vectors


def repredict(frame: np.ndarray, base: np.ndarray, refs,
              price: float = MOTION_LAMBDA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder: ``choose_motion`` and the base it makes, (choice, vectors, new base)."""
    choice, vectors = choose_motion(frame, base, refs, price)
    return choice, vectors, apply_motion(base, refs, choice, vectors)


def half_pel_planes(ref: np.ndarray) -> np.ndarray:
    """A reference read at every half-pixel offset (6.x): (4, H + 2·PAD + 4, W + 2·PAD + 4, 3)
    int32, plane fx + 2·fy, the reference padded by its edge pixels (PAD = HALF_PAD
    above and left, PAD + 4 below and right), position (PAD + y, PAD + x) of plane f the
    pixel at (y + fy/2, x + fx/2): the rounded mean of the 1, 2 or 4 pixels around it::

        f = 1: (A + B + 1) >> 1        A = p[y, x], B = p[y, x + 1]
        f = 2: (A + C + 1) >> 1        C = p[y + 1, x], D = p[y + 1, x + 1]
        f = 3: (A + B + C + D + 2) >> 2
    """
    pad = HALF_PAD
    p = np.pad(np.asarray(ref, np.int32), ((pad, pad + MOTION_BLOCK), (pad, pad + MOTION_BLOCK), (0, 0)), mode="edge")
    right = np.concatenate([p[:, 1:], p[:, -1:]], axis=1)
    below = np.concatenate([p[1:], p[-1:]], axis=0)
    diagonal = np.concatenate([right[1:], right[-1:]], axis=0)
    return np.stack([p, (p + right + 1) >> 1, (p + below + 1) >> 1, (p + right + below + diagonal + 2) >> 2])


def apply_motion(base: np.ndarray, refs, choice: np.ndarray, vectors: np.ndarray,
                 fraction: np.ndarray | None = None, far: np.ndarray | None = None) -> np.ndarray:
    """The base P-frame with the chosen 4×4 blocks copied from their displaced
    reference (read beyond the frame as the nearest edge pixel), at a half-pixel
    offset where ``fraction`` (6.x) says so (``half_pel_planes``). ``refs``: the
    reference list (``reference_list``); a block of choice j reads ``refs[j − 1]``, of
    choice 4 with a far index k (12.x) ``refs[3 + k]``. Raises FormatError for a block
    that names a reference the decoder does not hold."""
    if not choice.any():
        return base
    if far is not None:
        choice = choice + np.where(choice == REFERENCES, far, 0)  # 1 + the index into refs
    if choice.max() > len(refs):
        raise FormatError(f"a 4×4 block is predicted from reference {int(choice.max())} of {len(refs)}")
    h, w = base.shape[:2]
    at = HALF_PAD
    padded: dict[int, np.ndarray] = {}
    out = base.copy()
    for r, c in zip(*np.nonzero(choice)):
        dy, dx = vectors[r, c]
        j = int(choice[r, c]) - 1
        if j not in padded:
            padded[j] = np.pad(refs[j], ((at, at + MOTION_BLOCK + 1), (at, at + MOTION_BLOCK + 1), (0, 0)), mode="edge")
        y, x = r * MOTION_BLOCK, c * MOTION_BLOCK
        bh, bw = min(MOTION_BLOCK, h - y), min(MOTION_BLOCK, w - x)
        top, left = at + y + dy, at + x + dx
        f = 0 if fraction is None else int(fraction[r, c])
        if f == 0:
            out[y:y + bh, x:x + bw] = padded[j][top:top + bh, left:left + bw]
            continue
        # half_pel_planes' value at this one block: the window one pixel larger.
        p = padded[j][top:top + bh + 1, left:left + bw + 1].astype(np.int32)
        if f == 1:
            block = (p[:-1, :-1] + p[:-1, 1:] + 1) >> 1
        elif f == 2:
            block = (p[:-1, :-1] + p[1:, :-1] + 1) >> 1
        else:
            block = (p[:-1, :-1] + p[:-1, 1:] + p[1:, :-1] + p[1:, 1:] + 2) >> 2
        out[y:y + bh, x:x + bw] = block
    return out


def half_pel_costs(frame: np.ndarray, planes, blocks: np.ndarray, j: np.ndarray, vectors: np.ndarray,
                   residual=None, search: int = 4):
    """Encoder, 6.x: the cost of the 8 half-pixel positions around each of ``blocks``
    (flat grid indices) read from reference ``j`` (its ``half_pel_planes`` in the list
    ``planes``) at integer ``vectors`` (n, 2) [dy, dx]: (costs (n, 8), integer vectors
    (n, 8, 2), fractions (n, 8)); inf where the integer part leaves ±``search``. Costs
    as ``motion_costs``'."""
    h, w = frame.shape[:2]
    _, cols = _grid(h, w, MOTION_BLOCK)
    n = len(blocks)
    steps = np.array([(sy, sx) for sy in (-1, 0, 1) for sx in (-1, 0, 1) if sy or sx])  # half pixels
    half = 2 * vectors[:, None, :] + steps[None]  # (n, 8, 2) in half pixels
    whole, frac = np.floor_divide(half, 2), half % 2
    fraction = frac[..., 1] + 2 * frac[..., 0]
    valid = (np.abs(whole) <= search).all(axis=2)
    whole = np.clip(whole, -search, search)  # the invalid ones read somewhere harmless
    r, c = np.divmod(blocks, cols)
    ys = HALF_PAD + r[:, None] * MOTION_BLOCK + whole[..., 0]
    xs = HALF_PAD + c[:, None] * MOTION_BLOCK + whole[..., 1]
    got = np.zeros((n, 8, 3, MOTION_BLOCK, MOTION_BLOCK), np.float32)
    for ref in np.unique(j):
        windows = np.lib.stride_tricks.sliding_window_view(planes[ref], (MOTION_BLOCK, MOTION_BLOCK), axis=(1, 2))
        at = j == ref
        got[at] = windows[fraction[at], ys[at], xs[at]]  # (m, 8, 3, 4, 4)
    target, inside = _block_targets(frame, blocks)
    d = got - target
    if inside is not None:
        d *= inside
    costs = _squared(d) if residual is None else _residual_cost(d, *residual)
    costs = np.where(valid, costs, np.inf).astype(np.float64)
    return costs.reshape(n, 8), whole, fraction


def block_flags(symbols: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: which 16×16 blocks (raster grid from the top left, the last row
    and column cut by the frame) hold a non-zero symbol in any channel."""
    return _block_sum(symbols != 0, FLAG_BLOCK) > 0


#: Format 9.x (pcz.md §14.11): a 16×16 block's flag is coded in one of FLAG_CONTEXTS
#: contexts, 2 · b + p: b bins how many of its 4×4 blocks this frame takes from a
#: reference (0, 1–2, 3–6, 7 or more: the counts FLAG_TAKEN_EDGES reach), p is the
#: previous predicted frame's flag there (0 after a key frame). Residual symbols sit
#: where sprites moved and stay where they were: on clip8 at pac-q8 the flags cost
#: 1.7 bytes a frame in these contexts instead of 3.9 in one table (tables counted on
#: the training clips; study).
FLAG_CONTEXTS = 8
FLAG_TAKEN_EDGES = (1, 3, 7)


def flag_contexts(choice: np.ndarray, previous_symbols: np.ndarray | None, h: int, w: int) -> np.ndarray:
    """9.x: (rows, cols) contexts 0 … 7 of an H×W frame's 16×16 block flags, from its
    4×4 choices and the previous predicted frame's symbols (None after a key frame)."""
    rows, cols = _grid(h, w, FLAG_BLOCK)
    k = FLAG_BLOCK // MOTION_BLOCK
    taken = np.zeros((rows * k, cols * k), np.int64)
    taken[:choice.shape[0], :choice.shape[1]] = np.asarray(choice) != 0
    count = taken.reshape(rows, k, cols, k).sum(axis=(1, 3))
    b = sum((count >= edge).astype(np.int64) for edge in FLAG_TAKEN_EDGES)
    p = np.zeros((rows, cols), np.int64) if previous_symbols is None else block_flags(previous_symbols).astype(np.int64)
    return 2 * b + p


def _flagged_pixels(flags: np.ndarray, h: int, w: int) -> np.ndarray:
    """Flat H·W bool: pixels inside flagged blocks."""
    return _expand(flags, FLAG_BLOCK, h, w).ravel()


def _pass_layout(known: np.ndarray, index: int, board: Checkerboard,
                 coded: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(channel, flat positions, contexts) of pass ``index``: its parity's pixels, only
    those where the flat mask ``coded`` is true when given."""
    ctx = pass_contexts(known, index, board)
    pos = board.positions[index % 2]
    if coded is not None:
        keep = coded[pos]
        pos, ctx = pos[keep], ctx[keep]
    return CHANNEL_ORDER[index // 2], pos, ctx


def _pass_positions(index: int, board: Checkerboard, coded: np.ndarray | None) -> np.ndarray:
    """Flat positions of pass ``index``'s pixels (only where ``coded`` when given)."""
    pos = board.positions[index % 2]
    return pos if coded is None else pos[coded[pos]]


#: Format 4.x codes each symbol with its own table (constriction's model family).
_FAMILY = Categorical(perfect=False)


def _groups(ctx: np.ndarray):
    """(context, indices into ``ctx``) per context present, contexts ascending, indices
    in order: the order symbols are coded in."""
    order = np.argsort(ctx, kind="stable")
    counts = np.bincount(ctx, minlength=CONTEXTS)
    start = 0
    for c in np.flatnonzero(counts):
        yield c, order[start:start + counts[c]]
        start += counts[c]


def _passes(symbols: np.ndarray, board: Checkerboard, coded: np.ndarray | None = None):
    """(index, channel, flat positions, this pass's symbols, contexts) of each pass of
    H×W×3 ``symbols``, filling a ``known`` copy the way a decoder does, so the
    encoder's contexts are the decoder's."""
    planes = np.ascontiguousarray(symbols.transpose(2, 0, 1))
    known = np.zeros_like(planes)
    for index in range(PASSES):
        channel, pos, ctx = _pass_layout(known, index, board, coded)
        values = planes[channel].reshape(-1)[pos]
        yield index, channel, pos, values, ctx
        known[channel].reshape(-1)[pos] = values


def _symbol_contexts(symbols: np.ndarray, board: Checkerboard) -> tuple[np.ndarray, np.ndarray]:
    """(pass, context) of every subpixel of H×W×3 ``symbols`` as the passes would code
    them without block flags: two H×W×3 int arrays. The encoder prices symbols with it
    several times a frame, so it takes ``pass_contexts``' parts on whole planes, a
    channel at a time (tests/test_refine.py holds it to the passes' own contexts)."""
    h, w = board.shape
    odd = np.zeros(h * w, bool)
    odd[board.positions[1]] = True
    odd = odd.reshape(h, w)
    planes = symbols.transpose(2, 0, 1)
    passes = np.zeros((h, w, 3), np.int64)
    contexts = np.zeros((h, w, 3), np.int64)
    for i, channel in enumerate(CHANNEL_ORDER):
        contexts[:, :, channel] = _earlier_contexts(planes, i) + np.where(odd, _neighbour_counts(planes[channel]), 0)
        passes[:, :, channel] = 2 * i + odd
    return passes, contexts


_ORDER_OF_CHANNEL = np.argsort(CHANNEL_ORDER)  # channel -> its place in CHANNEL_ORDER
_EARLIER = np.array([[CHANNEL_ORDER.index(e) < CHANNEL_ORDER.index(c) for e in range(3)] for c in range(3)])
_AROUND = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
_CROSS_AT = [_AROUND.index(o) for o in ((-1, 0), (0, -1), (0, 1), (1, 0))]


def _symbol_contexts_at(symbols: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_symbol_contexts`` at the flat indices ``at`` of H×W×3 ``symbols`` only (the
    same integers, tests/test_refine.py): read from each subpixel's 3×3 neighbourhood,
    so its cost follows the few subpixels rd_optimize decides on, not the frame."""
    h, w = symbols.shape[:2]
    pix, channel = np.divmod(np.asarray(at, np.int64), 3)
    y, x = np.divmod(pix, w)
    padded = np.zeros((h + 2, w + 2, 3), np.int64)
    padded[1:-1, 1:-1] = symbols
    # (n, 9 neighbours, 3 channels), reading outside the frame as 0
    near = np.stack([padded[y + 1 + dy, x + 1 + dx] for dy, dx in _AROUND], axis=1)
    earlier = _EARLIER[channel]  # (n, 3): which channels come before this one
    order = _ORDER_OF_CHANNEL[channel]
    p = np.minimum((np.abs(near[:, 4]) * earlier).sum(axis=1), 3)
    box = ((near != 0) & earlier[:, None, :]).any(axis=2).sum(axis=1)
    ctx = np.where(order > 0, 4 * (4 * p + _Q_OF_COUNT[box]), 0)
    odd = (y + x) % 2 == 1
    own = near[np.arange(len(at))[:, None], _CROSS_AT, channel[:, None]] != 0  # (n, 4)
    ctx = ctx + np.where(odd, np.minimum(own.sum(axis=1), 3), 0)
    return 2 * order + odd, ctx


def table_prices(bits: np.ndarray, board: Checkerboard):
    """A ``rd_optimize`` pricer from counted tables' code lengths ``bits`` (PASSES,
    CONTEXTS, 2R+1): each candidate's bits in the contexts of the current symbols.
    With ``at`` (flat indices of H×W×3) the candidates are the values there, and so
    are the bits."""
    width = bits.shape[2]
    flat = bits.ravel()

    def price(s: np.ndarray, candidates, at=None) -> list[np.ndarray]:
        if at is not None and len(at) <= s.size // 16:  # a few subpixels: read around each
            passes, ctx = _symbol_contexts_at(s, at)
        else:  # many: whole planes at once are faster
            passes, ctx = _symbol_contexts(s, board)
            if at is not None:
                passes, ctx = passes.reshape(-1)[at], ctx.reshape(-1)[at]
        where = (passes * bits.shape[1] + ctx) * width + width // 2
        return [flat[where + v] for v in candidates]

    return price


def rd_optimize(frame: np.ndarray, base: np.ndarray, symbols: np.ndarray, step: int, price,
                lam: float, flag_bits: np.ndarray, board: Checkerboard, max_error: float = np.inf,
                rounds: int = 2, weight: np.ndarray | None = None) -> np.ndarray:
    """Encoder: lower the residual symbols of a predicted frame where the squared error
    they remove is worth less than ``lam`` per bit they cost (rate–distortion
    optimised quantization; the decoder is unchanged).

    ``price(s, candidates, at)`` gives, for each array of candidate values at the flat
    indices ``at`` of H×W×3, the bits each subpixel's candidate would cost where the
    other symbols are ``s``
    (``table_prices``: the counted tables; ``RefineCoder._learned_prices``: the
    symbol model's own tables, what a 4.x file pays); ``flag_bits`` is the 16×16 block
    flag's code lengths (2,), or each block's ((rows, cols, 2): 9.x's contexts). Three
    decisions, each priced with the current symbols:
    move single symbols one step toward zero, zero whole 4×4 blocks, and zero whole
    16×16 blocks (which then need no symbols at all, only a 0 flag).
    No choice leaves a subpixel further than ``max_error`` from its source (or than
    where the plain quantizer left it): a dropped error stays on screen for the rest
    of the GOP wherever nothing moves, which a per-frame price does not see.
    ``weight`` (H×W×3, default 1) scales each subpixel's squared error in these
    choices: ``persistence_weight`` counts an error where the picture stands still
    several times, since it stays on screen for the frames that follow.
    """
    h, w = frame.shape[:2]
    # int32 throughout: squared errors are at most 255², their block sums far below 2^31.
    src = frame.astype(np.int32)
    b = base.astype(np.int32)
    err0 = (src - b) ** 2
    s = symbols.astype(np.int32)  # a copy
    flat_s, flat_src, flat_b = s.reshape(-1), src.reshape(-1), b.reshape(-1)

    def distortion(values):
        return (src - np.clip(b + step * values, 0, 255)) ** 2

    def weighted(values: np.ndarray, at: np.ndarray) -> np.ndarray:
        return values * (1.0 if weight is None else weight.reshape(-1)[at])

    bound = max_error ** 2
    too_far = err0 > bound  # subpixels that zeroing would leave beyond the bound

    # The decisions concern the few non-zero subpixels (a zero has nowhere lower to
    # go, and zeroing a block changes nothing where it is zero already), so they are
    # priced and weighed there only (``price``'s ``at``): the same numbers as over
    # the whole frame at a fraction of the encoder's time.
    d = distortion(s)
    flat_d = d.reshape(-1)
    for _ in range(rounds):
        at = np.flatnonzero(flat_s)
        if not at.size:
            break
        now = flat_s[at]
        lower = now - np.sign(now)
        cost, cheaper = price(s, (now, lower), at)
        dl = (flat_src[at] - np.clip(flat_b[at] + step * lower, 0, 255)) ** 2
        gain = weighted(dl - flat_d[at], at)  # error added by lowering
        take = (gain < lam * (cost - cheaper)) & (dl <= bound)
        if not take.any():
            break
        flat_s[at[take]], flat_d[at[take]] = lower[take], dl[take]
    at = np.flatnonzero(flat_s)
    cost = np.zeros(s.size)  # over coding a zero in its place: nothing where it is zero
    if at.size:
        here, nothing = price(s, (flat_s[at], np.zeros(at.size, np.int32)), at)
        cost[at] = here - nothing
    wt = 1.0 if weight is None else weight
    worth = (_block_sum((err0 - d) * wt, MOTION_BLOCK) >= lam * _block_sum(cost.reshape(s.shape), MOTION_BLOCK)) \
        | (_block_sum(too_far, MOTION_BLOCK) > 0)
    s[~_expand(worth, MOTION_BLOCK, h, w)] = 0
    flags = block_flags(s)
    if flags.any():
        # every symbol of a flagged block is coded; the others' prices are not read
        at = np.flatnonzero(np.repeat(_flagged_pixels(flags, h, w), 3))
        whole = np.zeros(s.size)
        whole[at], = price(s, (flat_s[at],), at)
        d = distortion(s)
        block_price = _block_sum(whole.reshape(s.shape), FLAG_BLOCK) + flag_bits[..., 1] - flag_bits[..., 0]
        keep = (_block_sum((err0 - d) * wt, FLAG_BLOCK) >= lam * block_price) | (_block_sum(too_far, FLAG_BLOCK) > 0)
        s[~_expand(keep | ~flags, FLAG_BLOCK, h, w)] = 0
    return s.astype(np.int32)


def persistence_weight(frame: np.ndarray, previous_source: np.ndarray | None, factor: float) -> np.ndarray | None:
    """Encoder: ``factor`` where a subpixel of the source did not change since the
    previous source frame (by at most 2 levels), else 1; None without a previous frame.
    What stands still tends to stay: an error left there is seen in the frames after."""
    if previous_source is None or factor == 1:
        return None
    still = np.abs(frame.astype(np.int16) - previous_source.astype(np.int16)) <= 2
    return np.where(still, float(factor), 1.0)


def count_symbols(symbols: np.ndarray, max_symbol: int, counts: np.ndarray | None = None,
                  flag_counts: np.ndarray | None = None) -> np.ndarray:
    """Add one frame's (H×W×3) symbol statistics to ``counts`` (PASSES, CONTEXTS, 2R+1).

    With ``flag_counts`` (a (2,) int array, added to in place) the frame is counted the
    way predicted frames are coded: its block flags, then only the flagged blocks' symbols.
    """
    width = 2 * max_symbol + 1
    if counts is None:
        counts = np.zeros((PASSES, CONTEXTS, width), np.int64)
    board = Checkerboard(*symbols.shape[:2])
    coded = None
    if flag_counts is not None:
        flags = block_flags(symbols)
        flag_counts += np.bincount(flags.ravel().astype(np.int64), minlength=2)
        coded = _flagged_pixels(flags, *symbols.shape[:2])
    for index, _, _, values, ctx in _passes(symbols, board, coded):
        counts[index] += np.bincount(ctx * width + values + max_symbol, minlength=CONTEXTS * width).reshape(CONTEXTS, width)
    return counts


class RefineCoder:
    """Codes the residual layer of one refined quality level (step Δ, tables).

    Predicted frames (``flag_table`` and ``motion_table`` given; almost every block is
    unchanged and the changes are sprites) code, before the symbols: one symbol per
    4×4 block (``motion_table``, 1 + REFERENCES entries), 0 where the block keeps the
    base P-frame, j where it is taken from reference j (``refs[j − 1]``; 1: the
    previous frame) displaced by a vector, and the vectors of those blocks (dx then dy, each with
    predict.VECTOR_TABLE); then one flag per 16×16 block (``flag_table``; 9.x: in
    contexts, ``use_flag_contexts``), 1 where it holds a non-zero symbol; the passes then
    code only the flagged blocks' pixels (the others are zero).
    """

    def __init__(self, step: int, tables: np.ndarray, height: int, width: int,
                 flag_table: np.ndarray | None = None, motion_table: np.ndarray | None = None,
                 motion_coder=None) -> None:
        tables = np.asarray(tables)
        if tables.ndim != 3 or tables.shape[:2] != (PASSES, CONTEXTS) or tables.shape[2] % 2 == 0 \
                or np.any(tables <= 0):
            raise FormatError(f"refinement tables of shape {tables.shape} are not {PASSES}×{CONTEXTS}×(2R+1)")
        if (flag_table is None) != (motion_table is None):
            raise FormatError("predicted-frame refinement needs both its flag and motion tables")
        self.step = int(step)
        self.max_symbol = tables.shape[2] // 2
        self.board = Checkerboard(height, width)
        probabilities = tables.astype(np.float64) / float(tables[0, 0].sum())
        self._models = [[Categorical(p, perfect=False) for p in row] for row in probabilities]
        self.predicted = flag_table is not None
        self._bits = -np.log2(probabilities)
        self._screen_bits = self._bits  # the first pass's prices (screen_with)
        self.rd_scale = RD_SCALE  # λ of rd_optimize = rd_scale · Δ² (predicted frames)
        self.vector_price = 1.0  # a vector bit costs vector_price · motion_price() / 4 (LEVEL_VECTOR_PRICE)
        if self.predicted:
            from .predict import _VECTOR_MODEL

            self._flag_model = _table_model(flag_table, 2, "block flag")
            self._motion_model = _table_model(motion_table, 1 + REFERENCES, "motion")
            self._flag_bits = -np.log2(np.asarray(flag_table, np.float64) / float(np.sum(flag_table)))
            self._vector_model = _VECTOR_MODEL
        # Format 2.x: the re-prediction's side information is context-coded
        # (blockmotion.MotionCoder); 1.x files code it with motion_table and VECTOR_TABLE.
        self.motion_coder = motion_coder
        # Format 4.x: predicted frames' symbols take their probabilities from pac-ctx's
        # network (symbolnet.SymbolNet) instead of the counted tables; ``level`` is this
        # id's refined level (0 … 4), one of its inputs. The encoder's rate–distortion
        # choices price symbols with the counted tables (``_bits``) to pick the blocks,
        # then with the network (``_learned_prices``).
        self.symbol_model = None
        self.level = 0
        # Format 9.x: block flags in contexts (use_flag_contexts); None: one table.
        self.flag_tables = None
        # Format 10.x: predicted frames' streams are stored trimmed (entropy.trimmed_stream).
        self.trimmed = False
        self._previous_source = None  # encoder: the last source frame it coded (persistence_weight)

    def screen_with(self, tables: np.ndarray) -> None:
        """Encoder: price the first rate–distortion pass of predicted frames coded with
        the symbol model with these counted tables (PASSES, CONTEXTS, 2R+1) instead of
        the level's own (SCREEN_LEVELS). Nothing the decoder reads changes."""
        tables = np.asarray(tables, np.float64)
        if tables.shape != self._bits.shape or np.any(tables <= 0):
            raise ValueError(f"screening tables of shape {tables.shape} are not {self._bits.shape}, all positive")
        self._screen_bits = -np.log2(tables / tables.sum(axis=-1, keepdims=True))

    def use_flag_contexts(self, tables: np.ndarray) -> None:
        """Code predicted frames' block flags in 9.x's contexts (pcz.md §14.11) with
        ``tables`` (FLAG_CONTEXTS, 2), each row positive and summing to 2^16."""
        tables = np.asarray(tables)
        if tables.shape != (FLAG_CONTEXTS, 2) or np.any(tables <= 0) or np.any(tables.sum(axis=1) != 1 << 16):
            raise FormatError(f"9.x flag tables must be {FLAG_CONTEXTS}×2, positive rows summing to 2^16")
        self.flag_tables = tables.astype(np.float64) / float(1 << 16)

    def _flag_probabilities(self, choice: np.ndarray, refs) -> np.ndarray | None:
        """9.x: (rows, cols, 2) probabilities of each 16×16 block's flag; None for one table."""
        if self.flag_tables is None:
            return None
        if not refs:
            raise ValueError("a 9.x predicted frame's flags need the decoder's frames")
        previous = getattr(refs[0], "symbols", None)
        return self.flag_tables[flag_contexts(choice, previous, *self.board.shape)]

    def use_symbol_model(self, network, level: int) -> None:
        """Code predicted frames' symbols with ``network`` (format 4.x, pcz.md §14.7)."""
        from .symbolnet import ALPHABET

        if 2 * self.max_symbol + 1 != ALPHABET:
            raise FormatError(f"the symbol model codes −{ALPHABET // 2}…{ALPHABET // 2}, "
                              f"this level's symbols −{self.max_symbol}…{self.max_symbol}")
        self.symbol_model, self.level = network, int(level)

    def _frame_inputs(self, choice: np.ndarray, base: np.ndarray, refs, vectors: np.ndarray):
        """What the symbol model reads besides the symbols (symbolnet.FrameInputs): the
        decoder's pixels only where they are exact integers (``refs[0].exact``); the
        4×4 blocks' ``vectors`` (7.x features)."""
        from .symbolnet import FrameInputs

        # The encoder asks twice a frame (pricing, then coding) for the same objects.
        memo = getattr(self, "_inputs_memo", None)
        if memo is not None and memo[0] is choice and memo[1] is base and len(memo[2]) == len(refs) \
                and all(a is b for a, b in zip(memo[2], refs)):
            return memo[3]
        exact = bool(getattr(refs[0], "exact", False))
        inputs = FrameInputs(choice, getattr(refs[0], "symbols", None), base if exact else None, refs,
                             self.level, *self.board.shape, vectors=vectors, wide=self.symbol_model.wide)
        self._inputs_memo = (choice, base, list(refs), inputs)
        return inputs

    def _encode_learned(self, encoder, symbols: np.ndarray, coded: np.ndarray, inputs) -> None:
        from .symbolnet import TOTAL, features, flips

        # the rows the pricing of these inputs already ran the network on (_learned_prices)
        seen = self._seen_rows[1] if getattr(self, "_seen_rows", (None,))[0] is inputs else {}
        planes = np.ascontiguousarray(symbols.transpose(2, 0, 1))
        known = np.zeros_like(planes)
        for index in range(PASSES):
            channel, pos = CHANNEL_ORDER[index // 2], _pass_positions(index, self.board, coded)
            values = planes[channel].reshape(-1)[pos]
            if len(pos):
                x = features(known, index, pos, inputs)
                table, inverse, _ = self.symbol_model.distinct_tables(x, seen.get(index), keep=False)
                signed = (values * flips(x) + self.max_symbol).astype(np.int32)
                encoder.encode(signed, _FAMILY, (table / TOTAL)[inverse])
            known[channel].reshape(-1)[pos] = values

    def _decode_learned(self, decoder, known: np.ndarray, coded: np.ndarray, inputs) -> None:
        from .symbolnet import TOTAL, features, flips

        for index in range(PASSES):
            channel, pos = CHANNEL_ORDER[index // 2], _pass_positions(index, self.board, coded)
            if not len(pos):
                continue
            x = features(known, index, pos, inputs)
            table, inverse, _ = self.symbol_model.distinct_tables(x, keep=False)
            signed = np.asarray(decoder.decode(_FAMILY, (table / TOTAL)[inverse]), np.int64)
            known[channel].reshape(-1)[pos] = (signed - self.max_symbol) * flips(x)

    def _learned_prices(self, inputs, first: np.ndarray):
        """A ``rd_optimize`` pricer that asks the symbol model (4.x) what each candidate
        would cost in the 16×16 blocks where the symbols ``first`` (the tables' choice)
        are flagged: the bits the file will really pay, where the counted tables' are
        an estimate about a quarter too high and blind to what the model sees (pixels,
        the previous frame's symbols). Elsewhere nothing: the symbols there must be
        zero. The model runs once, in the context of ``first``: rerunning it after
        every decision measured no better (30 frames of clip8 at pac-q10: 0.8 % more
        bytes for 0.05 dB) at twice the encode time."""
        from .symbolnet import TOTAL, features, flips

        h, w = self.board.shape
        r = self.max_symbol
        coded = _flagged_pixels(block_flags(first), h, w)
        planes = np.ascontiguousarray(first.transpose(2, 0, 1))
        bits = []  # per pass: the code lengths of its distinct feature rows' tables
        seen = {}
        self._seen_rows = (inputs, seen)
        rows = 0
        row_of = np.full(3 * h * w, -1, np.int64)  # flat H×W×3 index -> its row of code lengths, or −1
        flip_of = np.zeros(3 * h * w, np.int64)
        for index in range(PASSES):
            channel, pos = CHANNEL_ORDER[index // 2], _pass_positions(index, self.board, coded)
            if len(pos):
                # The features read only earlier passes' symbols, so the whole planes
                # stand in for the decoder's partly filled ones.
                x = features(planes, index, pos, inputs)
                table, inverse, seen[index] = self.symbol_model.distinct_tables(x)
                row_of[pos * 3 + channel] = inverse + rows
                flip_of[pos * 3 + channel] = flips(x)
                bits.append(-np.log2(table / TOTAL))
                rows += len(table)
        if not bits:
            return lambda s, candidates, at=None: [np.zeros(s.shape if at is None else len(at)) for _ in candidates]
        bits = np.concatenate(bits)

        def price(s: np.ndarray, candidates, at=None) -> list[np.ndarray]:
            rows, sign = (row_of, flip_of) if at is None else (row_of[at], flip_of[at])
            priced = rows >= 0
            rows, sign = rows[priced], sign[priced]
            out = []
            for v in candidates:
                o = np.zeros(len(priced))
                o[priced] = bits[rows, np.asarray(v).reshape(-1)[priced] * sign + r]
                out.append(o if at is not None else o.reshape(s.shape))
            return out

        return price

    def symbols(self, frame: np.ndarray, base: np.ndarray) -> np.ndarray:
        return quantize_residual(frame, base, self.step, self.max_symbol)

    @contextlib.contextmanager
    def scaled_lambda(self, share: float):
        """The encoder's λ (``rd_scale``) times ``share`` inside the block: key frames
        (keyframe.KEY_LAMBDA_SHARE) buy quality the frames after them keep."""
        saved = self.rd_scale
        self.rd_scale = saved * share
        try:
            yield
        finally:
            self.rd_scale = saved

    def _distinct_references(self, refs) -> list[int]:
        """Encoder: the indices of the references not equal to one before them, with the
        comparisons kept from frame to frame (a GOP's frames stay references for 15)."""
        cache = getattr(self, "_equal_cache", {})
        kept, out = {}, []
        for i, ref in enumerate(refs):
            same = False
            for j in out:
                key = (id(refs[j]), id(ref))
                hit = cache.get(key)
                if hit is None or hit[0] is not refs[j] or hit[1] is not ref:
                    hit = (refs[j], ref, bool(np.array_equal(refs[j], ref)))
                kept[key] = hit
                if hit[2]:
                    same = True
                    break
            if not same:
                out.append(i)
        self._equal_cache = kept
        return out

    def _kept(self, name: str, refs, make) -> list[np.ndarray]:
        """``make(ref)`` of each reference, kept (in attribute ``name``) from frame to
        frame while the reference is still one (a GOP's frames stay references for
        several frames)."""
        cache = getattr(self, name, {})
        kept = {}
        for ref in refs:
            hit = cache.get(id(ref))
            kept[id(ref)] = hit if hit is not None and hit[0] is ref else (ref, make(ref))
        setattr(self, name, kept)
        return [kept[id(ref)][1] for ref in refs]

    def _reference_windows(self, refs) -> list[Windows]:
        """``reference_windows`` of each reference (``_kept``)."""
        return self._kept("_windows_cache", refs, reference_windows)

    def _half_planes(self, refs) -> list[np.ndarray]:
        """``half_pel_planes`` of each reference (``_kept``)."""
        return self._kept("_plane_cache", refs, half_pel_planes)

    def motion_price(self) -> float:
        """Squared error a 4×4 block taken from a reference must save (encoder's
        choice): MOTION_LAMBDA, or 3·Δ² at the coarse steps where bits are dearer."""
        return max(MOTION_LAMBDA, 3.0 * self.step ** 2)

    @property
    def far(self) -> bool:
        """12.x: choice 4 names the key frame or one of the GOP's older frames (§14.14)."""
        return self.motion_coder is not None and self.motion_coder.far

    def reference_list(self, refs) -> list:
        """The frames a predicted frame's 4×4 blocks may read, from ``refs`` (the GOP's
        decoded frames, most recent first, its key frame last from 5.0 on): the first
        REFERENCES of them, or in 12.x (``far``) all of them, at most REFERENCES_12, in
        the order the choices and far indices name them: the last three, the key frame,
        then the older ones, most recent first (pcz.md §14.14)."""
        refs = list(refs)
        if not self.far:
            return refs[:REFERENCES]
        refs = refs[:REFERENCES_12]
        if len(refs) <= REFERENCES:
            return refs
        return refs[:REFERENCES - 1] + refs[-1:] + refs[REFERENCES - 1:-1]

    def predicted_symbols(self, frame: np.ndarray, base: np.ndarray, refs, previous=None):
        """Encoder, predicted frames: the 4×4 blocks re-predicted from the references
        (most recent first) and the residual symbols, rate–distortion optimised with
        λ = rd_scale · Δ² (``rd_optimize``): (blockmotion.MotionField, re-predicted
        base, H×W×3 symbols). The table fit (``RefinedPacModel.fit_refinement``) counts
        exactly these."""
        from .blockmotion import MotionField

        listed = self.reference_list(refs)  # what the blocks may read (12.x: up to 16 frames)
        refs = listed[:REFERENCES]  # what the contexts and the symbol model read
        if self.motion_coder is None:
            choice, vectors, base = repredict(frame, base, refs, self.motion_price())
            field = MotionField(choice, vectors)
        else:
            price = self.motion_price()
            h, w = frame.shape[:2]
            rows, cols = _grid(h, w, MOTION_BLOCK)
            previous = previous or MotionField.empty(rows, cols)
            residual = None
            if MOTION_RD and self.step <= MOTION_RD_MAX_STEP:
                lam = self.rd_scale * self.step ** 2
                residual = (self.step, self.max_symbol, lam, _rate_by_magnitude(self.max_symbol))
            windows = self._reference_windows(listed)
            threads = encoder_threads()
            blocks, keep, costs = motion_costs(frame, base, refs, price, residual, windows=windows, threads=threads)
            search = self.motion_coder.search
            if self.motion_coder.far:
                # 12.x: the blocks the near search leaves dear, searched again in every
                # reference within ±8 (FAR_SEARCH_SHARE).
                costs = _widen(costs, 4, search)
                if len(listed) > len(refs):
                    costs = np.concatenate([costs, np.full((len(blocks), len(listed) - len(refs), costs.shape[2]),
                                                           np.inf)], axis=1)
                dear = costs.min(axis=(1, 2), initial=np.inf) > FAR_SEARCH_SHARE * price
                if dear.any():
                    # A reference equal to one before it in the list (the picture stood
                    # still) would cost the same: only the first is searched.
                    new = self._distinct_references(listed)
                    wide = np.full((int(dear.sum()), len(listed), costs.shape[2]), np.inf)
                    wide[:, new] = search_costs(frame, blocks[dear], [listed[i] for i in new], search, residual,
                                                [windows[i] for i in new], threads)
                    costs[dear] = wide
            half = None
            if self.motion_coder.half_pel and len(blocks):
                # 6.x: the half-pixel positions around each block's best whole vector.
                flat = costs.reshape(len(blocks), -1).argmin(axis=1)
                j, k = np.divmod(flat, costs.shape[2])
                side = 2 * search + 1
                whole = np.stack(np.divmod(k, side), axis=1) - search
                half = half_pel_costs(frame, self._half_planes(listed), blocks, j, whole, residual, search)
            # A bit of side information is priced at a quarter of a block's price: ties
            # between vectors go to the one its predictor makes cheap (encoder's choice).
            field = self.motion_coder.choose_vectors(costs, blocks, keep, price, self.vector_price * price / 4, rows,
                                                     cols, previous, half)
            choice = field.choice
            base = apply_motion(base, listed, choice, field.vectors, field.fraction, field.far)
        symbols = self.symbols(frame, base)
        if self.rd_scale > 0:
            flag_p = self._flag_probabilities(choice, refs)
            flag_bits = self._flag_bits if flag_p is None else -np.log2(flag_p)
            weight = persistence_weight(frame, self._previous_source, PERSIST)
            lam, bound = self.rd_scale * self.step ** 2, RD_MAX_ERROR * self.step
            if self.symbol_model is not None and LEARNED_PRICES:
                # The model prices the blocks the tables' choice flags (running it on
                # every block the plain quantizer touches would cost 5× the encode);
                # the rest keep the tables' choice (SCREEN_LEVELS: a denser level's).
                first = rd_optimize(frame, base, symbols, self.step, table_prices(self._screen_bits, self.board),
                                    lam, flag_bits, self.board, bound, weight=weight)
                active = _expand(block_flags(first), FLAG_BLOCK, *self.board.shape)
                symbols = symbols * active[..., None]  # the blocks the tables drop stay dropped
                price = self._learned_prices(self._frame_inputs(choice, base, refs, field.vectors), first)
            else:
                price = table_prices(self._bits, self.board)
            symbols = rd_optimize(frame, base, symbols, self.step, price, lam, flag_bits, self.board, bound,
                                  weight=weight)
        self._previous_source = frame
        return field, base, symbols

    def encode(self, frame: np.ndarray, base: np.ndarray, refs=None, previous=None) -> tuple[bytes, np.ndarray]:
        """Frame and the decoder's base frame (and for predicted frames the references,
        most recent first, and the previous P-frame's blockmotion.MotionField, None
        after an intra frame) -> (payload bytes, refined frame). The refined frame of
        a predicted frame carries its MotionField as ``.motion``."""
        encoder = RangeEncoder()
        coded = None
        field = None
        if self.predicted:
            from .blockmotion import MotionField
            from .predict import SEARCH

            if not refs:
                raise ValueError("a predicted frame's refinement needs its references")
            field, base, symbols = self.predicted_symbols(frame, base, refs, previous)
            refs = self.reference_list(refs)[:REFERENCES]
            choice, vectors = field.choice, field.vectors
            if self.motion_coder is not None:
                rows, cols = choice.shape
                self.motion_coder.encode(encoder, field, previous or MotionField.empty(rows, cols),
                                         _exact_references(refs))
            else:
                encoder.encode(choice.ravel().astype(np.int32), self._motion_model)
                moved = choice != 0
                if moved.any():
                    encoder.encode((vectors[moved][:, ::-1] + SEARCH).astype(np.int32).ravel(), self._vector_model)
            flags = block_flags(symbols)
            flag_p = self._flag_probabilities(choice, refs)
            if flag_p is None:
                encoder.encode(flags.ravel().astype(np.int32), self._flag_model)
            else:  # 9.x: each flag in its context, raster order
                encoder.encode(flags.ravel().astype(np.int32), _FAMILY, flag_p.reshape(-1, 2))
            coded = _flagged_pixels(flags, *self.board.shape)
        else:
            symbols = self.symbols(frame, base)
        if self.predicted and self.symbol_model is not None:
            self._encode_learned(encoder, symbols, coded, self._frame_inputs(field.choice, base, refs, field.vectors))
        else:
            for index, _, _, values, ctx in _passes(symbols, self.board, coded):
                values = (values + self.max_symbol).astype(np.int32)
                for c, members in _groups(ctx):
                    encoder.encode(values[members], self._models[index][c])
        payload = trimmed_stream(encoder) if self.trimmed else encoder.get_compressed().astype("<u4").tobytes()
        return payload, _with_motion(apply_residual(base, symbols, self.step), field, symbols, refs)

    def decode_layer(self, payload: bytes, previous=None, base: np.ndarray | None = None,
                     refs=None) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        """Payload -> (the 4×4 blocks' reference choice (rows, cols), the full vector
        grid (rows, cols, 2) [dy, dx], H×W×3 int32 symbols); the first two are None for
        intra frames. With a symbol model (4.x) a predicted frame's symbols depend on
        the decoder's frames: ``base`` (before re-prediction) and ``refs`` are needed.
        Raises FormatError on a payload that does not fit."""
        field, symbols, _ = self._decode_layer(payload, previous, base, refs)
        return (None, None, symbols) if field is None else (field.choice, field.vectors, symbols)

    def _decode_layer(self, payload: bytes, previous=None, base=None, refs=None):
        """(the MotionField of a predicted frame (else None), the symbols, the
        re-predicted base where it had to build it (4.x predicted frames; else None) so
        that ``decode`` does not build it again)."""
        if len(payload) % 4 and not self.trimmed:
            raise FormatError(f"refinement payload of {len(payload)} bytes is not whole 32-bit words")
        h, w = self.board.shape
        known = np.zeros((3, h, w), np.int32)
        choice = vectors = moved = fraction = far = None
        listed = self.reference_list(refs) if refs else None
        refs = listed[:REFERENCES] if listed else refs
        try:
            if self.trimmed:
                decoder = TrimmedDecoder(payload)
            else:
                decoder = RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
            coded = None
            if self.predicted:
                from .predict import SEARCH

                rows, cols = _grid(h, w, MOTION_BLOCK)
                if self.motion_coder is not None:
                    from .blockmotion import MotionField

                    field = self.motion_coder.decode(decoder, rows, cols, previous or MotionField.empty(rows, cols),
                                                     _exact_references(refs))
                    choice, vectors, fraction, far = field.choice, field.vectors, field.fraction, field.far
                else:
                    choice = np.asarray(decoder.decode(self._motion_model, rows * cols), np.int64).reshape(rows, cols)
                    shifted = choice != 0
                    vectors = np.zeros((rows, cols, 2), np.int64)
                    count = int(shifted.sum())
                    if count:
                        comps = np.asarray(decoder.decode(self._vector_model, 2 * count), np.int64) - SEARCH
                        vectors[shifted] = comps.reshape(-1, 2)[:, ::-1]
                rows, cols = _grid(h, w, FLAG_BLOCK)
                flag_p = self._flag_probabilities(choice, refs)
                if flag_p is None:
                    flags = np.asarray(decoder.decode(self._flag_model, rows * cols)).reshape(rows, cols) != 0
                else:  # 9.x
                    flags = np.asarray(decoder.decode(_FAMILY, flag_p.reshape(-1, 2))).reshape(rows, cols) != 0
                coded = _flagged_pixels(flags, h, w)
            if self.predicted and self.symbol_model is not None:
                if refs is None or base is None:
                    raise ValueError("a 4.x predicted frame's symbols need the decoder's frames")
                moved = apply_motion(base, listed, choice, vectors, fraction, far)
                self._decode_learned(decoder, known, coded, self._frame_inputs(choice, moved, refs, vectors))
            else:
                for index in range(PASSES):
                    channel, pos, ctx = _pass_layout(known, index, self.board, coded)
                    values = np.empty(len(pos), np.int32)
                    for c, members in _groups(ctx):
                        values[members] = decoder.decode(self._models[index][c], len(members))
                    known[channel].reshape(-1)[pos] = values - self.max_symbol
            if self.trimmed:  # 10.x: exactly the shortest form of its symbols (pcz.md §15.4)
                decoder.finish()
            elif not decoder.maybe_exhausted():
                raise FormatError("refinement payload has bytes left over after its symbols")
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise FormatError(f"refinement payload does not decode ({exc})") from None
        field = None
        if choice is not None:
            from .blockmotion import MotionField

            field = MotionField(choice, vectors, fraction, far)
        return field, np.ascontiguousarray(known.transpose(1, 2, 0)), moved

    def decode_symbols(self, payload: bytes, previous=None) -> tuple[np.ndarray, object]:
        """Payload (and the previous P-frame's MotionField) -> (everything it codes as one
        int32 vector: the 4×4 blocks' reference choice and the vectors of the moved ones
        (predicted frames), then the symbols; this frame's MotionField or None)."""
        field, symbols, _ = self._decode_layer(payload, previous)
        if field is None:
            return symbols.ravel(), None
        return np.concatenate([_field_symbols(field), symbols.ravel()]), field

    def decode(self, payload: bytes, base: np.ndarray, refs=None, previous=None) -> np.ndarray:
        field, symbols, moved = self._decode_layer(payload, previous, base, refs)
        if field is not None:
            if not refs:
                raise ValueError("a predicted frame's refinement needs its references")
            base = moved if moved is not None else apply_motion(base, self.reference_list(refs), field.choice,
                                                               field.vectors, field.fraction, field.far)
        return _with_motion(apply_residual(base, symbols, self.step), field, symbols, refs)


class MotionFrame(np.ndarray):
    """A decoded frame that carries what the next P-frame of its GOP reads besides its
    pixels: its re-prediction (``.motion``, a blockmotion.MotionField; format 2.x codes
    the next one against it), its residual symbols (``.symbols``, H×W×3) and whether its
    pixels are exact integers on every machine (``.exact``: its GOP's key frame came
    from the learned reference; format 4.x's symbol model reads pixels only then).
    Every other use sees a plain H×W×3 uint8 array."""

    motion = None
    symbols = None
    exact = False


def _exact_references(refs):
    """The references (most recent first, at most REFERENCES) where their pixels are
    exact integers on every machine (``MotionFrame.exact``), else None: what 8.x's
    choice contexts may read (blockmotion.activity)."""
    if not refs or not getattr(refs[0], "exact", False):
        return None
    return list(refs[:REFERENCES])


def exact_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` marked as exact (a key frame from the learned reference, or that
    reference), carrying no motion or symbols."""
    out = np.asarray(frame).view(MotionFrame)
    out.exact = True
    return out


def _with_motion(frame: np.ndarray, field, symbols: np.ndarray | None = None, refs=None) -> np.ndarray:
    if field is None:
        return frame
    out = frame.view(MotionFrame)
    out.motion = field
    out.symbols = symbols
    out.exact = bool(getattr(refs[0], "exact", False)) if refs else False
    return out


def _field_symbols(field) -> np.ndarray:
    """A MotionField as one int32 vector: the 4×4 choices, (12.x) the far indices of
    the blocks of choice 4, the vectors of the moved blocks and (6.x) their half-pixel
    offsets."""
    taken = field.choice != 0
    parts = [field.choice.ravel()]
    if field.far is not None:  # 12.x: the far indices of the blocks of choice 4, as coded
        parts.append(field.far[field.choice == REFERENCES])
    parts.append(field.vectors[taken].ravel())
    if field.fraction is not None:
        parts.append(field.fraction[taken])
    return np.concatenate(parts).astype(np.int32)


def coded_symbols(frame: np.ndarray) -> np.ndarray:
    """What a decoded predicted frame's refinement layer coded, as one int32 vector: the
    4×4 choices, the vectors of the moved blocks, (6.x) their half-pixel offsets, the
    symbols (as ``decode_symbols``)."""
    return np.concatenate([_field_symbols(frame.motion), np.asarray(frame.symbols, np.int32).ravel()])


def previous_motion(refs):
    """The MotionField of the frame a P-frame is predicted from (``refs[0]``), None
    after an intra frame: what format 2.x's side-information contexts read."""
    return getattr(refs[0], "motion", None) if refs else None


def _table_model(table: np.ndarray, size: int, what: str):
    table = np.asarray(table)
    if table.shape != (size,) or np.any(table <= 0):
        raise FormatError(f"a {what} table of shape {table.shape} is not {size} positive entries")
    return Categorical(table.astype(np.float64) / float(table.sum()), perfect=False)


# ----------------------------------------------------------------------------
# Two-layer payloads (formats/pcz.md §14) and predicted frames of refined ids
# ----------------------------------------------------------------------------
def pack_layers(base: bytes, refinement: bytes) -> bytes:
    """``u32 LE len(base)`` + base + refinement."""
    return len(base).to_bytes(4, "little") + base + refinement


def unpack_layers(payload: bytes) -> tuple[bytes, bytes]:
    if len(payload) < 4:
        raise FormatError(f"a refined frame of {len(payload)} bytes has no layer length")
    n = int.from_bytes(payload[:4], "little")
    if n > len(payload) - 4:
        raise FormatError(f"a refined frame's base layer claims {n} bytes of {len(payload) - 4}")
    return payload[4:4 + n], payload[4 + n:]


def skip_frame(rows: int, cols: int):
    """The base layer refined predicted frames are encoded with: every 16×16 block SKIP.

    The format allows the base level's full P-frame (predict.py) under the refinement,
    and the decoder follows whatever it reads; the encoder no longer uses it: measured
    on clip9 (GOP 32, pac-q7 … q10, with the 4×4 re-prediction and the rate–distortion
    optimised residual following), coding the base as pac-res residual and 16×16 moves
    cost 8–10 % more bytes than all-SKIP at the same PSNR, and took most of the time."""
    from .predict import SKIP, PFrame

    return PFrame(np.full((rows, cols), SKIP, np.uint8), np.zeros((rows, cols, 2), np.int64),
                  np.zeros((0, 0), np.int32))


class LayeredPredictor:
    """Predicted frames of a refined id: a base layer (format 1.x only: the base level's
    P-frame format, predict.py, which the encoder codes all SKIP, see ``skip_frame``;
    2.x files have none, their base is the previous output frame), 4×4 blocks
    re-predicted from the last REFERENCES decoded frames of the GOP where that pays,
    then the rate–distortion optimised pixel residual, coded with the predicted-frame
    tables. Methods take ``refs``: the decoded frames since the GOP's intra frame, the
    most recent first (at least one); from format 5.0 on (``long_term``) the last of
    them is always the GOP's intra frame (api._remember, pcz.md §14.3)."""

    def __init__(self, coder, refiner: RefineCoder, base_layer: bool = True, long_term: bool = False) -> None:
        self.coder = coder  # predict.PredictiveCoder at the base level
        self.refiner = refiner
        # 1.x: payload = u32 length + base layer + refinement; 2.x: the refinement only
        # (a base layer all SKIP cost 8 bytes a frame to say "the previous frame").
        self.base_layer = base_layer
        self.long_term = long_term

    @property
    def references(self) -> int:
        """How many of the GOP's decoded frames the next P-frame reads (api._remember):
        REFERENCES, or 12.x's REFERENCES_12."""
        return REFERENCES_12 if self.refiner is not None and self.refiner.far else REFERENCES

    def layers(self, payload: bytes) -> tuple[bytes | None, bytes]:
        """(base layer or None, refinement layer) of a PREDICTED payload."""
        return unpack_layers(payload) if self.base_layer else (None, payload)

    def encode(self, frame: np.ndarray, refs) -> tuple[bytes, np.ndarray]:
        refinement, out = self.refiner.encode(frame, refs[0], refs, previous_motion(refs))
        if not self.base_layer:
            return refinement, out
        base_payload = self.coder.pack(skip_frame(self.coder.rows, self.coder.cols))
        return pack_layers(base_payload, refinement), out

    def decode(self, payload: bytes, refs) -> np.ndarray:
        base_payload, refinement = self.layers(payload)
        base = refs[0] if base_payload is None else self.coder.decode(base_payload, refs[0])
        return self.refiner.decode(refinement, base, refs, previous_motion(refs))

    def unpack(self, payload: bytes):
        """The base layer's modes, vectors and residual symbols (predict.PFrame); None
        for a 2.x payload, which has no base layer."""
        base_payload, _ = self.layers(payload)
        return None if base_payload is None else self.coder.unpack(base_payload)

    def refinement_symbols(self, payload: bytes, previous=None) -> tuple[np.ndarray, object]:
        """(the refinement layer's symbols, its MotionField) given the previous P-frame's."""
        return self.refiner.decode_symbols(self.layers(payload)[1], previous)
