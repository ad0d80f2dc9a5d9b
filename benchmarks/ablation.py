"""What each part of pacodec's predicted frames earns: the default against itself with
one part replaced by its plainer counterpart, on the same frames.

    python benchmarks/ablation.py [CLIP] [--model pac-q8] [--frames N]

Rows (each a closed-loop encode through ``pacodec.Writer``; bytes = the whole file ÷
frames, PSNR of the encoder's own reconstruction, which the decoder reproduces
exactly for the rows a real file can hold):

- ``default``: format 12.0 as shipped;
- ``11.x references``: the 4×4 blocks taken from the last three frames and the key
  frame only, within ±4, as 11.x could (no far index; 8.0's vector tables), not from
  any of the GOP's last 15 frames within ±8 (§14.14);
- ``10.x choice tables``: the 4×4 re-prediction's choices coded with 8.0's counted
  tables and contexts (CHOICE_TABLES_8), not pac-ctx3's choice network (§14.13);
- ``9.x whole-word streams``: predicted frames' streams stored as §15.2's whole 32-bit
  words with their one- or two-word seal, not trimmed to the fewest bytes (§14.12,
  §15.4);
- ``8.x block flags``: the 16×16 block flags coded with each level's one table, not in
  9.0's contexts (the 4×4 blocks taken there, the previous frame's flag, §14.11);
- ``7.x side-information contexts``: the 4×4 re-prediction's choices, vectors and
  half-pixel offsets coded with 2.0's and 6.0's contexts and tables, not 8.0's wider
  ones (the references' activity, a same-reference vector predictor, §14.10), and the
  flags as 8.x codes them (a 7.x file: 9.0's flags come only with 8.0's contexts, and
  11.0's choice network and 12.0's far references with both);
- ``6.x symbol model``: the residual symbols of predicted frames coded with pac-ctx,
  the narrower network of 4.x … 6.x (31 features, 32 hidden units), instead of
  pac-ctx2 (§14.9);
- ``no half-pixel offsets``: 4×4 blocks taken at whole-pixel vectors only, as in 5.x
  (§14.8);
- ``blocks chosen by squared error``: the 4×4 re-prediction chosen by each block's
  squared error, as the 5.x encoder did, not by its residual's estimated cost
  (refine.MOTION_RD);
- ``no long-term reference``: the references of predicted frames the last four
  decoded frames, as in 4.x, never the GOP's key frame once four have passed (§14.3);
- ``counted symbol tables``: the residual symbols of predicted frames coded with the
  3.x counted tables and contexts instead of pac-ctx's network (format 3.0, §14.7);
- ``symbol model without pixels``: pac-ctx's network, but never given the decoder's
  frames (as in a GOP whose key frame is coded on its own);
- ``symbols priced by the counted tables``: the rate–distortion choices of predicted
  frames priced with the counted tables' code lengths throughout, never the network's
  (refine.LEARNED_PRICES);
- ``3.x encoder choices``: the rate–distortion choices of predicted frames as the 3.x
  encoder made them, λ = 2Δ², errors where the picture stands still weighed like any
  other, symbols priced by the tables (refine.RD_SCALE, refine.PERSIST,
  refine.LEARNED_PRICES);
- ``no learned reference``: key frames always coded on their own, never predicted
  from pac-key's learned frame (format 2.0, §14.6), and the symbols counted (3.0);
- ``1.0 side information``: as that, and the 4×4 re-prediction's choices and vectors
  coded with one fixed table each, and the all-SKIP base layer written (format 1.0);
- ``no 4×4 re-prediction``: the residual layer straight on the previous frame (a
  plain copy), no block taken from any reference;
- ``one reference``: 4×4 blocks only from the previous frame;
- ``all intra``: ``--gop 1``.

The variants other than ``default`` and ``all intra`` change the encoder behind the
header's back, so their files are measured, not decoded; each keeps every part it
does not name (the long-term reference too, where it names an older format). Writes
``benchmarks/results/ablation.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

import pacodec  # noqa: E402
from pacodec import video  # noqa: E402
from pacodec.metrics import psnr  # noqa: E402

DEFAULT_CLIP = BENCH_DIR.parent / ".." / "shared" / "data" / "pacman" / "clip9.mp4"


def _eleven(refiner) -> None:
    """``refiner``'s side information coded as 11.x codes it: four references within ±4,
    8.0's vector tables, the same choice network."""
    from pacodec import motion_tables as mt
    from pacodec.blockmotion import MotionCoder, WideTables

    old = refiner.motion_coder
    new = MotionCoder(mt.CHOICE_TABLES, mt.VECTOR_TABLES, mt.FRACTION_TABLES,
                      WideTables(mt.CHOICE_TABLES_8, mt.VECTOR_X_TABLES_8, mt.VECTOR_Y_TABLES_8, mt.FRACTION_TABLES_8))
    if old.choice_net is not None:
        new.use_choice_model(old.choice_net, old.level)
    refiner.motion_coder = new


