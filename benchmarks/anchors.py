"""Classical anchors for the rate–distortion benchmark (DESIGN.md, "Measuring").

Every anchor is a function ``(frames, fps, setting) -> AnchorResult``:

- ``frames``: list of H×W×3 uint8 RGB arrays (the reference, at the coded geometry);
- ``fps``: frame rate (int, float or Fraction), only used to time-stamp the stream;
- ``setting``: the swept parameter (CRF for video codecs, quality for images, ignored
  for the lossless references).

Sizes are raw bitstream sizes, not container files: H.264 and HEVC are written as
Annex-B elementary streams (PyAV formats ``h264``/``hevc``, parameter sets in-band),
AV1 as a low-overhead OBU stream (format ``obu``), JPEG/WebP/PNG as the sum of the
per-frame encoded images, FFV1 as the sum of its packets plus its extradata. At a
couple of hundred bytes a frame a container's per-frame overhead would be a visible
part of the rate, and pacodec's own file is charged for all of its framing.

Quality is measured here (``pacodec.metrics``) against the given frames, so results
do not hold decoded frames in memory.

Decoding is timed ``DECODE_ROUNDS`` times for every codec alike and the median kept
(``timed_decode``): this machine's speed swings by a third from one moment to the
next (x264 decoding 437–800 frames a second across runs), and one decode of a clip
takes a few seconds at most. Encoding, minutes for some, is timed once.
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import av
import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from pacodec.metrics import compare  # noqa: E402

# SVT-AV1 prints its configuration banner at info level; errors only.
os.environ.setdefault("SVT_LOG", "1")

# Codec threads: set explicitly so speed figures are comparable between machines and
# with pacodec (whose torch thread count rd.py sets to the same number).
THREADS = 2
# SSIM is costly next to PSNR; every SSIM_EVERY-th frame is measured (PSNR: every frame).
SSIM_EVERY = 10
# Decodes timed per result, the median kept (timed_decode).
DECODE_ROUNDS = 3


@dataclass
class AnchorResult:
    codec: str  # family, e.g. "x264-444"; one RD curve per family
    setting: str  # e.g. "crf=18", "q=80", "lossless"
    frames: int
    total_bytes: int
    width: int
    height: int
    psnr: float
    ssim: float
    ssim_every: int
    encode_s: float
    decode_s: float
    threads: int
    notes: str = ""

    @property
    def bytes_per_frame(self) -> float:
        return self.total_bytes / self.frames

    @property
    def bpp(self) -> float:
        return 8.0 * self.total_bytes / (self.frames * self.width * self.height)

    @property
    def encode_fps(self) -> float:
        return self.frames / self.encode_s if self.encode_s > 0 else float("inf")

    @property
    def decode_fps(self) -> float:
        return self.frames / self.decode_s if self.decode_s > 0 else float("inf")

    def row(self) -> dict[str, object]:
        """The rd.csv row (DESIGN.md column set plus geometry)."""
        return {
            "codec": self.codec,
            "setting": self.setting,
            "frames": self.frames,
            "bytes_per_frame": round(self.bytes_per_frame, 2),
            "bpp": round(self.bpp, 5),
            "psnr": round(self.psnr, 3),
            "ssim": round(self.ssim, 5),
            "encode_fps": round(self.encode_fps, 1),
            "decode_fps": round(self.decode_fps, 1),
            "threads": self.threads,
            "width": self.width,
            "height": self.height,
        }

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"bytes_per_frame": self.bytes_per_frame, "bpp": self.bpp}


def _measure(codec: str, setting: str, frames: Sequence[np.ndarray], decoded: Sequence[np.ndarray],
             total_bytes: int, encode_s: float, decode_s: float, threads: int,
             notes: str = "") -> AnchorResult:
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} {setting}: decoded {len(decoded)} frames, expected {len(frames)}")
    quality = compare(zip(frames, decoded), ssim_every=SSIM_EVERY)
    h, w = frames[0].shape[:2]
    return AnchorResult(codec, setting, len(frames), int(total_bytes), w, h, quality.psnr_db,
                        quality.ssim, SSIM_EVERY, encode_s, decode_s, threads, notes)


# --- video codecs through PyAV ------------------------------------------------------------


@dataclass
class VideoCodec:
    """How to drive one FFmpeg encoder for one anchor family."""

    family: str
    encoder: str  # FFmpeg encoder name
    muxer: str  # raw elementary-stream muxer/demuxer
    pix_fmt: str
    options: Callable[[str], dict[str, str]]  # setting -> encoder options
    gop_size: int | None = None  # None: the encoder's default GOP
    thread_options: dict[str, str] = field(default_factory=dict)


def _encode_video(spec: VideoCodec, frames: Sequence[np.ndarray], fps, setting) -> bytes:
    rate = Fraction(fps).limit_denominator(1001)
    sink = io.BytesIO()
    with av.open(sink, "w", format=spec.muxer) as out:
        stream = out.add_stream(spec.encoder, rate=rate)
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, spec.pix_fmt
        stream.time_base = 1 / rate
        cc = stream.codec_context
        cc.thread_count = THREADS
        # Frame threads: slice threads would split each picture into slices and change
        # the bitstream (ffmpeg's CLI also ends up with frame threads for x264).
        cc.thread_type = "FRAME"
        if spec.gop_size is not None:
            cc.gop_size = spec.gop_size
        stream.options = {"preset": "medium"} | spec.options(str(setting)) | spec.thread_options
        for i, rgb in enumerate(frames):
            # swscale's default RGB→YUV (BT.601, limited range), undone by the same
            # default on decode: the round trip alone is ~55 dB at 4:4:4 on clip9.
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=spec.pix_fmt)
            frame.pts = i
            frame.time_base = stream.time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return sink.getvalue()


_ENCODER_INFO = (b"x264 - core", b"x265 (build")


def tidy_annexb(bitstream: bytes, hevc: bool) -> bytes:
    """Drop what a decoder does not need from an Annex-B stream: the encoder's version
    and options SEI (x264 ~0.7 kB, x265 ~2.3 kB per stream) and parameter sets that
    repeat one already sent (x264/x265 resend them at every keyframe of a raw stream;
    in MP4/MKV they would be stored once). What stays is what an MP4 would hold, minus
    the container: every frame still decodes, and the decoded pictures are unchanged.
    """
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", bitstream)]
    kept: list[bytes] = []
    seen: set[bytes] = set()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(bitstream)
        unit = bitstream[start:end]  # start code, NAL unit, trailing zero bytes
        nal = unit[3:]
        if not nal:
            continue
        kind = (nal[0] >> 1) & 0x3F if hevc else nal[0] & 0x1F
        parameter_set = kind in (32, 33, 34) if hevc else kind in (7, 8)
        sei = kind in (39, 40) if hevc else kind == 6
        if sei and any(tag in nal for tag in _ENCODER_INFO):
            continue
        if parameter_set:
            body = nal.rstrip(b"\x00")
            if body in seen:
                continue
            seen.add(body)
        kept.append(unit)
    return b"".join(kept)


def timed_decode(decode: Callable[[], list]) -> tuple[list, float]:
    """``decode()``'s frames (from its first round) and the median of its wall times over
    DECODE_ROUNDS rounds."""
    import statistics

    times, first = [], None
    for _ in range(DECODE_ROUNDS):
        t0 = time.perf_counter()
        got = decode()
        times.append(time.perf_counter() - t0)
        if first is None:
            first = got
    return first, statistics.median(times)


def _decode_video(spec: VideoCodec, bitstream: bytes) -> list[np.ndarray]:
    decoded = []
    with av.open(io.BytesIO(bitstream), "r", format=spec.muxer) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = THREADS
        for frame in container.decode(stream):
            decoded.append(frame.to_ndarray(format="rgb24"))
    return decoded


def run_video(spec: VideoCodec, frames: Sequence[np.ndarray], fps, setting) -> AnchorResult:
    t0 = time.perf_counter()
    bitstream = _encode_video(spec, frames, fps, setting)
    if spec.muxer in ("h264", "hevc"):
        bitstream = tidy_annexb(bitstream, hevc=spec.muxer == "hevc")
    t1 = time.perf_counter()
    decoded, decode_s = timed_decode(lambda: _decode_video(spec, bitstream))
    return _measure(spec.family, f"crf={setting}", frames, decoded, len(bitstream),
                    t1 - t0, decode_s, THREADS)


def _crf(setting: str) -> dict[str, str]:
    return {"crf": setting}


def _x265(extra: str = "") -> Callable[[str], dict[str, str]]:
    # x265 sizes its own thread pool; "pools" caps it (the threads option is not mapped).
    params = f"pools={THREADS}:log-level=error" + (f":{extra}" if extra else "")
    return lambda s: {"crf": s, "x265-params": params}


VIDEO_CODECS: dict[str, VideoCodec] = {
    "x264-444": VideoCodec("x264-444", "libx264", "h264", "yuv444p", _crf),
    "x264-420": VideoCodec("x264-420", "libx264", "h264", "yuv420p", _crf),
    # Intra-only is `-g 1` (DESIGN.md): gop_size is what ffmpeg's -g sets.
    "x264-intra-444": VideoCodec("x264-intra-444", "libx264", "h264", "yuv444p", _crf, gop_size=1),
    "x264-444-k32": VideoCodec(
        "x264-444-k32", "libx264", "h264", "yuv444p",
        lambda s: {"crf": s, "x264-params": "keyint=32:min-keyint=32"}),
    "x265-444": VideoCodec("x265-444", "libx265", "hevc", "yuv444p", _x265()),
    "x265-444-k32": VideoCodec("x265-444-k32", "libx265", "hevc", "yuv444p",
                               _x265("keyint=32:min-keyint=32")),
    # SVT-AV1's main profile is 4:2:0 only. Its presets run 0 (slow) to 13; 8 is its
    # middle-of-the-road speed, the nearest thing to "medium".
    "svtav1-420": VideoCodec(
        "svtav1-420", "libsvtav1", "obu", "yuv420p",
        lambda s: {"crf": s, "preset": "8", "svtav1-params": f"lp={THREADS}"}),
}

def available(spec: VideoCodec) -> bool:
    return spec.encoder in av.codecs_available


def ffv1(frames: Sequence[np.ndarray], fps, setting=None) -> AnchorResult:
    """Lossless FFV1 (bgr0, level 3): a lossless reference. Size = packets + extradata.

    No raw FFV1 stream format exists, so the packets are counted without a container.
    """
    t0 = time.perf_counter()
    packets: list[bytes] = []
    extradata = b""
    rate = Fraction(fps).limit_denominator(1001)
    cc = av.CodecContext.create("ffv1", "w")
    h, w = frames[0].shape[:2]
    cc.width, cc.height, cc.pix_fmt = w, h, "bgr0"
    cc.time_base = 1 / rate
    cc.thread_count = THREADS
    cc.options = {"level": "3", "slicecrc": "0"}
    cc.open()
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")
        frame.pts = i
        packets.extend(bytes(p) for p in cc.encode(frame))
    packets.extend(bytes(p) for p in cc.encode(None))
    extradata = bytes(cc.extradata or b"")
    t1 = time.perf_counter()

    def decode() -> list[np.ndarray]:
        dec = av.CodecContext.create("ffv1", "r")
        dec.width, dec.height, dec.pix_fmt = w, h, "bgr0"
        dec.extradata = extradata
        dec.thread_count = THREADS
        decoded = []
        for data in packets:
            for frame in dec.decode(av.Packet(data)):
                decoded.append(frame.to_ndarray(format="rgb24"))
        for frame in dec.decode(None):
            decoded.append(frame.to_ndarray(format="rgb24"))
        return decoded

    decoded, decode_s = timed_decode(decode)
    total = sum(len(p) for p in packets) + len(extradata)
    return _measure("ffv1", "lossless", frames, decoded, total, t1 - t0, decode_s, THREADS)


# --- image codecs through OpenCV ----------------------------------------------------------

IMAGE_FORMATS = {
    # OpenCV's JPEG: libjpeg(-turbo) with its default 4:2:0 chroma subsampling.
    "jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY),
    # Not in DESIGN.md's list: the same JPEG without chroma subsampling, since 4:2:0
    # alone caps these frames near 37 dB.
    "jpeg-444": (".jpg", cv2.IMWRITE_JPEG_QUALITY),
    # WebP lossy for quality 1–100 (over 100 would be lossless).
    "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY),
    "png": (".png", cv2.IMWRITE_PNG_COMPRESSION),
}


def run_image(family: str, frames: Sequence[np.ndarray], setting) -> AnchorResult:
    """Each frame coded on its own; bytes = sum of the encoded images."""
    ext, flag = IMAGE_FORMATS[family]
    cv2.setNumThreads(THREADS)
    t0 = time.perf_counter()
    blobs = []
    for rgb in frames:
        params = [flag, int(setting)]
        if family == "jpeg-444":
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        ok, blob = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"cv2.imencode({ext}) failed")
        blobs.append(blob)
    t1 = time.perf_counter()
    decoded, decode_s = timed_decode(
        lambda: [cv2.cvtColor(cv2.imdecode(b, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for b in blobs])
    label = "compression" if family == "png" else "q"
    return _measure(family, f"{label}={setting}", frames, decoded, sum(b.size for b in blobs),
                    t1 - t0, decode_s, THREADS)


def jpeg(frames, fps, setting) -> AnchorResult:
    return run_image("jpeg", frames, setting)


def jpeg_444(frames, fps, setting) -> AnchorResult:
    return run_image("jpeg-444", frames, setting)


def webp(frames, fps, setting) -> AnchorResult:
    return run_image("webp", frames, setting)


def png(frames, fps, setting=9) -> AnchorResult:
    return run_image("png", frames, setting)


def video_anchor(family: str) -> Callable[..., AnchorResult]:
    spec = VIDEO_CODECS[family]

    def anchor(frames, fps, setting) -> AnchorResult:
        return run_video(spec, frames, fps, setting)

    anchor.__name__ = family.replace("-", "_")
    return anchor


x264_444 = video_anchor("x264-444")
x264_420 = video_anchor("x264-420")
x264_intra_444 = video_anchor("x264-intra-444")
x264_444_k32 = video_anchor("x264-444-k32")
x265_444 = video_anchor("x265-444")
x265_444_k32 = video_anchor("x265-444-k32")
svtav1_420 = video_anchor("svtav1-420")

# --- encoders PyAV's FFmpeg lacks, through the FFmpeg binary of imageio-ffmpeg -------------
#
# PyAV's wheels carry no libaom and no VVenC; the `imageio-ffmpeg` package (the `bench`
# extra) ships a static FFmpeg that has both, and SVT-AV1 with its screen-content tools.
# Frames go in as raw RGB on a pipe and come back the same way, so the colour conversion
# is FFmpeg's default swscale one, as for the PyAV anchors.


@dataclass
class CliCodec:
    """One anchor family run through the FFmpeg command line."""

    family: str
    pix_fmt: str  # what the encoder is fed (and so codes)
    muxer: str  # raw elementary stream: its size is the rate
    args: Callable[[str], list[str]]  # setting -> encoder arguments
    label: str = "crf"


def ffmpeg_exe() -> str | None:
    """The FFmpeg binary of imageio-ffmpeg, or None where the package is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(args: list[str], stdin: bytes | None = None) -> bytes:
    import subprocess

    exe = ffmpeg_exe()
    if exe is None:
        raise RuntimeError("imageio-ffmpeg is not installed (pip install '.[bench]')")
    run = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-nostdin", *args],
                         input=stdin, capture_output=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args[:12])}…: {run.stderr.decode(errors='replace')[-400:]}")
    return run.stdout


