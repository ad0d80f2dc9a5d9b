"""Video in and out: the only module that imports ``av`` (DESIGN.md, "Layout").

Frames cross this boundary as numpy arrays of shape (H, W, 3), dtype uint8, RGB,
one at a time, so no caller ever holds a whole video in memory.

Input is any *local* file PyAV can open, or a directory of image frames (PNG, JPEG
or BMP; sorted by name; 30 fps unless told otherwise). Network protocols, ``proto:``
prefixes and playlist/concat formats are refused: they make FFmpeg read other
files or hosts than the one named. Output is chosen by the path (see
:class:`VideoWriter`): ``.mp4`` (H.264), ``.mkv`` (lossless FFV1) or a directory of
PNG frames.

Every failure surfaces as :class:`~pacodec.errors.InputError` (the input) or
:class:`~pacodec.errors.OutputError` (the output) with a one-line message naming the
file; no ``av.error`` or bare ``OSError`` escapes.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from pacodec.errors import InputError, OutputError
from pacodec.output import target_name
from pacodec.pcz import limits

__all__ = [
    "DEFAULT_FPS",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "FITS",
    "fit",
    "unfit",
    "picture_rect",
    "iter_frames",
    "probe",
]

DEFAULT_FPS = Fraction(30)

# Suffixes of image files a frame directory may hold.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

# "scheme:" at the start of a path (http:, concat:, file:, pipe:, subfile,,...:);
# FFmpeg would treat it as a protocol rather than a file name.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.,\-]*:")

# Playlists and descriptions of other streams: opening them makes FFmpeg follow
# names inside the file, so they are refused by name, by content and by demuxer.
_PLAYLIST_SUFFIXES = frozenset(
    {".m3u", ".m3u8", ".ffconcat", ".concat", ".txt", ".sdp", ".pls", ".xspf", ".mpd", ".ism"}
)
_PLAYLIST_MAGIC = (b"#EXTM3U", b"#EXT-X-", b"ffconcat", b"[playlist]", b"v=0", b"<?xml")
_REFUSED_DEMUXERS = frozenset(
    {"hls", "applehttp", "concat", "sdp", "rtsp", "rtp", "dash", "tee", "image2", "lavfi"}
)

# What PyAV raises on a damaged input: its own errors, and (seen with truncated or
# bit-flipped mp4 files) IndexError/AttributeError from half-built stream objects.
_PYAV_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, AttributeError)


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, read from its header (or a frame directory's listing).

    ``frames`` is None when the container does not state a frame count.
    """

    width: int
    height: int
    fps: Fraction
    frames: int | None
    has_audio: bool


# --- input -------------------------------------------------------------------------


#: What a user can do about an input over the caps. The caps stay although every model
#: codes 160×200: a .pcz header records the source size (for ``decode --size source``)
#: and formats/pcz.md §8 caps it, so that no reader allocates more for any file;
#: resizing a bigger input silently would record a source size that is not the input's.
_SCALE_DOWN = "the .pcz header keeps the source size, capped by formats/pcz.md §8; " \
              "scale the video down first, e.g. ffmpeg -i IN -vf scale=1920:-2 OUT"


def _limit_text() -> str:
    return (f"{limits.MAX_WIDTH}x{limits.MAX_HEIGHT}, "
            f"{limits.MAX_PIXELS_PER_FRAME} pixels per frame")


def _check_geometry(name: str, width: int, height: int, *, output: bool = False) -> None:
    """Refuse a frame size outside the caps of formats/pcz.md before anything is decoded."""
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: video has no usable frame size ({width}x{height})")
    if (
        width > limits.MAX_WIDTH
        or height > limits.MAX_HEIGHT
        or width * height > limits.MAX_PIXELS_PER_FRAME
    ):
        raise InputError(
            f"{name}: frame size {width}x{height} exceeds the limit ({_limit_text()})"
            + ("" if output else f": {_SCALE_DOWN}")
        )


def _local_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as an absolute local path, refusing anything FFmpeg would not read
    as a plain file. An absolute path starts with ``/``, so FFmpeg cannot take any part
    of it for a protocol name."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise InputError(f"{text!r}: not a usable file path")
    if "\x00" in text:
        raise InputError(f"{text!r}: file path contains a NUL byte")
    if _SCHEME.match(text):
        raise InputError(f"{text}: only local files are accepted, not URLs or 'proto:' paths")
    return Path(text).absolute()


