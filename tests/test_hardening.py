"""Undeclared errors and hangs (issue 13, findings 5, 6, 7, 10, 12 and 13).

Each test goes through the real ``pacodec`` entry point (exit status, one line on
stderr, no traceback) or the public API, and fails on the code before its fix.
"""

from __future__ import annotations

import dataclasses
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line, run_cli


def with_header(pcz: Path, out: Path, **fields) -> Path:
    """``pcz`` with header fields replaced (same header size, CRC recomputed by the
    writer's own build_header), the records, index and trailer kept byte for byte."""
    from pacodec.pcz import PczReader
    from pacodec.pcz.header import build_header

    data = pcz.read_bytes()
    with pcz.open("rb") as f:
        header = PczReader(f).header
    old, new = build_header(header), build_header(dataclasses.replace(header, **fields))
    assert data.startswith(old) and len(new) == len(old)
    out.write_bytes(new + data[len(old):])
    return out


# --- 5. frame rates a video container cannot hold ------------------------------------


@pytest.mark.parametrize("kind", ["mkv", "mp4"])
def test_a_frame_rate_no_video_holds_is_refused_in_one_line(tmp_path, pcz, tiny_weights, kind):
    """1/4294967295 fps is a valid header (pcz.md §3.5); a video cannot hold it (§8.1)."""
    slow = with_header(pcz, tmp_path / "slow.pcz", fps_num=1, fps_den=0xFFFFFFFF)
    r = run_cli("info", str(slow))
    assert r.returncode == 0, r.stderr
    out = tmp_path / f"out.{kind}"
    r = run_cli("decode", str(slow), "-o", str(out), "--weights", str(tiny_weights), "-q")
    one_line(r, 3, str(out), "1/4294967295", "PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.pcz"]  # no output, no .partial


def test_a_frame_rate_no_video_holds_decodes_to_png(tmp_path, pcz, tiny_weights):
    slow = with_header(pcz, tmp_path / "slow.pcz", fps_num=1, fps_den=0xFFFFFFFF)
    r = run_cli("decode", str(slow), "-o", str(tmp_path / "frames"), "--weights", str(tiny_weights), "-q")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 4


@pytest.mark.parametrize("kind", ["mkv", "mp4"])
@pytest.mark.parametrize("num, den, written", [
    (4294967295, 4294967294, Fraction(1)),  # terms over 2^31: PyAV's OverflowError before
    (1, 65535, Fraction(1, 65535)),  # the slowest a video takes, exactly
    (30000, 1001, Fraction(30000, 1001)),
])
def test_frame_rates_with_large_terms_are_written_as_the_nearest_that_fits(tmp_path, pcz, tiny_weights,
                                                                          kind, num, den, written):
    import av

    odd = with_header(pcz, tmp_path / "odd.pcz", fps_num=num, fps_den=den)
    out = tmp_path / f"out.{kind}"
    r = run_cli("decode", str(odd), "-o", str(out), "--weights", str(tiny_weights), "-q")
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.frames in (0, 4)
        if kind == "mp4":  # Matroska keeps times in milliseconds, so only MP4 reads back the rate
            assert stream.average_rate == written
    assert sum(1 for _ in av.open(str(out)).decode(video=0)) == 4


# --- 6. FIFOs and devices where a regular file is read whole ---------------------------


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["info", "decode"])
def test_a_fifo_as_pcz_input_is_refused_without_blocking(tmp_path, tiny_weights, command):
    """open() on a FIFO waits for a writer: before the fix this run hung (the timeout
    only turns a hang into a failure)."""
    source = fifo(tmp_path / "in.pcz")
    extra = ("-o", str(tmp_path / "out.mkv"), "--weights", str(tiny_weights)) if command == "decode" else ()
    r = run_cli(command, str(source), *extra, timeout=120)
    one_line(r, 2, str(source), "FIFO")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pcz"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_as_pcz_input_is_refused(device):
    r = run_cli("info", device, timeout=120)
    one_line(r, 2, device, "character device")


