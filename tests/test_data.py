"""pacodec.data: Atari recordings, frame extraction and loading, the shared clips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from pacodec import data, video
from pacodec.errors import InputError

# Ms. Pac-Man's opening tune lasts about 140 recorded frames (frameskip 2) whatever the
# player does; recordings must run past it for seeds to tell apart.
PAST_INTRO = 200


def record(**kwargs) -> np.ndarray:
    return np.stack(list(data.record_atari(**kwargs)))


def test_record_atari_is_deterministic_per_seed() -> None:
    first = record(frames=PAST_INTRO, seed=3)
    again = record(frames=PAST_INTRO, seed=3)
    other = record(frames=PAST_INTRO, seed=4)
    assert first.shape == (PAST_INTRO, 210, 160, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    # Real gameplay: the picture changes, it is not one screen repeated.
    assert len({frame.tobytes() for frame in first}) > 20


def test_record_atari_pacman_geometry_and_frame_count() -> None:
    frames = record(game="pacman", frames=4)
    assert frames.shape == (4, 250, 160, 3)
    assert frames.max() > 0


def test_record_atari_refuses_unknown_game_and_bad_arguments() -> None:
    with pytest.raises(InputError):
        next(data.record_atari(game="no_such_game", frames=1))
    with pytest.raises(InputError):
        next(data.record_atari(frames=1, frameskip=0))


def test_write_atari_clip_is_lossless_at_60_over_frameskip(tmp_path: Path) -> None:
    path = tmp_path / "atari.mkv"
    data.write_atari_clip(path, game="ms_pacman", frames=6, seed=0, frameskip=3)
    info = video.probe(path)
    assert (info.width, info.height, info.fps) == (160, 210, Fraction(20))
    np.testing.assert_array_equal(
        np.stack(list(video.iter_frames(path))), record(frames=6, seed=0, frameskip=3)
    )


def make_clip(path: Path, count: int, height: int = 50, width: int = 40) -> list[np.ndarray]:
    """A lossless clip whose frame i is filled with the value i (easy to identify)."""
    frames = [np.full((height, width, 3), index, np.uint8) for index in range(count)]
    with video.VideoWriter(path, width=width, height=height) as writer:
        for frame in frames:
            writer.write(frame)
    return frames


def test_extract_writes_every_nth_frame_resized(tmp_path: Path) -> None:
    clip_a, clip_b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    make_clip(clip_a, 25)
    make_clip(clip_b, 5)
    out = tmp_path / "frames"
    count = data.extract([clip_a, clip_b], out, every=10, size=(20, 30))
    names = sorted(p.name for p in out.iterdir())
    assert count == 4
    assert names == ["a_000000.png", "a_000010.png", "a_000020.png", "b_000000.png"]
    image = cv2.imread(str(out / "a_000020.png"))
    assert image.shape == (30, 20, 3)
    assert (image == 20).all()


def test_load_frames_resizes_to_the_workshop_geometry(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    make_clip(clip, 6, height=100, width=80)
    pngs = tmp_path / "pngs"
    with video.VideoWriter(pngs, width=320, height=400, kind="png") as writer:
        writer.write(np.full((400, 320, 3), 99, np.uint8))
    frames = data.load_frames([clip, pngs], every=2)
    assert frames.shape == (4, 200, 160, 3) and frames.dtype == np.uint8
    assert [int(f[0, 0, 0]) for f in frames] == [0, 2, 4, 99]
    assert data.load_frames([clip, pngs], max_frames=3).shape == (3, 200, 160, 3)
    assert data.load_frames([]).shape == (0, 200, 160, 3)


def test_load_frames_refuses_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        data.load_frames([tmp_path / "absent.mp4"])


def test_shared_clip_paths() -> None:
    assert data.SHARED_CLIPS.parts[-3:] == ("shared", "data", "pacman")
    assert data.shared_clip("no_such_clip") is None
    if not data.SHARED_CLIPS.is_dir():
        pytest.skip(f"shared clips absent ({data.SHARED_CLIPS})")
    for name in data.TRAIN_CLIPS + data.VAL_CLIPS + data.TEST_CLIPS:
        assert data.shared_clip(name) is not None, name


def test_shared_clip_reads_at_the_workshop_geometry() -> None:
    path = data.shared_clip(data.TEST_CLIPS[0])
    if path is None:
        pytest.skip(f"shared clips absent ({data.SHARED_CLIPS})")
    info = video.probe(path)
    assert (info.width, info.height) == data.GEOMETRY
    assert info.fps == Fraction(30)
    frames = data.load_frames([path], every=30, max_frames=5)
    assert frames.shape == (5, 200, 160, 3)
