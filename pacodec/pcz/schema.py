"""Byte layout of a ``.pcz`` file, declared once with construct (formats/pcz.md).

Every definition here both parses and builds. Section numbers (§) refer to
formats/pcz.md. construct's ``Enum`` would let unknown values through, so enum
fields are plain integers here and :mod:`pacodec.pcz.header` checks them.

Two hot paths are *not* run through construct because they execute once per record
or once per index entry and construct costs ~10 µs a call (a hostile 1 MiB file of
7-byte records would then take seconds): :func:`read_varint` decodes a record's
length while walking, and :class:`IndexEntries` decodes the index entries with
numpy. Both implement exactly the encoding construct's ``VarInt`` builds, and
tests/test_pcz.py checks them against it.
"""

from __future__ import annotations

import re
import zlib
from enum import IntEnum

import construct as cs
import numpy as np

# §3.1 header magic and version, §6 trailer magic
MAGIC = b"PCZ\x00"
TRAILER_MAGIC = b"PCZE"
#: The newest version this build writes, and the newest minor of each major it reads.
#: 2.0: refined predicted frames code their 4×4 re-prediction with contexts (§14.5).
#: 3.0: their intra frames may be predicted from a learned reference frame (§14.6).
#: 4.0: their predicted frames' residual symbols take their probabilities from a
#: learned integer network (§14.7).
#: 5.0: the GOP's intra frame stays their last reference for the whole GOP (§14.3).
#: 6.0: their taken 4×4 blocks may sit at half-pixel offsets (§14.8).
#: 7.0: their symbol model is pac-ctx2, which reads 11 more features (§14.9).
#: 8.0: the 4×4 re-prediction's side information is coded with wider contexts: the
#: references' activity around a block, a same-reference vector predictor (§14.10).
#: 9.0: their 16×16 block flags are coded in contexts: the 4×4 blocks taken in the
#: block, the previous predicted frame's flag (§14.11).
#: 10.0: their refinement streams are stored trimmed: the fewest bytes that decode to
#: their symbols, not whole 32-bit words (§15.4).
#: 11.0: their 4×4 choices take their probabilities from a second learned integer
#: network, in pac-ctx3 (§14.13).
#: 12.0: a 4×4 block of their choice 4 may name any of the GOP's last 15 frames or its
#: key frame (a far index), at vectors within ±8 (§14.14).
#: x.1 (1.1 … 12.1): the header's extension says how frames were fitted to the
#: coded geometry (§3.2.1). A writer uses the lowest version that holds its file: the
#: major 12 only for refined predicted frames (it no longer writes 2 to 6), the minor 1
#: only for a fit other than stretch (pcz.md §9).
CURRENT_VERSION = (12, 1)
KNOWN_MINOR = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 1, 12: 1}
SUPPORTED_MAJOR = tuple(KNOWN_MINOR)

PREAMBLE_SIZE = 8  # magic, major, minor, body_length (§3.1)
TRAILER_SIZE = 20  # §6
RECORD_CRC_SIZE = 4  # §4
INDEX_INTERVAL = 32  # §5.2: an intra frame gets an entry once this many frames passed
MAX_VARINT_BYTES = 10  # a u64 takes at most 10 LEB128 bytes


class Quantizer(IntEnum):
    """§3.4 quantizer kind. Values are never reused."""

    NONE = 0
    NAIVE = 1
    SCALE = 2
    KMEANS = 3
    ENTROPY = 4


class CodeDtype(IntEnum):
    """§3.4 element type of the stored codes. Values are never reused."""

    FLOAT32 = 0
    UINT8 = 1
    INT8 = 2
    INT16 = 3
    INT32 = 4


CODE_DTYPE_SIZE = {
    CodeDtype.FLOAT32: 4,
    CodeDtype.UINT8: 1,
    CodeDtype.INT8: 1,
    CodeDtype.INT16: 2,
    CodeDtype.INT32: 4,
}


class EntropyCoder(IntEnum):
    """§3.4 entropy coder applied to the codes. Values are never reused."""

    NONE = 0
    CONSTRICTION_RANGE = 1  # reserved in 1.0: "constriction-range-v1"


