"""pac-q1 … pac-q5: our rate–distortion trained intra codec (one network, five rates).

The transforms are the workshop's conv4 (Conv-BN-ReLU stages, sigmoid codes in
[0, 1]) on the frame padded to 208×160, so its 128×13×10 latents sit on an exact grid
of 16×16 blocks (what predicted frames use). They train fast on a CPU and start from
conv4's weights. On top: per-level channel gains (y = code·gain[l], x̂ = g_s(ŷ/gain[l]))
and a per-level factorized prior over the integer symbols ŷ = round(y), so one
network serves every quality level.

Training (Ballé et al. 2017, with gained units): additive uniform noise for the rate
term, straight-through rounding for the synthesis input, loss = λ_l·255²·MSE + bits
per pixel with the level l drawn per sample. After training, ``freeze_tables`` turns
each level's learned density into integer probability tables (sum 2^16 over
symbols −R…R) stored as int32 buffers in the weights: decoding reads only those
integers, never a float computed at decode time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import CodecModel, ModelSpec, config_from, register

TABLE_PRECISION = 16  # tables sum to 2**16
LIKELIHOOD_FLOOR = 1e-9


@dataclass(frozen=True)
class PacConfig:
    width: int = 160
    height: int = 200
    channels: tuple[int, ...] = (16, 32, 64, 128)  # conv4's stages; the last is M
    lambdas: tuple[float, ...] = (0.0025, 0.008, 0.025, 0.08, 0.25)
    level: int = 2  # 0-based quality level this id codes with
    max_symbol: int = 127  # R: symbols are clamped to −R…R (int8)
    gain_range: tuple[float, float] = (4.0, 64.0)  # initial quantization steps per unit code


class FactorizedDensity(nn.Module):
    """A per-channel learned cumulative density (Ballé et al. 2018, appendix 6.1)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        # x: (C, 1, n) -> (C, 1, n)
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(round-interval around y) per entry of y (B, C, H, W)."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower, upper = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.clamp_min(LIKELIHOOD_FLOOR).reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def pmf(self, max_symbol: int) -> torch.Tensor:
        """(C, 2R+1) probabilities of the integers −R…R, tails folded into the ends."""
        c = self.matrices[0].shape[0]
        grid = torch.arange(-max_symbol, max_symbol + 1, dtype=torch.float32)
        v = grid.view(1, 1, -1).expand(c, 1, -1)
        cdf_hi = torch.sigmoid(self.logits_cdf(v + 0.5)).squeeze(1)
        cdf_lo = torch.sigmoid(self.logits_cdf(v - 0.5)).squeeze(1)
        pmf = (cdf_hi - cdf_lo).clamp_min(0)
        pmf[:, 0] += cdf_lo[:, 0]
        pmf[:, -1] += 1 - cdf_hi[:, -1]
        return pmf


def integer_table(pmf: np.ndarray, precision: int = TABLE_PRECISION) -> np.ndarray:
    """Float pmfs (C, S) -> int32 tables, every entry ≥ 1, each row summing to 2**precision."""
    total = 1 << precision
    c, s = pmf.shape
    pmf = np.maximum(pmf, 0) / np.maximum(pmf.sum(axis=1, keepdims=True), 1e-12)
    table = np.floor(pmf * (total - s)).astype(np.int64) + 1
    # Give the remainder to each row's most likely symbol, so the sum is exact.
    rows = np.arange(c)
    table[rows, table.argmax(axis=1)] += total - table.sum(axis=1)
    return table.astype(np.int32)


