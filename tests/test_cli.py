"""Hostile input through the real ``pacodec`` entry point (DESIGN.md, "Errors and exit codes").

Every failure: exit 2 for bad input (FormatError, InputError, WeightsError), 3 for output
problems (OutputError), 1 only for bugs; stderr is ONE line naming the file and what is
wrong, no traceback unless ``--debug``. The container's own truncation/bit-flip fuzzing
lives in test_pcz.py; here each kind of damage is checked once at the CLI.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

TINY = ("--model", "tiny-conv", "--quantizer", "naive")


def one_line_error(r, code: int, *texts: str) -> str:
    """Assert exit ``code`` and one stderr line, no traceback, holding every text."""
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pacodec: error: "), lines[0]
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def no_partials(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]


@pytest.fixture(scope="module")
def pcz(tmp_path_factory, clip, tiny_weights) -> Path:
    """The 20-frame fixture clip coded with tiny-conv + naive (16,000-byte records)."""
    import pacodec

    path = tmp_path_factory.mktemp("pcz") / "clip.pcz"
    pacodec.encode(clip, path, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    return path


def header_size(data: bytes) -> int:
    """formats/pcz.md §3: 8-byte preamble (body_length u16 at 6), body, CRC32."""
    return 8 + int.from_bytes(data[6:8], "little") + 4


def reseal_header(data: bytearray) -> None:
    """Recompute the header CRC32 over bytes 0 … 8+body_length−1."""
    end = header_size(data) - 4
    data[end:end + 4] = zlib.crc32(bytes(data[:end])).to_bytes(4, "little")


def damaged(pcz: Path, tmp_path: Path, name: str, edit) -> Path:
    data = bytearray(pcz.read_bytes())
    edit(data)
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


def decode(src: Path, out: Path, weights: Path, *extra: str):
    return run_cli("decode", str(src), "-o", str(out), "--weights", str(weights), *extra)


# --- inputs that are not there, not readable, not video ----------------------------


def test_missing_input(tmp_path):
    one_line_error(run_cli("encode", str(tmp_path / "nope.mkv"), "-o", str(tmp_path / "x.pcz")),
                   2, "nope.mkv", "no such file")
    one_line_error(run_cli("decode", str(tmp_path / "nope.pcz"), "-o", str(tmp_path / "x.mkv")),
                   2, "nope.pcz", "no such file")
    one_line_error(run_cli("info", str(tmp_path / "nope.pcz")), 2, "nope.pcz", "no such file")
    assert list(tmp_path.iterdir()) == []


def test_directory_as_input(tmp_path):
    empty = tmp_path / "frames"
    empty.mkdir()
    one_line_error(run_cli("encode", str(empty), "-o", str(tmp_path / "x.pcz")),
                   2, str(empty), "no image frames")
    line = one_line_error(run_cli("decode", str(empty), "-o", str(tmp_path / "x.mkv")), 2, str(empty))
    assert "folder" in line or "directory" in line.lower(), line
    one_line_error(run_cli("info", str(empty)), 2, str(empty))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway; "
                    "test_directory_as_input covers an input that cannot be read as a file")
def test_unreadable_input(tmp_path, clip, pcz):
    for src, cmd in ((clip, "encode"), (pcz, "decode")):
        locked = tmp_path / ("locked" + src.suffix)
        locked.write_bytes(src.read_bytes())
        locked.chmod(0)
        try:
            out = tmp_path / ("out.pcz" if cmd == "encode" else "out.mkv")
            one_line_error(run_cli(cmd, str(locked), "-o", str(out)), 2,
                           str(locked), "cannot read")
        finally:
            locked.chmod(0o600)


def test_random_bytes_are_not_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(7).bytes(5000))
    one_line_error(run_cli("encode", str(junk), "-o", str(tmp_path / "x.pcz")),
                   2, "junk.mp4", "not a readable video file")
    no_partials(tmp_path)
    assert not (tmp_path / "x.pcz").exists()


def test_video_with_zero_frames(tmp_path, tiny_weights):
    import av

    empty = tmp_path / "empty.avi"
    container = av.open(str(empty), "w", format="avi")
    stream = container.add_stream("mjpeg", rate=30)
    stream.width, stream.height, stream.pix_fmt = 160, 200, "yuvj420p"
    container.start_encoding()
    container.close()
    one_line_error(run_cli("encode", str(empty), "-o", str(tmp_path / "x.pcz"), *TINY,
                           "--weights", str(tiny_weights)), 2, "empty.avi", "no frames")
    no_partials(tmp_path)
    assert not (tmp_path / "x.pcz").exists()


@pytest.mark.parametrize("ext, codec, expected", [
    ("mkv", "ffv1", "ends before its first frame"),   # Matroska: headers only, then EOF
    ("mp4", "libx264", "no streams at all"),          # MP4: the muxer writes no track
])
def test_zero_frame_mkv_and_mp4(tmp_path, ext, codec, expected):
    import av

    empty = tmp_path / f"empty.{ext}"
    container = av.open(str(empty), "w")
    stream = container.add_stream(codec, rate=30)
    stream.width, stream.height, stream.pix_fmt = 160, 200, "yuv420p"
    container.start_encoding()
    container.close()
    one_line_error(run_cli("encode", str(empty), "-o", str(tmp_path / "x.pcz")), 2, f"empty.{ext}", expected)
    assert not (tmp_path / "x.pcz").exists()


def test_frames_beyond_the_size_caps(tmp_path):
    import av

    from pacodec.pcz.limits import MAX_WIDTH

    wide = tmp_path / "wide.mkv"
    with av.open(str(wide), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = MAX_WIDTH + 4, 16, "bgr0"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, MAX_WIDTH + 4, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    one_line_error(run_cli("encode", str(wide), "-o", str(tmp_path / "x.pcz")),
                   2, "wide.mkv", f"{MAX_WIDTH + 4}x16", "exceeds the limit")


@pytest.mark.parametrize("src", ["concat:{a}|{a}", "http://example.com/game.mkv",
                                 "file:{a}", "{playlist}"])
def test_only_local_files_are_read(tmp_path, clip, src):
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{clip}\n")
    src = src.format(a=clip, playlist=playlist)
    line = one_line_error(run_cli("encode", src, "-o", str(tmp_path / "x.pcz")), 2)
    assert ("only local files" in line) or ("playlists" in line), line
    assert src in line  # the name as typed (not "http:/example.com/...")
    assert not (tmp_path / "x.pcz").exists()
    line = one_line_error(run_cli("compare", src, str(clip)), 2)
    assert src in line, line


# --- models and weights ---------------------------------------------------------------


def test_unknown_model_id(tmp_path, clip):
    one_line_error(run_cli("encode", str(clip), "-o", str(tmp_path / "x.pcz"), "--model", "conv9"),
                   2, "unknown model id 'conv9'")
    assert list(tmp_path.iterdir()) == []


def test_weights_differ_from_the_header(tmp_path, pcz, atari_frames):
    """Encode with the tiny weights, decode with tiny-conv retrained on another seed."""
    from pacodec.train import TrainConfig, train

    other = tmp_path / "other-weights"
    other.mkdir()
    train(TrainConfig(model_id="tiny-conv", out_dir=other, epochs=1, batch_size=4, lr=3e-3, seed=5),
          atari_frames[:8])
    out = tmp_path / "out.mkv"
    one_line_error(decode(pcz, out, other), 2, str(pcz), "sha256", "tiny-conv")
    assert not out.exists()
    no_partials(tmp_path)
    # DESIGN.md, Weights: refused unless forced.
    r = decode(pcz, out, other, "--force-weights")
    assert r.returncode == 0 and out.exists(), r.stderr


# --- damaged .pcz files -----------------------------------------------------------------


def test_wrong_magic(tmp_path, pcz, tiny_weights):
    bad = damaged(pcz, tmp_path, "magic.pcz", lambda d: d.__setitem__(slice(0, 4), b"RIFF"))
    one_line_error(decode(bad, tmp_path / "o.mkv", tiny_weights), 2, "magic.pcz", "magic")
    one_line_error(run_cli("info", str(bad)), 2, "magic.pcz", "magic")


def test_unknown_format_version(tmp_path, pcz, tiny_weights):
    def edit(d):
        d[4] = 13  # version_major; the CRC is recomputed so only the version is wrong
        reseal_header(d)

    bad = damaged(pcz, tmp_path, "v13.pcz", edit)
    one_line_error(decode(bad, tmp_path / "o.mkv", tiny_weights), 2, "v13.pcz", "version", "13.0",
                   "not readable")


def test_bad_header_crc(tmp_path, pcz, tiny_weights):
    bad = damaged(pcz, tmp_path, "hcrc.pcz", lambda d: d.__setitem__(10, d[10] ^ 0x01))
    one_line_error(decode(bad, tmp_path / "o.mkv", tiny_weights), 2, "hcrc.pcz", "header",
                   "CRC32 mismatch")


def record_flip(d: bytearray) -> None:
    at = header_size(d) + 5 * 16007 + 100  # inside frame 5's payload (16,000 bytes + 7 framing)
    d[at] ^= 0xFF


def test_bad_record_crc(tmp_path, pcz, tiny_weights):
    bad = damaged(pcz, tmp_path, "rcrc.pcz", record_flip)
    out = tmp_path / "o.mkv"
    one_line_error(decode(bad, out, tiny_weights), 2, "rcrc.pcz", "record", "CRC32 mismatch")
    assert not out.exists()
    no_partials(tmp_path)


def test_salvage_skips_a_damaged_record_and_keeps_going(tmp_path, pcz, tiny_weights):
    from pacodec.video import iter_frames

    bad = damaged(pcz, tmp_path, "rcrc.pcz", record_flip)
    out = tmp_path / "o.mkv"
    r = decode(bad, out, tiny_weights, "--salvage", "-q")
    assert r.returncode == 0, r.stderr
    assert "skipped 1 damaged frame(s)" in r.stderr and "[5]" in r.stderr, r.stderr
    assert "rcrc.pcz" in r.stderr
    assert sum(1 for _ in iter_frames(out)) == 20


def test_truncated_file(tmp_path, pcz, tiny_weights):
    from pacodec.video import iter_frames

    size = pcz.stat().st_size
    cut = damaged(pcz, tmp_path, "cut.pcz", lambda d: d.__delitem__(slice(size // 2, None)))
    out = tmp_path / "o.mkv"
    one_line_error(decode(cut, out, tiny_weights), 2, "cut.pcz", "file ends inside")
    assert not out.exists()
    no_partials(tmp_path)
    # --salvage: every whole record decodes, exit 0.
    whole = (size // 2 - header_size(pcz.read_bytes())) // 16007
    r = decode(cut, out, tiny_weights, "--salvage", "-q")
    assert r.returncode == 0, r.stderr
    assert 0 < whole < 20
    assert sum(1 for _ in iter_frames(out)) == whole


def test_debug_shows_a_traceback(tmp_path, pcz, tiny_weights):
    bad = damaged(pcz, tmp_path, "hcrc.pcz", lambda d: d.__setitem__(10, d[10] ^ 0x01))
    r = run_cli("--debug", "decode", str(bad), "-o", str(tmp_path / "o.mkv"),
                "--weights", str(tiny_weights))
    assert r.returncode == 2
    assert "Traceback" in r.stderr and "ChecksumError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("pacodec: error: ")


# --- outputs ----------------------------------------------------------------------------


def test_existing_output_without_force(tmp_path, clip, pcz, tiny_weights):
    out = tmp_path / "mine.mkv"
    out.write_bytes(b"precious")
    one_line_error(decode(pcz, out, tiny_weights), 3, "mine.mkv", "already exists", "--force")
    assert out.read_bytes() == b"precious"
    mine = tmp_path / "mine.pcz"
    mine.write_bytes(b"mine")
    one_line_error(run_cli("encode", str(clip), "-o", str(mine), "--model", "tiny-conv",
                           "--weights", str(tiny_weights)), 3, "mine.pcz", "already exists", "--force")
    assert mine.read_bytes() == b"mine"
    no_partials(tmp_path)


def test_output_folder_missing(tmp_path, clip, pcz, tiny_weights):
    one_line_error(run_cli("encode", str(clip), "-o", str(tmp_path / "no" / "x.pcz"), *TINY,
                           "--weights", str(tiny_weights)), 3, "x.pcz", "does not exist")
    one_line_error(decode(pcz, tmp_path / "no" / "x.mkv", tiny_weights), 3, "x.mkv",
                   "does not exist")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_output_folder_no_one_can_write(tmp_path, clip, pcz, tiny_weights):
    """procfs takes no new files, not even from root (the chmod test below skips as root)."""
    line = one_line_error(decode(pcz, Path("/proc/pacodec-test.mkv"), tiny_weights), 3,
                          "/proc/pacodec-test.mkv", "cannot write")
    assert ".partial" not in line, line
    line = one_line_error(run_cli("encode", str(clip), "-o", "/proc/pacodec-test.pcz", *TINY,
                                  "--weights", str(tiny_weights)), 3, "/proc/pacodec-test.pcz", "cannot write")
    assert ".partial" not in line, line


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_input_no_one_can_read(tmp_path):
    """/proc/self/mem refuses reads at offset 0, even from root (see test_unreadable_input)."""
    for cmd in ("encode", "decode"):
        out = tmp_path / ("x.pcz" if cmd == "encode" else "x.mkv")
        one_line_error(run_cli(cmd, "/proc/self/mem", "-o", str(out)), 2, "/proc/self/mem")
        assert not out.exists()
    one_line_error(run_cli("info", "/proc/self/mem"), 2, "/proc/self/mem")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_output_folder_read_only(tmp_path, pcz, tiny_weights):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(decode(pcz, locked / "x.mkv", tiny_weights), 3, "x.mkv", "cannot write")
    finally:
        locked.chmod(0o700)


def test_unknown_output_type_names_the_output(tmp_path, pcz, tiny_weights):
    line = one_line_error(decode(pcz, tmp_path / "x.avi", tiny_weights), 2, "x.avi",
                          "unknown output type")
    assert ".partial" not in line
    assert list(tmp_path.iterdir()) == []
