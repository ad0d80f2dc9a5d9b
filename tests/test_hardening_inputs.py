"""Hostile inputs that once cost memory, crashed or stopped early (issue 13, findings 8, 9,
14, 15, 16), each through the real CLI or the public API.

- An image whose header claims a huge picture is refused from its header, before decoding.
- A weights manifest or file of the wrong shape is a WeightsError (exit 2), and a weights
  "file" that is a device or never ends is refused without reading it.
- Salvage counts a record whose CRC is good but whose contents cannot be decoded as
  damaged and goes on; every such message names the file.
- ``decode --size source`` keeps one frame at the source size at a time.
- Audio is dropped with one warning line (none under -q); an empty frame payload is
  refused where the model cannot decode one.

Peak memory is measured as the resident-set high-water mark of a fresh subprocess
(``ru_maxrss``), with margins of several times what the fixed code needs.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

MB = 1024  # ru_maxrss is in KiB on Linux


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def peak_cli(*args: str, env: dict | None = None, timeout: int = 300) -> tuple[int, str, int]:
    """Run ``pacodec`` in a fresh process: (exit code, stderr, peak RSS in KiB)."""
    script = (
        "import resource, sys\n"
        "from pacodec.cli import main\n"
        "try:\n"
        "    main(sys.argv[2:])\n"
        "finally:\n"
        "    with open(sys.argv[1], 'w') as f:\n"
        "        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        proc = subprocess.run([sys.executable, "-c", script, str(peak_file), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        return proc.returncode, proc.stderr, int(peak_file.read_text())


# --- 8: an image is measured by its header before it is decoded ----------------------------


def rle8_bmp(width: int, height: int) -> bytes:
    """A 1,080-byte BMP of width×height, RLE8-compressed: a palette and an end-of-bitmap
    code. Decoding it allocates width×height×3 bytes."""
    palette = bytes(256 * 4)
    pixels = b"\x00\x01"  # RLE8: end of bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


@pytest.mark.parametrize("side", [20000, 5000])  # over Pillow's own bomb bound, and under it
@pytest.mark.parametrize("where", ["file", "first frame", "later frame"])
def test_a_huge_bmp_is_refused_from_its_header(tmp_path, side, where):
    bomb = rle8_bmp(side, side)
    if where == "file":
        src = tmp_path / "bomb.bmp"
        src.write_bytes(bomb)
    else:
        src = tmp_path / "frames"
        src.mkdir()
        (src / "a.bmp").write_bytes(rle8_bmp(160, 200) if where == "later frame" else bomb)
        (src / "b.bmp").write_bytes(bomb)
    # The same command failing at the same point on a small picture: what it costs anyway
    # (after the first frame, the model is loaded).
    if where == "later frame":
        base = tmp_path / "base"
        base.mkdir()
        (base / "a.bmp").write_bytes(rle8_bmp(160, 200))
        (base / "b.bmp").write_bytes(rle8_bmp(200, 160))  # refused: not the first frame's size
    else:
        base = tmp_path / "missing.bmp"
    _, _, baseline = peak_cli("encode", str(base), "-o", str(tmp_path / "out.pcz"))
    code, err, peak = peak_cli("encode", str(src), "-o", str(tmp_path / "out.pcz"))
    assert code == 2, err
    line = one_line(err)
    assert "exceeds the limit" in line and ".bmp" in line, line
    # Decoding the picture would cost side² × 3 bytes (1.2 GB at 20000, 75 MB at 5000;
    # cv2 took 2.4 GB and 150 MB): allow half of it.
    assert peak - baseline < side * side * 3 // 2 // 1024, f"peak {peak // MB} MB, baseline {baseline // MB} MB"
    assert not (tmp_path / "out.pcz").exists()


def test_small_images_still_read(tmp_path):
    """The header check reads what cv2 decodes: BMP (RLE too), PNG and JPEG sizes."""
    import cv2

    from pacodec.video import probe, iter_frames

    frames = tmp_path / "frames"
    frames.mkdir()
    picture = np.random.default_rng(0).integers(0, 255, (200, 160, 3), np.uint8)
    cv2.imwrite(str(frames / "a.png"), picture)
    cv2.imwrite(str(frames / "b.jpg"), picture)
    (frames / "c.bmp").write_bytes(rle8_bmp(160, 200))
    info = probe(frames)
    assert (info.width, info.height, info.frames) == (160, 200, 3)
    assert [f.shape for f in iter_frames(frames)] == [(200, 160, 3)] * 3
