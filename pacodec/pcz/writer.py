"""Streaming writer of ``.pcz`` files (formats/pcz.md §2–§6)."""

from __future__ import annotations

from typing import BinaryIO

from pacodec.errors import LimitError
from pacodec.pcz import limits
from pacodec.pcz.header import StreamHeader, build_header
from pacodec.pcz.schema import INDEX_INTERVAL, IndexPayload, Record, RecordType, Trailer


def build_record(record_type: RecordType, payload: bytes) -> bytes:
    """The §4 bytes of one record: type, LEB128 length, payload, CRC32."""
    return Record.build(dict(signed=dict(value=dict(type=int(record_type), payload=payload))))


class PczWriter:
    """Write a ``.pcz`` stream record by record; the frame count is never needed up front.

    The header is written at once. ``close()`` appends the INDEX record and the
    trailer; a stream that is never closed is a valid cut file (§7). Offsets are
    counted from the position ``fileobj`` had when the writer was made.
    Misuse (a frame after close, PARAMS after a frame, a predicted frame first)
    raises ValueError; payloads over the §8 caps raise LimitError.
    """

    def __init__(self, fileobj: BinaryIO, header: StreamHeader) -> None:
        self._file = fileobj
        self.header = header
        self.frames_written = 0
        self.bytes_written = 0
        self._closed = False
        self._since_intra: int | None = None  # frames since the last intra frame
        self._entries: list[tuple[int, int]] = []  # (frame, offset) of §5.2 entries
        self._totals = {
            RecordType.PARAMS: [0, 0, 0],  # records, payload bytes, record bytes
            RecordType.INTRA: [0, 0, 0],
            RecordType.PREDICTED: [0, 0, 0],
        }
        self._emit(build_header(header))

    def _emit(self, data: bytes) -> None:
        self._file.write(data)
        self.bytes_written += len(data)

    def _record(self, record_type: RecordType, payload: bytes) -> None:
        if self._closed:
            raise ValueError("PczWriter: write after close()")
        payload = bytes(payload)
        if len(payload) > limits.MAX_RECORD_BYTES:
            raise LimitError(
                f"PczWriter: {record_type.name} payload of {len(payload)} bytes exceeds "
                f"{limits.MAX_RECORD_BYTES}"
            )
        data = build_record(record_type, payload)
        totals = self._totals.get(record_type)
        if totals is not None:  # the INDEX record is not counted in itself
            totals[0] += 1
            totals[1] += len(payload)
            totals[2] += len(data)
        self._emit(data)

    def write_params(self, payload: bytes) -> None:
        """Write the stream's one PARAMS record (§4.3); only before the first frame."""
        if self.frames_written or self._totals[RecordType.PARAMS][0]:
            raise ValueError("PczWriter: one PARAMS record, before the first frame")
        self._record(RecordType.PARAMS, payload)

    def write_frame(self, payload: bytes, *, predicted: bool = False) -> None:
        """Write one frame record; ``payload`` = frame_param_bytes params, then codes."""
        if len(payload) < self.header.frame_param_bytes:
            raise ValueError(
                f"PczWriter: frame payload of {len(payload)} bytes is shorter than "
                f"frame_param_bytes={self.header.frame_param_bytes}"
            )
        if self.frames_written >= limits.MAX_FRAMES:
            raise LimitError(f"PczWriter: more than {limits.MAX_FRAMES} frames")
        if predicted:
            if self._since_intra is None:
                raise ValueError("PczWriter: the first frame must be intra")
            if self._since_intra + 1 >= self.header.gop:
                raise ValueError(f"PczWriter: predicted frame would exceed gop={self.header.gop}")
            self._since_intra += 1
            self._record(RecordType.PREDICTED, payload)
        else:
            last = self._entries[-1][0] if self._entries else None
            if last is None or self.frames_written - last >= INDEX_INTERVAL:
                self._entries.append((self.frames_written, self.bytes_written))
            self._since_intra = 0
            self._record(RecordType.INTRA, payload)
        self.frames_written += 1

    def flush(self) -> None:
        """Flush the file object, so a reader sees every whole record written so far."""
        self._file.flush()

    def close(self) -> None:
        """Write the INDEX record and trailer (§5, §6) and flush; idempotent.

        Does not close ``fileobj``.
        """
        if self._closed:
            return
        params, intra, predicted = (self._totals[t] for t in RecordType if t != RecordType.INDEX)
        index_payload = IndexPayload.build(
            dict(
                frame_count=self.frames_written,
                intra_frames=intra[0],
                predicted_frames=predicted[0],
                params_records=params[0],
                params_payload_bytes=params[1],
                params_record_bytes=params[2],
                intra_payload_bytes=intra[1],
                intra_record_bytes=intra[2],
                predicted_payload_bytes=predicted[1],
                predicted_record_bytes=predicted[2],
                entry_count=len(self._entries),
                entries=self._entries,
            )
        )
        index_offset = self.bytes_written
        self._record(RecordType.INDEX, index_payload)
        trailer = dict(index_offset=index_offset, frame_count=self.frames_written)
        self._emit(Trailer.build(dict(signed=dict(value=trailer))))
        self._closed = True
        self.flush()

    def __enter__(self) -> PczWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception the stream stays a cut file: no index claims frames that
        # the caller may not have meant to finish.
        if exc_type is None:
            self.close()
