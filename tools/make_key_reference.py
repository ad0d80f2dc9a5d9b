"""Learn pac-key, the reference frame of 3.x key frames, and ship it with a manifest entry.

    python tools/make_key_reference.py [CLIPS...]

The reference is the per-pixel median (per channel, rounded down between the two
middle values) of every frame of the training clips (default: clip0, clip4, clip5,
clip6, clip7 of ../shared/data/pacman, never the validation or test clips): the maze,
its walls, the labels and the dots that most frames show. The median is the value
that minimises the summed absolute difference to the frames, which is what the
refinement layer pays for. The entry's figures are measured on the validation clip
(clip8): the bytes of its frames 0, 60, … as key frames, own against from the
reference, at pac-q8. Changing the frame changes what 3.x files mean: the header
names these weights by sha256, so a new reference needs a new file and a version note.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pacodec import api, zoo  # noqa: E402
from pacodec.data import load_frames, shared_clip  # noqa: E402
from pacodec.models import build_model  # noqa: E402

TRAINING = ("clip0", "clip4", "clip5", "clip6", "clip7")
VALIDATION = "clip8"
FILE = "pac-key.safetensors"


def learn(clips: list[Path]) -> np.ndarray:
    frames = load_frames(clips)  # (N, 200, 160, 3) at the model geometry
    # np.median averages the two middle values of an even count; the lower one keeps
    # the frame integer without a rounding rule.
    return np.sort(frames, axis=0)[(len(frames) - 1) // 2]


def measure(reference: np.ndarray) -> dict:
    clip = shared_clip(VALIDATION)
    frames = load_frames([clip], every=60)
    model, sha = api._load_model("pac-q8", None, "cpu")
    codec = api.Codec(model, sha, api._make_quantizer(model, None))
    predictor = api._predictor(model, None, "cpu")
    from pacodec.keyframe import KeyFrameCoder

    coder = KeyFrameCoder(codec, predictor.coder, reference)
    own = [len(codec.payloads(f[None])[0]) for f in frames]
    ref = [len(predictor.coder.encode(f, [reference])[0]) for f in frames]
    kept = [len(coder.encode(f)[0]) for f in frames]
    return {"clip": f"{VALIDATION}.mp4 frames 0, 60, …, pac-q8", "key_frames": len(frames),
            "own_bytes_mean": round(float(np.mean(own)), 1), "reference_bytes_mean": round(float(np.mean(ref)), 1),
            "kept_bytes_mean": round(float(np.mean(kept)), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path)
    args = parser.parse_args(argv)
    clips = args.clips or [shared_clip(c) for c in TRAINING]
    if any(c is None for c in clips):
        print("the training clips are absent (../shared/data/pacman): pass CLIPS", file=sys.stderr)
        return 2
    reference = learn(clips)
    model = build_model("pac-key")
    model.frame.copy_(torch.from_numpy(reference))
    sha = zoo.save(model, zoo.SHIPPED_DIR / FILE)
    entry = {
        "id": "pac-key", "file": FILE, "sha256": sha, "family": "pac", "config": model.config_dict(),
        "training": {"data": [f"../shared/data/pacman/{c.name}" for c in clips], "epochs": 0,
                     "method": "per-pixel median of every frame (lower middle value)",
                     "command": "python tools/make_key_reference.py"},
        "measured": measure(reference),
    }
    zoo.write_manifest_entry(zoo.SHIPPED_DIR, entry)
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
