"""Write the golden .pcz samples in formats/samples/ with their expected facts.

    python tools/make_golden.py [NAME ...]

Each sample is made from real Ms. Pac-Man frames recorded through ale-py (never the
shared clips) with a shipped model, and is stored with ``<name>.json``: the expected
``info`` (minus the path), the sha256 of its decoded symbols, and the decoded frames
as PNGs (``<name>/frame_NNNNNN.png``) that tests compare within a difference of 1.
Regenerate only when the format or the shipped weights change on purpose; say why
in formats/CHANGELOG.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import pacodec  # noqa: E402
from pacodec import api  # noqa: E402
from pacodec.data import record_atari  # noqa: E402
from pacodec.video import VideoWriter  # noqa: E402

SAMPLES = ROOT / "formats" / "samples"
SEED = 21
FRAMES = 6
#: name -> (model, quantizer, gop)
GOLDEN = {
    "conv4-naive": ("conv4", "naive", 1),
    "pac-q3-intra": ("pac-q3", None, 1),
    "pac-q3-gop4": ("pac-q3", None, 4),
    "pac-q8-intra": ("pac-q8", None, 1),
    "pac-q8-gop4": ("pac-q8", None, 4),
    "pac-q8-gop8": ("pac-q8", None, 8),
    "pac-q8-key": ("pac-q8", None, 4),
    "pac-q8-ctx": ("pac-q8", None, 4),
    "pac-q8-lt": ("pac-q8", None, 12),
    "pac-q8-hp": ("pac-q8", None, 12),
    "pac-q8-c2": ("pac-q8", None, 12),
    "pac-q8-m8": ("pac-q8", None, 12),
    "pac-q8-f9": ("pac-q8", None, 12),
    "pac-q8-t10": ("pac-q8", None, 12),
    "pac-q8-n11": ("pac-q8", None, 12),
    "pac-q8-r12": ("pac-q8", None, 12),
}
#: Samples kept as an older encoder wrote them, to prove such files still decode: this
#: build would write them differently (pac-q8-gop4 is a 1.0 file, pac-q8-gop8 a 2.0 one,
#: pac-q8-key a 3.0 one, pac-q8-ctx a 4.0 one, pac-q8-lt a 5.0 one, pac-q8-hp a 6.0 one,
#: pac-q8-c2 a 7.0 one, pac-q8-m8 an 8.0 one, pac-q8-f9 a 9.0 one, pac-q8-t10 a 10.0 one,
#: pac-q8-n11 an 11.0 one; all would now be 12.0).
FROZEN = {"pac-q8-gop4", "pac-q8-gop8", "pac-q8-key", "pac-q8-ctx", "pac-q8-lt", "pac-q8-hp", "pac-q8-c2", "pac-q8-m8",
          "pac-q8-f9", "pac-q8-t10", "pac-q8-n11"}
#: Samples made from frames drawn on pac-key's learned reference (a moving disc and a
#: box over the maze), so their key frames are predicted from it (pcz.md §14.6): the
#: Atari frames look nothing like the reference and would be coded on their own.
ON_REFERENCE = {"pac-q8-key", "pac-q8-ctx", "pac-q8-lt", "pac-q8-hp", "pac-q8-c2", "pac-q8-m8", "pac-q8-f9",
                "pac-q8-t10", "pac-q8-n11", "pac-q8-r12"}
#: ... drawn with anti-aliased edges at half-pixel positions, moving by 1.5 pixels a
#: frame, so that blocks are taken at half-pixel offsets (6.0, pcz.md §14.8; pac-q8-c2:
#: the same frames as a 7.0 file, whose symbol model reads §14.9's features; pac-q8-m8:
#: as an 8.0 file, whose side information has §14.10's contexts; pac-q8-f9: as a 9.0
#: file, whose block flags have §14.11's; pac-q8-t10: as a 10.0 file, its predicted
#: frames' streams trimmed, §14.12; pac-q8-n11: as an 11.0 file, its choices coded with
#: pac-ctx3's network, §14.13).
HALF_PIXEL = {"pac-q8-hp", "pac-q8-c2", "pac-q8-m8", "pac-q8-f9", "pac-q8-t10", "pac-q8-n11"}
#: ... drawn with a disc whose mouth opens and closes in a cycle of 4 frames while it
#: moves right 2 pixels a frame, so that its look now is its look 4 frames ago 8 pixels
#: to the left: blocks taken from far references beyond ±4 (12.0, pcz.md §14.14).
FAR = {"pac-q8-r12"}
#: How many frames the drawn source has (pac-q8-lt: one GOP of 12, so its later
#: P-frames name the intra frame as reference 4, the 5.0 rule of pcz.md §14.3).
DRAWN = 12


def source_frames() -> np.ndarray:
    frames = list(record_atari(game="ms_pacman", frames=150 + FRAMES, seed=SEED))
    return np.stack(frames[-FRAMES:])  # past the intro, so frames move


def reference_frames(count: int = 8, half: bool = False, far: bool = False) -> np.ndarray:
    """Frames of the learned reference with a yellow disc moving right and a pink box
    moving down: what a key frame predicted from the reference codes. ``half``: the disc
    anti-aliased at half-pixel positions, 1.5 pixels a frame; ``far``: a disc with a
    mouth that cycles through 4 openings, 2 pixels a frame."""
    import cv2

    from pacodec import zoo

    reference = zoo.load("pac-key")[0].reference()
    frames = []
    for t in range(count):
        frame = reference.copy()
        if far:
            centre, mouth = (40 + 2 * t, 150), 15 * (t % 4)  # half the mouth's angle, degrees
            cv2.ellipse(frame, centre, (7, 7), 0, mouth, 360 - mouth, (255, 255, 0), -1)
        elif half:  # cv2's shift=1: coordinates in half pixels
            cv2.circle(frame, (80 + 3 * t, 300), 12, (255, 255, 0), -1, cv2.LINE_AA, shift=1)
        else:
            cv2.circle(frame, (40 + 3 * t, 150), 5, (255, 255, 0), -1)
        cv2.rectangle(frame, (100, 60 + 2 * t), (109, 69 + 2 * t), (255, 160, 200), -1)
        frames.append(frame)
    return np.stack(frames)


def write_source(path: Path, frames: np.ndarray) -> Path:
    with VideoWriter(path, fps=30, width=frames.shape[2], height=frames.shape[1]) as out:
        for frame in frames:
            out.write(frame)
    return path


def make(name: str, model: str, quantizer: str | None, gop: int, source: Path) -> None:
    pcz = SAMPLES / f"{name}.pcz"
    api.encode(source, pcz, model=model, quantizer=quantizer, gop=gop, force=True)
    facts = api.probe(pcz)
    facts.pop("file")
    frames_dir = SAMPLES / name
    shutil.rmtree(frames_dir, ignore_errors=True)
    frames_dir.mkdir()
    import cv2

    with pacodec.open(pcz) as reader:
        digest = reader.symbol_digest()
        for i, frame in enumerate(reader):
            cv2.imwrite(str(frames_dir / f"frame_{i:06d}.png"), frame[..., ::-1])
    origin = (f"{DRAWN} frames drawn on pac-key's reference (tools/make_golden.py reference_frames"
              f"{', half=True' if name in HALF_PIXEL else ', far=True' if name in FAR else ''})"
              if name in ON_REFERENCE else
              f"ale-py ms_pacman seed {SEED}, last {FRAMES} of {150 + FRAMES} frames (frameskip 2)")
    expected = {"model": model, "quantizer": quantizer, "gop": gop, "info": facts,
                "symbols_sha256": digest, "source": origin}
    (SAMPLES / f"{name}.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"{name}: {facts['file_bytes']} bytes, symbols {digest[:16]}…")


def main(names: list[str]) -> int:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        atari = write_source(Path(tmp) / "source.mkv", source_frames())
        drawn = write_source(Path(tmp) / "drawn.mkv", reference_frames(DRAWN))
        half = write_source(Path(tmp) / "half.mkv", reference_frames(DRAWN, half=True))
        far = write_source(Path(tmp) / "far.mkv", reference_frames(DRAWN, far=True))
        for name in names or [n for n in GOLDEN if n not in FROZEN]:
            if name in FROZEN:
                raise SystemExit(f"{name} is frozen as an older version wrote it (FROZEN)")
            source = half if name in HALF_PIXEL else far if name in FAR else drawn if name in ON_REFERENCE else atari
            make(name, *GOLDEN[name], source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
