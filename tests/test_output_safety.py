"""``--force`` never destroys what the user did not name (issue 13, findings 1-4 and 11).

Through the real ``pacodec`` entry point: each refusal exits 3 with one line, and the
file system afterwards holds everything it held before, byte for byte.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, one_line, run_cli

TINY = ("--model", "tiny-conv", "--quantizer", "naive")


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: file bytes, or the kind of anything else."""
    seen: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        mode = os.lstat(path).st_mode
        seen[key] = path.read_bytes() if stat.S_ISREG(mode) else stat.filemode(mode)[0]
    return seen


def refused(r, *texts: str) -> str:
    return one_line(r, 3, *texts)


def unrelated_tree(folder: Path) -> None:
    (folder / "notes").mkdir(parents=True)
    (folder / "thesis.tex").write_text("three years of work")
    (folder / "notes" / "todo.txt").write_text("back up")
    (folder / "frame_000000.png").write_bytes(b"not pacodec's")


@pytest.fixture(scope="module")
def pcz(tmp_path_factory, clip, tiny_weights) -> Path:
    import pacodec

    path = tmp_path_factory.mktemp("pcz") / "clip.pcz"
    pacodec.encode(clip, path, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    return path


# --- 1. folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_force_never_deletes_a_folder_it_did_not_write(tmp_path, clip, pcz, tiny_weights, command):
    victim = tmp_path / "out" / "victim"
    unrelated_tree(victim)
    before = snapshot(tmp_path)
    source, extra = (clip, TINY) if command == "encode" else (pcz, ())
    r = run_cli(command, str(source), "-o", str(victim), *extra, "--weights", str(tiny_weights),
                "--force", "-q")
    refused(r, str(victim), "folder")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("output", ["..", ".", "/", "../"])
def test_force_refuses_dot_dotdot_and_root(tmp_path, clip, pcz, tiny_weights, command, output):
    """Run in a/b/ with the input in a/: nothing in a/ may go, the input included."""
    a = tmp_path / "a"
    (a / "b").mkdir(parents=True)
    source = a / ("in.mkv" if command == "encode" else "in.pcz")
    source.write_bytes((clip if command == "encode" else pcz).read_bytes())
    (a / "b" / "keep.txt").write_text("keep")
    before = snapshot(tmp_path)
    extra = TINY if command == "encode" else ()
    r = run_cli(command, str(source), "-o", output, *extra, "--weights", str(tiny_weights),
                "--force", "-q", cwd=a / "b")
    refused(r)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_force_refuses_the_input_and_folders_holding_it(tmp_path, clip, pcz, tiny_weights, command):
    home = tmp_path / "home" / "videos"
    home.mkdir(parents=True)
    # decode's input named .mkv too (pacodec reads the magic, not the name), so that as
    # an output it is a valid video name and only the rule under test refuses it.
    source = home / "in.mkv"
    source.write_bytes((clip if command == "encode" else pcz).read_bytes())
    before = snapshot(tmp_path)
    extra = TINY if command == "encode" else ()
    for output in (source, home, home.parent):
        r = run_cli(command, str(source), "-o", str(output), *extra, "--weights", str(tiny_weights),
                    "--force", "-q")
        refused(r, "input")
    assert snapshot(tmp_path) == before


def test_force_replaces_a_frame_folder_pacodec_wrote(tmp_path, pcz, tiny_weights):
    frames = tmp_path / "frames"
    assert run_cli("decode", str(pcz), "-o", str(frames), "--weights", str(tiny_weights), "-q").returncode == 0
    assert len(list(frames.glob("frame_*.png"))) == 20
    (frames / "frame_000019.png").unlink()  # whatever was there is replaced whole
    r = run_cli("decode", str(pcz), "-o", str(frames), "--weights", str(tiny_weights), "--force", "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:06d}.png" for i in range(20)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # nothing left aside
    # ... but not once it holds anything else.
    (frames / "readme.txt").write_text("mine")
    before = snapshot(tmp_path)
    r = run_cli("decode", str(pcz), "-o", str(frames), "--weights", str(tiny_weights), "--force", "-q")
    refused(r, "folder")
    assert snapshot(tmp_path) == before


def test_decode_to_dot_with_force_is_a_one_line_refusal(tmp_path, pcz, tiny_weights):
    """Finding 11: was exit 1 "PosixPath('.') has an empty name"."""
    (tmp_path / "keep.txt").write_text("keep")
    before = snapshot(tmp_path)
    r = run_cli("decode", str(pcz), "-o", ".", "--force", "--weights", str(tiny_weights), "-q",
                cwd=tmp_path)
    refused(r, "file name")
    assert snapshot(tmp_path) == before


# --- 2. special files -----------------------------------------------------------------------


def special_files(tmp_path: Path) -> list[Path]:
    made = []
    fifo = tmp_path / "fifo.pcz"
    os.mkfifo(fifo)
    made.append(fifo)
    node = tmp_path / "devfull_node.pcz"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # /dev/full's numbers
        made.append(node)
    except (PermissionError, OSError):
        pass  # not root: the FIFO still checks the rule
    return made


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_special_files_are_never_replaced(tmp_path, clip, pcz, tiny_weights, command):
    targets = special_files(tmp_path)
    before = snapshot(tmp_path)
    for target in targets:
        out = target if command == "encode" else target.with_suffix(".mkv")
        if out != target:
            os.rename(target, out)
        source, extra = (clip, TINY) if command == "encode" else (pcz, ())
        r = run_cli(command, str(source), "-o", str(out), *extra, "--weights", str(tiny_weights),
                    "--force", "-q", timeout=120)
        refused(r, "never replaces")
        if out != target:
            os.rename(out, target)
    assert snapshot(tmp_path) == before


# --- 3. two writers, one output ------------------------------------------------------------

# The real entry point, each frame written a little late, so two runs overlap.
SLOW = """
import time, pacodec.api
write = pacodec.api.Writer.write
def slow(self, frame):
    time.sleep(0.05)
    return write(self, frame)
pacodec.api.Writer.write = slow
from pacodec.cli import main
main()
"""


def test_two_concurrent_encodes_to_one_output(tmp_path, clip, tiny_weights):
    """Exactly one succeeds; the target is that one's whole file (told apart by frame count)."""
    import pacodec

    out = tmp_path / "game.pcz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {
        n: subprocess.Popen([sys.executable, "-c", SLOW, "encode", str(clip), "-o", str(out), *TINY,
                             "--weights", str(tiny_weights), "--max-frames", str(n), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for n in (12, 16)
    }
    results = {n: (p.wait(timeout=300), p.communicate()[1]) for n, p in procs.items()}
    winners = [n for n, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser,) = set(results) - set(winners)
    code, err = results[loser]
    assert code == 3 and ("already exists" in err or "appeared while writing" in err), results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["game.pcz"]  # no partial left
    with pacodec.open(out, weights_dir=tiny_weights) as reader:
        assert len(reader) == winners[0] and reader.damaged == []


def test_two_writers_on_one_path_the_second_is_refused(tmp_path, tiny_weights, atari_frames):
    import pacodec

    out = tmp_path / "w.pcz"
    first = pacodec.Writer(out, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    second = pacodec.Writer(out, model="tiny-conv", quantizer="naive", weights_dir=tiny_weights)
    for frame in atari_frames[:3]:
        first.write(frame)
    for frame in atari_frames[:5]:
        second.write(frame)
    first.close()
    with pytest.raises(pacodec.OutputError, match="appeared while writing"):
        second.close()
    with pacodec.open(out, weights_dir=tiny_weights) as reader:
        assert len(reader) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pcz"]


# --- 4. partial files this process did not create --------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_existing_partials_are_left_alone(tmp_path, clip, pcz, tiny_weights, force):
    (tmp_path / "game.pcz.partial").write_bytes(b"someone else's")
    unrelated_tree(tmp_path / "out.mkv.partial")
    before = snapshot(tmp_path)
    flags = ("--force",) if force else ()
    r = run_cli("encode", str(clip), "-o", str(tmp_path / "game.pcz"), *TINY, "--weights",
                str(tiny_weights), "-q", *flags)
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", str(pcz), "-o", str(tmp_path / "out.mkv"), "--weights", str(tiny_weights),
                "-q", *flags)
    assert r.returncode == 0, r.stderr
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == ["game.pcz", "out.mkv"]


def test_force_replaces_a_file_and_a_symlink_not_its_target(tmp_path, clip, tiny_weights):
    keep = tmp_path / "keep.bin"
    keep.write_bytes(b"pointed at")
    link = tmp_path / "link.pcz"
    link.symlink_to(keep)
    r = run_cli("encode", str(clip), "-o", str(link), *TINY, "--weights", str(tiny_weights), "--force", "-q")
    assert r.returncode == 0, r.stderr
    assert not link.is_symlink() and link.read_bytes()[:4] != b"poin"
    assert keep.read_bytes() == b"pointed at"
    data = np.frombuffer(link.read_bytes(), np.uint8)
    assert data.size > 1000
