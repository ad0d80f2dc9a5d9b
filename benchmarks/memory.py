"""Memory over a long stream: does encoding or decoding an hour of video stay flat?

Encodes a long stream of generated 160×200 frames with ``pacodec.Writer`` (the tiny
test model, tiny-conv + naive; its random init is saved to a temp folder unless
``--weights DIR`` names trained ones), then decodes it with ``pacodec.open``. Every
``--every`` frames it samples the resident set (VmRSS from /proc/self/status, and the
peak from getrusage) and, unless ``--no-tracemalloc``, the Python heap (tracemalloc).

Writes ``benchmarks/results/memory.csv`` (frames, rss_mb, peak_rss_mb, traced_mb,
phase), prints a table, and says whether memory was flat: RSS at the end of each
phase against RSS at its 25% mark. It asserts nothing.

    nice -n 19 python benchmarks/memory.py                 # one hour at 30 fps: 108,000 frames
    python benchmarks/memory.py --frames 20000 --every 1000
    python benchmarks/memory.py --model pac-q8 --frames 9000 --out benchmarks/results/memory-pac-q8.csv
                                   # the default model: predicted frames (GOP 32, 4 references)

The .pcz (16,007 bytes a frame, 1.7 GB for an hour) goes to a temp folder and is deleted.
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT = 160, 200
HOUR = 30 * 60 * 60


def rss_mb() -> float:
    """Resident set size now (VmRSS), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def frames(count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` 200×160 RGB frames: a maze-like background with a moving sprite,
    made fresh each time (nothing of the stream is held)."""
    rng = np.random.default_rng(seed)
    background = (rng.integers(0, 4, (HEIGHT // 8, WIDTH // 8, 1)) * 60).astype(np.uint8)
    background = np.repeat(np.repeat(background, 8, 0), 8, 1).repeat(3, 2)
    for i in range(count):
        frame = background.copy()
        y, x = (i * 3) % (HEIGHT - 10), (i * 5) % (WIDTH - 10)
        frame[y:y + 10, x:x + 10] = (255, 255, 0)
        yield frame


def tiny_weights(folder: Path) -> Path:
    """tiny-conv's random init saved with a manifest entry, as a training run would."""
    import torch

    from pacodec import zoo
    from pacodec.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny-conv")
    sha = zoo.save(model, folder / "tiny-conv.safetensors")
    zoo.write_manifest_entry(folder, {"id": "tiny-conv", "file": "tiny-conv.safetensors",
                                      "sha256": sha})
    return folder


class Sampler:
    def __init__(self, every: int, trace: bool) -> None:
        self.every, self.trace, self.rows = every, trace, []

    def sample(self, done: int, phase: str) -> None:
        traced = tracemalloc.get_traced_memory()[0] / 2**20 if self.trace else float("nan")
        self.rows.append({"frames": done, "rss_mb": round(rss_mb(), 2),
                          "peak_rss_mb": round(peak_rss_mb(), 2),
                          "traced_mb": round(traced, 3), "phase": phase})


def run(count: int, *, every: int = 1000, weights_dir: Path | None = None,
        workdir: Path | None = None, trace: bool = True, model: str = "tiny-conv",
        quantizer: str | None = "naive") -> list[dict]:
    """Encode then decode ``count`` frames, sampling memory every ``every`` frames."""
    import pacodec

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        if weights_dir is None and model == "tiny-conv":
            weights_dir = tiny_weights(tmp)
        path = tmp / "long.pcz"
        sampler = Sampler(every, trace)
        if trace:
            tracemalloc.start()
        try:
            sampler.sample(0, "encode")
            with pacodec.Writer(path, model=model, quantizer=quantizer, fps=30,
                                weights_dir=weights_dir) as writer:
                for i, frame in enumerate(frames(count), 1):
                    writer.write(frame)
                    if i % every == 0 or i == count:
                        sampler.sample(i, "encode")
            sampler.sample(0, "decode")
            with pacodec.open(path, weights_dir=weights_dir) as reader:
                done = 0
                for done, _ in enumerate(reader, 1):
                    if done % every == 0:
                        sampler.sample(done, "decode")
                if done % every:
                    sampler.sample(done, "decode")
            if done != count:
                raise RuntimeError(f"decoded {done} frames of {count}")
        finally:
            if trace:
                tracemalloc.stop()
    return sampler.rows


def growth(rows: list[dict], phase: str, key: str = "rss_mb") -> tuple[float, float, float]:
    """(value at the 25% mark, value at the end, end − 25%) of one phase."""
    samples = [r for r in rows if r["phase"] == phase and r["frames"] > 0]
    last = samples[-1]
    quarter = min(samples, key=lambda r: abs(r["frames"] - last["frames"] / 4))
    return quarter[key], last[key], last[key] - quarter[key]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=HOUR, help="frames to encode and decode (default one hour at 30 fps)")
    ap.add_argument("--every", type=int, default=None, help="sample every N frames (default frames/40)")
    ap.add_argument("--weights", type=Path, default=None, help="folder with tiny-conv weights (default: random init)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave the other cores alone)")
    ap.add_argument("--no-tracemalloc", action="store_true", help="skip the Python-heap samples (faster)")
    ap.add_argument("--model", default="tiny-conv",
                    help="model id (default tiny-conv; e.g. pac-q8 for the default predicted-frame path, "
                         "with its shipped weights unless --weights)")
    ap.add_argument("--quantizer", default=None, help="default: naive for tiny-conv, the model's own otherwise")
    ap.add_argument("--out", type=Path, default=RESULTS / "memory.csv")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    every = args.every or max(1, args.frames // 40)
    start = time.perf_counter()
    quantizer = args.quantizer or ("naive" if args.model == "tiny-conv" else None)
    rows = run(args.frames, every=every, weights_dir=args.weights, trace=not args.no_tracemalloc,
               model=args.model, quantizer=quantizer)
    seconds = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{'phase':<8}{'frames':>9}{'rss MB':>10}{'peak MB':>10}{'heap MB':>10}")
    for r in rows:
        print(f"{r['phase']:<8}{r['frames']:>9}{r['rss_mb']:>10.1f}{r['peak_rss_mb']:>10.1f}{r['traced_mb']:>10.2f}")
    print(f"\n{args.frames} frames encoded and decoded in {seconds:.0f} s; results in {args.out}")
    flat = True
    for phase in ("encode", "decode"):
        q, end, delta = growth(rows, phase)
        verdict = "flat" if delta < 30 else "GROWING"
        flat &= delta < 30
        heap = ""
        if not args.no_tracemalloc:
            hq, hend, hdelta = growth(rows, phase, "traced_mb")
            heap = f"; Python heap {hq:.2f} -> {hend:.2f} MB ({hdelta:+.2f})"
        print(f"{phase}: RSS {q:.1f} MB at 25% -> {end:.1f} MB at 100% ({delta:+.1f} MB): {verdict}{heap}")
    print("memory was flat" if flat else "memory GREW")
    return 0


if __name__ == "__main__":
    sys.exit(main())