def test_a_fifo_as_the_weights_file_a_manifest_names_is_refused(tmp_path, pcz, tiny_weights):
    import json

    weights = tmp_path / "weights"
    weights.mkdir()
    entry = next(m for m in json.loads((tiny_weights / "manifest.json").read_text())["models"]
                 if m["id"] == "tiny-conv")
    (weights / "manifest.json").write_text(json.dumps({"models": [{**entry, "file": "pipe.safetensors"}]}))
    pipe = fifo(weights / "pipe.safetensors")
    r = run_cli("decode", str(pcz), "-o", str(tmp_path / "out.mkv"), "--weights", str(weights), timeout=120)
    one_line(r, 2, str(pipe), "FIFO")
    assert not (tmp_path / "out.mkv").exists()


def test_a_fifo_as_initial_weights_is_refused(tmp_path, clip):
    """safetensors' load_file blocked on it for good."""
    init = fifo(tmp_path / "init.safetensors")
    r = run_cli("train", "tiny-conv", "--data", str(clip), "-o", str(tmp_path / "run"), "--init", str(init),
                "--epochs", "0", "-q", timeout=300)
    one_line(r, 2, str(init), "FIFO")


# --- 7. salvage in linear time --------------------------------------------------------


def damaged_gops(path: Path, source: Path, gops: int, length: int) -> Path:
    """A file of ``source``'s header (a predicting model, gop 65535): ``gops`` times
    ``source``'s first intra record, its CRC broken, then ``length - 1`` empty
    predicted records (6 bytes each). Salvage must carry each broken chain to the
    next intra frame, and here to the end."""
    from pacodec.pcz import PczReader, PczWriter

    with source.open("rb") as f:
        reader = PczReader(f)
        header, intra = reader.header, reader.record(0).payload
    with path.open("wb") as f:
        writer = PczWriter(f, header)
        for _ in range(gops):
            writer.write_frame(intra)
            for _ in range(length - 1):
                writer.write_frame(b"", predicted=True)
        writer.close()
    data = bytearray(path.read_bytes())
    at = data.find(intra)
    while at >= 0:
        data[at + 10] ^= 0xFF  # inside the intra payload: its record CRC fails
        at = data.find(intra, at + 1)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def predicting(tmp_path_factory, atari_frames, tiny_weights) -> Path:
    import pacodec

    path = tmp_path_factory.mktemp("gop") / "gop.pcz"
    with pacodec.Writer(path, model="tiny-pac", gop=65535, weights_dir=tiny_weights) as w:
        for frame in atari_frames[:2]:
            w.write(frame)
    return path


def test_salvaging_broken_chains_of_many_predicted_records_is_linear(tmp_path, predicting, tiny_weights):
    """Three GOPs of 64,000 records, each behind a damaged intra record (1.1 MB): a
    list membership test per frame made this quadratic (measured: 17 s of CPU for
    one such GOP, about 150 s for three); linear it takes about 2 s. The budget is
    CPU time with a wide margin, not wall time."""
    import pacodec

    gops, length = 3, 64_000
    path = damaged_gops(tmp_path / "broken.pcz", predicting, gops, length)
    start = time.process_time()
    with pacodec.open(path, salvage=True, weights_dir=tiny_weights) as reader:
        frames = sum(1 for _ in reader)
        damaged = reader.damaged
    spent = time.process_time() - start
    assert frames == gops * length and damaged == list(range(gops * length))
    assert spent < 20, f"{spent:.1f} s of CPU to salvage {frames} records"


# --- 10. devices ------------------------------------------------------------------------


