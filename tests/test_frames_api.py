"""Frames that NumPy and OpenCV users can use (issue 15, item 4): decoded frames are
plain C-contiguous H×W×3 uint8 arrays OpenCV draws on; a reader takes any integer and
slices; ``encode`` takes frames as an array or an iterable, and says clearly what else
it takes; ``open`` shows its options; a reader of any source video is public."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

import pacodec

from test_batch import make_clip


def pixel_art(frames: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    picture = palette[rng.integers(0, 5, (25, 20))].repeat(8, axis=0).repeat(8, axis=1)
    return np.stack([np.roll(picture, 2 * i, axis=1) for i in range(frames)])


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """7 frames in GOPs of 3 (intra at 0, 3, 6), encoded from an array, and its frames."""
    path = tmp_path_factory.mktemp("frames") / "art.pcz"
    info = pacodec.encode(pixel_art(7), path, gop=3, fps=25)
    assert info["frames"] == 7 and info["intra_frames"] == 3 and info["fps"] == 25
    with pacodec.open(path) as reader:
        return path, list(reader)


def test_frames_are_plain_contiguous_and_opencv_draws_on_them(stream):
    path, frames = stream
    with pacodec.open(path) as reader:
        for frame in (frames[4].copy(), reader[4], reader[1:3][0]):
            assert type(frame) is np.ndarray and frame.dtype == np.uint8 and frame.shape == (200, 160, 3)
            assert frame.flags.c_contiguous
            cv2.rectangle(frame, (2, 2), (40, 30), (255, 0, 0), 1)
            cv2.putText(frame, "pac", (5, 50), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0))


def test_any_integer_and_slices_index_a_reader(stream):
    path, frames = stream
    with pacodec.open(path) as reader:
        assert np.array_equal(reader[np.int64(4)], frames[4])
        assert np.array_equal(reader[np.uint8(0)], frames[0])
        assert np.array_equal(reader[-1], frames[6])
        for key in (slice(1, 6, 2), slice(None, None, -1), slice(2, 5), slice(5, 2)):
            got = reader[key]
            want = frames[key]
            assert got.shape == (len(want), 200, 160, 3) and got.dtype == np.uint8
            assert all(np.array_equal(a, b) for a, b in zip(got, want)), key
        with pytest.raises(IndexError):
            reader[7]
        with pytest.raises(pacodec.InputError, match="integers or slices"):
            reader[1.5]


def test_encode_takes_frames_and_names_what_it_takes(tmp_path, stream):
    path, _ = stream
    frames = pixel_art(7)
    again = tmp_path / "from-iterable.pcz"
    pacodec.encode((f for f in frames), again, gop=3, fps=25)  # any iterable of frames
    assert again.read_bytes() == path.read_bytes()
    with pytest.raises(pacodec.InputError, match=r"N×H×W×3"):
        pacodec.encode(frames[0], tmp_path / "one.pcz")  # a single frame is not N frames
    with pytest.raises(pacodec.InputError, match="not int"):
        pacodec.encode(7, tmp_path / "seven.pcz")
    with pytest.raises(pacodec.InputError, match="uint8"):
        pacodec.encode(frames.astype(np.float32), tmp_path / "float.pcz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from-iterable.pcz"]  # no partials


def test_open_shows_its_options_and_the_video_reader_is_public(tmp_path):
    params = inspect.signature(pacodec.open).parameters
    assert {"salvage", "weights_dir", "device", "force_weights"} <= set(params)
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert "VideoReader" in dir(pacodec) and pacodec.VideoReader.__doc__
    clip = make_clip(tmp_path / "c.mkv", 5, frames=3)
    with pacodec.VideoReader(clip) as video:
        assert (video.info.width, video.info.height) == (160, 200)
        frames = list(video)
    assert len(frames) == 3 and all(f.shape == (200, 160, 3) and f.dtype == np.uint8 for f in frames)
