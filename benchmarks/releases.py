"""One benchmark's pacodec curve now against the same benchmark at an earlier commit.

    python benchmarks/releases.py [RD_CSV] --against REV [--anchor aom-444-screen]

Reads ``RD_CSV`` (default benchmarks/results/rd.csv, as ``benchmarks/rd.py`` wrote it)
and the same file at git revision ``REV``, and prints, for the default curve (pac-p:
pac-q6 … pac-q10 at the default GOP): each level's bytes and PSNR then and now; each
curve's BD-rate against the anchor over its own overlap (what ``bdrate.md`` reports)
and over the range both releases share with the anchor (``bdrate.bd_rate_over``), so a
change in where the curve begins is not read as a gain; and the new curve against the
old one. Measures nothing: the CSVs are the measurements.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from bdrate import bd_rate, bd_rate_over, monotone, psnr_overlap  # noqa: E402

LEVELS = ("pac-q6", "pac-q7", "pac-q8", "pac-q9", "pac-q10")


def rows(text: str, codec: str, levels=None) -> list[tuple[str, float, float]]:
    return [(r["setting"], float(r["bytes_per_frame"]), float(r["psnr"])) for r in csv.DictReader(io.StringIO(text))
            if r["codec"] == codec and (levels is None or r["setting"].split("/")[0] in levels)]


def curve(points) -> list[tuple[float, float]]:
    return monotone([(b, p) for _, b, p in points])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=BENCH_DIR / "results" / "rd.csv")
    parser.add_argument("--against", required=True, help="a git revision holding the earlier CSV")
    parser.add_argument("--anchor", default="aom-444-screen")
    args = parser.parse_args(argv)
    path = args.csv.resolve()
    try:
        old_text = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.against}:{path.relative_to(ROOT)}"],
                                  capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, ValueError) as exc:
        print(f"cannot read {path} at {args.against}: {exc}", file=sys.stderr)
        return 2
    new_text = path.read_text()
    new, old = rows(new_text, "pac-p", LEVELS), rows(old_text, "pac-p", LEVELS)
    print(f"{path.name}: pac-p now | at {args.against}")
    for (name, b, p), (_, b0, p0) in zip(new, old):
        print(f"  {name:18s} {b:7.1f} B {p:6.2f} dB | {b0:7.1f} B {p0:6.2f} dB")
    a, a0 = curve(rows(new_text, args.anchor)), curve(rows(old_text, args.anchor))
    t, t0 = curve(new), curve(old)
    print(f"BD-rate vs {args.anchor}, own overlap: now {bd_rate(a, t):+.2f} %, then {bd_rate(a0, t0):+.2f} %")
    ranges = [psnr_overlap(a, t), psnr_overlap(a0, t0)]
    if all(ranges):
        lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
        print(f"  over {lo:.2f} … {hi:.2f} dB (both): now {bd_rate_over(a, t, lo, hi):+.2f} %, "
              f"then {bd_rate_over(a0, t0, lo, hi):+.2f} %")
    print(f"BD-rate now vs then: {bd_rate(t0, t):+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
