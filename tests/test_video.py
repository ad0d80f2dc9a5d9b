"""pacodec.video: round trips through every output kind, and every refused input."""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pacodec import video
from pacodec.errors import InputError, OutputError
from pacodec.metrics import psnr


def synthetic_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth moving gradients plus a moving grey square: changes every frame, and keeps
    sharp edges in luma, where 4:2:0 does not blur them."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    frames = []
    for index in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = np.clip(cols * 200 // max(width - 1, 1) + 3 * index, 0, 255)
        frame[..., 1] = (rows * 255 // max(height - 1, 1)).astype(np.uint8)
        frame[..., 2] = 128
        top, left = 4 + index % 8, 4 + 2 * index % 16
        frame[top : top + 8, left : left + 8] = (230, 230, 230)
        frames.append(frame)
    return frames


def noise_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def write_all(path: os.PathLike[str] | str, frames: list[np.ndarray], **kwargs) -> None:
    height, width = frames[0].shape[:2]
    with video.VideoWriter(path, width=width, height=height, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)


def mean_psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


# --- round trips -------------------------------------------------------------------


def test_mkv_is_lossless_and_keeps_fps(tmp_path: Path) -> None:
    frames = noise_frames(5, 21, 17)  # odd sizes: FFV1 has no 4:2:0 constraint
    path = tmp_path / "clip.mkv"
    write_all(path, frames, fps=Fraction(30000, 1001))
    info = video.probe(path)
    assert (info.width, info.height, info.has_audio) == (17, 21, False)
    assert info.fps == Fraction(30000, 1001)
    back = list(video.iter_frames(path))
    assert len(back) == len(frames)
    for original, decoded in zip(frames, back):
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, original)


@pytest.mark.parametrize("pix_fmt", [None, "yuv420p"])
def test_mp4_round_trip_quality_count_and_fps(tmp_path: Path, pix_fmt: str | None) -> None:
    frames = synthetic_frames(12, 48, 64)
    path = tmp_path / "clip.mp4"
    write_all(path, frames, fps=Fraction(25), **({"pix_fmt": pix_fmt} if pix_fmt else {}))
    info = video.probe(path)
    assert (info.width, info.height, info.fps, info.frames) == (64, 48, Fraction(25), 12)
    back = list(video.iter_frames(path))
    assert len(back) == 12
    assert mean_psnr(frames, back) > 35.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        # 4:4:4 unless asked: pixel art loses most of its colour detail in 4:2:0.
        assert stream.codec_context.pix_fmt == (pix_fmt or "yuv444p")


def test_mp4_keeps_odd_sizes_in_444(tmp_path: Path) -> None:
    frames = synthetic_frames(4, 31, 45)
    path = tmp_path / "odd.mp4"
    write_all(path, frames)
    info = video.probe(path)
    assert (info.width, info.height) == (45, 31)
    assert mean_psnr(frames, list(video.iter_frames(path))) > 35.0


def test_mp4_420_pads_odd_sizes_by_repeating_the_edge(tmp_path: Path) -> None:
    frames = synthetic_frames(6, 31, 45)
    path = tmp_path / "odd.mp4"
    write_all(path, frames, pix_fmt="yuv420p")
    info = video.probe(path)
    assert (info.width, info.height) == (46, 32)
    back = list(video.iter_frames(path))
    assert len(back) == 6
    assert mean_psnr(frames, [f[:31, :45] for f in back]) > 35.0
    # The padded column repeats the last column, so it is close to it, not black.
    assert np.abs(back[0][:31, 45].astype(int) - back[0][:31, 44].astype(int)).mean() < 8


def test_partial_suffix_picks_the_kind_before_it(tmp_path: Path) -> None:
    frames = noise_frames(2, 8, 8)
    path = tmp_path / "out.mkv.0a1b2c3d.partial"  # the name pacodec.output gives a partial
    write_all(path, frames)
    assert path.is_file() and not (tmp_path / "out.mkv").exists()
    np.testing.assert_array_equal(np.stack(list(video.iter_frames(path))), np.stack(frames))


def test_png_directory_round_trip(tmp_path: Path) -> None:
    frames = noise_frames(3, 10, 14)
    out = tmp_path / "frames"
    write_all(f"{out}/", frames)
    assert sorted(p.name for p in out.iterdir()) == [
        "frame_000000.png",
        "frame_000001.png",
        "frame_000002.png",
    ]
    info = video.probe(out, fps=12)
    assert (info.width, info.height, info.frames, info.fps) == (14, 10, 3, Fraction(12))
    assert video.probe(out).fps == Fraction(30)
    back = list(video.iter_frames(out))
    np.testing.assert_array_equal(np.stack(back), np.stack(frames))


def test_png_writer_refuses_a_directory_with_frames(tmp_path: Path) -> None:
    frames = noise_frames(1, 4, 4)
    write_all(tmp_path, frames)  # an existing directory means PNG frames
    with pytest.raises(OutputError, match="already holds"):
        write_all(tmp_path, frames)


def test_max_frames_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    write_all(path, noise_frames(5, 8, 8))
    assert len(list(video.iter_frames(path, max_frames=2))) == 2


def test_fit_resizes_with_area_and_copies_same_size() -> None:
    frame = np.zeros((20, 16, 3), np.uint8)
    frame[:10] = 200
    small = video.fit(frame, 8, 10)
    assert small.shape == (10, 8, 3) and small.dtype == np.uint8
    assert small[:5].min() == 200 and small[5:].max() == 0
    same = video.fit(frame, 16, 20)
    np.testing.assert_array_equal(same, frame)
    assert same is not frame


# --- refused inputs ----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        video.iter_frames(tmp_path / "absent.mp4")


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(InputError, match="noise.mp4"):
        list(video.iter_frames(path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mkv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty.mkv"):
        video.probe(path)


def test_zero_frame_video(tmp_path: Path) -> None:
    path = tmp_path / "zero.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr0"
        container.start_encoding()
    assert video.probe(path).width == 16  # it opens; it just has no frames
    with pytest.raises(InputError, match="no frames"):
        list(video.iter_frames(path))


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        samples.sample_rate = 8000
        for packet in stream.encode(samples):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        video.probe(path)


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("not a frame")
    with pytest.raises(InputError, match="no image frames"):
        video.probe(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.mkv"
    write_all(path, noise_frames(1, 8, 8))
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        video.probe(path)


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch) -> None:
    # Root reads anything, so the check is driven through os.access here.
    path = tmp_path / "clip.mkv"
    write_all(path, noise_frames(1, 8, 8))
    monkeypatch.setattr(video.os, "access", lambda *args: False)
    for source in (path, tmp_path):
        with pytest.raises(InputError, match="permission denied"):
            video.probe(source)


def test_frame_directory_with_mixed_sizes_refused(tmp_path: Path) -> None:
    write_all(tmp_path / "a", noise_frames(1, 8, 8), kind="png")
    (tmp_path / "a" / "frame_000000.png").rename(tmp_path / "a" / "x0.png")
    write_all(tmp_path / "b", noise_frames(1, 8, 9), kind="png")
    (tmp_path / "b" / "frame_000000.png").rename(tmp_path / "a" / "x1.png")
    with pytest.raises(InputError, match="x1.png"):
        list(video.iter_frames(tmp_path / "a"))


def test_single_image_is_a_one_frame_video(tmp_path: Path) -> None:
    frames = noise_frames(1, 6, 10)
    write_all(tmp_path, frames)
    back = list(video.iter_frames(tmp_path / "frame_000000.png"))
    assert len(back) == 1
    np.testing.assert_array_equal(back[0], frames[0])


def test_oversized_frames_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "wide.mkv"
    write_all(path, noise_frames(1, 8, 40))
    png_dir = tmp_path / "pngs"
    write_all(png_dir, noise_frames(1, 8, 40), kind="png")
    monkeypatch.setattr(video.limits, "MAX_WIDTH", 32)
    for source in (path, png_dir):
        with pytest.raises(InputError, match="exceeds the limit"):
            video.probe(source)
    monkeypatch.setattr(video.limits, "MAX_WIDTH", 4096)
    monkeypatch.setattr(video.limits, "MAX_PIXELS_PER_FRAME", 8 * 40 - 1)
    with pytest.raises(InputError, match="exceeds the limit"):
        video.probe(path)


@pytest.mark.parametrize(
    "name",
    [
        "concat:a.mp4|b.mp4",
        "http://example.com/x.mp4",
        "file:x.mp4",
        "pipe:0",
        "subfile,,start,0,end,9,,:x.mp4",
    ],
)
def test_urls_and_protocols_refused(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_all(tmp_path / "x.mp4", synthetic_frames(1, 16, 16))
    with pytest.raises(InputError, match="only local files"):
        video.probe(name)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.m3u8", "#EXTM3U\n#EXTINF:1,\nx.mkv\n"),
        ("list.txt", "ffconcat version 1.0\nfile x.mkv\n"),
        ("sneaky.mp4", "#EXTM3U\n#EXTINF:1,\nx.mkv\n"),  # playlist under a video name
        ("sneaky.mkv", "ffconcat version 1.0\nfile x.mkv\n"),
    ],
)
def test_playlists_refused(name: str, text: str, tmp_path: Path) -> None:
    write_all(tmp_path / "x.mkv", noise_frames(1, 8, 8))
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match="playlists"):
        video.probe(tmp_path / name)


def test_audio_is_dropped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "with_audio.mkv"
    frames = noise_frames(2, 8, 8)
    with av.open(str(path), "w") as container:
        picture = container.add_stream("ffv1", rate=30)
        picture.width, picture.height, picture.pix_fmt = 8, 8, "bgr0"
        sound = container.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        samples.sample_rate = 8000
        for packet in sound.encode(samples):
            container.mux(packet)
        for frame in frames:
            for packet in picture.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for stream in (picture, sound):
            for packet in stream.encode(None):
                container.mux(packet)
    assert video.probe(path).has_audio
    with pytest.warns(UserWarning, match="audio"):
        back = list(video.iter_frames(path))
    np.testing.assert_array_equal(np.stack(back), np.stack(frames))


def test_no_warning_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    write_all(path, noise_frames(1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(video.iter_frames(path))


# --- writer errors -----------------------------------------------------------------


def test_unknown_extension_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown output"):
        video.VideoWriter(tmp_path / "clip.gif", width=8, height=8)


def test_writer_refuses_wrong_frame_shape(tmp_path: Path) -> None:
    with video.VideoWriter(tmp_path / "clip.mkv", width=8, height=8) as writer:
        with pytest.raises(InputError, match="expected"):
            writer.write(np.zeros((8, 9, 3), np.uint8))
        with pytest.raises(InputError, match="expected"):
            writer.write(np.zeros((8, 8, 3), np.float32))
        writer.write(np.zeros((8, 8, 3), np.uint8))


def test_missing_output_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputError):
        video.VideoWriter(tmp_path / "absent" / "clip.mkv", width=8, height=8)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("kind", ["mkv", "mp4"])
def test_disk_full_is_an_output_error(kind: str) -> None:
    frames = noise_frames(20, 64, 64)
    with pytest.raises(OutputError, match="No space left"):
        write_all("/dev/full", frames, kind=kind)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_damaged_files_give_input_errors_only(suffix: str, tmp_path: Path) -> None:
    """Cut or bit-flipped files either still decode or raise InputError; nothing else.
    (A cut mp4 once leaked an AttributeError from PyAV's half-built stream.)"""
    source = tmp_path / f"full{suffix}"
    write_all(source, synthetic_frames(6, 32, 32))
    raw = source.read_bytes()
    damaged = tmp_path / f"damaged{suffix}"
    refused = 0
    for offset in range(0, len(raw), max(1, len(raw) // 40)):
        flipped = bytearray(raw)
        flipped[offset] ^= 0xFF
        for content in (raw[:offset], bytes(flipped)):
            damaged.write_bytes(content)
            try:
                for frame in video.iter_frames(damaged):
                    assert frame.shape == (32, 32, 3)
            except InputError as error:
                assert str(damaged) in str(error)
                refused += 1
    assert refused > 0
