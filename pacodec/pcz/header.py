"""The stream header (formats/pcz.md §3): dataclasses, validation, bytes in and out."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import construct as cs

from pacodec.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    TruncatedError,
    UnsupportedVersionError,
)
from pacodec.pcz import limits
from pacodec.pcz.schema import (
    CURRENT_VERSION,
    HEADER_EXTENSION1_SIZE,
    MAGIC,
    PREAMBLE_SIZE,
    SUPPORTED_MAJOR,
    KNOWN_MINOR,
    CodeDtype,
    EntropyCoder,
    Fit,
    Header,
    HeaderBody,
    HeaderExtension1,
    Preamble,
    Quantizer,
    crc32,
)

_MODEL_ID = re.compile(rf"[a-z0-9._-]{{1,{limits.MAX_MODEL_ID_BYTES}}}")


@dataclass(frozen=True)
class ModelRef:
    """A model by stable id and the sha256 (32 raw bytes) of the weights used."""

    model_id: str
    weights_sha256: bytes


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs before the first record (§3.2).

    ``models[0]`` decodes intra frames; later models (e.g. a residual model) serve
    predicted frames. ``code_shape`` is the shape of one frame's code tensor,
    ``frame_param_bytes`` the fixed count of quantizer-parameter bytes that start
    every frame payload, ``gop`` the largest distance between intra frames (1: all
    intra).
    """

    source_width: int
    source_height: int
    width: int
    height: int
    fps_num: int
    fps_den: int
    models: tuple[ModelRef, ...]
    quantizer: Quantizer
    code_dtype: CodeDtype
    code_shape: tuple[int, ...]
    frame_param_bytes: int = 0
    entropy_coder: EntropyCoder = EntropyCoder.NONE
    table_digest: bytes = bytes(32)
    gop: int = 1
    version: tuple[int, int] = (1, 0)  # the lowest that holds a file; api.Writer asks for more where needed
    #: §3.2.1 (minor version 1 on): how frames were fitted to width × height, and the
    #: rectangle (x, y, width, height) of the coded frame that holds the picture; a
    #: x.0 file is a stretch whose picture is the whole frame.
    fit: Fit = Fit.STRETCH
    picture: tuple[int, int, int, int] | None = None

    @property
    def picture_rect(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the picture in a decoded frame."""
        return self.picture if self.picture is not None else (0, 0, self.width, self.height)


def validate_header(header: StreamHeader, where: str = "header") -> None:
    """Raise LimitError / FormatError if ``header`` breaks a §3.4 rule or a §8 cap.

    ``where`` prefixes messages (file name and offset).
    """

    def fail(field: str, why: str, error: type[FormatError] = FormatError) -> None:
        raise error(f"{where}: field {field}: {why}")

    for field, value, cap in (
        ("source_width", header.source_width, limits.MAX_WIDTH),
        ("source_height", header.source_height, limits.MAX_HEIGHT),
        ("width", header.width, limits.MAX_WIDTH),
        ("height", header.height, limits.MAX_HEIGHT),
    ):
        if not isinstance(value, int) or value < 1:
            fail(field, f"must be a positive integer, got {value!r}")
        if value > cap:
            fail(field, f"{value} exceeds the cap {cap}", LimitError)
    for field, w, h in (
        ("source geometry", header.source_width, header.source_height),
        ("coded geometry", header.width, header.height),
    ):
        if w * h > limits.MAX_PIXELS_PER_FRAME:
            fail(field, f"{w}x{h} exceeds {limits.MAX_PIXELS_PER_FRAME} pixels", LimitError)
    for field, value in (("fps_num", header.fps_num), ("fps_den", header.fps_den)):
        if not isinstance(value, int) or not 1 <= value <= 0xFFFFFFFF:
            fail(field, f"must be in 1..2**32-1, got {value!r}")
    if header.fps_num > limits.MAX_FPS * header.fps_den:
        fail(
            "fps_num",
            f"frame rate {header.fps_num}/{header.fps_den} over {limits.MAX_FPS}",
            LimitError,
        )

    if not 1 <= len(header.models) <= limits.MAX_MODELS:
        fail("models", f"needs 1..{limits.MAX_MODELS} entries, got {len(header.models)}")
    for k, model in enumerate(header.models):
        if not isinstance(model.model_id, str) or not _MODEL_ID.fullmatch(model.model_id):
            fail(f"models[{k}].model_id", f"must be 1..64 of [a-z0-9._-], got {model.model_id!r}")
        if not isinstance(model.weights_sha256, bytes) or len(model.weights_sha256) != 32:
            fail(f"models[{k}].weights_sha256", "must be 32 bytes")

    for field, value, enum in (
        ("quantizer", header.quantizer, Quantizer),
        ("code_dtype", header.code_dtype, CodeDtype),
        ("entropy_coder", header.entropy_coder, EntropyCoder),
    ):
        if value not in enum._value2member_map_:
            fail(field, f"unknown value {value!r}")

    shape = header.code_shape
    if not 1 <= len(shape) <= limits.MAX_CODE_DIMS:
        fail("code_shape", f"needs 1..{limits.MAX_CODE_DIMS} dimensions, got {len(shape)}")
    if any(not isinstance(d, int) or not 1 <= d <= 0xFFFFFFFF for d in shape):
        fail("code_shape", f"dimensions must be in 1..2**32-1, got {shape!r}")
    if math.prod(shape) > limits.MAX_CODE_ENTRIES:
        fail(
            "code_shape", f"{math.prod(shape)} entries exceed {limits.MAX_CODE_ENTRIES}", LimitError
        )

    if not isinstance(header.frame_param_bytes, int) or not 0 <= header.frame_param_bytes <= 0xFFFF:
        fail("frame_param_bytes", f"must be in 0..65535, got {header.frame_param_bytes!r}")
    if not isinstance(header.table_digest, bytes) or len(header.table_digest) != 32:
        fail("table_digest", "must be 32 bytes")
    if header.entropy_coder == EntropyCoder.NONE and any(header.table_digest):
        fail("table_digest", "must be all zeros when entropy_coder is 0 (none)")
    if not isinstance(header.gop, int) or not 1 <= header.gop <= 0xFFFF:
        fail("gop", f"must be in 1..65535, got {header.gop!r}")
    # §3.2.1
    if header.fit not in Fit._value2member_map_:
        fail("fit", f"unknown value {header.fit!r}")
    if header.version[1] == 0 and (header.fit != Fit.STRETCH or header.picture is not None):
        fail("fit", f"a {header.version[0]}.0 header cannot carry a fit or picture (minor version 1 can)")
    x, y, w, h = header.picture_rect
    if not (all(isinstance(v, int) for v in (x, y, w, h)) and w >= 1 and h >= 1 and x >= 0 and y >= 0
            and x + w <= header.width and y + h <= header.height):
        fail("picture", f"{w}x{h} at ({x}, {y}) is not a rectangle inside the {header.width}x{header.height} frame")
    if header.fit == Fit.STRETCH and (x, y, w, h) != (0, 0, header.width, header.height):
        fail("picture", "a stretched stream's picture is the whole frame")


def build_header(header: StreamHeader) -> bytes:
    """Validate ``header`` and return its §3 bytes, of ``header.version``."""
    validate_header(header)
    body = dict(
        source_width=header.source_width,
        source_height=header.source_height,
        width=header.width,
        height=header.height,
        fps_num=header.fps_num,
        fps_den=header.fps_den,
        models=[
            dict(model_id=m.model_id.encode("ascii"), weights_sha256=m.weights_sha256)
            for m in header.models
        ],
        quantizer=int(header.quantizer),
        code_dtype=int(header.code_dtype),
        code_shape=list(header.code_shape),
        frame_param_bytes=header.frame_param_bytes,
        entropy_coder=int(header.entropy_coder),
        table_digest=header.table_digest,
        gop=header.gop,
        extension=b"",
    )
    if header.version[0] not in KNOWN_MINOR or not 0 <= header.version[1] <= KNOWN_MINOR[header.version[0]]:
        raise ValueError(f"this build writes versions 1.0 to {CURRENT_VERSION[0]}.{CURRENT_VERSION[1]}, "
                         f"not {header.version}")
    if header.version[1] >= 1:  # §3.2.1
        x, y, w, h = header.picture_rect
        body["extension"] = HeaderExtension1.build(dict(
            fit=int(header.fit), picture_x=x, picture_y=y, picture_width=w, picture_height=h))
    signed = dict(version_major=header.version[0], version_minor=header.version[1], body=body)
    return Header.build(dict(signed=dict(value=signed)))


# The first bytes of what people most often take for a .pcz, to say what a file is.
_SIGNATURES = (
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (4, b"ftyp", "an MP4/MOV video"),
    (0, b"RIFF", "a RIFF (AVI/WAV/WebP) file"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip file"),
    (0, b"OggS", "an Ogg file"),
    (0, b"\x00\x00\x01\xba", "an MPEG program stream"),
    (0, b"\x00\x00\x00\x0c\x6a\x50", "a JPEG 2000 image"),
)


def _looks_like(head: bytes) -> str | None:
    for offset, signature, kind in _SIGNATURES:
        if head[offset:offset + len(signature)] == signature:
            return kind
    return None


def read_header(read_at, file_size: int, name: str) -> tuple[StreamHeader, int]:
    """Read and verify the §3 header at offset 0.

    ``read_at(offset, n)`` returns up to n bytes. Returns (header, header size incl.
    CRC). Raises TruncatedError, FormatError, UnsupportedVersionError, ChecksumError,
    LimitError — never a construct error.
    """
    where = f"{name}: header at offset 0"
    if file_size < PREAMBLE_SIZE:
        raise TruncatedError(f"{where}: file has {file_size} bytes, the header needs more")
    preamble_bytes = read_at(0, PREAMBLE_SIZE)
    if preamble_bytes[:4] != MAGIC:
        kind = _looks_like(preamble_bytes)
        if kind:
            raise FormatError(f"{name}: not a .pcz file (it looks like {kind})")
        raise FormatError(f"{where}: field magic: {preamble_bytes[:4]!r} is not {MAGIC!r}: not a .pcz file")
    preamble = Preamble.parse(preamble_bytes)
    major, minor = preamble.version_major, preamble.version_minor
    if major not in SUPPORTED_MAJOR:
        raise UnsupportedVersionError(
            f"{where}: field version: {major}.{minor} is not readable by this build "
            f"(reads {', '.join(f'{m}.x' for m in SUPPORTED_MAJOR)})"
        )
    size = PREAMBLE_SIZE + preamble.body_length + 4
    if size > PREAMBLE_SIZE + limits.MAX_HEADER_BODY_BYTES + 4:
        raise LimitError(f"{where}: field body_length: {preamble.body_length} over the cap")
    if size > file_size:
        raise TruncatedError(f"{where}: header needs {size} bytes, file has {file_size}")
    raw = read_at(0, size)
    # The CRC first: a flipped bit should read as damage, not as a strange field.
    if crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
        raise ChecksumError(f"{where}: CRC32 mismatch")
    try:
        parsed = Header.parse(raw).signed.value
    except cs.ConstructError as exc:
        raise FormatError(f"{where}: {exc}") from None
    body = parsed.body
    extension, last_field = bytes(body.extension), "gop"
    fit, picture = Fit.STRETCH, None
    if minor >= 1:  # §3.2.1: the fields of minor version 1 start the extension
        if len(extension) < HEADER_EXTENSION1_SIZE:
            raise FormatError(f"{where}: field fit: a {major}.{minor} header has "
                              f"{HEADER_EXTENSION1_SIZE} bytes after field gop, this one {len(extension)}")
        ext = HeaderExtension1.parse(extension[:HEADER_EXTENSION1_SIZE])
        fit, picture = ext.fit, (ext.picture_x, ext.picture_y, ext.picture_width, ext.picture_height)
        extension, last_field = extension[HEADER_EXTENSION1_SIZE:], "picture_height"
    if extension and minor <= KNOWN_MINOR[major]:
        raise FormatError(f"{where}: {len(extension)} unexpected bytes after field {last_field}")
    try:
        models = tuple(
            ModelRef(m.model_id.decode("ascii"), bytes(m.weights_sha256)) for m in body.models
        )
    except UnicodeDecodeError:
        raise FormatError(f"{where}: field model_id: not ascii") from None
    header = StreamHeader(
        source_width=body.source_width,
        source_height=body.source_height,
        width=body.width,
        height=body.height,
        fps_num=body.fps_num,
        fps_den=body.fps_den,
        models=models,
        quantizer=body.quantizer,
        code_dtype=body.code_dtype,
        code_shape=tuple(body.code_shape),
        frame_param_bytes=body.frame_param_bytes,
        entropy_coder=body.entropy_coder,
        table_digest=bytes(body.table_digest),
        gop=body.gop,
        version=(major, minor),
        fit=fit,
        picture=picture,
    )
    try:
        validate_header(header, where)
    except FormatError as exc:
        if minor <= KNOWN_MINOR[major]:
            raise
        # §9: a newer minor version may use values this build does not know; say so.
        raise type(exc)(f"{exc} (the file is version {major}.{minor}; this build reads "
                        f"{major}.{KNOWN_MINOR[major]})") from None
    header = StreamHeader(
        **{
            **header.__dict__,
            "quantizer": Quantizer(body.quantizer),
            "code_dtype": CodeDtype(body.code_dtype),
            "entropy_coder": EntropyCoder(body.entropy_coder),
            "fit": Fit(fit),
        }
    )
    return header, size


__all__ = [
    "HeaderBody",
    "ModelRef",
    "StreamHeader",
    "build_header",
    "read_header",
    "validate_header",
]
