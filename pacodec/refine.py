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

Predicted frames first re-predict 4×4 blocks from the reference where that pays (a
flag per block and a vector for each taken: sprites move inside blocks of static maze,
which the base P-frame's 16×16 vectors cannot follow), then code one flag per 16×16
block (does it hold a non-zero symbol?) and only the flagged blocks' pixels: the
changes sit in a few blocks, and coding the static rest as zeros cost about an eighth
of the layer.

Each (pass, context) has an int32 table over −R…R summing to 2^16, counted from
training frames (``count_symbols``) and frozen into the weights. Within a pass the
symbols are grouped by context (contexts ascending, raster order inside a group) and
each group is range-coded with its table in one call (constriction).
"""

from __future__ import annotations

import numpy as np

from .entropy import Categorical, RangeDecoder, RangeEncoder
from .errors import FormatError

CHANNEL_ORDER = (1, 0, 2)  # G first: it predicts R and B best
PASSES = 2 * len(CHANNEL_ORDER)
CONTEXTS = 64
FLAG_BLOCK = 16  # predicted frames flag which 16×16 blocks hold a non-zero symbol
MOTION_BLOCK = 4  # predicted frames may re-predict 4×4 blocks from the reference (sprites)
MOTION_LAMBDA = 800.0  # squared error a re-predicted block must save (encoder's choice only)
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
    m = np.pad(mask.astype(np.int32), 1)
    h, w = mask.shape
    return sum(m[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))


def _cross4(mask: np.ndarray) -> np.ndarray:
    """Count of true values among each pixel's 4 neighbours (zero outside the frame)."""
    m = np.pad(mask.astype(np.int32), 1)
    h, w = mask.shape
    return m[:-2, 1:-1] + m[2:, 1:-1] + m[1:-1, :-2] + m[1:-1, 2:]


class Checkerboard:
    """Pixel positions of the two parities of an H×W frame, raster order (flat indices)."""

    def __init__(self, height: int, width: int) -> None:
        yy, xx = np.mgrid[:height, :width]
        parity = ((yy + xx) % 2).ravel()
        self.shape = (height, width)
        self.positions = (np.flatnonzero(parity == 0), np.flatnonzero(parity == 1))


def pass_contexts(known: np.ndarray, index: int, board: Checkerboard) -> np.ndarray:
    """Contexts (0…63) of pass ``index``'s pixels, from the symbols of earlier passes.

    ``known`` is 3×H×W int32 (channel planes) holding the symbols decoded so far (zero
    elsewhere); only entries of earlier passes are read.
    """
    i, parity = divmod(index, 2)
    h, w = board.shape
    if i == 0:
        base = np.zeros(h * w, np.int32)
    else:
        earlier = known[list(CHANNEL_ORDER[:i])]
        p = np.minimum(np.abs(earlier).sum(axis=0), 3)
        q = _Q_OF_COUNT[_box3((earlier != 0).any(axis=0))]
        base = (4 * p + q).ravel()
    pos = board.positions[parity]
    ctx = 4 * base[pos]
    if parity == 1:
        n = np.minimum(_cross4(known[CHANNEL_ORDER[i]] != 0), 3).ravel()
        ctx = ctx + n[pos]
    return ctx


def _grid(h: int, w: int, block: int) -> tuple[int, int]:
    """Rows and columns of block×block blocks covering an H×W frame from the top left."""
    return -(-h // block), -(-w // block)


def _block_sse(diff2: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = diff2.shape[:2]
    padded = np.zeros((rows * MOTION_BLOCK, cols * MOTION_BLOCK), np.int64)
    padded[:h, :w] = diff2.sum(axis=-1)
    return padded.reshape(rows, MOTION_BLOCK, cols, MOTION_BLOCK).sum(axis=(1, 3))


def choose_motion(frame: np.ndarray, base: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoder: which 4×4 blocks to take from the reference displaced by a vector in
    [−4, 4]² instead of the base P-frame, where that saves more than MOTION_LAMBDA of
    squared error. Returns (moved (rows, cols) bool, vectors (rows, cols, 2) [dy, dx])."""
    from .predict import SEARCH

    h, w = frame.shape[:2]
    rows, cols = _grid(h, w, MOTION_BLOCK)
    cur = frame.astype(np.int32)
    best = _block_sse((cur - base.astype(np.int32)) ** 2, rows, cols).astype(np.float64)
    moved = np.zeros((rows, cols), bool)
    vectors = np.zeros((rows, cols, 2), np.int64)
    if not (best > MOTION_LAMBDA).any():
        return moved, vectors
    padded = np.pad(ref.astype(np.int32), ((SEARCH, SEARCH), (SEARCH, SEARCH), (0, 0)), mode="edge")
    for dy in range(-SEARCH, SEARCH + 1):
        for dx in range(-SEARCH, SEARCH + 1):
            shifted = padded[SEARCH + dy:SEARCH + dy + h, SEARCH + dx:SEARCH + dx + w]
            cost = _block_sse((cur - shifted) ** 2, rows, cols) + MOTION_LAMBDA
            better = cost < best
            best[better], moved[better] = cost[better], True
            vectors[better] = (dy, dx)
    return moved, vectors


def repredict(frame: np.ndarray, base: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder: ``choose_motion`` and the base it makes, (moved, vectors, new base)."""
    moved, vectors = choose_motion(frame, base, ref)
    return moved, vectors, apply_motion(base, ref, moved, vectors)


def apply_motion(base: np.ndarray, ref: np.ndarray, moved: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The base P-frame with the moved 4×4 blocks copied from the displaced reference
    (read beyond the frame as the nearest edge pixel)."""
    from .predict import SEARCH

    if not moved.any():
        return base
    h, w = base.shape[:2]
    padded = np.pad(ref, ((SEARCH, SEARCH), (SEARCH, SEARCH), (0, 0)), mode="edge")
    out = base.copy()
    for r, c in zip(*np.nonzero(moved)):
        dy, dx = vectors[r, c]
        y, x = r * MOTION_BLOCK, c * MOTION_BLOCK
        bh, bw = min(MOTION_BLOCK, h - y), min(MOTION_BLOCK, w - x)
        out[y:y + bh, x:x + bw] = padded[SEARCH + y + dy:SEARCH + y + dy + bh, SEARCH + x + dx:SEARCH + x + dx + bw]
    return out


def block_flags(symbols: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: which 16×16 blocks (raster grid from the top left, the last row
    and column cut by the frame) hold a non-zero symbol in any channel."""
    h, w = symbols.shape[:2]
    rows, cols = _grid(h, w, FLAG_BLOCK)
    nz = np.zeros((rows * FLAG_BLOCK, cols * FLAG_BLOCK), bool)
    nz[:h, :w] = (symbols != 0).any(axis=-1)
    return nz.reshape(rows, FLAG_BLOCK, cols, FLAG_BLOCK).any(axis=(1, 3))


def _flagged_pixels(flags: np.ndarray, h: int, w: int) -> np.ndarray:
    """Flat H·W bool: pixels inside flagged blocks."""
    return np.kron(flags, np.ones((FLAG_BLOCK, FLAG_BLOCK), bool))[:h, :w].ravel()


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
    """(index, this pass's symbols, contexts) of each pass of H×W×3 ``symbols``, filling
    a ``known`` copy the way a decoder does, so the encoder's contexts are the decoder's."""
    planes = np.ascontiguousarray(symbols.transpose(2, 0, 1))
    known = np.zeros_like(planes)
    for index in range(PASSES):
        channel, pos, ctx = _pass_layout(known, index, board, coded)
        values = planes[channel].reshape(-1)[pos]
        yield index, values, ctx
        known[channel].reshape(-1)[pos] = values


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
    for index, values, ctx in _passes(symbols, board, coded):
        counts[index] += np.bincount(ctx * width + values + max_symbol, minlength=CONTEXTS * width).reshape(CONTEXTS, width)
    return counts


class RefineCoder:
    """Codes the residual layer of one refined quality level (step Δ, tables).

    Predicted frames (``flag_table`` and ``motion_table`` given; almost every block is
    unchanged and the changes are sprites) code, before the symbols: one flag per 4×4
    block (``motion_table``), 1 where the block is taken from the reference displaced
    by a vector instead of the base P-frame, and the vectors of those blocks (dx then dy,
    each with predict.VECTOR_TABLE); then one flag per 16×16 block (``flag_table``), 1
    where it holds a non-zero symbol; the passes then code only the flagged blocks'
    pixels (the others are zero).
    """

    def __init__(self, step: int, tables: np.ndarray, height: int, width: int,
                 flag_table: np.ndarray | None = None, motion_table: np.ndarray | None = None) -> None:
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
        if self.predicted:
            from .predict import _VECTOR_MODEL

            self._flag_model, self._motion_model = (_two_entry_model(t) for t in (flag_table, motion_table))
            self._vector_model = _VECTOR_MODEL

    def symbols(self, frame: np.ndarray, base: np.ndarray) -> np.ndarray:
        return quantize_residual(frame, base, self.step, self.max_symbol)

    def encode(self, frame: np.ndarray, base: np.ndarray, ref: np.ndarray | None = None) -> tuple[bytes, np.ndarray]:
        """Frame and the decoder's base frame (and for predicted frames the reference)
        -> (payload bytes, refined frame)."""
        encoder = RangeEncoder()
        coded = None
        if self.predicted:
            from .predict import SEARCH

            if ref is None:
                raise ValueError("a predicted frame's refinement needs the reference")
            moved, vectors, base = repredict(frame, base, ref)
            encoder.encode(moved.ravel().astype(np.int32), self._motion_model)
            if moved.any():
                encoder.encode((vectors[moved][:, ::-1] + SEARCH).astype(np.int32).ravel(), self._vector_model)
        symbols = self.symbols(frame, base)
        if self.predicted:
            flags = block_flags(symbols)
            encoder.encode(flags.ravel().astype(np.int32), self._flag_model)
            coded = _flagged_pixels(flags, *self.board.shape)
        for index, values, ctx in _passes(symbols, self.board, coded):
            values = (values + self.max_symbol).astype(np.int32)
            for c, members in _groups(ctx):
                encoder.encode(values[members], self._models[index][c])
        payload = encoder.get_compressed().astype("<u4").tobytes()
        return payload, apply_residual(base, symbols, self.step)

    def decode_layer(self, payload: bytes) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        """Payload -> (moved 4×4 blocks, their vectors (k, 2) [dy, dx], H×W×3 int32
        symbols); the first two are None for intra frames. Raises FormatError on a
        payload that does not fit."""
        if len(payload) % 4:
            raise FormatError(f"refinement payload of {len(payload)} bytes is not whole 32-bit words")
        h, w = self.board.shape
        known = np.zeros((3, h, w), np.int32)
        moved = vectors = None
        try:
            decoder = RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
            coded = None
            if self.predicted:
                from .predict import SEARCH

                rows, cols = _grid(h, w, MOTION_BLOCK)
                moved = np.asarray(decoder.decode(self._motion_model, rows * cols)).reshape(rows, cols) != 0
                count = int(moved.sum())
                vectors = np.zeros((0, 2), np.int64)
                if count:
                    comps = np.asarray(decoder.decode(self._vector_model, 2 * count), np.int64) - SEARCH
                    vectors = comps.reshape(-1, 2)[:, ::-1]
                rows, cols = _grid(h, w, FLAG_BLOCK)
                flags = np.asarray(decoder.decode(self._flag_model, rows * cols)).reshape(rows, cols) != 0
                coded = _flagged_pixels(flags, h, w)
            for index in range(PASSES):
                channel, pos, ctx = _pass_layout(known, index, self.board, coded)
                values = np.empty(len(pos), np.int32)
                for c, members in _groups(ctx):
                    values[members] = decoder.decode(self._models[index][c], len(members))
                known[channel].reshape(-1)[pos] = values - self.max_symbol
            if not decoder.maybe_exhausted():
                raise FormatError("refinement payload has bytes left over after its symbols")
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise FormatError(f"refinement payload does not decode ({exc})") from None
        return moved, vectors, np.ascontiguousarray(known.transpose(1, 2, 0))

    def decode_symbols(self, payload: bytes) -> np.ndarray:
        """Payload -> everything it codes as one int32 vector: the moved-block flags and
        vectors of a predicted frame, then the H×W×3 symbols."""
        moved, vectors, symbols = self.decode_layer(payload)
        parts = [] if moved is None else [moved.ravel().astype(np.int32), vectors.ravel().astype(np.int32)]
        return np.concatenate([*parts, symbols.ravel()])

    def decode(self, payload: bytes, base: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
        moved, vectors, symbols = self.decode_layer(payload)
        if moved is not None:
            if ref is None:
                raise ValueError("a predicted frame's refinement needs the reference")
            full = np.zeros((*moved.shape, 2), np.int64)
            full[moved] = vectors
            base = apply_motion(base, ref, moved, full)
        return apply_residual(base, symbols, self.step)


def _two_entry_model(table: np.ndarray):
    table = np.asarray(table)
    if table.shape != (2,) or np.any(table <= 0):
        raise FormatError(f"a flag table of shape {table.shape} is not 2 positive entries")
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


class LayeredPredictor:
    """Predicted frames of a refined id: the base level's P-frame (predict.py: skip,
    move or a pac-res residual per 16×16 block), 4×4 blocks re-predicted from the
    reference where that pays, then the pixel residual coded with the predicted-frame
    tables. Every frame, intra or predicted, so ends within
    5/8 of a step of its source, and the next frame predicts from that."""

    def __init__(self, coder, refiner: RefineCoder) -> None:
        self.coder = coder  # predict.PredictiveCoder at the base level
        self.refiner = refiner

    def encode(self, frame: np.ndarray, ref: np.ndarray) -> tuple[bytes, np.ndarray]:
        base_payload, base = self.coder.encode(frame, ref)
        refinement, out = self.refiner.encode(frame, base, ref)
        return pack_layers(base_payload, refinement), out

    def decode(self, payload: bytes, ref: np.ndarray) -> np.ndarray:
        base_payload, refinement = unpack_layers(payload)
        return self.refiner.decode(refinement, self.coder.decode(base_payload, ref), ref)

    def unpack(self, payload: bytes):
        """The base layer's modes, vectors and residual symbols (predict.PFrame)."""
        return self.coder.unpack(unpack_layers(payload)[0])

    def refinement_symbols(self, payload: bytes) -> np.ndarray:
        return self.refiner.decode_symbols(unpack_layers(payload)[1])