class PacModel(CodecModel):
    family = "pac"
    stride = 16

    def __init__(self, model_id: str, config: PacConfig) -> None:
        super().__init__(model_id, config)
        from .conv import ConvAutoencoder, ConvConfig

        m, levels = config.channels[-1], len(config.lambdas)
        self.ae = ConvAutoencoder(model_id, ConvConfig(width=self._padded(config.width),
                                                       height=self._padded(config.height),
                                                       channels=tuple(config.channels)))
        # Per-level channel gains in log space, spread from the start so each level
        # begins with its own quantization step: Adam moves raw gains by about lr a
        # step, far too slow to separate the levels.
        lo, hi = (math.log(g) for g in config.gain_range)
        spread = torch.linspace(lo, hi, levels)[:, None].expand(levels, m)
        self.log_gains = nn.Parameter(spread.clone())
        self.log_inverse_gains = nn.Parameter(-spread.clone())
        self.densities = nn.ModuleList([FactorizedDensity(m) for _ in range(levels)])
        width = 2 * config.max_symbol + 1
        # The integer tables the entropy coder uses; all ones until frozen.
        self.register_buffer("tables", torch.ones(levels, m, width, dtype=torch.int32))

    # -- geometry -------------------------------------------------------------
    def _padded(self, size: int) -> int:
        return -(-size // self.stride) * self.stride

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self.ae.code_shape

    @property
    def level(self) -> int:
        return int(self.config.level)

    # -- transforms -----------------------------------------------------------
    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        return F.pad(images, (0, self._padded(w) - w, 0, self._padded(h) - h), mode="replicate")

    def _gain(self, levels: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        table = self.log_inverse_gains if inverse else self.log_gains
        return torch.exp(table[levels])[:, :, None, None]

    def g_a(self, images: torch.Tensor) -> torch.Tensor:
        return self.ae.analysis(images)  # (N, M, h, w) in [0, 1]

    def g_s(self, codes: torch.Tensor) -> torch.Tensor:
        return self.ae.synthesis(codes)  # (N, 3, H', W') in [0, 1]

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        levels = torch.full((len(images),), self.level, dtype=torch.long, device=images.device)
        return self.g_a(self._pad(images)) * self._gain(levels)

    def synthesis(self, codes: torch.Tensor) -> torch.Tensor:
        levels = torch.full((len(codes),), self.level, dtype=torch.long, device=codes.device)
        images = self.g_s(codes * self._gain(levels, inverse=True))
        return images[..., : self.config.height, : self.config.width]

    # -- training -------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> Any:
        n = len(images)
        levels = torch.randint(0, len(self.config.lambdas), (n,), device=images.device)
        y = self.g_a(self._pad(images)) * self._gain(levels)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        rounded = y + (torch.round(y) - y).detach()  # straight-through
        recon = self.g_s(rounded * self._gain(levels, inverse=True))
        recon = recon[..., : images.shape[-2], : images.shape[-1]]
        bits = torch.zeros(n, device=images.device)
        for level, density in enumerate(self.densities):
            pick = levels == level
            if pick.any():
                bits[pick] = -torch.log2(density.likelihood(noisy[pick])).sum(dim=(1, 2, 3))
        return recon, levels, bits

    def criterion(self, images: torch.Tensor, outputs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        recon, levels, bits = outputs
        pixels = images.shape[-2] * images.shape[-1]
        mse = ((recon - images) ** 2).mean(dim=(1, 2, 3))
        lambdas = torch.tensor(self.config.lambdas, device=images.device)[levels]
        loss = (lambdas * 255**2 * mse + bits / pixels).mean()
        return loss, {"mse": float(mse.mean().detach()), "bpp": float((bits / pixels).mean().detach())}

    @torch.no_grad()
    def freeze_tables(self) -> None:
        """Turn each level's learned density into the integer tables the coder uses."""
        for level, density in enumerate(self.densities):
            pmf = density.pmf(self.config.max_symbol).double().numpy()
            self.tables[level] = torch.from_numpy(integer_table(pmf))

    def entropy_tables(self) -> np.ndarray:
        """(M, 2R+1) int32 tables of this id's level; row c codes latent channel c."""
        return self.tables[self.level].cpu().numpy()


LEVELS = 5
#: The residual model that predicted frames of an intra network's streams use.
RESIDUAL_FOR = {"pac": "pac-res", "tiny-pac": "tiny-pac-res", "pac-hi": "pac-res", "tiny-pac-hi": "tiny-pac-res"}


def _pac_builder(model_id: str, level: int):
    def build(overrides: dict[str, Any] | None) -> CodecModel:
        return PacModel(model_id, config_from(PacConfig, {**(overrides or {}), "level": level}))

    return build


register(ModelSpec("pac", "pac", lambda o: PacModel("pac", config_from(PacConfig, o)),
                   f"ours: the network behind pac-q1…q{LEVELS} (train this id; code with a level)", internal=True))
for _level in range(LEVELS):
    register(ModelSpec(f"pac-q{_level + 1}", "pac", _pac_builder(f"pac-q{_level + 1}", _level),
                       f"ours: rate-distortion trained, entropy-coded, quality {_level + 1} of {LEVELS}",
                       weights_of="pac"))
TINY = {"channels": (4, 4, 8, 8), "max_symbol": 15, "gain_range": (2.0, 8.0)}
register(ModelSpec("tiny-pac", "pac",
                   lambda o: PacModel("tiny-pac", config_from(PacConfig, {**TINY, **(o or {})})),
                   "a tiny pac model for tests (no shipped weights)", internal=True))


class ResidualPacModel(PacModel):
    """pac-res: the same transforms and priors, coding residuals of predicted frames.

    A residual r = frame − prediction lies in [−1, 1]; the model codes r directly (no
    clamp to [0, 1]). It trains on pairs of consecutive frames stacked as six channels
    (previous, current), the residual of a zero-motion prediction, so it learns what
    changes between frames of this game: sprites, dots, score digits.
    """

    #: Training data are consecutive-frame pairs (N×H×W×6), see ``pacodec train``.
    pairs = True

    def __init__(self, model_id: str, config: PacConfig) -> None:
        super().__init__(model_id, config)
        # Per level and channel, the symbol that codes "no residual" (the latents of a
        # zero residual): blocks that are not coded hold it, so the synthesis sees an
        # empty residual there. Integers frozen with the tables, like them.
        self.register_buffer("fill_symbols", torch.zeros(len(config.lambdas), config.channels[-1],
                                                         dtype=torch.int32))

    @torch.no_grad()
    def freeze_tables(self) -> None:
        super().freeze_tables()
        was_training = self.training
        self.eval()
        zero = torch.zeros(1, 3, self.config.height, self.config.width)
        for level in range(len(self.config.lambdas)):
            levels = torch.tensor([level])
            y = self.g_a(self._pad(zero)) * self._gain(levels)
            r = self.config.max_symbol
            self.fill_symbols[level] = torch.round(y[0].median(dim=-1).values.median(dim=-1).values
                                                   ).clamp(-r, r).to(torch.int32)
        self.train(was_training)

    def fill(self) -> np.ndarray:
        """(M,) int32: this level's "no residual" symbol of each channel."""
        return self.fill_symbols[self.level].cpu().numpy()

    # The conv transforms work on [0, 1]: map residuals r ∈ [−1, 1] to (r + 1)/2 and back.
    def g_a(self, residual: torch.Tensor) -> torch.Tensor:
        return self.ae.analysis((residual + 1) / 2)

    def g_s(self, codes: torch.Tensor) -> torch.Tensor:
        return self.ae.synthesis(codes) * 2 - 1

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        return F.pad(images, (0, self._padded(w) - w, 0, self._padded(h) - h))

    def forward(self, images: torch.Tensor) -> Any:
        if images.shape[1] == 6:
            images = images[:, 3:] - images[:, :3]  # (N, 3, H, W) residual in [−1, 1]
        return (*super().forward(images), images)

    def criterion(self, images: torch.Tensor, outputs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        *rest, residual = outputs
        return super().criterion(residual, tuple(rest))

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:  # type: ignore[override]
        raise TypeError("pac-res codes residuals: use encode_residual")

    @torch.no_grad()
    def encode_residual(self, residual: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float residual in [−1, 1] -> (N, M, h, w) latents (unrounded)."""
        self.eval()
        return self.analysis(residual)


register(ModelSpec("pac-res", "pac", lambda o: ResidualPacModel("pac-res", config_from(PacConfig, o)),
                   "ours: residual coder of predicted frames (used with pac-q*, not on its own)", internal=True))
register(ModelSpec("tiny-pac-res", "pac",
                   lambda o: ResidualPacModel("tiny-pac-res", config_from(PacConfig, {**TINY, **(o or {})})),
                   "a tiny residual model for tests (no shipped weights)", internal=True))


# ----------------------------------------------------------------------------
# pac-q6 … pac-q10: a pac base level plus a context-coded pixel residual (refine.py)
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RefinedConfig(PacConfig):
    #: (base level, step Δ) of each refined quality level, in rising quality.
    refinements: tuple[tuple[int, int], ...] = ((1, 64), (1, 40), (1, 28), (2, 16), (2, 10))
    refine_level: int = 0  # 0-based refined level this id codes with
    max_residual: int = 32  # R of the residual symbols: |s| ≤ 32 covers 255 at Δ ≥ 8


class RefinedPacModel(PacModel):
    """The pac network (its base levels, unchanged) plus the refinement layer's tables.

    Every refined level has its own base level and step Δ (``refinements``) and two
    sets of integer tables, counted by ``fit_refinement`` from the training frames:
    one for intra frames (the residual of the base frame) and one for predicted
    frames (the residual after the 4×4 re-prediction from the last frames, in a
    closed loop at GOP 32, refine.LayeredPredictor), with the predicted frames'
    block-flag and motion tables. That counting is the only training this layer has:
    the network is pac's, copied with ``--init``.
    """

    #: The GOP of the closed loop whose P-frames the predicted-frame tables count.
    FIT_GOP = 32

    def __init__(self, model_id: str, config: RefinedConfig) -> None:
        super().__init__(model_id, config)
        from ..refine import CONTEXTS, PASSES, REFERENCES

        width = 2 * config.max_residual + 1
        shape = (len(config.refinements), PASSES, CONTEXTS, width)
        self.register_buffer("refine_tables", torch.ones(shape, dtype=torch.int32))
        self.register_buffer("refine_tables_p", torch.ones(shape, dtype=torch.int32))
        # predicted frames' block flags (refine.py): frequencies of 0 and 1 per level
        self.register_buffer("refine_flag_tables_p", torch.ones(len(config.refinements), 2, dtype=torch.int32))
        # predicted frames' 4×4 re-prediction choice (refine.py): frequencies of 0 (keep
        # the base) and 1…REFERENCES (the reference a block is taken from)
        self.register_buffer("refine_motion_tables_p",
                             torch.ones(len(config.refinements), 1 + REFERENCES, dtype=torch.int32))

    @property
    def refinement(self) -> tuple[int, int]:
        base, step = self.config.refinements[self.config.refine_level]
        return int(base), int(step)

    @property
    def level(self) -> int:
        return self.refinement[0]

    def refine_coder(self, predicted: bool = False):
        from ..refine import SCREEN_LEVELS, RefineCoder

        coder = RefineCoder(self.refinement[1], self.refine_table_array(predicted), self.height, self.width,
                            flag_table=self.refine_flag_table() if predicted else None,
                            motion_table=self.refine_motion_table() if predicted else None)
        if predicted:  # the encoder's first pass screens with a denser level's tables
            denser = min(self.config.refine_level + SCREEN_LEVELS, len(self.config.refinements) - 1)
            coder.screen_with(self.refine_tables_p[denser].cpu().numpy())
        return coder

    def refine_flag_table(self) -> np.ndarray:
        return self.refine_flag_tables_p[self.config.refine_level].cpu().numpy()

    def refine_motion_table(self) -> np.ndarray:
        return self.refine_motion_tables_p[self.config.refine_level].cpu().numpy()

    def refine_table_array(self, predicted: bool = False) -> np.ndarray:
        tables = self.refine_tables_p if predicted else self.refine_tables
        return tables[self.config.refine_level].cpu().numpy()

    @torch.no_grad()
    def fit_refinement(self, frames: np.ndarray, batch: int = 16, rounds: int = 2) -> str:
        """Count every refined level's residual symbols over ``frames`` (N×H×W×3 uint8
        at the native geometry, consecutive within each clip) and freeze them as integer
        tables: intra frames, and predicted frames of a closed loop at GOP ``FIT_GOP``
        exactly as the encoder runs it.

        The encoder's rate–distortion choices on predicted frames are priced with the
        predicted-frame tables themselves, so those are counted ``rounds`` times, each
        round encoding with the tables of the one before; the first round prices with
        the intra tables (counted first) where the model holds no predicted-frame
        tables yet. Returns a summary."""
        self._count_refinement(frames, batch, predicted=False)
        unfitted = bool((self.refine_tables_p == 1).all())
        if unfitted:
            self.refine_tables_p.copy_(self.refine_tables)
        for _ in range(rounds):
            self._count_refinement(frames, batch, predicted=True)
        prior = "intra tables" if unfitted else "the tables it held"
        return (f"intra and predicted-frame residual tables of {REFINED_LEVELS} refined levels counted on "
                f"{len(frames)} frames ({rounds} predicted rounds, the first priced with {prior})")

    def _intra_bases(self, frames: np.ndarray) -> np.ndarray:
        """The decoder's base frames of intra-coded ``frames`` at the current level."""
        m = self.config.max_symbol
        return self.decode(np.clip(np.rint(self.encode(frames)), -m, m))

    def _count_refinement(self, frames: np.ndarray, batch: int, predicted: bool) -> None:
        """One count: of intra frames only, or (``predicted``) of the GOP-``FIT_GOP``
        closed loop's intra and predicted frames, frozen into the tables."""
        import dataclasses

        from ..refine import REFERENCES, apply_residual, count_symbols, quantize_residual

        self.freeze_tables()  # the base levels' tables, as the decoder will use them
        r = self.config.max_residual
        saved = self.config
        levels = range(len(saved.refinements))
        counts: list[np.ndarray | None] = [None] * len(levels)
        counts_p: list[np.ndarray | None] = [None] * len(levels)
        flag_counts = np.zeros((len(levels), 2), np.int64)
        motion_counts = np.zeros((len(levels), 1 + REFERENCES), np.int64)
        try:
            for k in levels:
                self.config = dataclasses.replace(saved, refine_level=k)
                step = self.refinement[1]
                refiner = self.refine_coder(predicted=True) if predicted else None
                if refiner is None:  # every frame intra
                    for start in range(0, len(frames), batch):
                        chunk = frames[start:start + batch]
                        for frame, base in zip(chunk, self._intra_bases(chunk)):
                            counts[k] = count_symbols(quantize_residual(frame, base, step, r), r, counts[k])
                    continue
                refs: list[np.ndarray] = []  # decoded frames of the GOP, the most recent first
                for i, frame in enumerate(frames):
                    if i % self.FIT_GOP == 0:  # intra: its tables are counted above
                        base = self._intra_bases(frames[i:i + 1])[0]
                        s = quantize_residual(frame, base, step, r)
                        refs = []
                    else:  # as LayeredPredictor.encode codes a predicted frame (base: all SKIP)
                        field, base, s = refiner.predicted_symbols(frame, refs[0], refs)
                        choice = field.choice
                        motion_counts[k] += np.bincount(choice.ravel(), minlength=1 + REFERENCES)
                        counts_p[k] = count_symbols(s, r, counts_p[k], flag_counts[k])
                    refs = [apply_residual(base, s, step)] + refs[:REFERENCES - 1]
        finally:
            self.config = saved
        for tables, table_counts in ((self.refine_tables, counts), (self.refine_tables_p, counts_p)):
            for k, c in enumerate(table_counts):
                if c is not None:
                    table = integer_table((c + 0.5).reshape(-1, c.shape[-1]).astype(np.float64))
                    tables[k] = torch.from_numpy(table.reshape(c.shape))
        if predicted:
            for buffer, c in ((self.refine_flag_tables_p, flag_counts), (self.refine_motion_tables_p, motion_counts)):
                buffer.copy_(torch.from_numpy(integer_table(c.astype(np.float64) + 0.5)))


REFINED_LEVELS = len(RefinedConfig.refinements)
#: Ids whose frames carry a refinement layer (two-layer payloads, see api.Codec).
REFINED_IDS = frozenset({"pac-hi", "tiny-pac-hi", *(f"pac-q{LEVELS + k + 1}" for k in range(REFINED_LEVELS))})


def _refined_builder(model_id: str, refine_level: int, defaults: dict[str, Any] | None = None):
    def build(overrides: dict[str, Any] | None) -> CodecModel:
        values = {**(defaults or {}), **(overrides or {}), "refine_level": refine_level}
        return RefinedPacModel(model_id, config_from(RefinedConfig, values))

    return build


register(ModelSpec("pac-hi", "pac", _refined_builder("pac-hi", 0),
                   f"ours: pac's network plus the refinement tables behind pac-q{LEVELS + 1}…"
                   f"q{LEVELS + REFINED_LEVELS} (train this id)", internal=True))
for _k in range(REFINED_LEVELS):
    _id = f"pac-q{LEVELS + _k + 1}"
    _base, _step = RefinedConfig.refinements[_k]
    register(ModelSpec(_id, "pac", _refined_builder(_id, _k),
                       f"ours: pac-q{_base + 1} plus its pixel residual at step {_step}, "
                       f"quality {LEVELS + _k + 1} of {LEVELS + REFINED_LEVELS}", weights_of="pac-hi"))
TINY_REFINED = {**TINY, "refinements": ((0, 32), (1, 16))}
register(ModelSpec("tiny-pac-hi", "pac", _refined_builder("tiny-pac-hi", 1, TINY_REFINED),
                   "a tiny refined model for tests (no shipped weights)", internal=True))


@dataclass(frozen=True)
class ServingConfig:
    width: int = 160
    height: int = 200


class ServingModel(CodecModel):
    """Weights that serve the streams of other ids (pac-key as models[2], pac-ctx as
    models[3]) and code no frames themselves: integers a decoder reads, no transform."""

    family = "pac"
    codes_frames = False

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.height, self.width, 3)


class KeyReference(ServingModel):
    """pac-key: the reference frame that intra frames of format 3.x may be predicted
    from (pacodec/keyframe.py, formats/pcz.md §14.6).

    Not a transform: one H×W×3 uint8 frame, the per-pixel median of every frame of the
    training clips (``tools/make_key_reference.py``), learned from data and frozen into
    the weights like the refinement tables. The maze, its walls and the score labels
    are the same in every game, so an intra frame is mostly a copy of it; a decoder
    reads these integers, never a float."""

    def __init__(self, model_id: str, config: ServingConfig) -> None:
        super().__init__(model_id, config)
        self.register_buffer("frame", torch.zeros(config.height, config.width, 3, dtype=torch.uint8))

    def reference(self) -> np.ndarray:
        """The reference frame, H×W×3 uint8 (C-contiguous)."""
        return np.ascontiguousarray(self.frame.cpu().numpy())


register(ModelSpec("pac-key", "pac", lambda o: KeyReference("pac-key", config_from(ServingConfig, o)),
                   "ours: the learned reference frame that key frames of two-layer streams are "
                   "predicted from (used with pac-q6…q10, not on its own)", internal=True))


class SymbolModel(ServingModel):
    """pac-ctx: the integer network that gives the residual symbols of 4.x predicted
    frames their probabilities (pacodec/symbolnet.py, formats/pcz.md §14.7).

    Its tensors are the integer weights, biases and shifts of symbolnet.SymbolNet,
    trained with the symbols' code length as the loss on the training clips and
    quantized (``tools/train_symbol_model.py``); a decoder computes only integers."""

    def __init__(self, model_id: str, config: ServingConfig) -> None:
        super().__init__(model_id, config)
        from ..symbolnet import ALPHABET, SHAPES

        inputs, hidden = SHAPES[model_id]
        for name, shape in (("W1", (inputs, hidden)), ("b1", (hidden,)), ("W2", (hidden, hidden)),
                            ("b2", (hidden,)), ("W3", (hidden, ALPHABET)), ("b3", (ALPHABET,)), ("S", (3,))):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.int32))

    def network(self):
        """The integer network (symbolnet.SymbolNet) these weights hold."""
        from ..symbolnet import SymbolNet

        return SymbolNet({name: getattr(self, name).cpu().numpy()
                          for name in ("W1", "b1", "W2", "b2", "W3", "b3", "S")}, self.model_id)


class SymbolChoiceModel(SymbolModel):
    """pac-ctx3: pac-ctx2's network (the residual symbols, §14.9) and the network that
    gives 11.x predicted frames' 4×4 choices their probabilities (pacodec/choicenet.py,
    §14.13; tensors ``C_W1`` … ``C_S``), trained with the choices' code length as the
    loss (``tools/train_choice_model.py``)."""

    def __init__(self, model_id: str, config: ServingConfig) -> None:
        super().__init__(model_id, config)
        from ..choicenet import TENSORS

        for name, shape in TENSORS.items():
            self.register_buffer(name, torch.zeros(shape, dtype=torch.int32))

    def choice_network(self):
        """The integer choice network (choicenet.ChoiceNet) these weights hold."""
        from ..choicenet import TENSORS, ChoiceNet

        return ChoiceNet({name: getattr(self, name).cpu().numpy() for name in TENSORS})


register(ModelSpec("pac-ctx", "pac", lambda o: SymbolModel("pac-ctx", config_from(ServingConfig, o)),
                   "ours: the learned probability model of the residual symbols of predicted frames "
                   "in 4.x … 6.x files (used with pac-q6…q10, not on its own)", internal=True))
register(ModelSpec("pac-ctx2", "pac", lambda o: SymbolModel("pac-ctx2", config_from(ServingConfig, o)),
                   "ours: the learned probability model of the residual symbols of predicted frames "
                   "in 7.x files: wider features, 64 hidden units (used with pac-q6…q10, not on its own)",
                   internal=True))
register(ModelSpec("pac-ctx3", "pac", lambda o: SymbolChoiceModel("pac-ctx3", config_from(ServingConfig, o)),
                   "ours: the learned probability models of predicted frames in 11.x files: pac-ctx2's "
                   "for the residual symbols and one for the 4×4 blocks' choices (used with pac-q6…q10, "
                   "not on its own)", internal=True))
