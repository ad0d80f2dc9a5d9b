"""``make demo``: record real Ms. Pac-Man play (or take your video), encode, show, decode.

    python -m pacodec.demo [--video game.mp4] [--model ID] [--out demo-out]

Prints the file's byte accounting (``pacodec info``), then bytes per frame, the ratio,
PSNR and SSIM of the decoded frames against the input at the coded geometry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import api
from .cli import render_info
from .errors import PacodecError

DEMO_SEED = 0  # the shipped models were trained on other seeds' recordings
DEMO_FRAMES = 300


def run(video: Path | None, model: str, quantizer: str | None, out: Path) -> dict:
    from . import data

    out.mkdir(parents=True, exist_ok=True)
    if video is None:
        video = out / "ms_pacman.mkv"
        if not video.exists():
            print(f"recording {DEMO_FRAMES} frames of Ms. Pac-Man (ale-py, seed {DEMO_SEED}) -> {video}")
            data.write_atari_clip(video, game="ms_pacman", frames=DEMO_FRAMES, seed=DEMO_SEED)
    pcz = out / "demo.pcz"
    print(f"encoding {video} with {model} -> {pcz}")
    info = api.encode(video, pcz, model=model, quantizer=quantizer, force=True)
    print()
    print(render_info(info))
    decoded = out / "demo.mp4"
    api.decode(pcz, decoded, force=True)
    width, height = info["width"], info["height"]
    # The file handed over is measured too: what the user watches is demo.mp4.
    quality = {}
    for name, path in (("pcz", pcz), ("mp4", decoded)):
        quality[name] = api.compare(video, path)
    print()
    print(f"decoded to {decoded}")
    print(f"{info['frames']} frames: {info['bytes_per_frame']:.1f} bytes/frame, ratio 1/{info['ratio']:.2f} "
          f"(raw {width}x{height}x3 = {width * height * 3} bytes/frame)")
    print(f"  {pcz.name}: PSNR {quality['pcz']['psnr']:.2f} dB, SSIM {quality['pcz']['ssim']:.4f} against the input")
    print(f"  {decoded.name}: PSNR {quality['mp4']['psnr']:.2f} dB, SSIM {quality['mp4']['ssim']:.4f} "
          "against the input (H.264 4:4:4; .mkv would keep the .pcz's frames exactly)")
    return {**info, "psnr": quality["pcz"]["psnr"], "ssim": quality["pcz"]["ssim"],
            "mp4_psnr": quality["mp4"]["psnr"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pacodec.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="your video (default: record Atari play)")
    parser.add_argument("--model", default=api.DEFAULT_MODEL)
    parser.add_argument("--quantizer", default=None)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args(argv)
    try:
        run(args.video, args.model, args.quantizer, args.out)
    except PacodecError as exc:
        print(f"pacodec demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