def _cuda_devices() -> list[str]:
    import torch

    # "cuda" itself is only refused where torch sees no CUDA GPU; cuda:99 everywhere.
    return ["cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])


@pytest.mark.parametrize("device", ["bogus", *_cuda_devices()])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_device_that_is_not_there_is_refused_up_front(tmp_path, clip, pcz, tiny_weights, command, device):
    """Before: exit 1 with torch's RuntimeError (a bad name) or AssertionError (no CUDA)."""
    source, extra = (clip, ("--model", "tiny-conv", "--quantizer", "naive")) if command == "encode" else (pcz, ())
    out = tmp_path / ("out.pcz" if command == "encode" else "out.mkv")
    r = run_cli(command, str(source), "-o", str(out), *extra, "--weights", str(tiny_weights),
                "--device", device, "-q")
    one_line(r, 2, repr(device), "available here: cpu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", ["bogus", *_cuda_devices()])
def test_the_api_refuses_a_device_that_is_not_there(tmp_path, pcz, tiny_weights, device):
    import pacodec

    with pytest.raises(pacodec.InputError, match="available here: cpu"):
        pacodec.Writer(tmp_path / "out.pcz", model="tiny-conv", quantizer="naive", weights_dir=tiny_weights,
                       device=device)
    with pytest.raises(pacodec.InputError, match="available here: cpu"):
        pacodec.open(pcz, weights_dir=tiny_weights, device=device)
    assert list(tmp_path.iterdir()) == []


# --- 12. a closed Reader --------------------------------------------------------------


@pytest.fixture(scope="module")
def q8(tmp_path_factory, atari_frames) -> Path:
    """Five frames of the default model (pac-q8) in one GOP: an intra frame, then
    predicted frames (the decoder's own frames carry their motion internally)."""
    import pacodec

    path = tmp_path_factory.mktemp("q8") / "q8.pcz"
    with pacodec.Writer(path, gop=8) as w:
        for frame in atari_frames[-5:]:
            w.write(frame)
    assert pacodec.probe(path)["predicted_frames"] >= 2
    return path


def closed_error(excinfo) -> None:
    import pacodec

    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, pacodec.PacodecError)
    assert "closed .pcz reader" in str(excinfo.value) and "\n" not in str(excinfo.value)


@pytest.mark.parametrize("which", ["intra", "predicted"])
def test_every_access_to_a_closed_reader_raises_one_clear_error(request, tiny_weights, which):
    """Before: r[0] answered from a cache, other frames said the file was damaged, and
    a loop died partway with a bare ValueError of the file object."""
    import pacodec

    path = request.getfixturevalue("pcz" if which == "intra" else "q8")
    reader = pacodec.open(path, weights_dir=tiny_weights)
    n = len(reader)
    frames = iter(reader)
    next(frames)
    reader[0], reader[n - 1]
    reader.close()
    reader.close()  # twice is fine, as for files
    assert len(reader) == n
    accesses = [lambda: reader[0], lambda: reader[n - 1], lambda: reader[-1], lambda: list(reader),
                lambda: next(iter(reader)), lambda: next(frames), lambda: next(reader.iter_symbols()),
                lambda: reader.symbol_digest()]
    for access in accesses:
        with pytest.raises(pacodec.InputError) as excinfo:
            access()
        closed_error(excinfo)


def test_a_reader_closed_by_its_with_block_refuses_access(q8):
    import pacodec

    with pacodec.open(q8) as reader:
        pass
    with pytest.raises(pacodec.InputError) as excinfo:
        reader[1]
    closed_error(excinfo)


# --- 13. API arguments, and plain frames out ------------------------------------------


def one_line_error(excinfo) -> None:
    assert "\n" not in str(excinfo.value) and str(excinfo.value)


@pytest.mark.parametrize("which", ["intra", "predicted"])
def test_numpy_integers_negative_indices_and_slices_index_a_reader(request, tiny_weights, which):
    """Before: TypeError for numpy integers and slices."""
    import pacodec

    path = request.getfixturevalue("pcz" if which == "intra" else "q8")
    with pacodec.open(path, weights_dir=tiny_weights) as reader:
        frames = list(reader)
        n = len(frames)
        for k in range(n):
            for index in (k, np.int64(k), np.int32(k), np.uint8(k), k - n, np.int64(k - n)):
                assert np.array_equal(reader[index], frames[k]), index
        for cut in (slice(None), slice(1, 3), slice(None, None, -1), slice(-2, None), slice(3, 0, -2),
                    slice(n, n + 5), slice(np.int64(1), None)):
            got, want = reader[cut], frames[cut]
            assert isinstance(got, np.ndarray) and got.shape == (len(want), 200, 160, 3), cut
            assert all(np.array_equal(a, b) for a, b in zip(got, want)), cut
        for index in (n, -n - 1, np.int64(n)):
            with pytest.raises(IndexError):
                reader[index]
        for index in ("1", 1.0, None, (0, 1), np.float64(1)):
            with pytest.raises(pacodec.InputError) as excinfo:
                reader[index]
            one_line_error(excinfo)


