"""Rate–distortion benchmark: pacodec against classical codecs, in one run, on the same frames.

    python benchmarks/rd.py [CLIPS...] [--frames N] [--quick] [--out benchmarks/results]

Writes into ``--out``: ``rd.csv`` (one row per codec × setting), ``rd.png`` (bytes per
frame, log scale, against PSNR; one line per codec family), ``bdrate.csv`` and
``bdrate.md`` (BD-rate and BD-PSNR of each pacodec family against the anchors), and
prints the tables. See benchmarks/README.md for the columns and the choices made.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

import anchors  # noqa: E402
from anchors import THREADS, AnchorResult  # noqa: E402
from bdrate import bd_psnr, bd_rate, monotone  # noqa: E402

DEFAULT_CLIP = REPO_ROOT / ".." / "shared" / "data" / "pacman" / "clip9.mp4"
DEFAULT_OUT = BENCH_DIR / "results"
QUICK_FRAMES = 60
ATARI_FRAMES = 300

# The anchors every pacodec family is compared against (BD-rate columns), in order.
BD_ANCHORS = ["aom-444-screen", "vvenc-420", "svtav1-420-scm", "x264-444", "x265-444",
              "x264-intra-444", "webp", "x264-444-k32", "x265-444-k32", "x264-420", "svtav1-420",
              "jpeg", "jpeg-444"]
# Families drawn as lossless references (a single point each; never a BD curve).
LOSSLESS = {"png", "ffv1"}
# Info rows (not curves): x264 4:4:4 at CRF 0 is lossless in YUV, so its PSNR is the
# ceiling the RGB→YUV 4:4:4 round trip itself puts on every 4:4:4 anchor.
INFO_FAMILIES = {"x264-444-crf0"}

CSV_COLUMNS = ["codec", "setting", "frames", "bytes_per_frame", "bpp", "psnr", "ssim",
               "encode_fps", "decode_fps", "threads", "clip", "width", "height"]


# --- frames -------------------------------------------------------------------------------


def read_frames(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], Fraction]:
    """Decoded RGB frames of ``path`` (pacodec.video when present, else PyAV) and its fps."""
    try:
        from pacodec import video  # being written concurrently; PyAV below otherwise

        fps = Fraction(video.probe(path).fps)
        frames = list(video.iter_frames(path, max_frames=max_frames))
        return frames, fps
    except ImportError:
        pass
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or 30)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return frames, fps


def atari_clip(out_dir: Path, max_frames: int | None) -> Path:
    """Record a Ms. Pac-Man clip through ale-py when the real clips are absent."""
    from pacodec.data import write_atari_clip

    target = out_dir / "atari.mkv"
    write_atari_clip(target, game="ms_pacman", frames=max_frames or ATARI_FRAMES, seed=0)
    return target


def write_lossless(frames: Sequence[np.ndarray], fps: Fraction, path: Path) -> None:
    """The reference frames as FFV1 (bgr0) in Matroska: exact RGB, for pacodec's input."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


# --- pacodec through its public API --------------------------------------------------------


@dataclass
class System:
    """One pacodec configuration: a model id, a quantizer and a GOP length."""

    family: str  # the RD curve it belongs to: "pac-q" (intra), "pac-p" (predictive), ...
    model: str
    quantizer: str | None
    gop: int = 1
    lam: float = 1.0
    weights_dir: Path | None = None  # weights not shipped (e.g. a training run)

    @property
    def setting(self) -> str:
        text = self.model + (f"/{self.quantizer}" if self.quantizer else "")
        if self.gop > 1:
            text += f"/gop{self.gop}" + (f"/lambda{self.lam:g}" if self.lam != 1.0 else "")
        return text


def family_of(model_id: str) -> str:
    """Curve name of a model id: quality levels share a curve (pac-q3 → pac-q); other
    ids are models of their own (conv4 and conv5 are two points, not one curve)."""
    return re.sub(r"-q\d+$", "-q", model_id)


