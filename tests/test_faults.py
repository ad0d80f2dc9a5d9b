"""No lost data: faults during ``pacodec encode``/``decode`` (DESIGN.md, "Errors and exit codes").

Outputs are written as ``<output>.<random>.partial`` and renamed when whole. A full disk, an
exception, Ctrl-C or SIGTERM removes the partial file and never touches an existing
output; after SIGKILL the ``.partial`` ``.pcz`` salvages up to its last whole record.
Also: memory stays flat over a long stream (benchmarks/memory.py, shortened).
"""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

OLD = b"an existing output that must survive"


@pytest.fixture
def cli(monkeypatch, capsys):
    """``pacodec.cli.main`` in-process: returns (exit code, stderr)."""
    import pacodec.cli

    # main() turns SIGTERM into KeyboardInterrupt for the process: not for pytest's.
    monkeypatch.setattr(pacodec.cli, "_install_sigterm", lambda: None)

    def call(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            pacodec.cli.main(list(args))
        return exc.value.code, capsys.readouterr().err

    return call


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def ref(tmp_path_factory, clip, tiny_weights) -> Path:
    """The fixture clip coded whole with tiny-conv + naive (16,007-byte records)."""
    import pacodec

    path = tmp_path_factory.mktemp("ref") / "ref.pcz"
    pacodec.encode(clip, path, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    return path


# --- a full disk -------------------------------------------------------------------------


def full_disk(monkeypatch, room: int) -> None:
    """Writes of ``*.pcz.partial`` fail with ENOSPC once ``room`` bytes are used."""
    import pacodec.api

    class Full(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if re.search(r"\.pcz\.[0-9a-f]{8}\.partial$", str(path)) and "w" in mode:
            return io.BufferedWriter(Full(path, "w"))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(pacodec.api, "builtins", types.SimpleNamespace(open=fake_open))


@pytest.mark.parametrize("where", ["records", "index"])
def test_full_disk_exits_3_and_leaves_nothing(tmp_path, monkeypatch, cli, clip, tiny_weights, ref, where):
    # "records": the disk fills mid-stream; "index": only the index and trailer
    # do not fit, so the error comes at the last flush (it was exit 1 before).
    room = 40_000 if where == "records" else ref.stat().st_size - 10
    full_disk(monkeypatch, room)
    out = tmp_path / "game.pcz"
    out.write_bytes(OLD)
    code, err = cli("encode", str(clip), "-o", str(out), "--model", "tiny-conv", "--quantizer", "naive",
                    "--weights", str(tiny_weights), "--force", "-q")
    line = one_line(err)
    assert code == 3, err
    assert "game.pcz" in line and "no space left" in line, line
    assert out.read_bytes() == OLD
    assert partials(tmp_path) == []


@pytest.mark.parametrize("fault", [OSError(errno.EACCES, "Permission denied"), KeyboardInterrupt()])
def test_writer_that_cannot_open_its_partial_leaves_nothing(tmp_path, monkeypatch, tiny_weights, fault):
    """A failure while the Writer opens ``<path>.<random>.partial`` (after atomic_output made room
    for it): an OutputError (or the interrupt itself), and no partial file left behind."""
    import pacodec
    import pacodec.api

    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        if re.search(r"\.pcz\.[0-9a-f]{8}\.partial$", str(path)):
            real_open(path, mode, *args, **kwargs).close()  # it got as far as creating it
            raise fault
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(pacodec.api, "builtins", types.SimpleNamespace(open=failing_open))
    out = tmp_path / "game.pcz"
    expected = pacodec.OutputError if isinstance(fault, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        pacodec.Writer(out, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    assert list(tmp_path.iterdir()) == []


# --- exceptions -----------------------------------------------------------------------


def test_exception_during_encode(tmp_path, monkeypatch, cli, clip, tiny_weights):
    import pacodec.api

    real = pacodec.api.Codec.payloads
    calls = []

    def flaky(self, frames):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom in the model")
        return real(self, frames)

    monkeypatch.setattr(pacodec.api.Codec, "payloads", flaky)
    out = tmp_path / "game.pcz"
    out.write_bytes(OLD)
    code, err = cli("encode", str(clip), "-o", str(out), "--model", "tiny-conv", "--quantizer", "naive",
                    "--weights", str(tiny_weights), "--force", "-q")
    assert code == 1 and "internal error" in one_line(err) and "boom" in err
    assert out.read_bytes() == OLD
    assert partials(tmp_path) == []


@pytest.mark.parametrize("output", ["old.mkv", "old.mp4", "frames"])
@pytest.mark.parametrize("fault, code, message", [
    (RuntimeError("boom in the writer"), 1, "internal error"),
    # ENOSPC, as FFmpeg's and OpenCV's writes report a full disk:
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), 3, "no space left"),
])
def test_fault_during_decode(tmp_path, monkeypatch, cli, ref, tiny_weights, output, fault, code, message):
    """The video layer's write fails after five frames: the exit code and one line (naming
    the output the user gave, not its .partial), the old output intact, no partial left."""
    import pacodec.video

    real = pacodec.video.VideoWriter.write

    def flaky(self, frame):
        if self.frames_written == 5:
            raise fault
        return real(self, frame)

    monkeypatch.setattr(pacodec.video.VideoWriter, "write", flaky)
    out = tmp_path / output
    if output == "frames":
        out.mkdir()
        (out / "frame_000000.png").write_bytes(OLD)
    else:
        out.write_bytes(OLD)
    status, err = cli("decode", str(ref), "-o", str(out), "--weights", str(tiny_weights), "--force")
    line = one_line(err)
    assert status == code and message in line.lower(), err
    if code == 3:
        assert output in line and ".partial" not in line, line
    if output == "frames":
        assert [p.name for p in out.iterdir()] == ["frame_000000.png"]
        out = out / "frame_000000.png"
    assert out.read_bytes() == OLD
    assert partials(tmp_path) == []


def test_bad_frame_mid_stream_exits_2(tmp_path, cli, atari_frames, tiny_weights):
    """A frame folder whose 11th frame has another size: InputError after 10 frames."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(atari_frames):
        if i == 10:
            frame = frame[:100]
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(frame[..., ::-1]))
    out = tmp_path / "game.pcz"
    out.write_bytes(OLD)
    code, err = cli("encode", str(folder), "-o", str(out), "--model", "tiny-conv", "--quantizer", "naive",
                    "--weights", str(tiny_weights), "--force", "-q")
    assert code == 2 and "010.png" in one_line(err)
    assert out.read_bytes() == OLD
    assert partials(tmp_path) == []


# --- signals --------------------------------------------------------------------------

# The real entry point, each frame slowed down (sleeping, not computing) so a signal
# lands mid-stream. SIGINT is reset to Python's default, as at a terminal: a child of
# a background job inherits it ignored.
CHILD = """
import os, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import pacodec.api, pacodec.video
delay = float(os.environ["PACODEC_TEST_DELAY"])
pause_at = int(os.environ.get("PACODEC_TEST_PAUSE_AT", "0"))
calls = [0]
def slow(write):
    def wrapper(*args, **kwargs):
        calls[0] += 1
        time.sleep(600 if calls[0] == pause_at else delay)
        return write(*args, **kwargs)
    return wrapper
pacodec.api.Writer.write = slow(pacodec.api.Writer.write)
pacodec.video.VideoWriter.write = slow(pacodec.video.VideoWriter.write)
from pacodec.cli import main
main()
"""


def start(*args: str, delay: float = 0.1, pause_at: int = 0) -> subprocess.Popen:
    """The CLI, each frame written ``delay`` s late; the ``pause_at``-th write waits 600 s."""
    env = {**os.environ, "PACODEC_TEST_DELAY": str(delay), "PACODEC_TEST_PAUSE_AT": str(pause_at),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def wait_for(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before the signal: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("timed out waiting for the .partial to be ready")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_signal_removes_partial_and_keeps_old_output(tmp_path, clip, ref, tiny_weights, command, sig):
    if command == "encode":
        out = tmp_path / "game.pcz"
        args = ("encode", str(clip), "-o", str(out), "--model", "tiny-conv", "--quantizer", "naive")
    else:
        out = tmp_path / "game.mkv"
        args = ("decode", str(ref), "-o", str(out))
    out.write_bytes(OLD)
    proc = start(*args, "--weights", str(tiny_weights), "--force", "-q")
    wait_for(proc, lambda: len(partials(tmp_path)) == 1)
    partial = partials(tmp_path)[0]
    time.sleep(0.3)  # well inside the stream (20 frames, 0.1 s each)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted" in err and "Traceback" not in err, err
    assert out.read_bytes() == OLD
    assert not partial.exists() and partials(tmp_path) == []


def test_sigkill_leaves_a_salvageable_partial(tmp_path, clip, tiny_weights):
    """The encoder stalls on frame 10, after one batch of 8; the records of that batch
    must be on disk. tiny-pac records are a few hundred bytes, so without the Writer's
    flush per batch they would sit in the file buffer and die with the process."""
    import pacodec
    from pacodec.pcz import PczReader

    out = tmp_path / "game.pcz"
    whole = tmp_path / "whole.pcz"
    pacodec.encode(clip, whole, model="tiny-pac", gop=1, weights_dir=tiny_weights)

    def records() -> int:
        found = [p for p in partials(tmp_path) if p.name.startswith("game.pcz.")]
        if not found:
            return 0
        with open(found[0], "rb") as f:
            try:
                return len(PczReader(f, salvage=True))
            except pacodec.PacodecError:  # not even a whole header yet
                return 0

    proc = start("encode", str(clip), "-o", str(out), "--model", "tiny-pac", "--gop", "1",
                 "--weights", str(tiny_weights), "-q", delay=0.0, pause_at=10)
    wait_for(proc, lambda: records() >= 8, timeout=60)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (partial,) = partials(tmp_path)
    assert not out.exists() and partial.name.startswith("game.pcz.")
    with pacodec.open(partial, salvage=True, weights_dir=tiny_weights) as cut, \
            pacodec.open(whole, weights_dir=tiny_weights) as full:
        n = len(cut)
        assert n == 8  # the first batch; the 9th frame was still pending
        got = list(cut)
        assert cut.damaged == []
        want = list(full)[:n]
    assert len(got) == n
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


# --- memory over a long stream -----------------------------------------------------------


def test_memory_stays_flat_over_a_long_stream(tiny_weights):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import memory
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = memory.run(3000, every=250, weights_dir=tiny_weights, trace=False)
    assert [r["frames"] for r in rows if r["phase"] == "decode"][-1] == 3000
    for phase in ("encode", "decode"):
        quarter, end, delta = memory.growth(rows, phase)
        assert delta < 30, f"{phase}: RSS {quarter:.1f} MB at 25% -> {end:.1f} MB at 100%"


def test_memory_stays_flat_with_predicted_frames(tiny_weights):
    """The predicted-frame path (a refined id at its default GOP: the encoder and the
    decoder hold the GOP's last frames as references) does not grow over a long stream
    either."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import memory
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # 96 frames sampled every 8: the 4×4 search makes each P-frame of this generated
    # stream slow (~0.3 s traced), so the stream is as long as judging flatness needs
    # (a frame's buffer kept per frame would add 7 MB between 25 % and 100 %). The 25 %
    # mark is frame 24: from frame 16 on the coders hold all 16 references of format
    # 12.0 (§14.14) and what the encoder keeps of each.
    rows = memory.run(96, every=8, weights_dir=tiny_weights, trace=True, model="tiny-pac-hi",
                      quantizer=None)
    assert [r["frames"] for r in rows if r["phase"] == "decode"][-1] == 96
    for phase in ("encode", "decode"):
        quarter, end, delta = memory.growth(rows, phase)
        assert delta < 30, f"{phase}: RSS {quarter:.1f} MB at 25% -> {end:.1f} MB at 100%"
        quarter, end, delta = memory.growth(rows, phase, "traced_mb")
        assert delta < 2, f"{phase}: Python heap {quarter:.2f} MB at 25% -> {end:.2f} MB at 100%"
