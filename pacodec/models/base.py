"""The model contract and the registry (DESIGN.md, "Models and quantizers").

A model is registered under a stable id and exposes its native geometry, its code
shape, ``encode(frames) -> codes`` and ``decode(codes) -> frames``, and its config, so
that weights carry their own architecture. Training uses ``forward`` and ``loss``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InputError, WeightsError


def frames_to_tensor(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """N×H×W×3 uint8 RGB frames to an N×3×H×W float32 tensor in [0, 1].

    The channel axis is moved, not reshaped: the workshop's loader reshaped HWC to
    CHW without transposing, which scrambles pixels across channels.
    """
    if frames.ndim == 3:
        frames = frames[None]
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """N×3×H×W float tensor in [0, 1] to N×H×W×3 uint8 RGB frames (rounded, clamped)."""
    images = images.detach().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


class CodecModel(nn.Module):
    """Base of every registered model.

    Subclasses set ``family``, build their layers from ``config`` and implement
    ``analysis`` (N×3×H×W in [0,1] -> N×code_shape) and ``synthesis`` (the mirror).
    """

    family: ClassVar[str] = ""
    #: Codes stay in this closed range (e.g. (0, 1) after a sigmoid), or None.
    code_range: ClassVar[tuple[float, float] | None] = None

    def __init__(self, model_id: str, config: Any) -> None:
        super().__init__()
        self.model_id = model_id
        self.config = config

    # -- geometry -------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.config.width)

    @property
    def height(self) -> int:
        return int(self.config.height)

    @property
    def code_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def code_entries(self) -> int:
        return int(np.prod(self.code_shape))

    # -- the two halves -------------------------------------------------------
    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synthesis(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.analysis(images)
        return self.synthesis(codes), codes

    def criterion(self, images: torch.Tensor, outputs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of ``forward``'s outputs on a batch; MSE unless a family says otherwise."""
        recon = outputs[0]
        mse = torch.mean((recon - images) ** 2)
        return mse, {"mse": float(mse.detach())}

    def loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch N×3×H×W in [0, 1]."""
        return self.criterion(images, self(images))

    # -- the codec-facing API (numpy in, numpy out) ---------------------------
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """N×H×W×3 uint8 frames at the native geometry -> N×code_shape float32 codes."""
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3):
            raise InputError(
                f"{self.model_id} codes {self.width}x{self.height} frames, got "
                f"{frames.shape[2]}x{frames.shape[1]}"
            )
        self.eval()
        codes = self.analysis(frames_to_tensor(frames, self._device()))
        return codes.float().cpu().numpy().reshape((len(frames), *self.code_shape))

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """N×code_shape float32 codes -> N×H×W×3 uint8 frames."""
        codes = np.asarray(codes, dtype=np.float32).reshape((-1, *self.code_shape))
        self.eval()
        images = self.synthesis(torch.from_numpy(codes).to(self._device()))
        return tensor_to_frames(images)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


@dataclass(frozen=True)
class ModelSpec:
    """How to build a registered model: its id, family, class and default config."""

    model_id: str
    family: str
    build: Callable[[dict[str, Any] | None], CodecModel]
    description: str
    #: Store weights as float16 (compact variants); compute stays float32.
    half_precision: bool = False
    #: The id whose trained weights this id uses (one network serving several ids,
    #: e.g. pac-q1…q5 are quality levels of "pac"); None means its own.
    weights_of: str | None = None
    #: Not for coding with: a network trained under this id and used through others
    #: (pac, pac-hi, pac-res), or a test model (tiny-*). ``pacodec models`` lists
    #: internal ids only with ``--all``.
    internal: bool = False


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.model_id in REGISTRY:
        raise ValueError(f"model id registered twice: {spec.model_id}")
    REGISTRY[spec.model_id] = spec
    return spec


def build_model(model_id: str, config: dict[str, Any] | None = None) -> CodecModel:
    """A freshly initialised model of a registered id (config overrides its defaults)."""
    from . import _load_families

    _load_families()
    try:
        spec = REGISTRY[model_id]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise WeightsError(f"unknown model id {model_id!r} (known: {known})") from None
    return spec.build(config)


def config_from(cls: type, overrides: dict[str, Any] | None) -> Any:
    """Build a config dataclass from its defaults plus JSON overrides (unknown keys refused)."""
    if not overrides:
        return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise WeightsError(f"unknown config keys for {cls.__name__}: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls(**values)