# pac-p: predicted frames at pacodec's default GOP (what a user gets); pac-p32: at GOP 32,
# the curve earlier releases reported, kept beside the x264/x265 GOP 32 anchors.
SHORT_GOP = 32


def pacodec_systems() -> list[System]:
    """Every shipped model × quantizer, plus the predictive mode of the pac family.

    Fixed-width models run with naive, scale and kmeans (``none``, float codes of tens
    of kB a frame, is not a compression setting); pac models run all-intra (curve
    "pac-q"), with predicted frames at the default GOP (curve "pac-p") and at GOP 32
    (curve "pac-p32").
    """
    from pacodec import api
    from pacodec.predict import DEFAULT_GOP

    systems = []
    for entry in api.list_models():
        if not entry["weights"] or entry["id"] in ("pac", "pac-res", "pac-hi"):
            continue
        model = entry["id"]
        if entry["family"] == "pac":
            systems.append(System("pac-q", model, None, gop=1))
            systems.append(System("pac-p", model, None, gop=DEFAULT_GOP))
            systems.append(System("pac-p32", model, None, gop=SHORT_GOP))
        else:
            for quantizer in ("naive", "scale", "kmeans"):
                if quantizer in entry["code_bytes"]:  # the quantizers this model takes
                    systems.append(System(family_of(model), model, quantizer))
    return systems


def run_system(system: System, source: Path, frames: Sequence[np.ndarray],
               work: Path) -> AnchorResult:
    """Encode ``source`` (the reference frames, losslessly stored) with pacodec, decode and
    measure at the coded geometry (the reference is resized when the model resized)."""
    import torch

    import pacodec
    from pacodec import api

    torch.set_num_threads(THREADS)
    dst = work / (system.setting.replace("/", "_") + ".pcz")
    t0 = time.perf_counter()
    report = api.encode(source, dst, model=system.model, quantizer=system.quantizer, force=True,
                        gop=system.gop, lam=system.lam, weights_dir=system.weights_dir)
    t1 = time.perf_counter()

    def decode() -> list[np.ndarray]:
        with pacodec.open(dst, weights_dir=system.weights_dir) as reader:
            return list(reader)

    decoded, decode_s = anchors.timed_decode(decode)
    file_bytes = dst.stat().st_size
    assert report["file_bytes"] == file_bytes
    reference = list(frames[: len(decoded)])
    notes = []
    if decoded and decoded[0].shape != reference[0].shape:
        import cv2

        h, w = decoded[0].shape[:2]
        reference = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in reference]
        notes.append(f"coded geometry {w}x{h}")
    return anchors._measure(system.family, system.setting, reference, decoded, file_bytes,
                            t1 - t0, decode_s, THREADS, "; ".join(notes))


# --- running ------------------------------------------------------------------------------


def run_anchors(frames, fps, quick: bool, log: Callable[[str], None]) -> list[AnchorResult]:
    results = []
    missing = set(anchors.unavailable())
    for family in sorted(missing):
        why = (f"encoder {anchors.VIDEO_CODECS[family].encoder} unavailable in PyAV"
               if family in anchors.VIDEO_CODECS else "needs imageio-ffmpeg (the bench extra)")
        log(f"  {family}: {why}")
    plan = anchors.sweeps(quick)
    plan.append(("x264-444-crf0", anchors.x264_444, [0]))
    for family, anchor, settings in plan:
        if family in missing:
            continue
        for setting in settings:
            try:
                result = anchor(frames, fps, setting)
            except Exception as error:  # noqa: BLE001 - one failed setting is reported, not fatal
                log(f"  {family} {setting}: FAILED {type(error).__name__}: {error}")
                continue
            result.codec = family
            results.append(result)
            log(f"  {_line(result)}")
    return results


