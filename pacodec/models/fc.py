"""The workshop's fully connected block autoencoders (vanilla, multilayer) and compact ones.

Block tiling (formats/pcz.md, section 11 "Block tiling")
    A 200×160 frame (rows × columns) is cut into a 4×4 grid of blocks of 50 rows ×
    40 columns, numbered row-major: block k covers rows 50·(k // 4) … 50·(k // 4) + 49
    and columns 40·(k % 4) … 40·(k % 4) + 39. Inside a block the 6,000 values are
    flattened channel-first (3×50×40); that order is internal to the model. Codes have
    ``code_shape`` (16, code): row k is block k's code, so a frame's codes are the
    blocks' codes concatenated in block order. :func:`tile` and :func:`untile` are the
    only place this order is written down; callers never see blocks.

Families
    vanilla-fc-1000 / -500      16 per-block models: Linear(6000→code)+act / Linear(code→6000)
    multilayer-fc-1000 / -500   16 per-block models: 6000→3200→1600→code, mirrored, ReLU between
    vanilla-fc-compact          ONE block model shared by all 16 blocks (code 256), plus a
    multilayer-fc-compact       learned per-block code bias (16×code) and per-block output
                                bias (16×6000: the block's mean picture, the static maze),
                                stored in float16: under 10 MB each. The multilayer one
                                adds two residual layers (256→256→256, ReLU between,
                                x + f(x)) after its encoder's 6000→256 layer and two before
                                its decoder's 256→6000 layer. Its first design (6000→320→
                                256→256 with ReLUs, the workshop's shape narrowed to fit
                                10 MB) trained to 25.8 dB on clip9: a 320-wide ReLU layer
                                right after the input discards what the code needs. The
                                residual layers start at zero, so ``--init`` from
                                vanilla-fc-compact's weights starts it at that model.

Code activation
    Compact models: a sigmoid on the code and on the output. The ``naive`` quantizer
    stores round(255·c) as uint8 and clips to 0…255, so codes must lie in [0, 1]: a
    ReLU code is unbounded above and everything above 1 is clipped (the workshop's "by
    statistical observation … between zero and one" was luck). With a sigmoid the only
    loss is rounding, an error of at most 1/510 per entry.

    Workshop-size models (config ``linear``): the workshop's ReLU code capped at 1,
    i.e. clamp(·, 0, 1) (what its ReLU plus naive's clipping computed anyway), and a
    linear output layer, Linear(code→6000) as the workshop wrote it (``synthesis``
    clamps pixels to [0, 1]). Inside the clamp such a model is a linear autoencoder,
    whose best weights are known in closed form: the principal components of the
    training blocks. :meth:`FCAutoencoder.pca_init` (``pacodec train … --pca``) sets
    them, each component scaled so its training range fills the middle half of [0, 1]
    (room for frames twice as far out; naive still has 128 levels across it) and, for
    the multilayer models, carried through the hidden ReLU layers with an offset that
    keeps it positive (extra hidden units start with zero outgoing weights, so the
    function is exactly the PCA one and Adam can still use them). Trained so on clips 0, 4–7 and three Atari recordings
    (``benchmarks/results/seed_table.md``), vanilla-fc-1000 reconstructs clip9 at
    35.2 dB and vanilla-fc-500 at 33.8 (naive: −0.07 and −0.04 dB), the workshop's
    own 34–36 dB; the same models trained from random weights with Adam, sigmoid
    codes and outputs, had reached 29.8 and 28.4 dB after 10–54 epochs a block:
    gradient descent from random weights on 12 M parameters a block and 3,000 frames
    had not found what one SVD finds. From the PCA start, Adam does not help either:
    three epochs at lr 1e-5 on block 5 cut its training loss 4× and left its
    validation loss (clip8) where it was (1.8158e-4 at the start, epoch 0 of the
    run's log, and 1.8163e-4 after). A multilayer model so started computes
    exactly its vanilla twin's function (the seed table shows equal PSNR).
    tests/test_zoo_families.py checks the code range and that a PCA-initialised model
    reconstructs like the projection it encodes.

Size and training one block at a time
    vanilla-fc-1000 holds 16 × (6000·1000·2) ≈ 192 M parameters (768 MB in float32),
    multilayer-fc-1000 ≈ 829 M (3.3 GB): they never ship, and are never allocated just
    to be listed. A workshop-size model is built on the ``meta`` device (shapes only,
    no memory) unless its ``blocks`` config names a subset; ``materialize()`` allocates
    and initialises it (the training loop calls it), and loading weights assigns the
    loaded tensors directly.

    ``pacodec train vanilla-fc-1000 --block K`` trains only block K's sub-model (config
    ``blocks: [K]``; its loss is the MSE of block K of every frame), so memory is one
    block's: 12 M parameters for vanilla-fc-1000, 52 M for multilayer-fc-1000. It
    writes the shard ``<id>.blockKK.safetensors`` and ``<id>.blockKK.json`` (its
    training facts) in the output folder; when all 16 shards are there,
    :func:`assemble_blocks` joins them into ``<id>.safetensors`` with a manifest entry.
    Sixteen processes (or machines, then copy the shards together) can train the 16
    blocks in parallel into one folder: checkpoints and logs are named per block.
    Training the whole model at once (no ``--block``) also works where memory allows.
"""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, WeightsError
from .base import CodecModel, ModelSpec, config_from, register

