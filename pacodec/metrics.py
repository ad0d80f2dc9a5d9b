"""Quality measures, defined once (DESIGN.md, "Measuring").

PSNR is per frame on RGB uint8 with peak 255 (scikit-image's
``peak_signal_noise_ratio``, ``data_range=255``), averaged over frames; a frame with
zero error counts as 100 dB. SSIM is scikit-image's ``structural_similarity`` with
``channel_axis=2, data_range=255``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PERFECT_PSNR_DB = 100.0


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of one H×W×3 uint8 frame against its reference (scikit-image's, with
    a frame of zero error counted as 100 dB instead of infinity, so averages stay finite)."""
    from skimage.metrics import peak_signal_noise_ratio

    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {test.shape}")
    if np.array_equal(reference, test):
        return PERFECT_PSNR_DB
    return float(peak_signal_noise_ratio(reference, test, data_range=255))


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """SSIM of one H×W×3 uint8 frame against its reference."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(reference, test, channel_axis=2, data_range=255))


@dataclass
class Quality:
    """Averages over a sequence of frame pairs."""

    frames: int
    psnr_db: float
    ssim: float
    ssim_every: int

    def as_dict(self) -> dict[str, float | int]:
        return {"frames": self.frames, "psnr": self.psnr_db, "ssim": self.ssim,
                "ssim_every": self.ssim_every}


def compare(pairs: Iterable[tuple[np.ndarray, np.ndarray]], *, ssim_every: int = 1) -> Quality:
    """Average PSNR over every pair and SSIM over every ``ssim_every``-th pair."""
    psnrs: list[float] = []
    ssims: list[float] = []
    for i, (reference, test) in enumerate(pairs):
        psnrs.append(psnr(reference, test))
        if i % ssim_every == 0:
            ssims.append(ssim(reference, test))
    if not psnrs:
        raise ValueError("no frames to compare")
    return Quality(len(psnrs), float(np.mean(psnrs)), float(np.mean(ssims)), ssim_every)
