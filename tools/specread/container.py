"""The container of formats/pcz.md (§1–§9, §18), written from the spec's text alone.

Standard library only. ``read_container(data, salvage)`` parses the header, the
trailer and index, and walks every record, checking every CRC; it returns the frames
(their record type and payload, or None where damaged), what the index says, and the
byte accounting. Strict reading (``salvage=False``) raises ``Refused`` on anything
the spec calls invalid; salvaging follows §7 exactly.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC, TRAILER_MAGIC = b"PCZ\x00", b"PCZE"
KNOWN_MINOR = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 1, 12: 1}   # §9: the newest minor of each major this reader knows
FITS = {0: "stretch", 1: "pad"}   # §3.2.1
PARAMS, INTRA, PREDICTED, INDEX = 0x01, 0x02, 0x03, 0x7F   # §4.1
RECORD_TYPES = (PARAMS, INTRA, PREDICTED, INDEX)
QUANTIZERS = {0: "none", 1: "naive", 2: "scale", 3: "kmeans", 4: "entropy"}                  # §3.4
CODE_DTYPES = {0: ("float32", 4), 1: ("uint8", 1), 2: ("int8", 1), 3: ("int16", 2), 4: ("int32", 4)}
ENTROPY_CODERS = {0: "none", 1: "constriction-range-v1"}
ID_CHARS = set(b"abcdefghijklmnopqrstuvwxyz0123456789._-")
# §8 limits
MAX_SIDE, MAX_PIXELS, MAX_FRAMES, MAX_FPS = 4096, 9_437_184, 1 << 24, 1000
MAX_CODE_ENTRIES, MAX_PAYLOAD, MAX_BODY = 1 << 24, 64 << 20, 4096
TRAILER_SIZE = 20


class Refused(ValueError):
    """The file (or, when salvaging, its header) breaks the spec."""


class Damaged(ValueError):
    """One record breaks §4.2 (type, length, CRC): damage a salvaging reader skips."""


class Cut(Damaged):
    """The file (or the record area) ends inside a record."""


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """§1 LEB128 at ``pos`` (bytes before ``end``): (value, position after it).

    Raises Damaged when over 10 bytes or not in shortest form, Cut when it runs to ``end``.
    """
    value = 0
    for k in range(10):
        if pos + k >= end:
            raise Cut(f"varint at {pos} runs past {end}")
        byte = data[pos + k]
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            if k and byte == 0:
                raise Damaged(f"varint at {pos} is not in shortest form")
            return value, pos + k + 1
    raise Damaged(f"varint at {pos} is longer than 10 bytes")


@dataclass
class Header:
    version: tuple[int, int]
    size: int  # bytes of the whole header, CRC included
    source_width: int
    source_height: int
    width: int
    height: int
    fps_num: int
    fps_den: int
    models: list[tuple[str, bytes]]
    quantizer: int
    code_dtype: int
    code_shape: tuple[int, ...]
    frame_param_bytes: int
    entropy_coder: int
    table_digest: bytes
    gop: int
    extension: bytes   # bytes after the fields this reader knows (§3.2, §9)
    fit: int = 0   # §3.2.1: absent from x.0 files, which are stretched
    picture: tuple[int, int, int, int] | None = None   # (x, y, width, height); None: the whole frame


def parse_header(data: bytes) -> Header:
    """§3: magic and major version, then the whole header present, its CRC, its body."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise Refused("not a .pcz file (magic)")
    major, minor, body_length = data[4], data[5], struct.unpack_from("<H", data, 6)[0]
    if major not in KNOWN_MINOR:
        raise Refused(f"version {major}.{minor}: this reader reads {', '.join(f'{m}.x' for m in KNOWN_MINOR)}")
    if body_length > MAX_BODY:
        raise Refused(f"body_length {body_length} over {MAX_BODY}")
    size = 8 + body_length + 4
    if size > len(data):
        raise Refused("the file ends inside its header")
    if crc32(data[: 8 + body_length]) != struct.unpack_from("<I", data, 8 + body_length)[0]:
        raise Refused("header CRC32 mismatch")
    body, pos = data[8 : 8 + body_length], 0

    def take(fmt: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(body):
            raise Refused(f"version {major}.{minor}: the header body ends inside its fields")
        values = struct.unpack_from(fmt, body, pos)
        pos += n
        return values

    sw, sh, w, h, fps_num, fps_den, model_count = take("<HHHHIIB")
    if not 1 <= model_count <= 4:
        raise Refused(f"model_count {model_count}")
    models = []
    for _ in range(model_count):
        (n,) = take("<B")
        if not 1 <= n <= 64:
            raise Refused(f"model id length {n}")
        (raw_id,) = take(f"<{n}s")
        if not set(raw_id) <= ID_CHARS:
            raise Refused(f"model id {raw_id!r} has characters outside a-z 0-9 . _ -")
        (sha,) = take("<32s")
        models.append((raw_id.decode("ascii"), sha))
    quantizer, code_dtype, ndim = take("<BBB")
    if quantizer not in QUANTIZERS or code_dtype not in CODE_DTYPES:
        raise Refused(f"version {major}.{minor}: quantizer {quantizer} or code_dtype {code_dtype} unknown")
    if not 1 <= ndim <= 4:
        raise Refused(f"code_ndim {ndim}")
    shape = take(f"<{ndim}I")
    fpb, coder = take("<HB")
    if coder not in ENTROPY_CODERS:
        raise Refused(f"version {major}.{minor}: entropy coder {coder} unknown")
    (digest,) = take("<32s")
    (gop,) = take("<H")
    fit, picture = 0, None
    if minor >= 1:   # §3.2.1: the fields of minor version 1 start the extension
        fit, *rect = take("<BHHHH")
        picture = tuple(rect)
    extension = body[pos:]
    # §3.5
    sides = (sw, sh, w, h)
    if min(sides) == 0 or max(sides) > MAX_SIDE or w * h > MAX_PIXELS or sw * sh > MAX_PIXELS:
        raise Refused("geometry out of range")
    if fps_num == 0 or fps_den == 0 or fps_num > MAX_FPS * fps_den:
        raise Refused("frame rate out of range")
    entries = 1
    for s in shape:
        entries *= s
    if 0 in shape or entries > MAX_CODE_ENTRIES:
        raise Refused("code_shape out of range")
    if coder == 0 and digest != bytes(32):
        raise Refused("table_digest without an entropy coder")
    if gop == 0:
        raise Refused("gop 0")
    if extension and minor <= KNOWN_MINOR[major]:
        raise Refused(f"version {major}.{minor}: {len(extension)} bytes after {'picture_height' if minor else 'gop'}")
    if fit not in FITS:
        raise Refused(f"version {major}.{minor}: fit {fit} unknown")
    if picture is not None:
        px, py, pw, ph = picture
        if pw == 0 or ph == 0 or px + pw > w or py + ph > h:
            raise Refused(f"picture {pw}x{ph} at ({px}, {py}) is not inside the {w}x{h} frame")
        if fit == 0 and picture != (0, 0, w, h):
            raise Refused("a stretched stream's picture is not the whole frame")
    return Header((major, minor), size, sw, sh, w, h, fps_num, fps_den, models, quantizer, code_dtype,
                  tuple(shape), fpb, coder, digest, gop, extension, fit, picture)


@dataclass
class Record:
    type: int
    offset: int
    head: int      # type byte + length varint
    length: int    # payload bytes
    size: int      # the whole record
    payload: bytes | None = None


def read_record(data: bytes, pos: int, end: int, verify: bool = True) -> Record:
    """§4.2: type, length, bounds before the payload, then the CRC (with ``verify``)."""
    if pos >= end:
        raise Cut(f"no record at {pos}")
    rtype = data[pos]
    if rtype not in RECORD_TYPES:
        raise Damaged(f"record at {pos}: type 0x{rtype:02x}")
    length, after = read_varint(data, pos + 1, end)
    if length > MAX_PAYLOAD:
        raise Damaged(f"record at {pos}: length {length} over the cap")
    size = after - pos + length + 4
    if pos + size > end:
        raise Cut(f"record at {pos} runs past {end}")
    rec = Record(rtype, pos, after - pos, length, size)
    if verify:
        if crc32(data[pos : pos + size - 4]) != struct.unpack_from("<I", data, pos + size - 4)[0]:
            raise Damaged(f"record at {pos}: CRC32 mismatch")
        rec.payload = data[after : after + length]
    return rec


INDEX_TOTALS = ("frame_count", "intra_frames", "predicted_frames", "params_records", "params_payload_bytes",
                "params_record_bytes", "intra_payload_bytes", "intra_record_bytes",
                "predicted_payload_bytes", "predicted_record_bytes", "entry_count")


def parse_index(payload: bytes, header_size: int, index_at: int, trailer_frames: int) -> dict:
    """§5.1, §5.2 and §6's agreement rules; Refused on any break."""
    pos, totals = 0, {}
    try:
        for name in INDEX_TOTALS:
            totals[name], pos = read_varint(payload, pos, len(payload))
        frames, offsets, frame, offset = [], [], 0, 0
        for k in range(totals["entry_count"]):
            df, pos = read_varint(payload, pos, len(payload))
            do, pos = read_varint(payload, pos, len(payload))
            if k and (df < 1 or do < 1):
                raise Refused("index entries must increase")
            frame, offset = (df, do) if k == 0 else (frame + df, offset + do)
            frames.append(frame)
            offsets.append(offset)
    except Damaged as exc:
        raise Refused(f"index: {exc}") from None
    t = totals
    rules = [
        (pos == len(payload), "bytes after the entries"),
        (t["frame_count"] == trailer_frames, "frame_count differs from the trailer's"),
        (t["intra_frames"] + t["predicted_frames"] == t["frame_count"], "frame counts do not add up"),
        (t["params_records"] <= 1, "more than one PARAMS record"),
        (t["params_record_bytes"] + t["intra_record_bytes"] + t["predicted_record_bytes"]
         == index_at - header_size, "record bytes do not fill the record area"),
    ]
    for kind, count in (("params", t["params_records"]), ("intra", t["intra_frames"]),
                        ("predicted", t["predicted_frames"])):
        rules.append((t[f"{kind}_record_bytes"] >= t[f"{kind}_payload_bytes"] + 6 * count,
                      f"{kind}_record_bytes under its payloads and framing"))
    if t["frame_count"]:
        rules += [
            (bool(frames) and frames[0] == 0 and offsets[0] == header_size + t["params_record_bytes"],
             "the first entry is not frame 0 at the first frame record"),
            (bool(frames) and frames[-1] < t["frame_count"] and offsets[-1] < index_at,
             "an entry points past the last frame"),
        ]
    else:
        rules.append((not frames, "entries in a stream without frames"))
    for ok, why in rules:
        if not ok:
            raise Refused(f"index: {why}")
    return {**t, "entry_frames": frames, "entry_offsets": offsets}


@dataclass
class Frame:
    number: int
    type: int               # INTRA or PREDICTED (a lost frame: the type byte seen, if any)
    offset: int
    size: int = 0            # the whole record; 0 when lost
    payload: bytes | None = None   # None: lost to damage

    @property
    def damaged(self) -> bool:
        return self.payload is None


@dataclass
class Container:
    header: Header
    size: int
    complete: bool
    records_end: int
    index: dict | None
    params: bytes | None = None   # the PARAMS payload, when the first record is a sound PARAMS
    params_records: list[Record] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    damage: list[tuple[int, int]] = field(default_factory=list)   # (offset, bytes) skipped
    index_bytes: int = 0    # the INDEX record and trailer, where found


def _open_index(data: bytes, header: Header, salvage: bool) -> tuple[bool, int, dict | None]:
    """§6: (complete, where frame records end, index) from the trailer and index."""
    size = len(data)
    if size < header.size + TRAILER_SIZE or data[-8:-4] != TRAILER_MAGIC:
        return False, size, None   # no trailer: a cut file (§7.1)
    trailer_at = size - TRAILER_SIZE
    raw = data[trailer_at:]
    try:
        if crc32(raw[:16]) != struct.unpack_from("<I", raw, 16)[0]:
            raise Refused("trailer CRC32 mismatch")
        index_at, frame_count = struct.unpack_from("<QI", raw, 0)
        if not header.size <= index_at < trailer_at:
            raise Refused("trailer: index_offset outside the file")
        if frame_count > MAX_FRAMES:
            raise Refused("trailer: frame_count over the cap")
    except Refused:
        if not salvage:
            raise
        return False, size, None
    # A sound trailer: frame records end at index_offset even if the index is damaged.
    try:
        try:
            rec = read_record(data, index_at, trailer_at)
        except Damaged as exc:
            raise Refused(f"index record: {exc}") from None
        if rec.type != INDEX or rec.offset + rec.size != trailer_at:
            raise Refused("index: not an INDEX record ending at the trailer")
        return True, index_at, parse_index(rec.payload, header.size, index_at, frame_count)
    except Refused:
        if not salvage:
            raise
        return False, index_at, None


def _sound_at(data: bytes, pos: int, end: int) -> bool:
    if pos == end:
        return end < len(data)   # the index, known from a sound trailer
    if pos > end:
        return False
    try:
        read_record(data, pos, end)
    except Damaged:
        return False
    return True


def resync(data: bytes, pos: int, end: int) -> int | None:
    """§7.2: where reading resumes after damage at ``pos``; None when nothing sound follows."""
    try:
        guess = pos + read_record(data, pos, end, verify=False).size
    except Damaged:
        guess = None
    if guess is not None and _sound_at(data, guess, end):
        return guess
    for at in range(pos + 1, end):
        if data[at] in RECORD_TYPES and _sound_at(data, at, end):
            return at
    return end if end < len(data) else None


def read_container(data: bytes, salvage: bool = False) -> Container:
    """Every record of a file (§2–§7). Strict: Refused on anything invalid, a cut file
    included. Salvaging: damage is skipped (§7.2), lost frames have payload None."""
    header = parse_header(data)
    complete, end, index = _open_index(data, header, salvage)
    c = Container(header, len(data), complete, end, index)
    pos, frame, since_intra, seen_params = header.size, 0, None, False
    while pos < end:
        try:
            rec = read_record(data, pos, end)
            if not salvage:
                _check_order(header, rec, frame, since_intra, seen_params)
        except Damaged as exc:
            if not salvage:
                raise Refused(f"{exc}{' (a cut file)' if isinstance(exc, Cut) and end == len(data) else ''}") from None
            nxt = resync(data, pos, end)
            if nxt is None:   # nothing sound after it: a cut tail, no frame lost (§7.1)
                c.damage.append((pos, end - pos))
                break
            lost = _frames_lost(data, c, pos, nxt, frame)
            for k in range(lost):
                c.frames.append(Frame(frame + k, data[pos], pos))
            c.damage.append((pos, nxt - pos))
            frame += lost
            if nxt >= end:
                break
            pos = nxt
            continue
        if rec.type == INDEX:   # met only by a scan: the trailer after it is missing or bad
            if not salvage:
                raise Refused(f"an INDEX record at {pos} without a sound trailer after it")
            c.index_bytes += len(data) - pos
            return c
        if rec.type == PARAMS:
            seen_params = True
            c.params_records.append(rec)
            if pos == header.size:
                c.params = rec.payload
        else:
            since_intra = 0 if rec.type == INTRA else (since_intra or 0) + 1
            c.frames.append(Frame(frame, rec.type, pos, rec.size, rec.payload))
            frame += 1
        pos += rec.size
    if complete:
        if frame != index["frame_count"]:
            if not salvage:
                raise Refused(f"the index says {index['frame_count']} frames, the records hold {frame}")
            for lost in range(frame, index["frame_count"]):   # swallowed by damage
                c.frames.append(Frame(lost, PREDICTED, end))
    elif end == len(data) and not salvage:
        raise Refused("the file has no index and trailer (a cut file)")
    if end < len(data):
        c.index_bytes += len(data) - end
    return c


def _check_order(header: Header, rec: Record, frame: int, since_intra: int | None, seen_params: bool) -> None:
    """§4.3, checked by a strict reader."""
    if rec.type == PARAMS and (frame or seen_params):
        raise Refused(f"record at {rec.offset}: PARAMS after a frame or twice")
    if rec.type in (INTRA, PREDICTED) and rec.length < header.frame_param_bytes:
        raise Refused(f"record at {rec.offset}: payload under frame_param_bytes")
    if rec.type == PREDICTED:
        if since_intra is None:
            raise Refused(f"record at {rec.offset}: a PREDICTED frame before any INTRA frame")
        if since_intra + 1 >= header.gop:
            raise Refused(f"record at {rec.offset}: a PREDICTED frame gop or more frames after its INTRA frame")


def _frames_lost(data: bytes, c: Container, pos: int, nxt: int, frame: int) -> int:
    """§7.2: frames held by the damage in [pos, nxt)."""
    if c.index is not None:
        if nxt >= c.records_end:
            return max(c.index["frame_count"] - frame, 0)
        offsets = c.index["entry_offsets"]
        if nxt in offsets:
            return max(c.index["entry_frames"][offsets.index(nxt)] - frame, 0)
    return 0 if data[pos] == PARAMS and frame == 0 else 1


def survivors(c: Container, corrupt: set[int] = frozenset()) -> list[bool]:
    """§7.2: which frames decode: a sound record with a payload that is not ``corrupt``,
    and for a PREDICTED frame every frame back to its INTRA frame (there must be one)
    the same."""
    out, broken = [], True   # a PREDICTED frame before any INTRA frame has no reference
    for f in c.frames:
        lost = f.damaged or f.number in corrupt
        if f.type == INTRA and not lost:
            broken = False
        if lost or broken:
            broken = True
            out.append(False)
        else:
            out.append(True)
    return out


def accounting(c: Container) -> dict:
    """§19: every byte of the file in one part. From the index alone when complete."""
    h, fpb = c.header, c.header.frame_param_bytes
    acc = {"header": h.size, "params": 0, "codes": 0, "framing": 0, "index": 0,
           "frames": 0, "intra_frames": 0, "predicted_frames": 0, "intra": 0, "predicted": 0}
    if c.complete:
        t = c.index
        payloads = t["intra_payload_bytes"] + t["predicted_payload_bytes"]
        acc.update(frames=t["frame_count"], intra_frames=t["intra_frames"], predicted_frames=t["predicted_frames"],
                   params=t["params_payload_bytes"] + fpb * t["frame_count"],
                   codes=payloads - fpb * t["frame_count"],
                   framing=t["params_record_bytes"] - t["params_payload_bytes"] + t["intra_record_bytes"]
                   + t["predicted_record_bytes"] - payloads,
                   index=c.size - c.records_end, intra=t["intra_record_bytes"], predicted=t["predicted_record_bytes"])
    else:
        for rec in c.params_records:
            acc["params"] += rec.length
            acc["framing"] += rec.size - rec.length
        for f in c.frames:
            acc["frames"] += 1
            if f.damaged:
                continue
            params = min(fpb, len(f.payload))
            acc["params"] += params
            acc["codes"] += len(f.payload) - params
            acc["framing"] += f.size - len(f.payload)
            kind = "intra" if f.type == INTRA else "predicted"
            acc[f"{kind}_frames"] += 1
            acc[kind] += f.size
        acc["index"] = c.index_bytes
    acc["other"] = c.size - sum(acc[k] for k in ("header", "params", "codes", "framing", "index"))
    return acc
