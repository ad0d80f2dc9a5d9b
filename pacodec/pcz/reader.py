"""Reader of ``.pcz`` files (formats/pcz.md §2–§7), safe on any input bytes.

Opening reads the header, trailer and index only. Frames are read on demand:
iteration walks the records in order; ``record(i)`` seeks to the last index entry
at or before ``i`` and walks record headers from there. Every length is compared
with the bytes that remain before anything is read, and every failure is a
:class:`pacodec.errors.PacodecError` naming the file, the offset and the field.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

import construct as cs

from pacodec.errors import ChecksumError, FormatError, LimitError, TruncatedError
from pacodec.pcz import limits
from pacodec.pcz.header import StreamHeader, read_header
from pacodec.pcz.schema import (
    MAX_VARINT_BYTES,
    RECORD_CRC_SIZE,
    TRAILER_MAGIC,
    TRAILER_SIZE,
    IndexPayload,
    RecordType,
    Trailer,
    crc32,
    index_totals_well_formed,
    read_varint,
)

_RECORD_TYPES = {int(t): t for t in RecordType}
_FRAME_TYPES = (RecordType.INTRA, RecordType.PREDICTED)
_HEAD_MAX = 1 + MAX_VARINT_BYTES
_RESYNC_CHUNK = 1 << 16
_WINDOW = 1 << 18
_TYPE_BYTE = re.compile(rb"[\x01\x02\x03\x7f]")


@dataclass(frozen=True)
class FrameRecord:
    """One frame: its number, type, payload (None when damaged) and record offset."""

    index: int
    type: RecordType
    payload: bytes | None
    offset: int
    damaged: bool = False


@dataclass
class Accounting:
    """Every byte of a file, by part (DESIGN.md: ``info``).

    header + params + codes + framing + index + other == file_bytes. ``other`` is 0
    for a complete, undamaged file; it holds a cut tail or damaged bytes otherwise.
    """

    file_bytes: int
    frames: int
    intra_frames: int
    predicted_frames: int
    header: int  # the header incl. its CRC
    params: int  # PARAMS payloads + frame_param_bytes * frames
    codes: int  # frame payloads minus per-frame params
    framing: int  # type bytes, length varints and CRCs of PARAMS and frame records
    index: int  # the whole INDEX record + trailer
    intra_bytes: int  # whole INTRA records
    predicted_bytes: int  # whole PREDICTED records
    other: int = 0  # bytes in no whole record: a cut tail, damage


class _Rec(NamedTuple):
    type: int
    offset: int
    head: int  # type byte + length varint
    length: int  # payload bytes
    payload: bytes | None
    size: int  # whole record: head + length + CRC


class _Span(NamedTuple):
    """One piece of the record area as a walk saw it."""

    kind: str  # "params", "frame", "damaged", "gap", "index"
    frame: int  # frame number ("frame", "damaged"), else -1
    type: int
    offset: int
    size: int
    payload: bytes | None
    payload_len: int


class PczReader:
    """Read a ``.pcz`` stream from a seekable binary file object.

    ``salvage=True`` reads what can be read: damaged frames come out as
    ``FrameRecord(payload=None, damaged=True)``, a cut file ends cleanly, a bad
    index falls back to scanning. Without it, any damage raises.
    """

    def __init__(self, fileobj: BinaryIO, *, salvage: bool = False, name: str = "<stream>") -> None:
        self._file = fileobj
        self._window, self._window_at = b"", 0
        self.name = name
        self.salvage = salvage
        self.damaged: list[int] = []
        self._damaged_set: set[int] = set()
        try:
            self._base = fileobj.tell()
            self._size = fileobj.seek(0, 2) - self._base
        except (OSError, ValueError) as exc:
            raise FormatError(f"{name}: cannot seek: {exc}") from None
        self.header: StreamHeader
        self.header, self._header_size = read_header(self._read_at, self._size, name)
        self.complete = False
        self._records_end = self._size  # where frame records stop: the index, else EOF
        self._frame_count = 0
        self._totals = None
        self._entry_frames = self._entry_offsets = None
        self._table_cache = None
        self._params_cache: tuple[bytes | None] | None = None
        # Resynchronising after damage tries candidates byte by byte; these budgets
        # keep hostile input linear in its size (§7.2).
        self._resync_candidates_left = max(1 << 18, self._size >> 2)
        self._resync_bytes_left = (1 << 28) + 16 * self._size
        self._open_index()

    # -- low level -------------------------------------------------------------

    def _read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; callers bound ``n`` by the file size.

        Small reads come from a window of the file kept in memory, because a walk
        over records makes two small reads per record.
        """
        start = offset - self._window_at
        if 0 <= start and start + n <= len(self._window):
            return self._window[start : start + n]
        try:
            self._file.seek(self._base + offset)
            if n > _WINDOW // 4:
                return self._file.read(n)
            self._window = self._file.read(min(_WINDOW, self._size - offset))
        except (OSError, ValueError) as exc:
            raise FormatError(f"{self.name}: read at offset {offset} failed: {exc}") from None
        self._window_at = offset
        return self._window[:n]

    def _where(self, offset: int) -> str:
        return f"{self.name}: record at offset {offset}"

    def _read_record(self, pos: int, end: int, verify: bool) -> _Rec:
        """Parse the §4 record at ``pos``, which must end by ``end``.

        With ``verify`` the payload is read and the CRC checked; otherwise only the
        type and length are read.
        """
        head = self._read_at(pos, min(_HEAD_MAX, end - pos))
        if not head:
            raise TruncatedError(f"{self._where(pos)}: file ends before the record")
        rtype = head[0]
        if rtype not in _RECORD_TYPES:
            raise FormatError(f"{self._where(pos)}: field type: unknown record type 0x{rtype:02x}")
        try:
            varint = read_varint(head, 1)
        except ValueError as exc:
            raise FormatError(f"{self._where(pos)}: field length: {exc}") from None
        if varint is None:
            raise self._overrun(pos, end, "length")
        length, nlen = varint
        if length > limits.MAX_RECORD_BYTES:
            raise LimitError(
                f"{self._where(pos)}: field length: {length} bytes exceeds {limits.MAX_RECORD_BYTES}"
            )
        size = 1 + nlen + length + RECORD_CRC_SIZE
        if pos + size > end:
            raise self._overrun(pos, end, f"length ({length} bytes)")
        if not verify:
            return _Rec(rtype, pos, 1 + nlen, length, None, size)
        raw = self._read_at(pos, size)
        if len(raw) != size:
            raise TruncatedError(f"{self._where(pos)}: file shrank while reading")
        if crc32(raw[:-RECORD_CRC_SIZE]) != int.from_bytes(raw[-RECORD_CRC_SIZE:], "little"):
            raise ChecksumError(f"{self._where(pos)}: CRC32 mismatch")
        return _Rec(rtype, pos, 1 + nlen, length, raw[1 + nlen : -RECORD_CRC_SIZE], size)

    def _overrun(self, pos: int, end: int, field: str) -> FormatError:
        if end == self._size:
            return TruncatedError(f"{self._where(pos)}: file ends inside the record ({field})")
        return FormatError(f"{self._where(pos)}: field {field}: runs past the index at {end}")

    # -- §5, §6: trailer and index -----------------------------------------------

    def _open_index(self) -> None:
        if self._size < self._header_size + TRAILER_SIZE:
            return
        trailer_at = self._size - TRAILER_SIZE
        raw = self._read_at(trailer_at, TRAILER_SIZE)
        if raw[12:16] != TRAILER_MAGIC:
            return  # no trailer: a cut file, read by scanning (§7)
        try:
            self._load_index(raw, trailer_at)
        except FormatError:
            if not self.salvage:
                raise
            self.complete = False
            self._totals = self._entry_frames = self._entry_offsets = None

    def _load_index(self, raw: bytes, trailer_at: int) -> None:
        where = f"{self.name}: trailer at offset {trailer_at}"
        if crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise ChecksumError(f"{where}: CRC32 mismatch")
        trailer = Trailer.parse(raw).signed.value
        index_at = trailer.index_offset
        if not self._header_size <= index_at < trailer_at:
            raise FormatError(f"{where}: field index_offset: {index_at} is outside the file")
        if trailer.frame_count > limits.MAX_FRAMES:
            raise LimitError(
                f"{where}: field frame_count: {trailer.frame_count} over {limits.MAX_FRAMES}"
            )
        # The trailer is sound: frame records end at the index even if it is damaged.
        self._records_end = index_at
        rec = self._read_record(index_at, trailer_at, verify=True)
        where = f"{self.name}: index record at offset {index_at}"
        if rec.type != RecordType.INDEX or rec.offset + rec.size != trailer_at:
            raise FormatError(f"{where}: not an INDEX record ending at the trailer")
        if not index_totals_well_formed(rec.payload):
            raise FormatError(f"{where}: totals are not well-formed varints")
        try:
            idx = IndexPayload.parse(rec.payload)
        except cs.ConstructError as exc:
            raise FormatError(f"{where}: {exc}") from None
        frames, offsets = idx.entries

        def need(ok: bool, field: str, why: str) -> None:
            if not ok:
                raise FormatError(f"{where}: field {field}: {why}")

        need(idx.frame_count == trailer.frame_count, "frame_count", "differs from the trailer's")
        need(
            idx.intra_frames + idx.predicted_frames == idx.frame_count,
            "frame_count",
            "is not intra_frames + predicted_frames",
        )
        need(idx.params_records <= 1, "params_records", "more than one PARAMS record")
        for kind in ("params", "intra", "predicted"):
            count = idx.params_records if kind == "params" else getattr(idx, f"{kind}_frames")
            need(
                getattr(idx, f"{kind}_record_bytes")
                >= getattr(idx, f"{kind}_payload_bytes") + 6 * count,
                f"{kind}_record_bytes",
                "smaller than its payloads and framing",
            )
        need(
            idx.params_record_bytes + idx.intra_record_bytes + idx.predicted_record_bytes
            == index_at - self._header_size,
            "record bytes",
            "do not add up to the record area",
        )
        need(
            idx.entry_count == len(frames),
            "entry_count",
            f"{idx.entry_count} but {len(frames)} entries",
        )
        if idx.frame_count:
            need(
                len(frames) >= 1
                and frames[0] == 0
                and offsets[0] == self._header_size + idx.params_record_bytes,
                "entries",
                "the first entry must be frame 0 at the first frame record",
            )
            need(
                bool((frames[1:] > frames[:-1]).all() and (offsets[1:] > offsets[:-1]).all()),
                "entries",
                "frames and offsets must increase",
            )
            need(
                int(frames[-1]) < idx.frame_count and int(offsets[-1]) < index_at,
                "entries",
                "an entry points past the last frame",
            )
        else:
            need(len(frames) == 0, "entries", "entries in a stream without frames")
        self._frame_count = idx.frame_count
        self._totals = idx
        self._entry_frames, self._entry_offsets = frames.tolist(), offsets.tolist()
        self.complete = True

    # -- §7: walking records ------------------------------------------------------

    def _walk(self, verify: bool) -> Iterator[_Span]:
        """Yield the pieces of the record area in order; raise on damage unless salvaging."""
        pos, end = self._header_size, self._records_end
        frame, since_intra, seen_params = 0, None, False
        while pos < end:
            try:
                rec = self._read_record(pos, end, verify)
                if not self.salvage:
                    self._check_order(rec, frame, since_intra, seen_params)
            except FormatError:
                if not self.salvage:
                    raise
                yield from self._salvage_gap(pos, end, frame)
                lost, nxt = self._last_gap
                frame += lost
                if nxt is None:
                    break
                pos = nxt
                since_intra = 0 if lost else since_intra
                continue
            if rec.type == RecordType.INDEX:
                # Only a scan meets the index: the trailer after it is missing or bad.
                rest = self._size - pos - rec.size
                if not self.salvage:
                    if rest < TRAILER_SIZE:
                        raise TruncatedError(
                            f"{self.name}: trailer at offset {pos + rec.size}: file ends inside it"
                        )
                    if rest == TRAILER_SIZE:
                        raise ChecksumError(
                            f"{self.name}: trailer at offset {pos + rec.size}: damaged"
                        )
                    raise FormatError(
                        f"{self.name}: index record at offset {pos}: not followed by the trailer"
                    )
                yield _Span("index", -1, rec.type, pos, self._size - pos, None, 0)
                return
            if rec.type == RecordType.PARAMS:
                seen_params = True
                yield _Span("params", -1, rec.type, pos, rec.size, rec.payload, rec.length)
            else:
                since_intra = 0 if rec.type == RecordType.INTRA else (since_intra or 0) + 1
                yield _Span("frame", frame, rec.type, pos, rec.size, rec.payload, rec.length)
                frame += 1
            pos += rec.size
        if self.complete:
            if frame != self._frame_count and not self.salvage:
                raise FormatError(
                    f"{self.name}: index says {self._frame_count} frames, records hold {frame}"
                )
            # Salvaging: frames the index promises but damage swallowed, so that
            # len(), iteration and record(i) agree.
            for lost in range(frame, self._frame_count):
                self._note_damaged(lost)
                yield _Span("damaged", lost, RecordType.PREDICTED, end, 0, None, 0)
        elif end == self._size and not self.salvage:
            raise TruncatedError(
                f"{self.name}: file ends at offset {end} without index and trailer "
                "(a cut file: open with salvage=True to read it without this error)"
            )

    def _check_order(
        self, rec: _Rec, frame: int, since_intra: int | None, seen_params: bool
    ) -> None:
        """§4.3 ordering rules, checked when not salvaging."""
        where = self._where(rec.offset)
        if rec.type == RecordType.PARAMS and (frame or seen_params):
            raise FormatError(f"{where}: field type: PARAMS must come once, before the first frame")
        if rec.type in _FRAME_TYPES and rec.length < self.header.frame_param_bytes:
            raise FormatError(f"{where}: field length: {rec.length} is under frame_param_bytes")
        if rec.type == RecordType.PREDICTED:
            if since_intra is None:
                raise FormatError(
                    f"{where}: field type: predicted frame {frame} has no intra frame before it"
                )
            if since_intra + 1 >= self.header.gop:
                raise FormatError(
                    f"{where}: field type: frame {frame} is further than gop={self.header.gop} from its intra frame"
                )

    def _note_damaged(self, frame: int) -> None:
        if frame not in self._damaged_set:
            self._damaged_set.add(frame)
            self.damaged.append(frame)

    def _salvage_gap(self, pos: int, end: int, frame: int) -> Iterator[_Span]:
        """Skip damage starting at ``pos``; set ``self._last_gap`` = (frames lost, next pos or None)."""
        nxt = self._resync(pos, end)
        if nxt is None:
            # Nothing sound follows: a cut tail, not a damaged frame (§7.1).
            yield _Span("gap", -1, 0, pos, end - pos, None, 0)
            self._last_gap = (0, None)
            return
        lost = self._frames_lost(pos, nxt, frame)
        first = self._read_at(pos, 1)
        rtype = RecordType.INTRA if first == b"\x02" else RecordType.PREDICTED
        for k in range(lost):
            self._note_damaged(frame + k)
            yield _Span("damaged", frame + k, rtype, pos, 0, None, 0)
        yield _Span("gap", -1, 0, pos, nxt - pos, None, 0)
        self._last_gap = (lost, nxt if nxt < end else None)

    def _frames_lost(self, pos: int, nxt: int, frame: int) -> int:
        """How many frames the damage in [pos, nxt) held (§7.2)."""
        if self._entry_offsets is not None:
            if nxt >= self._records_end:
                return max(self._frame_count - frame, 0)
            k = bisect.bisect_left(self._entry_offsets, nxt)
            if k < len(self._entry_offsets) and self._entry_offsets[k] == nxt:
                return max(self._entry_frames[k] - frame, 0)
        first = self._read_at(pos, 1)
        return 0 if first == bytes([RecordType.PARAMS]) and frame == 0 else 1

    def _resync(self, pos: int, end: int) -> int | None:
        """Offset of the next sound record after damage at ``pos``, or None.

        First trusts the damaged record's own length (only its payload or CRC may be
        hit); else tries every later offset holding a known type byte whose record
        passes its CRC. ``end`` counts as sound when it is the index.
        """
        try:
            guess = pos + self._read_record(pos, end, verify=False).size
        except FormatError:
            guess = None
        if guess is not None and self._sound_at(guess, end):
            return guess
        start = pos + 1
        while start < end:
            buf = self._read_at(start, min(_RESYNC_CHUNK + _HEAD_MAX, end - start))
            view = memoryview(buf)
            for match in _TYPE_BYTE.finditer(buf, 0, min(_RESYNC_CHUNK, len(buf))):
                self._resync_candidates_left -= 1
                if self._resync_candidates_left < 0:
                    raise FormatError(
                        f"{self.name}: salvage gave up after offset {pos}: too much damage"
                    )
                at = match.start()
                try:
                    varint = read_varint(buf, at + 1)
                except ValueError:
                    continue
                if varint is None:
                    if self._sound_at(start + at, end):
                        return start + at
                    continue
                length, nlen = varint
                size = 1 + nlen + length + RECORD_CRC_SIZE
                if length > limits.MAX_RECORD_BYTES or start + at + size > end:
                    continue
                self._resync_bytes_left -= size
                if self._resync_bytes_left < 0:
                    raise FormatError(
                        f"{self.name}: salvage gave up after offset {pos}: too much damage"
                    )
                if at + size <= len(buf):
                    raw = view[at : at + size]
                else:
                    raw = self._read_at(start + at, size)
                if crc32(raw[:-RECORD_CRC_SIZE]) == int.from_bytes(
                    raw[-RECORD_CRC_SIZE:], "little"
                ):
                    return start + at
            start += _RESYNC_CHUNK
        return end if end < self._size else None

    def _sound_at(self, pos: int, end: int) -> bool:
        if pos == end:
            return end < self._size  # the index, known from a sound trailer
        if pos > end:
            return False
        try:
            self._read_record(pos, end, verify=True)
        except FormatError:
            return False
        return True

    # -- public ------------------------------------------------------------------

    def __iter__(self) -> Iterator[FrameRecord]:
        """Frames in order, each CRC-checked (damaged ones flagged when salvaging)."""
        for span in self._walk(verify=True):
            if span.kind == "frame":
                yield FrameRecord(span.frame, _RECORD_TYPES[span.type], span.payload, span.offset)
            elif span.kind == "damaged":
                yield FrameRecord(span.frame, RecordType(span.type), None, span.offset, True)

    def _table(self):
        """(types, offsets, damaged) per frame, from one walk; cached."""
        if self._table_cache is None:
            types, offsets, damaged = bytearray(), array("q"), set()
            try:
                for span in self._walk(verify=self.salvage):
                    if span.kind in ("frame", "damaged"):
                        types.append(span.type)
                        offsets.append(span.offset)
                        if span.kind == "damaged":
                            damaged.add(span.frame)
            except TruncatedError:
                if self.complete:
                    raise  # a cut file ends in a TruncatedError; a complete one must not
            self._table_cache = (types, offsets, damaged)
        return self._table_cache

    def __len__(self) -> int:
        """Frames in the file: from the index when complete, else by scanning record headers.

        When salvaging, the frames one salvaging walk yields (damaged ones included).
        """
        if self.complete and not self.salvage:
            return self._frame_count
        return len(self._table()[0])

    def _frame_number(self, i: int) -> int:
        if not isinstance(i, int):
            raise TypeError(f"frame index must be an int, not {type(i).__name__}")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.name}: frame {i} out of range (0..{n - 1})")
        return i

    def _walk_from_index(self, i: int, verify: bool) -> tuple[_Rec, int]:
        """(record of frame i, number of the intra frame it depends on), via §5.2 entries."""
        k = bisect.bisect_right(self._entry_frames, i) - 1
        frame, pos = self._entry_frames[k], self._entry_offsets[k]
        intra = frame
        while True:
            rec = self._read_record(pos, self._records_end, verify and frame == i)
            if rec.type not in _FRAME_TYPES or (
                frame == self._entry_frames[k] and rec.type != RecordType.INTRA
            ):
                raise FormatError(
                    f"{self._where(pos)}: field type: 0x{rec.type:02x} where the index expects frame {frame}"
                )
            if rec.type == RecordType.INTRA:
                intra = frame
            if frame == i:
                return rec, intra
            pos += rec.size
            frame += 1

    def record(self, i: int) -> FrameRecord:
        """Frame ``i`` (negative counts from the end), CRC-checked; IndexError if out of range."""
        i = self._frame_number(i)
        if self.complete and not self.salvage:
            rec, _ = self._walk_from_index(i, verify=True)
            return FrameRecord(i, RecordType(rec.type), rec.payload, rec.offset)
        types, offsets, damaged = self._table()
        if i in damaged:
            return FrameRecord(i, RecordType(types[i]), None, offsets[i], True)
        rec = self._read_record(offsets[i], self._records_end, verify=True)
        return FrameRecord(i, RecordType(rec.type), rec.payload, rec.offset)

    def start_of(self, i: int) -> int:
        """Number of the intra frame a decoder must start from to reconstruct frame ``i``."""
        i = self._frame_number(i)
        if self.complete and not self.salvage:
            return self._walk_from_index(i, verify=False)[1]
        types, _, damaged = self._table()
        for k in range(i, -1, -1):
            if k in damaged:
                break
            if types[k] == RecordType.INTRA:
                return k
        raise FormatError(f"{self.name}: frame {i}: no sound intra frame before it")

    @property
    def params(self) -> bytes | None:
        """Payload of the PARAMS record (§4.3), or None; damaged under salvage → None."""
        if self._params_cache is None:
            payload = None
            if self._header_size < self._records_end:
                try:
                    rec = self._read_record(self._header_size, self._records_end, verify=True)
                    if rec.type == RecordType.PARAMS:
                        payload = rec.payload
                except FormatError:
                    if not self.salvage:
                        raise
            self._params_cache = (payload,)
        return self._params_cache[0]

    def accounting(self) -> Accounting:
        """Bytes of the file by part; from header+index+trailer alone when complete."""
        fpb = self.header.frame_param_bytes
        acc = Accounting(self._size, 0, 0, 0, self._header_size, 0, 0, 0, 0, 0, 0)
        if self.complete:
            t = self._totals
            acc.frames, acc.intra_frames, acc.predicted_frames = (
                t.frame_count,
                t.intra_frames,
                t.predicted_frames,
            )
            payloads = t.intra_payload_bytes + t.predicted_payload_bytes
            acc.params = t.params_payload_bytes + fpb * t.frame_count
            acc.codes = payloads - fpb * t.frame_count
            acc.framing = (
                t.params_record_bytes
                - t.params_payload_bytes
                + t.intra_record_bytes
                + t.predicted_record_bytes
                - payloads
            )
            acc.index = self._size - self._records_end
            acc.intra_bytes, acc.predicted_bytes = t.intra_record_bytes, t.predicted_record_bytes
            acc.other = self._size - (acc.header + acc.params + acc.codes + acc.framing + acc.index)
            return acc
        try:
            for span in self._walk(verify=self.salvage):
                if span.kind == "params":
                    acc.params += span.payload_len
                    acc.framing += span.size - span.payload_len
                elif span.kind == "frame":
                    acc.frames += 1
                    params = min(fpb, span.payload_len)
                    acc.params += params
                    acc.codes += span.payload_len - params
                    acc.framing += span.size - span.payload_len
                    if span.type == RecordType.INTRA:
                        acc.intra_frames += 1
                        acc.intra_bytes += span.size
                    else:
                        acc.predicted_frames += 1
                        acc.predicted_bytes += span.size
                elif span.kind == "damaged":
                    acc.frames += 1
                elif span.kind == "index":
                    acc.index += span.size
        except TruncatedError:
            pass  # a cut file: the tail goes to ``other``
        if self._records_end < self._size:
            acc.index += self._size - self._records_end
        acc.other = self._size - (acc.header + acc.params + acc.codes + acc.framing + acc.index)
        return acc
