"""pacodec: a learned video codec for Pac-Man gameplay.

The public API::

    import pacodec
    pacodec.encode("game.mp4", "game.pcz", model="conv4", quantizer="naive")
    with pacodec.open("game.pcz") as reader:      # len(reader), reader[i], reader[a:b], iteration
        for frame in reader:                      # H×W×3 uint8 RGB, C-contiguous
            ...
    pacodec.encode(frames, "frames.pcz", fps=30)  # frames: N×H×W×3 uint8, or any iterable of frames
    with pacodec.VideoReader("game.mp4") as video:  # any source video, one frame at a time
        for frame in video:
            ...
    with pacodec.Writer("out.pcz", model="conv4", fps=30) as writer:
        writer.write(frame)
    pacodec.probe("game.pcz")                     # byte accounting, no model needed
    pacodec.encode_many(["a.mp4", "b.mp4"], "out/")  # out/a.pcz, out/b.pcz on every core
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ChecksumError,
    FormatError,
    InputError,
    LimitError,
    OutputError,
    PacodecError,
    TruncatedError,
    UnsupportedVersionError,
    WeightsError,
)


def __getattr__(name: str):
    # The API imports torch; load it on first use so `pacodec.errors` and the
    # container stay light (info never needs the model).
    if name in {"open", "Writer", "Reader", "encode", "decode", "probe", "list_models", "compare"}:
        from . import api

        return getattr(api, name)
    if name == "encode_many":
        from .batch import encode_many

        return encode_many
    if name == "VideoReader":  # any source video, streamed as frames (PyAV)
        from .video import VideoReader

        return VideoReader
    raise AttributeError(f"module 'pacodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazily loaded API (open, Writer, encode, ...) is part of what dir() shows.
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "open", "Writer", "Reader", "encode", "decode", "probe", "list_models", "compare", "encode_many",
    "VideoReader", "PacodecError", "FormatError", "ChecksumError", "UnsupportedVersionError", "LimitError",
    "TruncatedError", "InputError", "WeightsError", "OutputError", "__version__",
]
