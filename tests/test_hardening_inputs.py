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
import re
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


# --- 9: a weights manifest or file of the wrong shape is a WeightsError ---------------------


def tiny_conv_bytes(config: str | None = None, model_id: str = "tiny-conv") -> bytes:
    """safetensors bytes of an untrained tiny-conv, its metadata ``config`` replaced when given."""
    from safetensors.torch import save

    from pacodec import zoo
    from pacodec.models import build_model

    model = build_model("tiny-conv")
    if config is None:
        return zoo.serialize(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return save(state, metadata={"model_id": model_id, "config": config})


def weights_folder(folder: Path, manifest: object, files: dict[str, bytes] | None = None) -> Path:
    folder.mkdir()
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def entry(file: object = "tiny-conv.safetensors", sha256: object = None, **more) -> dict:
    return {"id": "tiny-conv", "file": file, "sha256": sha256 or "0" * 64, **more}


@pytest.fixture(scope="module")
def one_frame(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("frames")
    picture = np.random.default_rng(1).integers(0, 255, (200, 160, 3), np.uint8)
    cv2.imwrite(str(folder / "frame_0.png"), picture)
    return folder


def encode_with(weights: Path, one_frame: Path, tmp_path: Path, how: str, timeout: int = 120):
    out = tmp_path / "out.pcz"
    args = ["encode", str(one_frame), "-o", str(out), "-m", "tiny-conv", "--quantizer", "naive"]
    if how == "--weights":
        proc = run_cli(*args, "--weights", str(weights), timeout=timeout)
    else:
        proc = run_cli(*args, env={"PACODEC_WEIGHTS": str(weights)}, timeout=timeout)
    return proc, out


def test_good_weights_folder_encodes(tmp_path, one_frame):
    """The control: the folders below differ from this one in one thing each."""
    data = tiny_conv_bytes()
    sha = __import__("hashlib").sha256(data).hexdigest()
    weights = weights_folder(tmp_path / "w", {"models": [entry(sha256=sha)]},
                             {"tiny-conv.safetensors": data})
    proc, out = encode_with(weights, one_frame, tmp_path, "env")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


BAD_MANIFESTS = {
    "models a list of names": {"models": ["tiny-conv"]},
    "models a dict of strings": {"models": {"tiny-conv": "tiny-conv.safetensors"}},
    "models null": {"models": None},
    "not an object": ["tiny-conv"],
    "entry without file": {"models": [{"id": "tiny-conv", "sha256": "0" * 64}]},
    "file a number": {"models": [entry(file=5)]},
    "sha256 a number": {"models": [entry(sha256=5)]},
    "id null": {"models": [{**entry(), "id": None}]},
    "file outside the folder": {"models": [entry(file="../tiny-conv.safetensors")]},
    "measured a string": {"models": [entry(measured="good")]},
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_manifest_of_the_wrong_shape_is_a_weights_error(tmp_path, one_frame, case):
    data = tiny_conv_bytes()
    weights = weights_folder(tmp_path / "w", BAD_MANIFESTS[case], {"tiny-conv.safetensors": data})
    proc, out = encode_with(weights, one_frame, tmp_path, "env" if len(case) % 2 else "--weights")
    assert proc.returncode == 2, proc.stderr
    assert "manifest.json" in one_line(proc.stderr)
    assert not out.exists()
    # `pacodec models` reads every manifest entry too.
    proc = run_cli("models", env={"PACODEC_WEIGHTS": str(weights)})
    assert proc.returncode == 2, proc.stderr
    assert "manifest.json" in one_line(proc.stderr)


@pytest.mark.parametrize("target", ["/dev/zero", "symlink to /dev/zero"])
def test_a_weights_file_that_is_a_device_is_refused_unread(tmp_path, one_frame, target):
    """/dev/zero never ends: it was read until MemoryError."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    folder = tmp_path / "w"
    if target == "/dev/zero":
        weights = weights_folder(folder, {"models": [entry(file="/dev/zero")]})
    else:
        weights = weights_folder(folder, {"models": [entry()]})
        (folder / "tiny-conv.safetensors").symlink_to("/dev/zero")
    proc, _ = encode_with(weights, one_frame, tmp_path, "--weights", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "tiny-conv" in one_line(proc.stderr) or "/dev/zero" in one_line(proc.stderr)


BAD_FILES = {
    "config a string": lambda: tiny_conv_bytes(config=json.dumps("tiny")),
    "config a number": lambda: tiny_conv_bytes(config="5"),
    "config a list": lambda: tiny_conv_bytes(config="[160, 200]"),
    "config not JSON": lambda: tiny_conv_bytes(config="{"),
    "config width text": lambda: tiny_conv_bytes(config=json.dumps({"width": "wide"})),
    "config channels empty": lambda: tiny_conv_bytes(config=json.dumps({"channels": []})),
    "no model id": lambda: tiny_conv_bytes(config="{}", model_id=""),
    "metadata values not text": lambda: _with_header(
        {"__metadata__": {"model_id": "tiny-conv", "config": {"width": 160}}}),
    "header a list": lambda: _with_header([]),
    "tensor past the end": lambda: _with_header(
        {"w": {"dtype": "F32", "shape": [1 << 20], "data_offsets": [0, 4 << 20]}}),
    "trailing bytes": lambda: tiny_conv_bytes() + bytes(1 << 16),
    "header length past the end": lambda: (1 << 40).to_bytes(8, "little") + b"{}",
}


def _with_header(header: object) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_weights_file_of_the_wrong_shape_is_a_weights_error(tmp_path, one_frame, case):
    import hashlib

    data = BAD_FILES[case]()
    weights = weights_folder(tmp_path / "w", {"models": [entry(sha256=hashlib.sha256(data).hexdigest())]},
                             {"tiny-conv.safetensors": data})
    proc, out = encode_with(weights, one_frame, tmp_path, "env" if len(case) % 2 else "--weights")
    assert proc.returncode == 2, proc.stderr
    assert "tiny-conv.safetensors" in one_line(proc.stderr)
    assert not out.exists()


# --- 14: salvage goes on past records that pass their CRC but do not decode -----------------


def forge(src: Path, dst: Path, frames: list[tuple[int, bool]], payloads: dict[int, bytes]) -> None:
    """Write ``dst`` with ``src``'s header and params, and frame records
    ``(source frame, predicted)`` in order; ``payloads[k]`` replaces frame k's payload.
    Every record gets a good CRC, and the file an index and trailer."""
    from pacodec.pcz import PczReader, PczWriter

    with open(src, "rb") as f:
        reader = PczReader(f)
        header, params = reader.header, reader.params
        source = [record.payload for record in reader]
    with open(dst, "wb") as f:
        writer = PczWriter(f, header)
        if params is not None:
            writer.write_params(params)
        for k, (frame, predicted) in enumerate(frames):
            if predicted and writer._since_intra is None:
                writer._since_intra = 0  # PczWriter refuses a predicted first frame: forge one
            writer.write_frame(payloads.get(k, source[frame]), predicted=predicted)
        writer.close()


@pytest.fixture(scope="module")
def coded(tmp_path_factory, clip, tiny_weights) -> dict[str, Path]:
    """The fixture clip's first 6 frames: tiny-conv + naive (all intra), and tiny-pac with
    GOP 3 (intra at 0 and 3, predicted between)."""
    import pacodec

    folder = tmp_path_factory.mktemp("coded")
    out = {"intra": folder / "intra.pcz", "gop": folder / "gop.pcz"}
    pacodec.encode(clip, out["intra"], model="tiny-conv", quantizer="naive", weights_dir=tiny_weights,
                   max_frames=6)
    pacodec.encode(clip, out["gop"], model="tiny-pac", weights_dir=tiny_weights, max_frames=6, gop=3)
    with pacodec.open(out["gop"], weights_dir=tiny_weights) as r:
        assert [r.pcz.record(k).type.name for k in range(6)] == ["INTRA", "PREDICTED", "PREDICTED"] * 2
    return out


SALVAGE_CASES = {
    # frame 0 predicted (from frame 1's record): no reference to predict from
    "predicted first": ("gop", [(1, True), (2, True), (3, False), (4, True), (5, True)], {}, [0, 1]),
    # an empty payload where tiny-conv + naive needs 16,000 bytes
    "empty intra payload": ("intra", [(k, False) for k in range(6)], {2: b""}, [2]),
    # a predicted payload that is not whole 32-bit words: the chain breaks until frame 3
    "garbled predicted payload": ("gop", [(k, k % 3 != 0) for k in range(6)], {1: b"\x01\x02\x03"}, [1, 2]),
}


@pytest.mark.parametrize("case", sorted(SALVAGE_CASES))
def test_salvage_goes_on_past_an_undecodable_record(tmp_path, coded, tiny_weights, case):
    import pacodec

    kind, frames, payloads, damaged = SALVAGE_CASES[case]
    forged = tmp_path / "forged.pcz"
    forge(coded[kind], forged, frames, payloads)
    out = tmp_path / "out.mkv"

    proc = run_cli("decode", str(forged), "-o", str(out), "--weights", str(tiny_weights))
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert str(forged) in line and f"frame {damaged[0]}" in line, line
    assert not out.exists()

    proc = run_cli("decode", str(forged), "-o", str(out), "--salvage", "--weights", str(tiny_weights))
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {len(damaged)} damaged frame(s)" in proc.stderr and str(damaged) in proc.stderr
    assert f"{len(frames)} frames" in proc.stdout
    with pacodec.open(forged, salvage=True, weights_dir=tiny_weights) as reader:
        decoded = list(reader)
        assert reader.damaged == damaged
    assert len(decoded) == len(frames)
    with pacodec.open(coded[kind], weights_dir=tiny_weights) as good:
        # Frames after the damage decode as in the sound file (from the next intra frame on).
        later = max(damaged) + 1
        for k in range(later, len(frames)):
            if frames[k][0] == k:
                np.testing.assert_array_equal(decoded[k], good[k])


def test_reading_an_undecodable_frame_names_the_file(tmp_path, coded, tiny_weights):
    """``reader[i]`` too: the message names the file and the frame."""
    import pacodec

    forged = tmp_path / "forged.pcz"
    forge(coded["intra"], forged, [(k, False) for k in range(6)], {2: b""})
    with pacodec.open(forged, weights_dir=tiny_weights) as reader:
        np.testing.assert_array_equal(reader[1], reader[1])
        with pytest.raises(pacodec.FormatError, match=rf"^{re.escape(str(forged))}: frame 2: "):
            reader[2]


# --- 15: decode --size source holds one source-size frame at a time ------------------------


def with_source_size(src: Path, dst: Path, frames: int, width: int, height: int) -> None:
    """``src``'s records repeated to ``frames`` frames, under a header that says the
    source was width×height (any size within the caps is valid, pcz.md §3)."""
    import dataclasses

    from pacodec.pcz import PczReader, PczWriter

    with open(src, "rb") as f:
        reader = PczReader(f)
        header = dataclasses.replace(reader.header, source_width=width, source_height=height)
        payloads = [record.payload for record in reader]
    with open(dst, "wb") as f, PczWriter(f, header) as writer:
        for k in range(frames):
            writer.write_frame(payloads[k % len(payloads)])


def test_decode_to_source_size_does_not_grow_with_the_frame_count(tmp_path, coded, tiny_weights):
    """A 4096×2304 source is 28 MB a frame. Memory may grow with the frame size (the
    encoders' own buffers), not with the frame count: the lossy-output check kept 30
    source-size frames and x264 looked 40 frames ahead (4.6 GB for 30 frames)."""
    width, height = 4096, 2304
    frame_kib = width * height * 3 // 1024
    peaks = {}
    for frames in (15, 30):
        src = tmp_path / f"{frames}.pcz"
        with_source_size(coded["intra"], src, frames, width, height)
        out = tmp_path / f"{frames}.mp4"
        code, err, peaks[frames] = peak_cli("-q", "decode", str(src), "-o", str(out), "--size", "source",
                                            "--weights", str(tiny_weights), timeout=600)
        assert code == 0, err
        import av

        with av.open(str(out)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (width, height)
    assert peaks[30] - peaks[15] < 8 * frame_kib, \
        f"15 frames: {peaks[15] // MB} MB, 30 frames: {peaks[30] // MB} MB"


# --- 16a: a warning is one line of pacodec's, and none under -q -----------------------------


@pytest.fixture(scope="module")
def with_audio(tmp_path_factory) -> Path:
    """Four 160×200 frames of H.264 and a second of AAC silence in one .mp4."""
    import av

    path = tmp_path_factory.mktemp("audio") / "with_audio.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 160, 200, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        rng = np.random.default_rng(2)
        for k in range(4):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (200, 160, 3), np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for k in range(48):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 48000, k * 1024
            for packet in audio.encode(samples):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


@pytest.mark.parametrize("quiet", [False, True])
def test_dropped_audio_is_one_warning_line(tmp_path, with_audio, tiny_weights, quiet):
    out = tmp_path / "out.pcz"
    proc = run_cli(*(["-q"] if quiet else []), "encode", str(with_audio), "-o", str(out),
                   "-m", "tiny-conv", "--quantizer", "naive", "--weights", str(tiny_weights))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    if quiet:
        assert proc.stderr == ""
    else:
        assert proc.stderr.splitlines() == [
            f"pacodec: warning: {with_audio}: the audio stream is dropped; pacodec codes video only"]


# --- 16c: an empty frame payload is corrupt for every model (pcz.md §10) ---------------------

SAMPLES = ROOT / "formats" / "samples"


def blank_frame(src: Path, dst: Path, frame: int) -> int:
    """``src`` with frame ``frame``'s payload emptied (its record stays sound); returns
    the file's frame count."""
    from pacodec.pcz import PczReader, RecordType

    with open(src, "rb") as f:
        kinds = [(k, record.type == RecordType.PREDICTED) for k, record in enumerate(PczReader(f))]
    forge(src, dst, kinds, {frame: b""})
    return len(kinds)


@pytest.mark.parametrize("name,frame", [("conv4-naive", 1), ("pac-q3-gop4", 0), ("pac-q3-gop4", 1),
                                        ("pac-q8-gop8", 0), ("pac-q8-gop8", 2)])
def test_an_empty_payload_is_refused_by_both_readers(tmp_path, name, frame):
    """An empty INTRA or PREDICTED payload: a fixed-width, a plain entropy and a 2.x
    two-layer stream. It decoded (a zero-word entropy stream gives the lowest symbols,
    or all-SKIP blocks), so 6-byte records made frames; now it is a lost frame."""
    import pacodec
    from tools import specread

    blank = tmp_path / "blank.pcz"
    frames = blank_frame(SAMPLES / f"{name}.pcz", blank, frame)

    proc = run_cli("decode", str(blank), "-o", str(tmp_path / "out.mkv"))
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert str(blank) in line and f"frame {frame}" in line and "empty payload" in line, line
    with pytest.raises(specread.Refused, match="empty payload"):
        specread.read(blank, [ROOT / "pacodec" / "weights"])

    with pacodec.open(blank, salvage=True) as reader:
        assert len(list(reader)) == frames
        lost = reader.damaged
    assert lost[0] == frame
    theirs = specread.read(blank, [ROOT / "pacodec" / "weights"], salvage=True).survivors
    assert [k not in lost for k in range(frames)] == theirs


def test_many_empty_records_are_not_many_frames(tmp_path):
    """1,000 six-byte records after one good INTRA frame: a strict reader refuses the
    file, a salvaging one decodes 1 frame and lists 1,000 lost."""
    import pacodec
    from pacodec.pcz import PczReader, PczWriter

    with open(SAMPLES / "pac-q3-intra.pcz", "rb") as f:
        reader = PczReader(f)
        header, first = reader.header, next(iter(reader)).payload
    path = tmp_path / "empty.pcz"
    with open(path, "wb") as f, PczWriter(f, header) as writer:
        writer.write_frame(first)
        for _ in range(1000):
            writer.write_frame(b"")
    assert path.stat().st_size < len(first) + 7000
    proc = run_cli("decode", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "frame 1: empty payload" in one_line(proc.stderr)
    assert not (tmp_path / "out").exists()
    with pacodec.open(path, salvage=True) as salvaged:
        assert sum(1 for _ in salvaged) == 1001
        assert salvaged.damaged == list(range(1, 1001))


# --- 16b: an input over the size cap is refused with what to do about it --------------------


def test_an_input_over_the_cap_says_why_and_what_to_do(tmp_path):
    """4000×3000 is 12 M pixels, over the 9.4 M cap of pcz.md §8 that the header's source
    size obeys: refused (decided: not resized, README says why), with the way out."""
    big = tmp_path / "big.mkv"
    from pacodec import InputError
    from pacodec.video import VideoWriter

    with pytest.raises(InputError, match="exceeds the limit"):  # the writer obeys the same cap
        VideoWriter(big, width=4000, height=3000)
    import av

    with av.open(str(big), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 4000, 3000, "bgr0"
        frame = av.VideoFrame.from_ndarray(np.zeros((3000, 4000, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    proc = run_cli("encode", str(big), "-o", str(tmp_path / "out.pcz"))
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "4000x3000 exceeds the limit" in line and "scale the video down" in line, line
    help_text = run_cli("encode", "--help", env={"COLUMNS": "300"}).stdout
    assert "4096x2304 pixels a frame" in " ".join(help_text.split())
    assert "not resized" in (ROOT / "README.md").read_text()
