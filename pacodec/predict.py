"""Predicted frames: code only what changed since the decoder's last frame.

A predicted (P) frame is coded against the decoder's own reconstruction of the
previous frame (closed loop: the encoder runs the decoder half, so the two never
drift apart), kept as uint8. The frame is cut into 16×16 blocks, the latent grid of
the pac models (a 200×160 frame, padded to 208×160, is 13×10 blocks), and each block
chooses, by the smallest distortion + λ·bits:

* SKIP: copy the co-located block of the reference;
* MOVE: copy the reference block displaced by a motion vector (dx, dy) ∈ [−S, S]²,
  found by exhaustive block matching;
* RESIDUAL: the moved (or co-located) block plus a residual coded by pac-res, whose
  latents at that block's position are range-coded with pac-res's integer tables.

Payload (one constriction range-coder stream, 32-bit LE words): the block modes in
raster order with ``MODE_TABLE``; then dx and dy of every non-SKIP block with
``VECTOR_TABLE`` (dx then dy per block, raster order); then the residual latents of
the RESIDUAL blocks, channel by channel, each channel's symbols in block raster order
with that channel's table. The tables of modes and vectors are integers fixed here
(formats/pcz.md §13), so parsing never depends on a float computed while decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .entropy import Categorical, RangeDecoder, RangeEncoder
from .errors import FormatError

BLOCK = 16
#: x264's default: an intra frame every 250 frames at most (and at scene cuts, api.Writer),
#: so a seek decodes at most 250 frames. On clip9 pac-q8 spends 111 bytes a frame at
#: 34.7 dB against 203 at 35.5 with GOP 32 (half the file was intra frames).
DEFAULT_GOP = 250
SEARCH = 4  # motion vectors in [−4, 4]² (sprites move a pixel or two a frame)
SKIP, MOVE, RESIDUAL = 0, 1, 2
#: Integer frequencies (sum 2**16) of SKIP, MOVE, RESIDUAL.
MODE_TABLE = np.array([58000, 4000, 3536], dtype=np.int32)
#: Integer frequencies (sum 2**16) of a vector component −SEARCH…SEARCH.
VECTOR_TABLE = np.array([1000, 2000, 4000, 9000, 33536, 9000, 4000, 2000, 1000], dtype=np.int32)
assert MODE_TABLE.sum() == 1 << 16 and VECTOR_TABLE.sum() == 1 << 16 and len(VECTOR_TABLE) == 2 * SEARCH + 1


def _model(table: np.ndarray) -> Categorical:
    return Categorical(table.astype(np.float64) / float(1 << 16), perfect=False)


_MODE_MODEL = _model(MODE_TABLE)
_VECTOR_MODEL = _model(VECTOR_TABLE)
_MODE_BITS = -np.log2(MODE_TABLE / float(1 << 16))
_VECTOR_BITS = -np.log2(VECTOR_TABLE / float(1 << 16))


def _pad_to_blocks(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = -(-h // BLOCK) * BLOCK, -(-w // BLOCK) * BLOCK
    return np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def _block_sums(values: np.ndarray) -> np.ndarray:
    """(H, W[, 3]) per-pixel values on a block-aligned frame -> (rows, cols) block sums."""
    h, w = values.shape[:2]
    return values.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, -1).sum(axis=(1, 3, 4))


def _shifted(ref_pad: np.ndarray, dy: int, dx: int, h: int, w: int) -> np.ndarray:
    return ref_pad[SEARCH + dy : SEARCH + dy + h, SEARCH + dx : SEARCH + dx + w]


def motion_prediction(ref: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The block-aligned prediction (H', W', 3) uint8 from per-block vectors (rows, cols, 2) [dy, dx]."""
    ref = _pad_to_blocks(ref)
    h, w = ref.shape[:2]
    ref_pad = np.pad(ref, ((SEARCH, SEARCH), (SEARCH, SEARCH), (0, 0)), mode="edge")
    out = np.empty_like(ref)
    for r in range(h // BLOCK):
        for c in range(w // BLOCK):
            dy, dx = vectors[r, c]
            y, x = r * BLOCK + SEARCH + dy, c * BLOCK + SEARCH + dx
            out[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = ref_pad[y : y + BLOCK, x : x + BLOCK]
    return out


@dataclass
class PFrame:
    modes: np.ndarray  # (rows, cols) uint8
    vectors: np.ndarray  # (rows, cols, 2) int [dy, dx]
    symbols: np.ndarray  # (M, n_residual_blocks) int32, −R…R


class PredictiveCoder:
    """Codes P-frames with a residual model (pac-res) at one quality level."""

    def __init__(self, residual_model, lam: float, width: int, height: int) -> None:
        from .entropy import TableCoder

        self.model = residual_model
        self.width, self.height = width, height
        self.lam = float(lam)  # squared-error units (uint8 scale) per bit
        tables = residual_model.entropy_tables()
        self.tables = tables
        self.fill = residual_model.fill().astype(np.int32)
        self.max_symbol = tables.shape[1] // 2
        self.coder = TableCoder(tables)
        self._latent_models = self.coder._models
        self._bits = -np.log2(tables.astype(np.float64) / float(1 << 16))  # (M, 2R+1)
        self.rows, self.cols = -(-height // BLOCK), -(-width // BLOCK)
        if tuple(residual_model.code_shape[1:]) != (self.rows, self.cols):
            raise ValueError("residual model latent grid does not match 16×16 blocks")

    # -- the shared half: reconstruct from modes, vectors and symbols ---------
    def reconstruct(self, ref: np.ndarray, p: PFrame) -> np.ndarray:
        pred = motion_prediction(ref, p.vectors)
        residual_blocks = p.modes == RESIDUAL
        if residual_blocks.any():
            m = self.model.code_shape[0]
            latents = np.repeat(self.fill[:, None, None], self.rows * self.cols, axis=1).reshape(
                m, self.rows, self.cols).astype(np.float32)
            latents[:, residual_blocks] = p.symbols
            with torch.no_grad():
                res = self.model.synthesis(torch.from_numpy(latents)[None])[0]  # (3, H, W) in [−1, 1]
            res = res.permute(1, 2, 0).numpy() * 255.0
            res = _pad_to_blocks(res)
            mask = np.kron(residual_blocks, np.ones((BLOCK, BLOCK)))[..., None] > 0
            pred = np.where(mask, np.clip(np.rint(pred.astype(np.float32) + res), 0, 255), pred).astype(np.uint8)
        return pred[: self.height, : self.width]

    # -- encoder ---------------------------------------------------------------
    def choose(self, frame: np.ndarray, ref: np.ndarray) -> tuple[PFrame, np.ndarray | None]:
        """The modes, vectors and symbols of one P-frame, and its reconstruction when the
        choice already made it (None: ``reconstruct`` it)."""
        cur = _pad_to_blocks(frame).astype(np.int32)
        refp = _pad_to_blocks(ref)
        h, w = cur.shape[:2]
        ref_pad = np.pad(refp, ((SEARCH, SEARCH), (SEARCH, SEARCH), (0, 0)), mode="edge").astype(np.int32)
        # Block matching: SSE of every block under every vector, plus the vector's bits.
        best_cost = np.full((self.rows, self.cols), np.inf)
        best_sse = np.zeros((self.rows, self.cols))
        vectors = np.zeros((self.rows, self.cols, 2), np.int64)
        skip_sse = None
        for dy in range(-SEARCH, SEARCH + 1):
            for dx in range(-SEARCH, SEARCH + 1):
                sse = _block_sums((cur - _shifted(ref_pad, dy, dx, h, w)) ** 2).astype(np.float64)
                if dy == 0 and dx == 0:
                    skip_sse = sse
                cost = sse + self.lam * (_VECTOR_BITS[dy + SEARCH] + _VECTOR_BITS[dx + SEARCH])
                better = cost < best_cost
                best_cost[better], best_sse[better] = cost[better], sse[better]
                vectors[better] = (dy, dx)
        assert skip_sse is not None
        move_cost = best_sse + self.lam * (_MODE_BITS[MOVE] + _vector_bits(vectors))
        skip_cost = skip_sse + self.lam * _MODE_BITS[SKIP]
        # Residual: code the whole moved frame's residual once, price each block.
        pred = motion_prediction(ref, vectors)
        residual = (cur[: pred.shape[0], : pred.shape[1]] - pred.astype(np.int32)).astype(np.float32) / 255.0
        with torch.no_grad():
            tensor = torch.from_numpy(residual[: self.height, : self.width]).permute(2, 0, 1)[None]
            latents = self.model.encode_residual(tensor)[0].numpy()  # (M, rows, cols)
        r = self.max_symbol
        symbols = np.clip(np.rint(latents), -r, r).astype(np.int32)
        m = symbols.shape[0]
        latent_bits = self._bits[np.arange(m)[:, None, None], symbols + r].sum(axis=0)  # (rows, cols)
        full = PFrame(np.full((self.rows, self.cols), RESIDUAL, np.uint8), vectors,
                      symbols.reshape(m, -1))
        recon_all = _pad_to_blocks(self.reconstruct(ref, full)).astype(np.int32)
        residual_sse = _block_sums((cur - recon_all) ** 2).astype(np.float64)
        residual_cost = residual_sse + self.lam * (_MODE_BITS[RESIDUAL] + _vector_bits(vectors) + latent_bits)
        costs = np.stack([skip_cost, move_cost, residual_cost])
        modes = costs.argmin(axis=0).astype(np.uint8)
        vectors[modes == SKIP] = 0
        choice = PFrame(modes, vectors, symbols[:, modes == RESIDUAL])
        reconstruction = None
        # The estimate above decoded every block as residual; uncoded neighbours change
        # a residual block's synthesis. Check the real reconstruction once and drop the
        # residual where it does not pay for itself.
        if (modes == RESIDUAL).any():
            reconstruction = self.reconstruct(ref, choice)
            recon = _pad_to_blocks(reconstruction).astype(np.int32)
            actual = _block_sums((cur - recon) ** 2).astype(np.float64) + self.lam * (
                _MODE_BITS[RESIDUAL] + _vector_bits(vectors) + latent_bits)
            fallback = np.minimum(skip_cost, move_cost)
            worse = (modes == RESIDUAL) & (actual > fallback)
            if worse.any():
                modes[worse] = np.where(skip_cost[worse] <= move_cost[worse], SKIP, MOVE)
                vectors[modes == SKIP] = 0
                choice = PFrame(modes, vectors, symbols[:, modes == RESIDUAL])
                reconstruction = None  # the choice changed: what was checked is not it
        return choice, reconstruction

    def encode(self, frame: np.ndarray, ref: np.ndarray) -> tuple[bytes, np.ndarray]:
        """One P-frame against the decoder's reference -> (payload, reconstruction)."""
        p, reconstruction = self.choose(frame, ref)
        if reconstruction is None:
            reconstruction = self.reconstruct(ref, p)
        return self.pack(p), reconstruction

    def pack(self, p: PFrame) -> bytes:
        encoder = RangeEncoder()
        encoder.encode(p.modes.ravel().astype(np.int32), _MODE_MODEL)
        moved = p.modes.ravel() != SKIP
        if moved.any():
            comps = (p.vectors.reshape(-1, 2)[moved][:, ::-1] + SEARCH).astype(np.int32).ravel()  # dx, dy
            encoder.encode(comps, _VECTOR_MODEL)
        for channel, model in zip(p.symbols, self._latent_models):
            if channel.size:
                encoder.encode((channel + self.max_symbol).astype(np.int32), model)
        return encoder.get_compressed().astype("<u4").tobytes()

    # -- decoder ---------------------------------------------------------------
    def unpack(self, payload: bytes) -> PFrame:
        if len(payload) % 4:
            raise FormatError("predicted-frame payload is not whole 32-bit words")
        try:
            decoder = RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
            n = self.rows * self.cols
            modes = np.asarray(decoder.decode(_MODE_MODEL, n), dtype=np.uint8)
            moved = modes != SKIP
            vectors = np.zeros((n, 2), np.int64)
            if moved.any():
                comps = np.asarray(decoder.decode(_VECTOR_MODEL, 2 * int(moved.sum())), np.int64) - SEARCH
                vectors[moved] = comps.reshape(-1, 2)[:, ::-1]
            count = int((modes == RESIDUAL).sum())
            m = len(self._latent_models)
            symbols = np.zeros((m, count), np.int32)
            if count:
                for c, model in enumerate(self._latent_models):
                    symbols[c] = np.asarray(decoder.decode(model, count)) - self.max_symbol
            if not decoder.maybe_exhausted():
                raise FormatError("predicted-frame payload has words left over")
        except (ValueError, RuntimeError, AssertionError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"predicted-frame payload does not decode ({exc})") from None
        if modes.max(initial=0) > RESIDUAL:
            raise FormatError("predicted-frame block mode out of range")
        return PFrame(modes.reshape(self.rows, self.cols), vectors.reshape(self.rows, self.cols, 2), symbols)

    def decode(self, payload: bytes, ref: np.ndarray) -> np.ndarray:
        return self.reconstruct(ref, self.unpack(payload))


def _vector_bits(vectors: np.ndarray) -> np.ndarray:
    return _VECTOR_BITS[vectors[..., 0] + SEARCH] + _VECTOR_BITS[vectors[..., 1] + SEARCH]


def lambda_for(level_lambda: float, scale: float = 1.0) -> float:
    """The block decision's λ (squared error of uint8 pixels per bit) from a training λ.

    Training minimises λ_t·255²·MSE + bits per pixel; over a block of n pixels and 3
    channels that is λ_t/3 · SSE + bits, i.e. SSE + (3/λ_t)·bits.
    """
    return scale * 3.0 / level_lambda