class Fit(IntEnum):
    """§3.2.1 how source frames were fitted to the coded geometry. Never reused."""

    STRETCH = 0  # resized to width × height, whatever the aspect ratio
    PAD = 1  # resized into the picture rectangle keeping the aspect ratio; the rest is padding


class RecordType(IntEnum):
    """§4.1 record types. 0x00 and every unlisted value are invalid; never reused."""

    PARAMS = 0x01
    INTRA = 0x02
    PREDICTED = 0x03
    INDEX = 0x7F


def crc32(data: bytes) -> int:
    """CRC-32 as in zlib/PNG (polynomial 0xEDB88320, init and final xor 0xFFFFFFFF)."""
    return zlib.crc32(data) & 0xFFFFFFFF


# §3.1 The first 8 bytes, enough to refuse an unknown major version before
# trusting the layout of anything after them.
Preamble = cs.Struct(
    "magic" / cs.Const(MAGIC),
    "version_major" / cs.Int8ul,
    "version_minor" / cs.Int8ul,
    "body_length" / cs.Int16ul,
)

# §3.3 model reference: id length, ascii id, sha256 of the weights
ModelRefStruct = cs.Struct(
    "model_id" / cs.Prefixed(cs.Int8ul, cs.GreedyBytes),
    "weights_sha256" / cs.Bytes(32),
)

# §3.2 header body (version 1.0 fields, in order)
HeaderBody = cs.Struct(
    "source_width" / cs.Int16ul,
    "source_height" / cs.Int16ul,
    "width" / cs.Int16ul,
    "height" / cs.Int16ul,
    "fps_num" / cs.Int32ul,
    "fps_den" / cs.Int32ul,
    "models" / cs.PrefixedArray(cs.Int8ul, ModelRefStruct),
    "quantizer" / cs.Int8ul,
    "code_dtype" / cs.Int8ul,
    "code_shape" / cs.PrefixedArray(cs.Int8ul, cs.Int32ul),
    "frame_param_bytes" / cs.Int16ul,
    "entropy_coder" / cs.Int8ul,
    "table_digest" / cs.Bytes(32),
    "gop" / cs.Int16ul,
    # §3.2, §9: fields appended by later minor versions; empty in 1.0
    "extension" / cs.GreedyBytes,
)

# §3.2.1 fields of minor version 1, the first bytes of the extension in a x.1 file
HeaderExtension1 = cs.Struct(
    "fit" / cs.Int8ul,
    "picture_x" / cs.Int16ul,
    "picture_y" / cs.Int16ul,
    "picture_width" / cs.Int16ul,
    "picture_height" / cs.Int16ul,
)
HEADER_EXTENSION1_SIZE = 9

# §3 whole header: preamble + body, then CRC32 over both
Header = cs.Struct(
    "signed"
    / cs.RawCopy(
        cs.Struct(
            "magic" / cs.Const(MAGIC),
            "version_major" / cs.Int8ul,
            "version_minor" / cs.Int8ul,
            "body" / cs.Prefixed(cs.Int16ul, HeaderBody),
        )
    ),
    "crc32" / cs.Checksum(cs.Int32ul, crc32, cs.this.signed.data),
)

# §4 record: type, LEB128 length, payload, CRC32 over type+length+payload
Record = cs.Struct(
    "signed"
    / cs.RawCopy(
        cs.Struct(
            "type" / cs.Int8ul,
            "payload" / cs.Prefixed(cs.VarInt, cs.GreedyBytes),
        )
    ),
    "crc32" / cs.Checksum(cs.Int32ul, crc32, cs.this.signed.data),
)