def run_pacodec(frames, fps, quick: bool, log) -> list[AnchorResult]:
    results = []
    try:
        systems = pacodec_systems()
    except Exception as error:  # noqa: BLE001
        log(f"  pacodec: listing models failed: {type(error).__name__}: {error}")
        return results
    if not systems:
        log("  pacodec: no models with weights")
        return results
    with tempfile.TemporaryDirectory(prefix="pacodec-rd-") as tmp:
        work = Path(tmp)
        source = work / "reference.mkv"
        write_lossless(frames, fps, source)
        for system in systems:
            try:
                result = run_system(system, source, frames, work)
            except Exception as error:  # noqa: BLE001
                log(f"  {system.setting}: FAILED {type(error).__name__}: {error}")
                traceback.print_exc(file=sys.stderr)
                continue
            results.append(result)
            log(f"  {_line(result)}")
    return results


def _line(r: AnchorResult) -> str:
    return (f"{r.codec:15s} {r.setting:22s} {r.bytes_per_frame:9.1f} B/frame {r.bpp:7.4f} bpp "
            f"{r.psnr:6.2f} dB  SSIM {r.ssim:.4f}  enc {r.encode_fps:7.1f} fps  "
            f"dec {r.decode_fps:7.1f} fps" + (f"  ({r.notes})" if r.notes else ""))


# --- outputs ------------------------------------------------------------------------------


def write_csv(rows: list[dict], path: Path, columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})


def curves(results: Sequence[AnchorResult]) -> dict[str, list[tuple[float, float]]]:
    by_family: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in results:
        by_family[r.codec].append((r.bytes_per_frame, r.psnr))
    return by_family


def bd_table(results: Sequence[AnchorResult], pacodec_families: Sequence[str]) -> list[dict]:
    by_family = curves(results)
    rows = []
    for family in pacodec_families:
        if len(by_family[family]) < 4:
            continue  # one model at a few quantizers is points, not a curve: see rd.csv and the plot
        for anchor in BD_ANCHORS:
            if anchor not in by_family:
                continue
            rate = bd_rate(by_family[anchor], by_family[family])
            dpsnr = bd_psnr(by_family[anchor], by_family[family])
            rows.append({"test": family, "anchor": anchor,
                         "bd_rate_percent": "n/a" if rate is None else round(rate, 2),
                         "bd_psnr_db": "n/a" if dpsnr is None else round(dpsnr, 3)})
    return rows


def bd_markdown(rows: list[dict], clip_rows: dict[str, list[dict]], notes: list[str]) -> str:
    lines = ["# BD-rate of pacodec against the anchors", "",
             "Rate = bytes per frame (whole file ÷ frames), quality = mean RGB PSNR. "
             "Negative BD-rate: pacodec needs fewer bytes for the same PSNR. "
             "Only pacodec curves of 4 or more points are listed (the pac quality levels); "
             "single models are points in `rd.csv` and the plot. "
             "n/a: fewer than 4 usable points on an anchor's curve, or under 1 dB of PSNR overlap. "
             "Generated by `benchmarks/rd.py`.", ""]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    for clip, rows in clip_rows.items():
        lines += [f"## {clip}", ""]
        if not rows:
            lines += ["No pacodec rows in this run.", ""]
            continue
        lines += ["| pacodec | anchor | BD-rate | BD-PSNR |", "| --- | --- | ---: | ---: |"]
        for row in rows:
            rate = row["bd_rate_percent"]
            dpsnr = row["bd_psnr_db"]
            lines.append(f"| {row['test']} | {row['anchor']} | "
                         f"{rate if rate == 'n/a' else f'{rate:+.1f} %'} | "
                         f"{dpsnr if dpsnr == 'n/a' else f'{dpsnr:+.2f} dB'} |")
        lines.append("")
    return "\n".join(lines)


@dataclass
class CsvPoint:
    """A row of rd.csv, as much of an AnchorResult as ``plot`` reads."""

    codec: str
    bytes_per_frame: float
    psnr: float
    frames: int
    width: int
    height: int


