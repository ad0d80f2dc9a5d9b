"""The workshop's convolutional autoencoders: conv4, conv5 (and a tiny one for tests).

Down path: per stage Conv3x3-BN-ReLU-Conv3x3(stride 2)-BN-ReLU, doubling channels.
Up path: the mirror, with a stride-2 transposed convolution opening each stage.
A 200×160 frame becomes 128×13×10 codes after four stages (conv4) and 256×7×5
after five (conv5). The last encoder activation is a sigmoid rather than the
workshop's ReLU, so codes lie in [0, 1] and the ``naive`` ×255 quantizer is exact
up to rounding instead of wrapping values above 1.

conv5 trains from conv4: ``tools/deepen_conv.py`` renames conv4's up-path stages to
conv5's numbering (the up path counts from the code outwards), and ``--init`` then
leaves only conv5's extra innermost stage to learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import CodecModel, ModelSpec, config_from, register


@dataclass(frozen=True)
class ConvConfig:
    width: int = 160
    height: int = 200
    channels: tuple[int, ...] = (16, 32, 64, 128)


def _stride2_size(size: int) -> int:
    # Conv3x3, stride 2, padding 1.
    return (size - 1) // 2 + 1


def _down_stage(cin: int, cout: int, last: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout),
        nn.Sigmoid() if last else nn.ReLU(inplace=True),
    )


def _up_stage(cin: int, cout: int, output_padding: tuple[int, int], last: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, cin, 3, stride=2, padding=1, output_padding=output_padding),
        nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
    ]
    if last:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.Sigmoid()]
    else:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ConvAutoencoder(CodecModel):
    """conv4 / conv5: codes C×h×w in [0, 1]."""

    family = "conv"
    code_range = (0.0, 1.0)

    def __init__(self, model_id: str, config: ConvConfig) -> None:
        super().__init__(model_id, config)
        chans = list(config.channels)
        sizes = [(config.height, config.width)]
        for _ in chans:
            h, w = sizes[-1]
            sizes.append((_stride2_size(h), _stride2_size(w)))
        self._code_shape = (chans[-1], *sizes[-1])
        ins = [3, *chans[:-1]]
        self.down = nn.Sequential(
            *[_down_stage(i, o, last=k == len(chans) - 1) for k, (i, o) in enumerate(zip(ins, chans))]
        )
        ups = []
        for k in reversed(range(len(chans))):
            (h_out, w_out), (h_in, w_in) = sizes[k], sizes[k + 1]
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            ups.append(_up_stage(chans[k], ins[k], pad, last=k == 0))
        self.up = nn.Sequential(*ups)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self._code_shape

    def analysis(self, images: torch.Tensor) -> torch.Tensor:
        return self.down(images)  # (N, C, h, w)

    def synthesis(self, codes: torch.Tensor) -> torch.Tensor:
        return self.up(codes)  # (N, 3, H, W)


def _conv_builder(model_id: str, defaults: dict[str, Any]):
    def build(overrides: dict[str, Any] | None) -> CodecModel:
        return ConvAutoencoder(model_id, config_from(ConvConfig, {**defaults, **(overrides or {})}))

    return build


register(ModelSpec("conv4", "conv", _conv_builder("conv4", {"channels": (16, 32, 64, 128)}),
                   "workshop conv4: 4 stages 16-32-64-128, codes 128x13x10 in [0,1]"))
register(ModelSpec("conv5", "conv", _conv_builder("conv5", {"channels": (16, 32, 64, 128, 256)}),
                   "workshop conv5: 5 stages to 256 channels, codes 256x7x5 in [0,1]"))
register(ModelSpec("tiny-conv", "conv", _conv_builder("tiny-conv", {"channels": (4, 8)}),
                   "a tiny two-stage model for tests (no shipped weights)", internal=True))