class IndexEntries(cs.Adapter):
    """§5.2 entries: pairs of LEB128 (frame delta, offset delta).

    Parses into two int64 numpy arrays of absolute (frames, offsets); builds from a
    sequence of absolute (frame, offset) pairs. Raises ``cs.ValidationError`` for a
    varint longer than 9 bytes, a non-canonical varint, or an odd count.
    """

    def _decode(self, obj: bytes, context, path):
        raw = np.frombuffer(obj, dtype=np.uint8)
        if raw.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ends = np.flatnonzero(raw < 0x80)
        if ends.size == 0 or ends[-1] != raw.size - 1:
            raise cs.ValidationError("index entries end inside a varint", path=path)
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts + 1
        # 9 bytes hold 63 bits: every sum below stays inside int64.
        if lengths.max() > 9:
            raise cs.ValidationError("index varint longer than 9 bytes", path=path)
        if np.any((lengths > 1) & (raw[ends] == 0)):
            raise cs.ValidationError("index varint not in shortest form", path=path)
        if ends.size % 2:
            raise cs.ValidationError("index entries: odd number of varints", path=path)
        group = np.repeat(np.arange(ends.size), lengths)
        shift = (np.arange(raw.size) - starts[group]) * 7
        parts = (raw & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
        values = np.add.reduceat(parts, starts).astype(np.int64)
        deltas = values.reshape(-1, 2)
        # cumulative sums of up to 2**22 values below 2**63 may overflow int64;
        # the reader rejects decreasing results, and float64 bounds catch wraps.
        if deltas.size and float(deltas.astype(np.float64).sum()) >= 2.0**62:
            raise cs.ValidationError("index deltas too large", path=path)
        return np.cumsum(deltas[:, 0]), np.cumsum(deltas[:, 1])

    def _encode(self, obj, context, path):
        out = bytearray()
        prev_frame = prev_offset = 0
        for frame, offset in obj:
            out += cs.VarInt.build(frame - prev_frame)
            out += cs.VarInt.build(offset - prev_offset)
            prev_frame, prev_offset = frame, offset
        return bytes(out)


# §5.1 INDEX record payload: totals, then entries
INDEX_TOTALS = (
    "frame_count",
    "intra_frames",
    "predicted_frames",
    "params_records",
    "params_payload_bytes",
    "params_record_bytes",
    "intra_payload_bytes",
    "intra_record_bytes",
    "predicted_payload_bytes",
    "predicted_record_bytes",
    "entry_count",
)
IndexPayload = cs.Struct(
    *[name / cs.VarInt for name in INDEX_TOTALS],
    "entries" / IndexEntries(cs.GreedyBytes),
)
# construct's VarInt reads until a byte < 0x80 and builds a bignum on the way, so a
# hostile run of 0xFF bytes would cost quadratic time: check the shape first.
# §1: shortest form too (a last byte 0x00 after other bytes is invalid).
_INDEX_TOTALS_SHAPE = re.compile(rb"(?:[\x80-\xff]{1,9}[\x01-\x7f]|[\x00-\x7f]){%d}" % len(INDEX_TOTALS))


def index_totals_well_formed(payload: bytes) -> bool:
    """True when the payload starts with the §5.1 totals as shortest-form varints of ≤ 10 bytes."""
    return _INDEX_TOTALS_SHAPE.match(payload) is not None


# §6 trailer: fixed 20 bytes at the very end
Trailer = cs.Struct(
    "signed"
    / cs.RawCopy(
        cs.Struct(
            "index_offset" / cs.Int64ul,
            "frame_count" / cs.Int32ul,
            "magic" / cs.Const(TRAILER_MAGIC),
        )
    ),
    "crc32" / cs.Checksum(cs.Int32ul, crc32, cs.this.signed.data),
)


def read_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Decode one LEB128 varint (§1) at ``buf[pos:]``.

    Returns (value, number of bytes), or None when ``buf`` ends first. Raises
    ValueError for a varint longer than 10 bytes or not in shortest form.
    """
    value = 0
    for k in range(MAX_VARINT_BYTES):
        if pos + k >= len(buf):
            return None
        byte = buf[pos + k]
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            if byte == 0 and k > 0:
                raise ValueError("length varint not in shortest form")
            return value, k + 1
    raise ValueError("length varint longer than 10 bytes")


def varint_size(value: int) -> int:
    """Bytes of the shortest LEB128 encoding of ``value`` ≥ 0."""
    return max(1, (value.bit_length() + 6) // 7)