def read_results(path: Path) -> dict[str, list[CsvPoint]]:
    """rd.csv -> {clip: points}."""
    out: dict[str, list[CsvPoint]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            out[row["clip"]].append(CsvPoint(row["codec"], float(row["bytes_per_frame"]), float(row["psnr"]),
                                             int(row["frames"]), int(row["width"]), int(row["height"])))
    return dict(out)


def plot(clip_results: dict[str, list[AnchorResult]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(clip_results)
    fig, axes = plt.subplots(1, n, figsize=(9 * n, 6), squeeze=False)
    for ax, (clip, results) in zip(axes[0], clip_results.items()):
        by_family = curves([r for r in results if r.codec not in INFO_FAMILIES])
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        for family, points in by_family.items():
            points = sorted(points)
            rates = [r for r, _ in points]
            psnrs = [min(p, 60.0) for _, p in points]  # lossless (100 dB) drawn at the top
            if family in LOSSLESS:
                ax.scatter(rates, psnrs, marker="*", s=90, label=f"{family} (lossless)")
            elif family.startswith("pac"):
                # The line joins the family's best points (the rate–PSNR front the BD-rates
                # use); levels it dominates (pac-q4/q5: more bytes than pac-q6 for less
                # PSNR) are hollow markers off the line.
                front = monotone(points)
                line, = ax.plot([r for r, _ in front], [p for _, p in front], "o-", linewidth=2.5,
                                label=family)
                off = [pt for pt in points if pt not in front]
                if off:
                    ax.scatter([r for r, _ in off], [p for _, p in off], s=40, facecolors="none",
                               edgecolors=line.get_color(), linewidths=1.5)
            else:
                ax.plot(rates, psnrs, ".--" if "420" in family or family in ("jpeg",) else ".-",
                        linewidth=1.2, label=family)
        ax.set_xscale("log")
        ax.set_xlabel("bytes per frame (log)")
        ax.set_ylabel("PSNR RGB (dB); lossless drawn at 60")
        frames = results[0].frames if results else 0
        geometry = f"{results[0].width}×{results[0].height}" if results else ""
        ax.set_title(f"{clip}: {frames} frames {geometry}")
        ax.set_ylim(top=61)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path,
                        help=f"input videos (default: {DEFAULT_CLIP.relative_to(REPO_ROOT)} "
                             "relative to the repo root; an Atari recording if absent)")
    parser.add_argument("--frames", type=int, default=None,
                        help="use the first N frames of each clip (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"fewer settings and the first {QUICK_FRAMES} frames (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--no-pacodec", action="store_true", help="anchors only")
    parser.add_argument("--replot", action="store_true",
                        help="redraw rd.png from the rd.csv in --out, measuring nothing")
    args = parser.parse_args(argv)
    if args.replot:
        plot(read_results(args.out / "rd.csv"), args.out / "rd.png")
        print(f"wrote {args.out / 'rd.png'} from {args.out / 'rd.csv'}")
        return 0

    max_frames = args.frames if args.frames is not None else (QUICK_FRAMES if args.quick else None)
    args.out.mkdir(parents=True, exist_ok=True)
    clips = list(args.clips)
    if not clips:
        clips = [DEFAULT_CLIP.resolve()] if DEFAULT_CLIP.exists() else [atari_clip(args.out, max_frames)]

    def log(message: str) -> None:
        print(message, flush=True)

    all_results: dict[str, list[AnchorResult]] = {}
    rows: list[dict] = []
    bd_rows_by_clip: dict[str, list[dict]] = {}
    bd_rows: list[dict] = []
    notes: list[str] = []
    missing = anchors.unavailable()
    if missing:
        notes.append("unavailable here (PyAV build, or imageio-ffmpeg not installed): "
                     + ", ".join(missing))
    for clip in clips:
        frames, fps = read_frames(Path(clip), max_frames)
        if not frames:
            raise SystemExit(f"{clip}: no frames")
        h, w = frames[0].shape[:2]
        name = Path(clip).name
        log(f"{name}: {len(frames)} frames {w}x{h} at {float(fps):g} fps; "
            f"threads={THREADS}; SSIM every {anchors.SSIM_EVERY}th frame")
        t0 = time.perf_counter()
        results = run_anchors(frames, fps, args.quick, log)
        pac = [] if args.no_pacodec else run_pacodec(frames, fps, args.quick, log)
        results += pac
        log(f"{name}: {len(results)} rows in {time.perf_counter() - t0:.0f} s")
        all_results[name] = results
        rows += [r.row() | {"clip": name} for r in results]
        families = list(dict.fromkeys(r.codec for r in pac))
        clip_bd = bd_table(results, families)
        bd_rows_by_clip[name] = clip_bd
        bd_rows += [row | {"clip": name} for row in clip_bd]

    write_csv(rows, args.out / "rd.csv", CSV_COLUMNS)
    plot(all_results, args.out / "rd.png")
    write_csv(bd_rows, args.out / "bdrate.csv",
              ["test", "anchor", "bd_rate_percent", "bd_psnr_db", "clip"])
    markdown = bd_markdown(bd_rows, bd_rows_by_clip, notes) + "\n" + bytes_table(all_results)
    (args.out / "bdrate.md").write_text(markdown + "\n")

    log("")
    log(summary(all_results))
    log(markdown)
    log(f"wrote {args.out / 'rd.csv'}, rd.png, bdrate.csv, bdrate.md")
    return 0


def bytes_at(points: Sequence[tuple[float, float]], target_db: float) -> float | None:
    """Bytes per frame of a curve at ``target_db``: log-linear between the two points of
    its rate–PSNR front around it; None where the curve does not reach it."""
    front = monotone(sorted(points))
    for (r0, p0), (r1, p1) in zip(front, front[1:]):
        if p0 <= target_db <= p1 and p1 > p0:
            t = (target_db - p0) / (p1 - p0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return None


SUMMARY_DB = (35.0, 38.0, 41.0)


def bytes_table(clip_results: dict[str, list[AnchorResult]]) -> str:
    """Markdown: each family's bytes per frame at 35 / 38 / 41 dB, and its speeds there."""
    lines = []
    for clip, results in clip_results.items():
        lines += [f"### {clip}: bytes per frame at equal PSNR", "",
                  "| family | " + " | ".join(f"{d:g} dB" for d in SUMMARY_DB)
                  + " | enc fps | dec fps |", "| --- |" + " ---: |" * (len(SUMMARY_DB) + 2)]
        by_family: dict[str, list[AnchorResult]] = defaultdict(list)
        for r in results:
            if r.codec not in LOSSLESS | INFO_FAMILIES:
                by_family[r.codec].append(r)
        for family, rs in by_family.items():
            cells = []
            for d in SUMMARY_DB:
                b = bytes_at([(r.bytes_per_frame, r.psnr) for r in rs], d)
                cells.append("—" if b is None else f"{b:.0f}")
            near = min(rs, key=lambda r: abs(r.psnr - 38.0) if math.isfinite(r.psnr) else 1e9)
            lines.append(f"| {family} | " + " | ".join(cells)
                         + f" | {near.encode_fps:.0f} | {near.decode_fps:.0f} |")
        lines += ["", f"Speeds: at the family's point nearest 38 dB, 2 threads, 160×200; decoding the median "
                  f"of {anchors.DECODE_ROUNDS} decodes.", ""]
    return "\n".join(lines)


def summary(clip_results: dict[str, list[AnchorResult]]) -> str:
    """Per family: the setting nearest 35 dB, and the span of the curve."""
    lines = []
    for clip, results in clip_results.items():
        lines.append(f"{clip}: per family, the point nearest 35 dB")
        lines.append(f"  {'family':15s} {'setting':22s} {'B/frame':>9s} {'PSNR':>7s} "
                     f"{'SSIM':>7s} {'enc fps':>8s} {'dec fps':>8s}")
        by_family: dict[str, list[AnchorResult]] = defaultdict(list)
        for r in results:
            by_family[r.codec].append(r)
        for family, rs in by_family.items():
            r = min(rs, key=lambda r: abs(r.psnr - 35.0) if math.isfinite(r.psnr) else 1e9)
            lines.append(f"  {family:15s} {r.setting:22s} {r.bytes_per_frame:9.1f} "
                         f"{r.psnr:7.2f} {r.ssim:7.4f} {r.encode_fps:8.1f} {r.decode_fps:8.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
