"""Each quality level at several scales of its λ (``--lambda``), on whole clips.

    python benchmarks/lambda_sweep.py CLIP... [--levels pac-q6,pac-q10] [--lambdas 0.6,1,1.6]
        [--gop 250] [--out benchmarks/results/lambda_sweep.csv]

How the encoder's per-level λ (``refine.LEVEL_RD_SCALE``) is chosen: a level's point
at another λ is worth taking when it lies above the curve through the levels, that is
when it trades log-rate for PSNR more cheaply than the step to the neighbouring level
does. Run it on the training clips (clip0, clip4 … clip7), not on the clips the README
reports. Prints and writes one row per clip × level × λ scale (bytes a frame, mean RGB
PSNR); the scales multiply the level's own λ at the commit measured.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

import torch  # noqa: E402

from pacodec import api  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--levels", default="pac-q6,pac-q7,pac-q8,pac-q9,pac-q10")
    parser.add_argument("--lambdas", default="0.6,1,1.6")
    parser.add_argument("--gop", type=int, default=250)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "lambda_sweep.csv")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (several sweeps can run side by side)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    missing = [str(c) for c in args.clips if not c.is_file()]
    if missing:
        print(f"no clip at {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = []
    for clip in args.clips:
        for level in args.levels.split(","):
            for lam in (float(v) for v in args.lambdas.split(",")):
                r = api.evaluate(level, clip, gop=args.gop, lam=lam, ssim_every=1 << 30)
                rows.append({"clip": clip.name, "level": level, "lambda": lam,
                             "bytes_per_frame": round(r["bytes_per_frame"], 2), "psnr": round(r["psnr"], 3)})
                print(f"{clip.name} {level:8s} λ×{lam:<5g} {r['bytes_per_frame']:8.1f} B {r['psnr']:6.2f} dB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
