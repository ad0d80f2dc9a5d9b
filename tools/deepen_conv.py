"""Start a deeper convolutional autoencoder from a shallower one's weights.

    python tools/deepen_conv.py pacodec/weights/conv4.safetensors conv4-for-conv5.safetensors
    pacodec train conv5 --init conv4-for-conv5.safetensors ...

conv5 is conv4 with one more stage at the bottom (models/conv.py). Its down path has
conv4's names for the four shared stages (``down.0`` … ``down.3``), but its up path is
numbered from the code outwards, so conv4's ``up.k`` is conv5's ``up.(k+1)``. This
writes conv4's tensors under conv5's names; ``--init`` then copies every tensor whose
name and shape fit, leaving only the new stage (``down.4``, ``up.0``) to learn.
"""

from __future__ import annotations

import argparse
import re
import sys

from safetensors.torch import load_file, save_file


def deepen(tensors: dict, stages: int = 1) -> dict:
    """Rename ``up.k.*`` to ``up.(k+stages).*``; other names are kept."""
    def rename(name: str) -> str:
        m = re.match(r"up\.(\d+)\.(.*)", name)
        return f"up.{int(m.group(1)) + stages}.{m.group(2)}" if m else name

    return {rename(k): v for k, v in tensors.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--stages", type=int, default=1, help="stages the deeper model adds")
    args = parser.parse_args(argv)
    save_file(deepen(load_file(args.source), args.stages), args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
