"""Copy trained weights into pacodec/weights/ with a manifest entry holding measured figures.

    python tools/ship_weights.py RUN_DIR MODEL_ID [--as ID ...] [--quantizer Q ...] [--clip PATH]
        [--retrain "pacodec train ..."] [--note TEXT] [--data TEXT ...]
    python tools/ship_weights.py --remeasure MODEL_ID [--as ID ...] --gop N [--quantizer Q ...]

Reads RUN_DIR/manifest.json (written by ``pacodec train``), copies the weights file,
measures every listed id × quantizer on the test clip (clip9 by default) through a
real .pcz file with ``pacodec.api.evaluate``, and writes one manifest entry per id
(``--as`` lets one weights file serve several ids, e.g. pac-q1…q5 from "pac").
``--remeasure`` measures shipped ids again at the settings given and adds (or
replaces) those rows of their ``measured_all``, leaving weights and the rest alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pacodec import api, zoo  # noqa: E402
from pacodec.data import shared_clip  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("model_id", nargs="?")
    parser.add_argument("--remeasure", metavar="ID", help="measure a shipped id again (no RUN_DIR)")
    parser.add_argument("--as", dest="ids", action="append", help="ids served by these weights")
    parser.add_argument("--quantizer", action="append", help="quantizers to measure (default: the model's)")
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--retrain", default=None, help="the one command that retrains these weights")
    parser.add_argument("--note", default=None)
    parser.add_argument("--data", action="append",
                        help="describe the training data (repeatable; default: the run's paths)")
    parser.add_argument("--gop", type=int, action="append",
                        help="GOP lengths to measure (pac models: default 1 and 32)")
    parser.add_argument("--no-measure", action="store_true", help="ship without measuring (helper models)")
    args = parser.parse_args()
    if args.remeasure:
        return remeasure(args)

    entry = next((e for e in zoo.read_manifest(args.run_dir) if e["id"] == args.model_id), None)
    if entry is None:
        print(f"{args.run_dir}: no manifest entry for {args.model_id}", file=sys.stderr)
        return 2
    clip = args.clip or shared_clip("clip9")
    if clip is None:
        print("clip9 is absent: pass --clip", file=sys.stderr)
        return 2
    ids = args.ids or [args.model_id]
    # Weights replaced by new ones stay, by sha256, so the files made with them decode.
    for model_id in zoo.supersede(zoo.SHIPPED_DIR, ids, entry["sha256"]):
        print(f"{model_id}: the weights it replaces are kept as superseded", flush=True)
    target = zoo.SHIPPED_DIR / entry["file"]
    shutil.copyfile(args.run_dir / entry["file"], target)
    assert zoo.sha256_of(target) == entry["sha256"]
    training = dict(entry["training"])
    if args.retrain:
        training["command"] = args.retrain
    if args.note:
        training["note"] = args.note
    if args.data:
        training["data"] = args.data
    for model_id in ids:  # entries first, so the measurements below find the weights
        zoo.write_manifest_entry(zoo.SHIPPED_DIR, {**entry, "id": model_id, "training": training})
    if args.no_measure:
        return 0
    for model_id in ids:
        family = zoo.spec_of(model_id).family
        # none, and the model's default (entropy for pac; naive, or scale for the VAE)
        default = api.quantizers_for(zoo.spec_of(model_id).build(None))[0]
        quantizers = args.quantizer or ([default] if family == "pac" else ["none", default])
        gops = args.gop or ([1, 32] if family == "pac" else [1])
        measured = []
        measured = [measure(model_id, clip, q, gop) for q in quantizers for gop in gops]
        first = measured[0]
        new = {**entry, "id": model_id, "training": training, "measured": first,
               "measured_all": measured,
               "measure_command": f"pacodec eval {model_id} --data {Path(clip).name} "
                                  f"--quantizer {first['quantizer']} --gop {first['gop']}"}
        zoo.write_manifest_entry(zoo.SHIPPED_DIR, new)
    return 0


def measure(model_id: str, clip: Path, quantizer: str, gop: int) -> dict:
    """One manifest row: ``model_id`` at these settings on ``clip`` through a real .pcz."""
    r = api.evaluate(model_id, clip, quantizer=None if quantizer == "entropy" else quantizer, gop=gop)
    row = {k: r[k] for k in ("quantizer", "gop", "bytes_per_frame", "ratio", "codes_ratio", "psnr",
                             "ssim", "encode_fps", "decode_fps", "threads")}
    print(f"{model_id} {quantizer} gop {gop}: {r['bytes_per_frame']:.1f} B/frame, "
          f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}", flush=True)
    return row | {"data": Path(clip).name, "frames": r["frames"]}


def remeasure(args: argparse.Namespace) -> int:
    clip = args.clip or shared_clip("clip9")
    if clip is None or not args.gop:
        print("--remeasure needs --gop and clip9 (or --clip)", file=sys.stderr)
        return 2
    entries = {e["id"]: e for e in zoo.read_manifest(zoo.SHIPPED_DIR) if not e.get("superseded")}
    for model_id in [args.remeasure, *(args.ids or [])]:
        entry = entries[model_id]
        default = api.quantizers_for(zoo.spec_of(model_id).build(None))[0]
        rows = [measure(model_id, clip, q, gop) for q in (args.quantizer or [default]) for gop in args.gop]
        kept = [m for m in entry.get("measured_all", [])
                if not any((m["quantizer"], m.get("gop", 1)) == (r["quantizer"], r["gop"]) for r in rows)]
        zoo.write_manifest_entry(zoo.SHIPPED_DIR, {**entry, "measured_all": kept + rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
