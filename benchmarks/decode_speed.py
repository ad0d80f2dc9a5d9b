"""Decoding speed of this tree against an earlier commit, measured back to back.

    python benchmarks/decode_speed.py [CLIP] --against REV [--levels pac-q8,pac-q10]
        [--rounds 5] [--threads 2] [--load] [--out benchmarks/results]

This machine's speed varies from run to run by more than most changes make (x264 at
CRF 22 measured 437-800 frames a second across runs of ``rd.py``), so two releases'
decoders are compared in one run, in alternating rounds: each tree (this one, and REV
checked out with ``git worktree``) encodes CLIP at each level at the default GOP with
its own code and format, then decodes its file ``--rounds`` times, the trees taking
turns, each decode in a fresh process with ``--threads`` torch threads. ``--load``
keeps a busy process on one core throughout, as on a machine doing something else.

Writes ``decode_speed.csv`` (one row per tree × level × round) and ``decode_speed.md``
(the median and the range of frames a second; ``decode_speed-load.*`` with ``--load``)
into ``--out``, and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_CLIP = ROOT / ".." / "shared" / "data" / "pacman" / "clip8.mp4"

# Run in a fresh interpreter with the tree's root first on sys.path.
ENCODE = """
import sys; sys.path.insert(0, sys.argv[1])
import torch; torch.set_num_threads(int(sys.argv[5]))
from pacodec import api
api.encode(sys.argv[2], sys.argv[3], model=sys.argv[4], force=True)
"""
DECODE = """
import sys, time; sys.path.insert(0, sys.argv[1])
import torch; torch.set_num_threads(int(sys.argv[3]))
import pacodec
t = time.perf_counter()
with pacodec.open(sys.argv[2]) as reader:
    n = sum(1 for _ in reader)
print(n / (time.perf_counter() - t))
"""
BUSY = "while True: pass"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return done.stdout.strip()


def measure(args, levels: list[str], old: Path, tmp: Path):
    """Encode with each tree, then decode in alternating rounds: (rows, the trees)."""
    trees = {"this tree": ROOT, args.against: old}
    files = {}
    for name, tree in trees.items():
        for level in levels:
            files[name, level] = str(tmp / f"{len(files)}.pcz")
            run(ENCODE, str(tree), str(args.clip.resolve()), files[name, level], level, str(args.threads))
    results = []
    for k in range(args.rounds):
        for level in levels:
            order = list(trees.items()) if k % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                fps = float(run(DECODE, str(tree), files[name, level], str(args.threads)))
                results.append({"tree": name, "level": level, "round": k, "decode_fps": round(fps, 1)})
                print(f"round {k} {level:8s} {name:12s} {fps:6.1f} frames/s", flush=True)
    return results, trees


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--against", required=True, help="the git revision to compare with")
    parser.add_argument("--levels", default="pac-q8,pac-q10")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--load", action="store_true", help="keep one core busy while measuring")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        print(f"no clip at {args.clip}", file=sys.stderr)
        return 2
    levels = args.levels.split(",")
    with tempfile.TemporaryDirectory(prefix="pacodec-speed-") as tmp:
        old = Path(tmp) / "tree"
        made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against],
                              capture_output=True, text=True)
        if made.returncode != 0:
            print(f"cannot check out {args.against}: {made.stderr.strip()}", file=sys.stderr)
            return 2
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.load else None
        try:
            results, trees = measure(args, levels, old, Path(tmp))
        except RuntimeError as exc:
            print(f"a tree failed to encode or decode: {exc}", file=sys.stderr)
            return 1
        finally:
            if busy is not None:
                busy.kill()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "decode_speed-load" if args.load else "decode_speed"
    with open(args.out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["tree", "level", "round", "decode_fps"])
        writer.writeheader()
        writer.writerows(results)
    lines = [f"# Decoding speed, {args.clip.name}, this tree against {args.against}", "",
             f"Frames a second, {args.rounds} alternating rounds, {args.threads} torch threads"
             + (", one core kept busy" if args.load else "") + ". Generated by `benchmarks/decode_speed.py`.", "",
             "| level | tree | median | min | max |", "| --- | --- | ---: | ---: | ---: |"]
    for level in levels:
        for name in trees:
            v = [r["decode_fps"] for r in results if r["tree"] == name and r["level"] == level]
            lines.append(f"| {level} | {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