def variant(writer: pacodec.Writer, name: str) -> None:
    """Change ``writer``'s predicted-frame coder into ``name``'s."""
    coder = writer.predictor.coder if writer.predictor is not None else None
    if name in ("default", "all intra") or coder is None:
        return
    if name == "3.x encoder choices":
        from pacodec import refine

        coder.refiner.rd_scale = 2.0
        refine.PERSIST = 1.0  # restored by run()
        refine.LEARNED_PRICES = False  # restored by run()
    elif name == "symbols priced by the counted tables":
        from pacodec import refine

        refine.LEARNED_PRICES = False  # restored by run()
    elif name == "no long-term reference":
        _eleven(coder.refiner)  # four references, as the row says (12.0's far ones hold the key frame)
        coder.long_term = False
    elif name == "counted symbol tables":
        coder.refiner.symbol_model = None
    elif name == "6.x symbol model":
        from pacodec import zoo

        coder.refiner.symbol_model = zoo.load("pac-ctx")[0].network()
    elif name == "symbol model without pixels":
        from pacodec.symbolnet import FrameInputs

        refiner = coder.refiner

        def blind(choice, base, refs, vectors):  # as refine.RefineCoder._frame_inputs for a GOP that is not exact
            return FrameInputs(choice, getattr(refs[0], "symbols", None), None, refs, refiner.level,
                               *refiner.board.shape, vectors=vectors, wide=refiner.symbol_model.wide)

        coder.refiner._frame_inputs = blind
    elif name == "no learned reference":
        writer.keyframes = None
        coder.refiner.symbol_model = None
    elif name == "1.0 side information":
        writer.keyframes = None
        coder.refiner.symbol_model = None
        coder.refiner.motion_coder = None
        coder.base_layer = True
    elif name == "11.x references":
        _eleven(coder.refiner)
    elif name == "10.x choice tables":
        coder.refiner.motion_coder.choice_net = None
    elif name == "9.x whole-word streams":
        coder.refiner.trimmed = False
    elif name == "8.x block flags":
        coder.refiner.flag_tables = None
    elif name == "7.x side-information contexts":
        _eleven(coder.refiner)  # 12.0's far references come with 8.0's contexts
        coder.refiner.motion_coder.wide = False
        coder.refiner.motion_coder.choice_net = None  # 11.0's choices come with 8.0's contexts
        coder.refiner.flag_tables = None  # 9.0's flags come with 8.0's contexts
    elif name == "no half-pixel offsets":
        coder.refiner.motion_coder.half_pel = False  # the file then lacks them: bytes and PSNR only
    elif name == "blocks chosen by squared error":
        from pacodec import refine

        refine.MOTION_RD = False  # restored by run()
    elif name == "no 4×4 re-prediction":
        coder.refiner.motion_price = lambda: float("inf")
    elif name == "one reference":
        encode = coder.encode
        coder.encode = lambda frame, refs: encode(frame, refs[:1])
    else:
        raise ValueError(name)


VARIANTS = ("default", "11.x references", "10.x choice tables", "9.x whole-word streams", "8.x block flags", "7.x side-information contexts", "no half-pixel offsets", "blocks chosen by squared error", "no long-term reference", "6.x symbol model", "counted symbol tables",
            "symbol model without pixels",
            "symbols priced by the counted tables", "3.x encoder choices",
            "no learned reference",
            "1.0 side information", "no 4×4 re-prediction", "one reference", "all intra")


def run(frames: list[np.ndarray], model: str, name: str, work: Path) -> dict:
    recon: list[np.ndarray] = []

    path = work / "a.pcz"
    t0 = time.process_time()
    from pacodec import refine

    persist, learned, motion_rd = refine.PERSIST, refine.LEARNED_PRICES, refine.MOTION_RD
    try:
        with pacodec.Writer(path, model=model, fps=30, force=True, gop=1 if name == "all intra" else None) as w:
            variant(w, name)
            for frame in frames:
                w.write(frame)
                w._flush_pending()  # one frame at a time: the GOP's history holds its reconstruction
                recon.append(np.array(w._history[0]) if w._history else None)
    finally:
        refine.PERSIST, refine.LEARNED_PRICES, refine.MOTION_RD = persist, learned, motion_rd
    cpu = time.process_time() - t0
    if name == "all intra":
        with pacodec.open(path) as reader:
            recon = [np.array(f) for f in reader]
    size = path.stat().st_size
    return {"variant": name, "bytes_per_frame": size / len(frames),
            "psnr": float(np.mean([psnr(a, b) for a, b in zip(frames, recon)])),
            "encode_cpu_s_per_frame": cpu / len(frames)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--model", default="pac-q8")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "ablation.md")
    args = parser.parse_args(argv)
    if not args.clip.exists():
        print(f"{args.clip}: no such clip", file=sys.stderr)
        return 2
    frames = [video.fit(f, 160, 200) for f in video.iter_frames(args.clip, max_frames=args.frames)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in VARIANTS:
            row = run(frames, args.model, name, Path(tmp))
            rows.append(row)
            print(f"{name:24s} {row['bytes_per_frame']:8.1f} B/frame {row['psnr']:6.2f} dB", flush=True)
    base = rows[0]["bytes_per_frame"]
    lines = [f"# Ablation: {args.model}, {len(frames)} frames of {args.clip.name}", "",
             "Generated by `python benchmarks/ablation.py` (see its docstring for the rows).", "",
             "| variant | bytes a frame | vs default | PSNR (dB) |", "| --- | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['bytes_per_frame']:.1f} | "
                     f"{100 * (row['bytes_per_frame'] / base - 1):+.1f} % | {row['psnr']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
