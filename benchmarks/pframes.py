"""Where a predicted frame's bytes go: the figures behind the README's "Prediction" note.

    python benchmarks/pframes.py [CLIP] [--model pac-q8] [--frames 96]

Encodes the first frames of the clip (clip9 by default) at the default GOP (``--gop``) through a real
``.pcz`` and reports, averaged over its P-frames: bytes of the base layer and of the
residual layer (read off the records), how many of the 16×16 blocks the base layer
SKIPs, how many 4×4 blocks the residual layer re-predicts and from which reference,
and the largest error of a P-frame pixel; and of the source itself,
how many subpixels change by more than 10 levels from the frame before and in how
many 16×16 blocks they lie. Writes ``benchmarks/results/pframes.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from pacodec import api, video  # noqa: E402
from pacodec.pcz import PczReader, RecordType  # noqa: E402
from pacodec.predict import SKIP  # noqa: E402
from pacodec.blockmotion import MotionField  # noqa: E402
from pacodec.refine import REFERENCES  # noqa: E402

DEFAULT_CLIP = BENCH_DIR.parent / ".." / "shared" / "data" / "pacman" / "clip9.mp4"
CHANGE = 10  # levels a subpixel must change by to count as changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--model", default="pac-q8")
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--gop", type=int, default=None, help="default: pacodec's")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "pframes.md")
    args = parser.parse_args(argv)
    if not args.clip.exists():
        print(f"{args.clip}: no such clip", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pcz = Path(tmp) / "p.pcz"
        facts = api.encode(args.clip, pcz, model=args.model, gop=args.gop, max_frames=args.frames)
        base = refinement = skips = 0
        by_reference = np.zeros(1 + REFERENCES, np.int64)
        with open(pcz, "rb") as f, api.open(pcz) as reader:
            records = list(PczReader(f))
            predicted = [r for r in records if r.type == RecordType.PREDICTED]
            coder = reader.predictor.coder
            motion = None  # the previous P-frame's re-prediction (2.x codes against it)
            for record in records:
                if record.type != RecordType.PREDICTED:
                    motion = None
                    continue
                b, rest = coder.layers(record.payload)  # b: None in 2.x files (no base layer)
                base, refinement = base + len(b or b""), refinement + len(rest)
                p = coder.unpack(record.payload)
                skips += coder.coder.rows * coder.coder.cols if p is None else int((p.modes == SKIP).sum())
                choice, vectors, _ = coder.refiner.decode_layer(rest, motion)
                motion = MotionField(choice, vectors)
                by_reference += np.bincount(choice.ravel(), minlength=1 + REFERENCES)
            blocks = coder.coder.rows * coder.coder.cols
            decoded = list(reader)
    frames = [video.fit(f, facts["width"], facts["height"]) for f in video.iter_frames(args.clip, max_frames=args.frames)]
    p_error = max(int(np.abs(d.astype(int) - s).max()) for d, s, r in zip(decoded, frames, records)
                  if r.type == RecordType.PREDICTED)
    changed = touched = 0
    for prev, cur in zip(frames, frames[1:]):
        mask = np.abs(cur.astype(int) - prev.astype(int)) > CHANGE
        changed += int(mask.sum())
        h, w = mask.shape[:2]
        grid = np.zeros((-(-h // 16) * 16, -(-w // 16) * 16), bool)
        grid[:h, :w] = mask.any(axis=-1)
        touched += int(grid.reshape(grid.shape[0] // 16, 16, grid.shape[1] // 16, 16).any(axis=(1, 3)).sum())
    n, pairs = len(predicted), len(frames) - 1
    rows = [
        ("file bytes a frame", f"{facts['bytes_per_frame']:.1f}"),
        ("P-frame base layer, bytes", f"{base / n:.1f}"),
        ("P-frame residual layer, bytes", f"{refinement / n:.1f}"),
        (f"16×16 blocks SKIPped by the base layer (of {blocks})", f"{skips / n:.1f}"),
        ("4×4 blocks re-predicted by the residual layer", f"{by_reference[1:].sum() / n:.1f}"),
        *((f"… from the frame {j} back", f"{by_reference[j] / n:.1f}") for j in range(1, 1 + REFERENCES)),
        ("largest error of a P-frame subpixel (levels, over all P-frames)", f"{p_error}"),
        (f"source subpixels changing by more than {CHANGE} levels", f"{changed / pairs:.0f}"),
        (f"16×16 blocks holding them (of {blocks})", f"{touched / pairs:.1f}"),
    ]
    text = [f"# Where a P-frame's bytes go: {args.model}, GOP {facts['gop']}, first {args.frames} frames of "
            f"{args.clip.name} ({n} P-frames)", "", "Generated by `python benchmarks/pframes.py`.", "",
            "| per P-frame | mean |", "| --- | ---: |", *[f"| {k} | {v} |" for k, v in rows]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