def run_cli(spec: CliCodec, frames: Sequence[np.ndarray], fps, setting) -> AnchorResult:
    import tempfile

    h, w = frames[0].shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    raw = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    source = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(rate), "-i", "-"]
    with tempfile.TemporaryDirectory() as tmp:
        stream = os.path.join(tmp, f"out.{spec.muxer}")
        t0 = time.perf_counter()
        _ffmpeg([*source, "-pix_fmt", spec.pix_fmt, *spec.args(str(setting)), "-f", spec.muxer, stream],
                stdin=raw)
        t1 = time.perf_counter()
        out, decode_s = timed_decode(lambda: _ffmpeg(["-threads", str(THREADS), "-f", spec.muxer, "-i", stream,
                                                      "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]))
        size = os.path.getsize(stream)
    decoded = list(np.frombuffer(out, np.uint8).reshape(-1, h, w, 3))
    return _measure(spec.family, f"{spec.label}={setting}", frames, decoded, size, t1 - t0, decode_s,
                    THREADS)


CLI_CODECS: dict[str, CliCodec] = {
    # What a user picks for screen content: libaom 4:4:4 with palette and intra block
    # copy (tune-content=screen), at -cpu-used 4 (its "good" speed), its default GOP.
    "aom-444-screen": CliCodec(
        "aom-444-screen", "yuv444p", "obu",
        lambda s: ["-c:v", "libaom-av1", "-crf", s, "-b:v", "0", "-cpu-used", "4", "-row-mt", "1",
                   "-threads", str(THREADS), "-aom-params", "tune-content=screen"]),
    # SVT-AV1 with its screen-content mode; main profile, so 4:2:0.
    "svtav1-420-scm": CliCodec(
        "svtav1-420-scm", "yuv420p", "obu",
        lambda s: ["-c:v", "libsvtav1", "-crf", s, "-preset", "4",
                   "-svtav1-params", f"scm=1:lp={THREADS}"]),
    # VVC through VVenC at its medium preset (4:2:0 10-bit, the only format it codes), an
    # intra frame every 256 frames like x264's default GOP: VVenC's own default (about one
    # a second) needs 1.8× the bytes on clip9 (158 against 86 bytes a frame at QP 32).
    "vvenc-420": CliCodec(
        "vvenc-420", "yuv420p10le", "vvc",
        lambda s: ["-c:v", "libvvenc", "-qp", s, "-preset", "medium", "-threads", str(THREADS),
                   "-vvenc-params", "IntraPeriod=256"],
        label="qp"),
}

AOM_CRFS = [20, 28, 36, 44, 50, 56, 62]
VVENC_QPS = [12, 17, 22, 27, 32, 37]
QUICK_AOM_CRFS = [28, 44, 56]
QUICK_VVENC_QPS = [22, 32, 42]


def cli_anchor(family: str) -> Callable[..., AnchorResult]:
    spec = CLI_CODECS[family]

    def anchor(frames, fps, setting) -> AnchorResult:
        return run_cli(spec, frames, fps, setting)

    anchor.__name__ = family.replace("-", "_")
    return anchor


# --- sweeps -------------------------------------------------------------------------------

# Down to CRF 46: the inter anchors at GOP 32 must reach below 28 dB, or they share under
# 1 dB of PSNR with pacodec's predictive curve and the BD-rate the issues ask for is n/a.
CRFS = [10, 14, 18, 22, 26, 30, 34, 38, 42, 46]
SVT_CRFS = [20, 28, 36, 44, 52, 60]
# Intra-only x264 also below CRF 10: it stops at 40.5 dB there, and pacodec's refined
# levels reach 42 dB, so the anchor must too for the BD-rate to cover them.
INTRA_CRFS = [2, 6, *CRFS]
INTRA_FAMILY = "x264-intra-444"
QUALITIES = [30, 40, 50, 60, 70, 80, 90, 95]

QUICK_CRFS = [14, 22, 30, 38]
QUICK_SVT_CRFS = [24, 36, 48, 60]
QUICK_QUALITIES = [30, 50, 70, 95]


def sweeps(quick: bool = False) -> list[tuple[str, Callable[..., AnchorResult], list]]:
    """(family, anchor function, settings) for every anchor in the benchmark."""
    crfs = QUICK_CRFS if quick else CRFS
    svt = QUICK_SVT_CRFS if quick else SVT_CRFS
    qualities = QUICK_QUALITIES if quick else QUALITIES
    plan: list[tuple[str, Callable[..., AnchorResult], list]] = []
    for family in VIDEO_CODECS:
        settings = svt if family.startswith("svtav1") else (
            INTRA_CRFS if family == INTRA_FAMILY and not quick else crfs)
        plan.append((family, video_anchor(family), settings))
    if ffmpeg_exe() is not None:
        aom = QUICK_AOM_CRFS if quick else AOM_CRFS
        plan += [("aom-444-screen", cli_anchor("aom-444-screen"), aom),
                 ("svtav1-420-scm", cli_anchor("svtav1-420-scm"), svt),
                 ("vvenc-420", cli_anchor("vvenc-420"), QUICK_VVENC_QPS if quick else VVENC_QPS)]
    plan += [("jpeg", jpeg, qualities), ("jpeg-444", jpeg_444, qualities), ("webp", webp, qualities),
             ("png", png, [9]), ("ffv1", ffv1, ["lossless"])]
    return plan


def unavailable() -> list[str]:
    """Anchor families whose encoder this machine lacks."""
    missing = [f for f, spec in VIDEO_CODECS.items() if not available(spec)]
    return missing + ([] if ffmpeg_exe() is not None else list(CLI_CODECS))
