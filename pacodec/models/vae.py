"""The workshop's variational autoencoder (``vae``) and a compact one (``vae-compact``).

Encoder: conv4's down path (pacodec/models/conv.py: four Conv-BN-ReLU stages
16-32-64-128, so a 200×160 frame becomes 128×13×10 = 16,640 values), flattened, then
fully connected layers to μ and log σ² (z = 2,048 for ``vae``). Decoder:
Linear(z→16,640) and a sigmoid (conv4's code range), reshaped to 128×13×10, then
conv4's up path to a 3×200×160 picture in [0, 1].

Training reparameterises, z = μ + σ·ε with ε ~ N(0, I), and minimises BCE + KL:
the binary cross-entropy of the picture summed over its 96,000 values plus
KL(N(μ, σ²) ‖ N(0, I)) = −½·Σ(1 + log σ² − μ² − σ²) summed over z, both averaged over
the batch and divided by 96,000 (the same optimum as the textbook sum, readable
numbers in the log). In eval mode (validation loss) the reconstruction uses z = μ.

Coding a file is deterministic: ``analysis`` returns μ, ``synthesis`` decodes it; σ is
not stored. μ is unbounded (``code_range`` None), so the quantizers for the VAE are
none, scale and kmeans, not naive.

``vae`` holds ≈ 102 M parameters (410 MB in float32, mostly the three 16,640×2,048
matrices); it is built on the meta device until materialized or loaded (see
pacodec/models/fc.py, "Size"). ``vae-compact`` factorises those matrices: a 1×1
convolution first mixes the 128 channels down to 16 (16×13×10 = 2,080 values), then
Linear(2,080→2·512) gives μ and log σ² for z = 512; the decoder mirrors it
(Linear(512→2,080), 1×1 convolution 16→128, sigmoid). About 3.8 M parameters, 7.6 MB
in float16. Its down and up paths have conv4's names, so ``--init
pacodec/weights/conv4.safetensors`` starts it from the shipped conv4.

``vae-compact`` is a β-VAE with β = 0.01 (the KL term weighted by 0.01). At β = 1 and
z = 512 the KL term wins: trained so, it carried about 100 nats (150 bits) a frame
of clip8 and clip9 in about 200 of its 512 dimensions and reached 24.7 dB on clip9;
at β = 0.01 from random linear layers, 26.0 dB after 40 epochs.

Closed-form start (``pacodec train … --pca``, :meth:`VAE.pca_init`): with the conv
paths taken from conv4 (``--init``), the linear layers around the code start as the
best linear bottleneck on conv4's features: μ = their top z principal components,
each divided by its standard deviation (the prior's unit variance), log σ² = log 0.01,
and the decoder's Linear the least-squares map from μ back to the logits the up
path's sigmoid expects (for ``vae-compact`` the 1×1 reduction first takes the top 16
principal directions of the 128 channels, and the 1×1 expansion is the least-squares
map from them back to the logits). ``vae-compact`` measures 27.9 dB on clip9 from
that start alone and 28.6 dB after 3 epochs at β = 0.01, lr 1e-4: the z = 512
bottleneck was never what held it at 26.0 dB; the optimisation was. The workshop's
``vae`` (z = 2,048, β = 1 as it was trained) measures 29.7 dB from the start and
27.5 dB after 3 epochs at lr 1e-4 (the KL term at β = 1 trades detail for a code
closer to the prior; the workshop reported 27.4 on its own test frames).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import CodecModel, ModelSpec, config_from, register
from .conv import _down_stage, _stride2_size, _up_stage
from .fc import LAZY_PARAMETERS, LazyMixin


@dataclass(frozen=True)
class VAEConfig:
    width: int = 160
    height: int = 200
    channels: tuple[int, ...] = (16, 32, 64, 128)  # conv4's stages
    z: int = 2048
    reduce: int | None = None  # 1×1 conv to this many channels before the Linear layers
    beta: float = 1.0  # weight of the KL term (1: the textbook VAE; below 1: a β-VAE)


def _geometry(config: VAEConfig) -> tuple[list[tuple[int, int]], int]:
    sizes = [(config.height, config.width)]
    for _ in config.channels:
        h, w = sizes[-1]
        sizes.append((_stride2_size(h), _stride2_size(w)))
    h, w = sizes[-1]
    flat_channels = config.reduce or config.channels[-1]
    return sizes, flat_channels * h * w


def conv_path_parameters(config: VAEConfig) -> int:
    """Parameters of conv4's down and up paths with ``config.channels`` (BN included)."""
    chans = list(config.channels)
    ins = [3, *chans[:-1]]
    total = 0
    for k, (i, o) in enumerate(zip(ins, chans)):
        total += (9 * i * o + o) + 2 * o + (9 * o * o + o) + 2 * o  # down stage
        last = k == 0
        total += (9 * o * o + o) + 2 * o + (9 * o * i + i) + (0 if last else 2 * i)  # up stage
    return total