GRID = 4  # blocks per row and per column
BLOCKS = GRID * GRID
BLOCK_ROWS, BLOCK_COLS = 50, 40
BLOCK_VALUES = 3 * BLOCK_ROWS * BLOCK_COLS  # 6,000
#: Models with more parameters than this are built on the meta device until materialized.
LAZY_PARAMETERS = 20_000_000


def tile(images: torch.Tensor) -> torch.Tensor:
    """N×3×200×160 images -> N×16×6000 blocks, block k = rows 50·(k//4)…, cols 40·(k%4)…"""
    n, c, h, w = images.shape
    if (c, h, w) != (3, GRID * BLOCK_ROWS, GRID * BLOCK_COLS):
        raise InputError(f"block models code 3×200×160 images, got {c}×{h}×{w}")
    x = images.reshape(n, 3, GRID, BLOCK_ROWS, GRID, BLOCK_COLS)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, BLOCKS, BLOCK_VALUES)


def untile(blocks: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`tile`: N×16×6000 -> N×3×200×160."""
    n = blocks.shape[0]
    x = blocks.reshape(n, GRID, GRID, 3, BLOCK_ROWS, BLOCK_COLS).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, 3, GRID * BLOCK_ROWS, GRID * BLOCK_COLS)


@dataclass(frozen=True)
class FCConfig:
    width: int = 160
    height: int = 200
    code: int = 1000  # code entries per block
    hidden: tuple[int, ...] = ()  # encoder widths between 6000 and the code (decoder mirrors)
    shared: bool = False  # one block model for all 16 blocks (+ per-block biases)
    residual: int = 0  # residual layers code→code→code after the encoder and before the decoder
    blocks: tuple[int, ...] | None = None  # the blocks this instance holds (None: all 16)
    linear: bool = False  # code clamp(·, 0, 1) and a linear output (workshop sizes), else sigmoids


def parameter_count(config: FCConfig) -> int:
    """Parameters of a model with ``config``, computed without building it."""
    widths = [BLOCK_VALUES, *config.hidden, config.code]
    one = sum(2 * a * b + a + b for a, b in zip(widths[:-1], widths[1:]))  # enc + dec layers
    one += 2 * config.residual * 2 * (config.code * config.code + config.code)
    if config.shared:
        return one + BLOCKS * (config.code + BLOCK_VALUES)
    held = BLOCKS if config.blocks is None else len(config.blocks)
    return held * one


def _mlp(widths: list[int], last: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(last if i == len(widths) - 2 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + Linear(ReLU(Linear(x))), the second layer starting at zero: an identity at
    first, so a model with residual layers can start from one without them."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Linear(width, width)
        self.outer = nn.Linear(width, width)
        self.zero_outer()

    def zero_outer(self) -> None:
        with torch.no_grad():
            self.outer.weight.zero_()
            self.outer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(torch.relu(self.inner(x)))


class BlockAutoencoder(nn.Module):
    """One block's encoder (6000 → … → code [→ residual layers], sigmoid) and decoder
    ([residual layers →] code → … → 6000, sigmoid)."""

    def __init__(self, code: int, hidden: tuple[int, ...], residual: int = 0) -> None:
        super().__init__()
        widths = [BLOCK_VALUES, *hidden, code]
        # The code and output layers end in a sigmoid, applied by the owner (so the
        # shared model can add its per-block biases before it).
        self.encoder = _mlp(widths, nn.Identity())
        self.decoder = _mlp(widths[::-1], nn.Identity())
        self.encoder_residual = nn.Sequential(*[Residual(code) for _ in range(residual)])
        self.decoder_residual = nn.Sequential(*[Residual(code) for _ in range(residual)])

    def encode(self, blocks: torch.Tensor) -> torch.Tensor:
        return self.encoder_residual(self.encoder(blocks))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_residual(codes))


class LazyMixin:
    """Build big models on the meta device; ``materialize`` allocates, loading assigns."""

    def _params_are_meta(self) -> bool:
        return any(p.is_meta for p in self.parameters())  # type: ignore[attr-defined]

    def materialize(self, device: torch.device | str = "cpu") -> None:
        """Allocate and initialise parameters built on the meta device (no-op otherwise)."""
        if not self._params_are_meta():
            return
        self.to_empty(device=device)  # type: ignore[attr-defined]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():  # type: ignore[attr-defined]
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):  # type: ignore[override]
        # Loading into meta parameters must take the loaded tensors themselves.
        return super().load_state_dict(state_dict, strict=strict,  # type: ignore[misc]
                                       assign=assign or self._params_are_meta())


class FCAutoencoder(LazyMixin, CodecModel):
    """Block models: per-block (workshop) or one shared block model (compact)."""

    family = "fc"
    code_range = (0.0, 1.0)

    def __init__(self, model_id: str, config: FCConfig) -> None:
        super().__init__(model_id, config)
        if (config.width, config.height) != (GRID * BLOCK_COLS, GRID * BLOCK_ROWS):
            raise WeightsError(f"{model_id}: block models code 160x200 frames")
        held = tuple(range(BLOCKS)) if config.blocks is None else tuple(config.blocks)
        if not held or len(set(held)) != len(held) or not all(0 <= k < BLOCKS for k in held):
            raise InputError(f"{model_id}: blocks must be distinct numbers 0..15, got {list(held)}")
        if config.shared and config.blocks is not None:
            raise InputError(f"{model_id}: one shared block model serves every block; "
                             "train it whole (no --block)")
        self.held = held
        lazy = parameter_count(config) > LAZY_PARAMETERS
        with torch.device("meta") if lazy else nullcontext():
            if config.shared:
                self.shared = BlockAutoencoder(config.code, config.hidden, config.residual)
                self.code_bias = nn.Parameter(torch.zeros(BLOCKS, config.code))
                self.output_bias = nn.Parameter(torch.zeros(BLOCKS, BLOCK_VALUES))
            else:
                # Keyed by block number, so a one-block shard's tensors have the same
                # names as in the whole model (blocks.b05.encoder.0.weight, …).
                self.blocks = nn.ModuleDict(
                    {f"b{k:02d}": BlockAutoencoder(config.code, config.hidden, config.residual)
                     for k in held})

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for module in self.modules():
            if isinstance(module, Residual):
                module.zero_outer()
        if self.config.shared:
            with torch.no_grad():
                self.code_bias.zero_()
                self.output_bias.zero_()

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (len(self.held), self.config.code)

    # -- closed-form start --------------------------------------------------------
    @property
    def has_pca_start(self) -> bool:
        """Whether :meth:`pca_init` fits: per-block linear models (the workshop sizes)."""
        return self.config.linear and not self.config.shared

    @torch.no_grad()
    def pca_init(self, frames: np.ndarray, batch: int = 256) -> str:
        """Set every held block model to the principal components of that block in
        ``frames`` (N×200×160×3 uint8): the best linear autoencoder of its size, written
        as this model's layers (see "Code activation" above). Returns a one-line summary."""
        if not self.has_pca_start:
            raise InputError(f"{self.model_id}: --pca sets per-block linear models "
                             "(the workshop sizes), not this one")
        if len(frames) < 2:
            raise InputError("--pca needs at least 2 training frames")
        from .base import frames_to_tensor

        columns = [[] for _ in self.held]
        for start in range(0, len(frames), batch):
            blocks = tile(frames_to_tensor(frames[start:start + batch]))
            for i, k in enumerate(self.held):
                columns[i].append(blocks[:, k].double())
        widths = [BLOCK_VALUES, *self.config.hidden, self.config.code]
        kept = []
        for i, k in enumerate(self.held):
            x = torch.cat(columns[i])
            columns[i] = []
            mean = x.mean(0)
            x -= mean
            _, sv, vh = torch.linalg.svd(x, full_matrices=False)
            rank = int((sv > sv[0] * 1e-7).sum()) if len(sv) and sv[0] > 0 else 0
            comps = torch.zeros(widths[1], BLOCK_VALUES, dtype=torch.float64)
            use = min(rank, widths[1])
            comps[:use] = vh[:use]
            reach = (x @ comps.T).abs().amax(0) / 0.25  # training range -> 0.25 … 0.75
            scale = torch.where(reach > 0, 1.0 / reach.clamp_min(1e-12), torch.ones_like(reach))
            _set_pca(self.blocks[f"b{k:02d}"], comps, mean, scale, widths)
            kept.append(min(use, self.config.code))
        return (f"principal components of {len(frames)} frames: "
                f"{min(kept)}–{max(kept)} kept a block (code {self.config.code})")

    # -- blocks in, blocks out --------------------------------------------------
    def encode_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """N×B×6000 blocks (the held ones, in order) -> N×B×code codes in (0, 1)."""
        if self.config.shared:
            pre = self.shared.encode(blocks) + self.code_bias
        else:
            pre = torch.stack([self.blocks[f"b{k:02d}"].encode(blocks[:, i])
                               for i, k in enumerate(self.held)], dim=1)
        return pre.clamp(0.0, 1.0) if self.config.linear else torch.sigmoid(pre)

    def decode_blocks(self, codes: torch.Tensor) -> torch.Tensor:
        """N×B×code codes -> N×B×6000 blocks (in (0, 1) unless the model is ``linear``)."""
        if self.config.shared:
            pre = self.shared.decode(codes) + self.output_bias
        else:
            pre = torch.stack([self.blocks[f"b{k:02d}"].decode(codes[:, i])
                               for i, k in enumerate(self.held)], dim=1)
        return pre if self.config.linear else torch.sigmoid(pre)

    def _target(self, images: torch.Tensor) -> torch.Tensor:
        blocks = tile(images)
        return blocks if self.config.blocks is None else blocks[:, list(self.held)]

    # -- the contract -------------------------------------------------------------
    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_blocks(self._target(images))

    def synthesis(self, codes: torch.Tensor) -> torch.Tensor:
        if self.config.blocks is not None:
            raise InputError(f"{self.model_id}: this instance holds blocks {list(self.held)} only "
                             "(a training shard); assemble all 16 to decode frames")
        return untile(self.decode_blocks(codes.reshape(-1, *self.code_shape))).clamp(0.0, 1.0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.analysis(images)
        return self.decode_blocks(codes), codes  # blocks, so one-block shards train too

    def criterion(self, images: torch.Tensor, outputs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        mse = torch.mean((outputs[0] - self._target(images)) ** 2)
        return mse, {"mse": float(mse.detach())}


@torch.no_grad()
def _set_pca(model: BlockAutoencoder, comps: torch.Tensor, mean: torch.Tensor,
             scale: torch.Tensor, widths: list[int]) -> None:
    """Write PCA into one block model: ``comps`` (widths[1]×6000, orthonormal rows or
    zero), the block ``mean`` and a per-component ``scale`` (coefficient·scale lies in
    ±0.25 on the training blocks). Code entry j = 0.5 + scale_j·coef_j. Hidden layers
    carry each kept component as 1 + scale_j·coef_j (positive, so ReLU passes it)."""
    enc = [m for m in model.encoder if isinstance(m, nn.Linear)]
    dec = [m for m in model.decoder if isinstance(m, nn.Linear)]
    code = widths[-1]
    offset = 0.5 if len(enc) == 1 else 1.0

    def put(layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
        layer.weight.copy_(weight.to(layer.weight.dtype))
        layer.bias.copy_(bias.to(layer.bias.dtype))

    # Encoder: components (scaled, offset), then keep the first ones layer by layer.
    w0 = scale[:, None] * comps
    put(enc[0], w0, offset - w0 @ mean)
    for j, layer in enumerate(enc[1:], start=1):
        out, inp = widths[j + 1], widths[j]
        eye = torch.eye(out, inp, dtype=torch.float64)
        last = j == len(enc) - 1
        put(layer, eye, torch.full((out,), -0.5 if last else 0.0, dtype=torch.float64))
    # Decoder: widths reversed. Hidden layers carry the code's components as
    # 1 + scale·coef in their first ``code`` units; their other units keep their random
    # incoming weights, a bias of 1 (so they are alive), and send nothing on (zero
    # outgoing), so the function is PCA's and gradients still reach them.
    back = widths[::-1]
    for j, layer in enumerate(dec[:-1]):
        out, inp = back[j + 1], back[j]
        weight = layer.weight.double().clone()
        bias = layer.bias.double().clone()
        weight[:code] = 0.0
        weight[:code, :code] = torch.eye(code, dtype=torch.float64)
        bias[:code] = 0.5 if j == 0 else 0.0
        bias[code:] = 1.0  # alive (ReLU passes) whatever their random incoming weights
        if j > 0:
            weight[:, code:inp] = 0.0  # nothing from the previous layer's extra units yet
        put(layer, weight, bias)
    first = scale[:code]
    weight = torch.zeros(BLOCK_VALUES, back[-2], dtype=torch.float64)
    weight[:, :code] = comps[:code].T / first
    put(dec[-1], weight, mean - weight[:, :code] @ torch.full((code,), offset, dtype=torch.float64))


# -- one block at a time: shards and their assembly ---------------------------------
def shard_name(model_id: str, block: int) -> str:
    return f"{model_id}.block{block:02d}"


def assemble_blocks(out_dir: Path, model_id: str) -> dict[str, Any] | None:
    """Join ``<id>.block00 … block15.safetensors`` in ``out_dir`` into ``<id>.safetensors``
    and its manifest entry; None (and nothing written) while a shard is missing."""
    from safetensors.torch import load_file, save_file

    from .. import zoo

    out_dir = Path(out_dir)
    shards = [out_dir / f"{shard_name(model_id, k)}.safetensors" for k in range(BLOCKS)]
    facts = [out_dir / f"{shard_name(model_id, k)}.json" for k in range(BLOCKS)]
    if not all(p.is_file() for p in shards + facts):
        return None
    entries = [json.loads(p.read_text()) for p in facts]
    config = dict(entries[0]["config"])
    config["blocks"] = None
    tensors: dict[str, torch.Tensor] = {}
    for path in shards:
        tensors.update(load_file(str(path)))
    name = f"{model_id}.safetensors"
    tmp = out_dir / (name + ".partial")
    save_file(tensors, str(tmp), metadata={"model_id": model_id, "config": json.dumps(config)})
    tmp.replace(out_dir / name)
    del tensors
    training = dict(entries[0]["training"])
    training["epochs"] = min(int(e["training"]["epochs"]) for e in entries)
    training["blocks"] = {str(k): {"epochs": e["training"]["epochs"], "sha256": e["sha256"]}
                          for k, e in enumerate(entries)}
    training.pop("block", None)
    command = re.sub(r"--block \d+", "--block $k", training.get("command", ""))
    training["command"] = ("for k in $(seq 0 15); do " + command
                           + "; done  # one block at a time; the blocks may run in parallel")
    entry = {"id": model_id, "file": name, "sha256": zoo.sha256_of(out_dir / name),
             "family": entries[0].get("family", "fc"), "config": config, "training": training}
    zoo.write_manifest_entry(out_dir, entry)
    return entry


# -- the registry ---------------------------------------------------------------------
def _builder(model_id: str, defaults: dict[str, Any]):
    def build(overrides: dict[str, Any] | None) -> CodecModel:
        return FCAutoencoder(model_id, config_from(FCConfig, {**defaults, **(overrides or {})}))

    return build


WORKSHOP_HIDDEN = (3200, 1600)
COMPACT = {"code": 256, "shared": True}
COMPACT_RESIDUAL = 2

for _code in (1000, 500):
    register(ModelSpec(
        f"vanilla-fc-{_code}", "fc", _builder(f"vanilla-fc-{_code}", {"code": _code, "linear": True}),
        f"workshop vanilla FC: 16 block models 6000-{_code}-6000, codes 16x{_code} in [0,1] "
        "(train with --block K; weights not shipped)"))
    register(ModelSpec(
        f"multilayer-fc-{_code}", "fc",
        _builder(f"multilayer-fc-{_code}", {"code": _code, "hidden": WORKSHOP_HIDDEN, "linear": True}),
        f"workshop multilayer FC: 16 block models 6000-3200-1600-{_code} mirrored, codes 16x{_code} "
        "in [0,1] (train with --block K; weights not shipped)"))
register(ModelSpec(
    "vanilla-fc-compact", "fc", _builder("vanilla-fc-compact", dict(COMPACT)),
    "one shared 6000-256-6000 block model + per-block biases, codes 16x256 in [0,1], float16 weights",
    half_precision=True))
register(ModelSpec(
    "multilayer-fc-compact", "fc",
    _builder("multilayer-fc-compact", {**COMPACT, "residual": COMPACT_RESIDUAL}),
    "one shared block model 6000-256 + 2 residual 256-256-256 layers (mirrored) + per-block biases, "
    "codes 16x256 in [0,1], float16 weights; starts from vanilla-fc-compact (--init)", half_precision=True))

__all__ = ["FCAutoencoder", "FCConfig", "tile", "untile", "parameter_count", "assemble_blocks",
           "shard_name", "LazyMixin", "BLOCKS"]