def test_a_reader_hands_out_plain_contiguous_arrays_of_its_own(q8):
    """Predicted frames came out as refine.MotionFrame, an ndarray subclass carrying
    the decoder's motion, and the very array the next frame was predicted from."""
    import pacodec

    with pacodec.open(q8) as reader:
        frames = list(reader)
        handed = frames + [reader[1], reader[len(reader) - 1], *reader[1:]]
        for frame in handed:
            assert type(frame) is np.ndarray
            assert frame.dtype == np.uint8 and frame.shape == (reader.height, reader.width, 3)
            assert frame.flags.c_contiguous and frame.flags.writeable
        # Writing to a frame changes neither the frames after it nor a later read.
        for k, frame in enumerate(reader):
            assert np.array_equal(frame, frames[k])
            frame[:] = 255
        assert all(np.array_equal(reader[k], frames[k]) for k in range(len(reader)))


def test_write_after_close_raises(tmp_path, tiny_weights, atari_frames):
    """Before: silently dropped."""
    import pacodec

    path = tmp_path / "out.pcz"
    with pacodec.Writer(path, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights) as writer:
        writer.write(atari_frames[0])
    before = path.read_bytes()
    with pytest.raises(pacodec.InputError, match="closed") as excinfo:
        writer.write(atari_frames[1])
    one_line_error(excinfo)
    assert path.read_bytes() == before and pacodec.probe(path)["frames"] == 1


@pytest.mark.parametrize("frame", [
    np.zeros((0, 0, 3), np.uint8),  # cv2.error before
    np.zeros((0, 16, 3), np.uint8),
    np.zeros((16, 16, 3), np.float32),
    np.zeros((16, 16), np.uint8),
    np.zeros((16, 16, 4), np.uint8),
    [[1, 2], [3]],
    "frame",
], ids=["0x0", "0x16", "float32", "gray", "rgba", "ragged", "str"])
def test_a_frame_the_writer_cannot_take_raises_input_error(tmp_path, tiny_weights, frame):
    import pacodec

    writer = pacodec.Writer(tmp_path / "out.pcz", model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    try:
        with pytest.raises(pacodec.InputError) as excinfo:
            writer.write(frame)
        one_line_error(excinfo)
    finally:
        writer.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arguments", [
    {"fps": float("nan")}, {"fps": float("inf")}, {"fps": None}, {"fps": 0}, {"fps": -30}, {"fps": "fast"},
    {"fps": 1e-12}, {"fps": 5000},
    {"lam": float("nan")}, {"lam": -1.0}, {"lam": float("inf")}, {"lam": None},
    {"gop": 2.5},
], ids=lambda a: f"{next(iter(a))}={next(iter(a.values()))}")
def test_writer_arguments_out_of_range_raise_input_error(tmp_path, tiny_weights, arguments):
    """Before: NaN, inf and None fps raised bare ValueError, OverflowError and
    TypeError; a NaN or negative lam was accepted."""
    import pacodec

    with pytest.raises(pacodec.InputError) as excinfo:
        pacodec.Writer(tmp_path / "out.pcz", model="tiny-pac", weights_dir=tiny_weights, **arguments)
    one_line_error(excinfo)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lam", ["nan", "-1"])
def test_a_lambda_out_of_range_is_refused_by_the_cli(tmp_path, clip, tiny_weights, lam):
    out = tmp_path / "out.pcz"
    r = run_cli("encode", str(clip), "-o", str(out), "--model", "tiny-pac", "--weights", str(tiny_weights),
                "--lambda", lam, "-q")
    one_line(r, 2, "--lambda")
    assert list(tmp_path.iterdir()) == []


def test_arguments_that_are_not_paths_say_what_to_do(tmp_path, atari_frames):
    """Before: TypeError from pathlib. (Frames as the *source* of encode() are taken:
    tests/test_frames_api.py.)"""
    import pacodec

    for call in (lambda: pacodec.encode(tmp_path / "in.mkv", atari_frames),
                 lambda: pacodec.open(atari_frames), lambda: pacodec.probe(None),
                 lambda: pacodec.Writer(atari_frames)):
        with pytest.raises(pacodec.InputError) as excinfo:
            call()
        one_line_error(excinfo)
    assert list(tmp_path.iterdir()) == []