def parameter_count(config: VAEConfig) -> int:
    """Parameters of a VAE with ``config``, computed without building it."""
    _, flat = _geometry(config)
    total = conv_path_parameters(config)
    total += 2 * (flat * config.z + config.z)  # μ and log σ²
    total += config.z * flat + flat  # decoder Linear
    if config.reduce:
        c, r = config.channels[-1], config.reduce
        total += (c * r + r) + (r * c + c)
    return total


class VAE(LazyMixin, CodecModel):
    family = "vae"
    code_range = None  # μ is unbounded

    def __init__(self, model_id: str, config: VAEConfig) -> None:
        super().__init__(model_id, config)
        chans = list(config.channels)
        sizes, flat = _geometry(config)
        self._latent_shape = (config.reduce or chans[-1], *sizes[-1])
        ins = [3, *chans[:-1]]
        lazy = parameter_count(config) > LAZY_PARAMETERS
        with torch.device("meta") if lazy else nullcontext():
            self.down = nn.Sequential(
                *[_down_stage(i, o, last=k == len(chans) - 1) for k, (i, o) in enumerate(zip(ins, chans))])
            ups = []
            for k in reversed(range(len(chans))):
                (h_out, w_out), (h_in, w_in) = sizes[k], sizes[k + 1]
                ups.append(_up_stage(chans[k], ins[k], (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1)),
                                     last=k == 0))
            self.up = nn.Sequential(*ups)
            if config.reduce:
                self.reduce = nn.Conv2d(chans[-1], config.reduce, 1)
                self.expand = nn.Conv2d(config.reduce, chans[-1], 1)
            self.mu = nn.Linear(flat, config.z)
            self.logvar = nn.Linear(flat, config.z)
            self.fc_dec = nn.Linear(config.z, flat)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.config.z,)

    def _moments(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.down(images)
        if self.config.reduce:
            h = self.reduce(h)
        h = h.flatten(1)
        return self.mu(h), self.logvar(h)

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        return self._moments(images)[0]  # μ: coding is deterministic

    def synthesis(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.fc_dec(codes.reshape(-1, self.config.z)).reshape(-1, *self._latent_shape)
        h = self.expand(h) if self.config.reduce else h
        return self.up(torch.sigmoid(h))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self._moments(images)
        if self.training:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return self.synthesis(z), mu, logvar

    has_pca_start = True  # pca_init fits every VAE (--init the conv paths first)

    @torch.no_grad()
    def pca_init(self, frames: Any, batch: int = 64) -> str:
        """Set the linear layers around the code to the closed-form start on ``frames``
        (N×H×W×3 uint8), keeping the conv paths as they are (``--init`` them first,
        e.g. from conv4): μ = the top z principal components of the encoder's features,
        each divided by its standard deviation (so μ starts with the prior's unit
        variance); log σ² = log 0.01 everywhere; the decoder's Linear = the least-squares
        map from μ back to the logits the up path's sigmoid expects (for ``vae-compact``
        first the 1×1 reduction = the top principal directions of the 128 channels and
        its expansion = the least-squares map back to the logits). Returns a summary."""
        from ..errors import InputError
        from .base import frames_to_tensor

        if len(frames) < 2:
            raise InputError("--pca needs at least 2 training frames")
        was_training = self.training
        self.eval()  # BatchNorm's running statistics, as when coding
        device = next(self.parameters()).device
        feats = torch.cat([self.down(frames_to_tensor(frames[i:i + batch], device)).double().cpu()
                           for i in range(0, len(frames), batch)])
        logits = torch.logit(feats.clamp(1e-4, 1 - 1e-4))
        n = feats.shape[0]
        if self.config.reduce:
            c = feats.shape[1]
            pixels = feats.permute(0, 2, 3, 1).reshape(-1, c)
            centre = pixels.mean(0)
            _, vectors = torch.linalg.eigh((pixels - centre).T @ (pixels - centre))
            proj = vectors.flip(1)[:, :self.config.reduce].T  # reduce × c
            self.reduce.weight.copy_(proj[:, :, None, None].to(self.reduce.weight))
            self.reduce.bias.copy_((-proj @ centre).to(self.reduce.bias))
            reduced = (pixels - centre) @ proj.T  # (n·h·w) × reduce
            target = logits.permute(0, 2, 3, 1).reshape(-1, c)
            design = torch.cat([reduced, torch.ones(len(reduced), 1, dtype=reduced.dtype)], 1)
            solution = torch.linalg.lstsq(design, target).solution  # (reduce+1) × c
            self.expand.weight.copy_(solution[:-1].T[:, :, None, None].to(self.expand.weight))
            self.expand.bias.copy_(solution[-1].to(self.expand.bias))
            h, w = feats.shape[2:]
            flat = reduced.reshape(n, h, w, -1).permute(0, 3, 1, 2).reshape(n, -1)
            decoded = flat  # the decoder's Linear feeds the expansion
            del pixels, reduced, target, design
        else:
            flat = feats.flatten(1)
            decoded = logits.flatten(1)  # the decoder's Linear feeds the sigmoid
        mean = flat.mean(0)
        centred = flat - mean
        eig, vecs = torch.linalg.eigh(centred @ centred.T)  # n×n: n < features
        eig, vecs = eig.flip(0), vecs.flip(1)
        z = self.config.z
        keep = min(z, int((eig > eig[0] * 1e-10).sum()))
        comps = torch.zeros(z, flat.shape[1], dtype=torch.float64)
        comps[:keep] = (vecs[:, :keep].T @ centred) / eig[:keep, None].sqrt()  # orthonormal rows
        std = torch.ones(z, dtype=torch.float64)
        std[:keep] = (eig[:keep] / n).sqrt()
        weight = comps / std[:, None]
        self.mu.weight.copy_(weight.to(self.mu.weight))
        self.mu.bias.copy_((-weight @ mean).to(self.mu.bias))
        self.logvar.weight.zero_()
        self.logvar.bias.fill_(math.log(0.01))
        codes = centred @ weight.T  # n×z, columns orthogonal with mean square 1 (or 0)
        out_mean = decoded.mean(0)
        self.fc_dec.weight.copy_(((decoded - out_mean).T @ codes / n).to(self.fc_dec.weight))
        self.fc_dec.bias.copy_(out_mean.to(self.fc_dec.bias))
        self.train(was_training)
        return f"principal components of {n} frames' features: {keep} of z = {z}"

    def criterion(self, images: torch.Tensor, outputs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        recon, mu, logvar = outputs
        n = images.shape[0]
        values = images[0].numel()
        bce = F.binary_cross_entropy(recon, images, reduction="sum") / (n * values)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / (n * values)
        with torch.no_grad():
            mse = torch.mean((recon - images) ** 2)
        return bce + self.config.beta * kl, {"bce": float(bce.detach()), "kl": float(kl.detach()), "mse": float(mse)}


def _builder(model_id: str, defaults: dict[str, Any]):
    def build(overrides: dict[str, Any] | None) -> CodecModel:
        return VAE(model_id, config_from(VAEConfig, {**defaults, **(overrides or {})}))

    return build


register(ModelSpec("vae", "vae", _builder("vae", {}),
                   "workshop VAE: conv4 down path, FC to mu/log-var (z=2048), BCE+KL; codes = mu "
                   "(weights not shipped)"))
register(ModelSpec("vae-compact", "vae", _builder("vae-compact", {"z": 512, "reduce": 16, "beta": 0.01}),
                   "compact beta-VAE: conv4 paths, 1x1 conv 128->16 then FC to mu/log-var (z=512), KL weight 0.01; "
                   "codes = mu, float16 weights", half_precision=True))

__all__ = ["VAE", "VAEConfig", "parameter_count"]