def _frame_dir_files(directory: Path) -> list[Path]:
    if not os.access(directory, os.R_OK | os.X_OK):
        raise InputError(f"{directory}: cannot read directory (permission denied)")
    try:
        entries = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as error:
        raise InputError(f"{directory}: cannot list directory ({error.strerror})") from None
    return [p for p in entries if p.is_file()]


_EXIF_ORIENTATION = 0x0112


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header alone, so that a small file
    claiming a huge picture (an RLE-compressed BMP of 20000×20000 is 1 KB) is refused
    before anything is decoded: cv2.imread allocates the whole picture first.

    Pillow's ``Image.open`` is lazy: it parses the header and decodes nothing until
    asked. Pillow refuses sizes past its own decompression-bomb bound (far above
    ours) with an error, and warns below it; both end in our own cap.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                # cv2.imread turns a picture by its EXIF orientation; 5-8 swap the sides.
                if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width
                return width, height
    except Image.DecompressionBombError:
        raise InputError(
            f"{path}: frame size exceeds the limit ({_limit_text()}): its header claims over "
            f"{Image.MAX_IMAGE_PIXELS * 2} pixels; {_SCALE_DOWN}"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({_reason(error)})") from None
    except (ValueError, SyntaxError, struct.error) as error:  # Pillow's parsers on bad headers
        raise InputError(f"{path}: not a readable image ({_reason(error)})") from None


def _read_image(path: Path) -> np.ndarray:
    _check_geometry(str(path), *_image_size(path))
    # cv2.imread returns None instead of raising on unreadable or corrupt files.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: not a readable image")
    height, width = bgr.shape[:2]
    _check_geometry(str(path), width, height)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _refuse_playlist(path: Path) -> None:
    if path.suffix.lower() in _PLAYLIST_SUFFIXES:
        raise InputError(f"{path}: playlists and concat lists are not accepted, only video files")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if head.startswith(_PLAYLIST_MAGIC):
        raise InputError(f"{path}: playlists and concat lists are not accepted, only video files")


def _is_attached_picture(stream: Any) -> bool:
    # Cover art in audio files shows up as a one-frame "video" stream.
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _stream_fps(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return DEFAULT_FPS


class VideoReader:
    """Frames of one local video file or frame directory, in order.

    ``VideoReader(path, fps=None)`` opens and checks the input at once (raising
    :class:`InputError`), exposing :attr:`info`; iterating yields (H, W, 3) uint8 RGB
    frames of ``info.width`` × ``info.height``. Iteration raises InputError if the input
    yields no frame at all. ``fps`` sets the rate of a frame directory (default 30);
    for a video file it is ignored. An audio stream is dropped with a warning
    (``warn_audio=False`` silences it). Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: Fraction | int | None = None,
        warn_audio: bool = True,
    ) -> None:
        self.path = _local_path(path)
        self._container: Any = None
        self._stream: Any = None
        self._images: list[Path] | None = None
        name = str(self.path)
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            raise InputError(f"{name}: no such file or directory") from None
        except OSError as error:
            raise InputError(f"{name}: cannot access ({error.strerror})") from None
        if stat.S_ISDIR(mode):
            self._open_images(_frame_dir_files(self.path), fps)
        elif stat.S_ISREG(mode) and self.path.suffix.lower() in IMAGE_SUFFIXES:
            # One image is a one-frame video; FFmpeg's image2 demuxer is never used.
            self._open_images([self.path], fps)
        elif stat.S_ISREG(mode):
            self._open_file()
        else:
            raise InputError(f"{name}: not a regular file or directory")
        if warn_audio and self.info.has_audio:
            warnings.warn(
                f"{name}: the audio stream is dropped; pacodec codes video only",
                stacklevel=2,
            )

    def _open_images(self, images: list[Path], fps: Fraction | int | None) -> None:
        if not images:
            raise InputError(f"{self.path}: directory holds no image frames (.png, .jpg, .bmp)")
        rate = DEFAULT_FPS if fps is None else Fraction(fps)
        if rate <= 0:
            raise InputError(f"{self.path}: frame rate must be positive, got {rate}")
        # The first frame sets the geometry, from its header alone.
        width, height = _image_size(images[0])
        _check_geometry(str(images[0]), width, height)
        self._images = images
        self.info = VideoInfo(width, height, rate, len(images), has_audio=False)

    def _open_file(self) -> None:
        name = str(self.path)
        if not os.access(self.path, os.R_OK):
            raise InputError(f"{name}: cannot read file (permission denied)")
        _refuse_playlist(self.path)
        try:
            container = av.open(name, mode="r", options={"protocol_whitelist": "file"})
        except _PYAV_ERRORS as error:
            if isinstance(error, EOFError) or "End of file" in str(error):
                raise InputError(f"{name}: not a readable video file (it ends before its first "
                                 "frame: empty, or cut short)") from None
            raise InputError(f"{name}: not a readable video file ({_reason(error)})") from None
        try:
            demuxer = container.format.name
            if set(demuxer.split(",")) & _REFUSED_DEMUXERS:
                raise InputError(f"{name}: container format {demuxer!r} is not accepted")
            videos = [s for s in container.streams.video if not _is_attached_picture(s)]
            if not videos:
                empty = len(container.streams) == 0
                raise InputError(f"{name}: has no video stream"
                                 + (" (no streams at all: a video with no frames?)" if empty else ""))
            stream = videos[0]
            width, height = stream.width, stream.height
            _check_geometry(name, width, height)
            has_audio = len(container.streams.audio) > 0
            frames = stream.frames if stream.frames and stream.frames > 0 else None
            self.info = VideoInfo(width, height, _stream_fps(stream), frames, has_audio)
        except BaseException as error:
            container.close()
            # A damaged header can leave PyAV's stream objects half-built.
            if isinstance(error, _PYAV_ERRORS) and not isinstance(error, InputError):
                raise InputError(f"{name}: not a readable video file ({_reason(error)})") from None
            raise
        self._container = container
        self._stream = stream

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        for frame in self._frames():
            count += 1
            yield frame
        if count == 0:
            raise InputError(f"{self.path}: video has no frames")

    def _frames(self) -> Iterator[np.ndarray]:
        if self._images is not None:
            for image_path in self._images:
                rgb = _read_image(image_path)
                if rgb.shape[:2] != (self.info.height, self.info.width):
                    raise InputError(
                        f"{image_path}: frame is {rgb.shape[1]}x{rgb.shape[0]}, "
                        f"the first frame is {self.info.width}x{self.info.height}"
                    )
                yield rgb
            return
        if self._container is None:
            raise InputError(f"{self.path}: reader is closed")
        name = str(self.path)
        width, height = self.info.width, self.info.height
        try:
            for frame in self._container.decode(self._stream):
                if (frame.width, frame.height) != (width, height):
                    # A mid-stream size change: keep the geometry the header promised.
                    _check_geometry(name, frame.width, frame.height)
                    frame = frame.reformat(width=width, height=height)
                yield frame.to_ndarray(format="rgb24")
        except InputError:
            raise
        except _PYAV_ERRORS as error:
            raise InputError(f"{name}: cannot decode video ({_reason(error)})") from None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(text).splitlines()[0]


def probe(path: str | os.PathLike[str], *, fps: Fraction | int | None = None) -> VideoInfo:
    """Geometry, frame rate, frame count (None if unstated) and audio presence of
    ``path``, from headers only. ``fps`` sets a frame directory's rate."""
    with VideoReader(path, fps=fps, warn_audio=False) as reader:
        return reader.info


def iter_frames(
    path: str | os.PathLike[str],
    *,
    max_frames: int | None = None,
    fps: Fraction | int | None = None,
) -> Iterator[np.ndarray]:
    """Frames of ``path`` one at a time, as (H, W, 3) uint8 RGB arrays.

    The input is opened and checked at once (InputError for a missing, unreadable,
    non-video or oversized input); the returned iterator raises InputError if the input
    yields no frame at all. Stops after ``max_frames`` when given. ``fps`` only matters
    for frame directories (see :class:`VideoReader`).
    """
    if max_frames is not None and max_frames < 0:
        raise InputError(f"max_frames must be >= 0, got {max_frames}")
    reader = VideoReader(path, fps=fps, warn_audio=True)
    return _take(reader, max_frames)


def _take(reader: VideoReader, max_frames: int | None) -> Iterator[np.ndarray]:
    with reader:
        if max_frames == 0:
            return
        for index, frame in enumerate(reader):
            yield frame
            if max_frames is not None and index + 1 >= max_frames:
                return


#: How a frame of another shape is fitted to a model's geometry (formats/pcz.md §3.2.1):
#: "stretch" resizes it to width × height, changing its aspect ratio when the shapes
#: differ; "pad" letterboxes it: resized to the largest rectangle of its own aspect
#: ratio that fits, centred, the rest black.
FITS = ("stretch", "pad")
#: A stretch that changes the aspect ratio by more than this factor is worth a warning.
#: Atari's own 160×210 frames squeezed to the models' 160×200 (5 %) are not: that is
#: the geometry every model was trained on (`pacodec dataset extract`).
ASPECT_TOLERANCE = 1.06


def picture_rect(source_width: int, source_height: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h): where a source_width × source_height picture goes, letterboxed, in a
    width × height frame. Integer arithmetic (round half up), so every writer agrees."""
    if source_width * height >= source_height * width:  # as wide as the frame or wider: full width
        w, h = width, (2 * source_height * width + source_width) // (2 * source_width)
    else:
        w, h = (2 * source_width * height + source_height) // (2 * source_height), height
    w, h = min(max(w, 1), width), min(max(h, 1), height)
    return (width - w) // 2, (height - h) // 2, w, h


def aspect_change(source_width: int, source_height: int, width: int, height: int) -> float:
    """How much a stretch from one geometry to the other changes the aspect ratio (≥ 1)."""
    ratio = (source_width * height) / (source_height * width)
    return max(ratio, 1 / ratio)


def fit(frame: np.ndarray, width: int, height: int, mode: str = "stretch") -> np.ndarray:
    """``frame`` (H, W, C) fitted to (height, width, C) with area interpolation
    (cv2.INTER_AREA), stretched or letterboxed (``mode``, see FITS); a copy when it
    already has that size."""
    if width <= 0 or height <= 0:
        raise InputError(f"target size must be positive, got {width}x{height}")
    if mode not in FITS:
        raise InputError(f"fit must be one of {', '.join(FITS)}, got {mode!r}")
    if frame.shape[0] == height and frame.shape[1] == width:
        return frame.copy()
    if mode == "pad":
        x, y, w, h = picture_rect(frame.shape[1], frame.shape[0], width, height)
        out = np.zeros((height, width, *frame.shape[2:]), frame.dtype)
        out[y : y + h, x : x + w] = fit(frame, w, h)
        return out
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def unfit(frame: np.ndarray, width: int, height: int, picture: tuple[int, int, int, int]) -> np.ndarray:
    """A decoded frame back at a width × height source: the picture rectangle (x, y, w,
    h) cropped out (dropping a letterbox's bars), then resized (cv2.INTER_AREA)."""
    x, y, w, h = picture
    return fit(np.ascontiguousarray(frame[y : y + h, x : x + w]), width, height)


# --- output ------------------------------------------------------------------------

_KINDS = ("mp4", "mkv", "png")
#: Pixel formats of an .mp4 output, the default first (VideoWriter's docstring says why).
MP4_PIX_FMTS = ("yuv444p", "yuv420p")
#: crf 4 keeps a 4:4:4 copy about 47 dB from pac-q8's decoded frames at ~1 KB a frame
#: (crf 8: 45 dB, crf 12: 43 dB, which costs a 38 dB .pcz over 1 dB against its source);
#: measured on Ms. Pac-Man frames. The .pcz is the small file; the .mp4 is for playing.
MP4_CRF = {"yuv444p": 4, "yuv420p": 18}
#: The RGB bytes of the frames x264 may look ahead over (see VideoWriter._open_mp4).
X264_LOOKAHEAD_BYTES = 256 << 20


def _output_kind(path: Path, text: str) -> str:
    """Which writer ``path`` asks for, judged on the name without a trailing
    partial suffix (the caller writes ``<output>.<random>.partial`` and renames it)."""
    if text.endswith(("/", os.sep)) or path.is_dir():
        return "png"
    name = target_name(path.name)
    suffix = Path(name).suffix.lower()
    if suffix == "":
        return "png"
    if suffix in (".mp4", ".m4v"):
        return "mp4"
    if suffix == ".mkv":
        return "mkv"
    raise InputError(f"{text}: unknown output type {suffix!r} (use .mp4, .mkv or a directory)")


#: An output video's frame rate is p/q with 1 <= p, q <= MAX_RATE_TERM (formats/pcz.md
#: §8.1): FFmpeg keeps rates and time bases as 32-bit rationals, and MP4 writes its
#: timescale from the rate: measured with PyAV, both fail (OverflowError) once a term
#: passes 2^31 - 1 and MP4 from 1/1048576 fps, while every p/q in this range writes and
#: reads back in both (MP4 under 1 fps with the timescale _open_mp4 sets).
MAX_RATE_TERM = 65535


def container_rate(fps: Fraction, name: str) -> Fraction:
    """The rate an ``.mp4`` or ``.mkv`` is written at: ``fps`` itself when both its terms
    are at most MAX_RATE_TERM, else the nearest rate whose terms are (a best rational
    approximation: off by less than one part in 65536). Raises OutputError outside
    1/65535 … 65535 fps, which no such video holds."""
    lowest, highest = Fraction(1, MAX_RATE_TERM), Fraction(MAX_RATE_TERM)
    if not lowest <= fps <= highest:
        raise OutputError(
            f"{name}: a video file cannot hold {fps} fps (it takes 1/{MAX_RATE_TERM} … {MAX_RATE_TERM} fps, "
            f"at most one frame every {MAX_RATE_TERM / 3600:.1f} hours); decode to a folder of PNG frames")
    if fps.numerator <= MAX_RATE_TERM and fps.denominator <= MAX_RATE_TERM:
        return fps
    if fps < 1:  # p < q: bounding q bounds p
        return fps.limit_denominator(MAX_RATE_TERM)
    return 1 / (1 / fps).limit_denominator(MAX_RATE_TERM)


class VideoWriter:
    """Write (H, W, 3) uint8 RGB frames to ``path``, exactly that path.

    The kind comes from ``kind`` ("mp4", "mkv", "png") or else from the path, ignoring
    a partial suffix (``.<random>.partial``):

    - ``.mp4``: H.264 (libx264, preset medium, faststart; crf 4 for 4:4:4, 18 for 4:2:0,
      where the colour subsampling costs far more anyway) in ``pix_fmt``:
      ``yuv444p`` (the default: full colour resolution, which pixel art needs; plays in
      FFmpeg, VLC, mpv and Chrome, not in Safari/QuickTime) or ``yuv420p`` (plays
      anywhere, but halves the colour resolution both ways: on Atari frames a
      lossless 4:2:0 copy is already below 26 dB). 4:2:0 needs even sizes, so there
      an odd width or height is padded by one column/row that repeats the edge pixels;
      reading the file back gives the padded size.
    - ``.mkv``: FFV1 in Matroska with pixel format ``bgr0``: lossless, decoding gives
      the very same RGB frames.
    - an existing directory, a path ending in ``/`` or a name without an extension: PNG
      frames ``frame_000000.png``, ``frame_000001.png``, ... (the frame rate is not
      stored). The directory is created if needed; one already holding ``frame_*.png``
      is refused.

    ``fps`` is kept as the stream's exact rational rate (``.mp4``/``.mkv``: within
    container_rate's range, else the nearest rate in it). Frames of another shape or
    dtype raise InputError; failures to write (missing directory, no permission, disk
    full) raise OutputError. :meth:`close` flushes the encoder; use as a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: Fraction | int = DEFAULT_FPS,
        width: int,
        height: int,
        kind: str | None = None,
        crf: int | None = None,
        pix_fmt: str = "yuv444p",
    ) -> None:
        text = os.fspath(path)
        if _SCHEME.match(text):
            raise InputError(f"{text}: only local output paths are accepted")
        self.path = Path(text).absolute()
        self.kind = _output_kind(self.path, text) if kind is None else kind
        if self.kind not in _KINDS:
            raise InputError(f"{text}: unknown output kind {kind!r} (use one of {_KINDS})")
        if pix_fmt not in MP4_PIX_FMTS:
            raise InputError(f"{text}: unknown pixel format {pix_fmt!r} (use one of {', '.join(MP4_PIX_FMTS)})")
        self.pix_fmt = pix_fmt
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise InputError(f"{text}: frame rate must be positive, got {self.fps}")
        if self.kind != "png":
            self.fps = container_rate(self.fps, text)
        if width <= 0 or height <= 0:
            raise InputError(f"{text}: frame size must be positive, got {width}x{height}")
        _check_geometry(text, width, height, output=True)
        self.width, self.height = width, height
        self.frames_written = 0
        self._container: Any = None
        self._stream: Any = None
        self._closed = False
        name = str(self.path)
        if self.kind == "png":
            self._open_png_dir()
            return
        try:
            if self.kind == "mp4":
                self._open_mp4(name, crf if crf is not None else MP4_CRF[pix_fmt])
            else:
                self._open_mkv(name)
            # Open the file and write the header now, so an unwritable path fails here.
            self._container.start_encoding()
        except (av.error.FFmpegError, OSError) as error:
            self._abandon()
            raise OutputError(f"{name}: cannot write video ({_reason(error)})") from None

    def _open_png_dir(self) -> None:
        try:
            self.path.mkdir(parents=False, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{self.path}: cannot create directory ({_reason(error)})") from None
        if any(self.path.glob("frame_*.png")):
            raise OutputError(f"{self.path}: directory already holds frame_*.png files")

    def _open_mp4(self, name: str, crf: int) -> None:
        options = {"movflags": "+faststart"}
        if self.fps < 1:
            # MP4 stores B-frame reordering as signed 32-bit tick offsets; FFmpeg's own
            # timescale (>= 10000 ticks a second) overflowed them at 1/32767 fps (measured).
            # p/q fps in ticks of 1/(p*k) s: a frame is q*k ticks, k kept so that
            # 16 frames of offset still fit.
            p, q = self.fps.numerator, self.fps.denominator
            k = max(1, min(-(-10000 // p), (1 << 31) // 16 // q))
            options["video_track_timescale"] = str(p * k)
        self._container = av.open(name, mode="w", format="mp4", options=options)
        # x264 holds its rc-lookahead frames (40 at preset medium): at 4096×2304 its memory
        # grew by ~42 MB a frame for the first 40 frames (measured). Large frames get a
        # shorter lookahead, about X264_LOOKAHEAD_BYTES of RGB frames; frames up to 1080p
        # keep the preset's.
        lookahead = max(4, min(40, X264_LOOKAHEAD_BYTES // (self.width * self.height * 3)))
        stream = self._container.add_stream(
            "libx264", rate=self.fps,
            options={"crf": str(crf), "preset": "medium", "rc-lookahead": str(lookahead)},
        )
        # yuv420p halves chroma both ways, so there the coded size must be even.
        even = self.pix_fmt == "yuv420p"
        stream.width = self.width + (self.width % 2 if even else 0)
        stream.height = self.height + (self.height % 2 if even else 0)
        stream.pix_fmt = self.pix_fmt
        self._stream = stream

    def _open_mkv(self, name: str) -> None:
        self._container = av.open(name, mode="w", format="matroska")
        stream = self._container.add_stream("ffv1", rate=self.fps)
        stream.width, stream.height = self.width, self.height
        # bgr0 holds RGB exactly; a YUV format would round the colours.
        stream.pix_fmt = "bgr0"
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._closed:
            raise OutputError(f"{self.path}: writer is closed")
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.shape != (self.height, self.width, 3)
        ):
            got = (
                f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame)
            )
            raise InputError(
                f"{self.path}: expected a ({self.height}, {self.width}, 3) uint8 frame, got {got}"
            )
        if self.kind == "png":
            self._write_png(frame)
        else:
            self._encode(frame)
        self.frames_written += 1

    def _write_png(self, frame: np.ndarray) -> None:
        target = self.path / f"frame_{self.frames_written:06d}.png"
        try:
            ok = cv2.imwrite(str(target), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        except cv2.error as error:
            raise OutputError(f"{target}: cannot write PNG ({_reason(error)})") from None
        if not ok:
            raise OutputError(f"{target}: cannot write PNG")

    def _encode(self, frame: np.ndarray) -> None:
        pad_rows = self._stream.height - self.height
        pad_cols = self._stream.width - self.width
        if pad_rows or pad_cols:
            frame = np.pad(frame, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as error:
            self._abandon()
            raise OutputError(f"{self.path}: cannot write video ({_reason(error)})") from None

    def close(self) -> None:
        """Flush the encoder and finish the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except (av.error.FFmpegError, OSError) as error:
            self._abandon()
            raise OutputError(f"{self.path}: cannot finish video ({_reason(error)})") from None
        finally:
            self._container = None

    def _abandon(self) -> None:
        """Release the container after a failure; the caller removes the partial file."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                pass
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            # Don't mask the original error with one from flushing a broken file.
            self._abandon()
