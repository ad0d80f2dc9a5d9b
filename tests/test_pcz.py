"""The .pcz container: exact bytes, truncation at every offset, flipped bits, limits."""

from __future__ import annotations

import hashlib
import io
import random
import time
import tracemalloc

import construct as cs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacodec.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    PacodecError,
    TruncatedError,
    UnsupportedVersionError,
)
from pacodec.pcz import (
    CodeDtype,
    ModelRef,
    PczReader,
    PczWriter,
    Quantizer,
    RecordType,
    StreamHeader,
)
from pacodec.pcz.schema import IndexEntries, Record, crc32, read_varint
from pacodec.pcz.writer import build_record


def make_header(**changes) -> StreamHeader:
    fields = dict(
        source_width=160,
        source_height=210,
        width=160,
        height=200,
        fps_num=60,
        fps_den=1,
        models=(
            ModelRef("conv4", hashlib.sha256(b"intra").digest()),
            ModelRef("conv4-res", hashlib.sha256(b"res").digest()),
        ),
        quantizer=Quantizer.SCALE,
        code_dtype=CodeDtype.UINT8,
        code_shape=(8, 10, 8),
        frame_param_bytes=8,
        gop=4,
    )
    fields.update(changes)
    return StreamHeader(**fields)


def frame_payload(i: int, n: int = 50) -> bytes:
    return bytes((i * 37 + k * 11) % 256 for k in range(n))


def small_file() -> tuple[bytes, list[bytes]]:
    """6 frames of ~50 bytes with PARAMS and predicted frames (gop 4)."""
    out = io.BytesIO()
    payloads = [frame_payload(i, 44 + i) for i in range(6)]
    with PczWriter(out, make_header()) as writer:
        writer.write_params(b"centroids" * 3)
        for i, p in enumerate(payloads):
            writer.write_frame(p, predicted=i % 4 != 0)
    return out.getvalue(), payloads


SMALL, SMALL_PAYLOADS = small_file()


def open_bytes(data: bytes, **kw) -> PczReader:
    return PczReader(io.BytesIO(data), name="t.pcz", **kw)


def read_all(data: bytes, **kw):
    reader = open_bytes(data, **kw)
    frames = list(reader)
    return reader, frames


# -- round trip and accounting ------------------------------------------------------


def test_round_trip():
    reader, frames = read_all(SMALL)
    assert reader.complete
    assert reader.header == make_header()
    assert reader.params == b"centroids" * 3
    assert len(reader) == 6
    assert [f.payload for f in frames] == SMALL_PAYLOADS
    assert [f.type for f in frames] == [RecordType.INTRA] + [RecordType.PREDICTED] * 3 + [
        RecordType.INTRA,
        RecordType.PREDICTED,
    ]
    assert [f.index for f in frames] == list(range(6))
    assert not reader.damaged


def test_writer_counts_bytes_and_offsets_from_start():
    out = io.BytesIO()
    out.write(b"prefix")  # a .pcz need not start at byte 0 of its file object
    writer = PczWriter(out, make_header(gop=1))
    writer.write_frame(bytes(10))
    writer.close()
    writer.close()
    assert writer.frames_written == 1
    assert writer.bytes_written == len(out.getvalue()) - 6
    out.seek(6)
    reader = PczReader(out)
    assert [f.payload for f in reader] == [bytes(10)]
    assert reader.record(0).payload == bytes(10)


def test_accounting_sums_to_file_size():
    acc = open_bytes(SMALL).accounting()
    assert (
        acc.header + acc.params + acc.codes + acc.framing + acc.index
        == acc.file_bytes
        == len(SMALL)
    )
    assert acc.other == 0
    assert acc.params == 27 + 8 * 6
    assert acc.codes == sum(len(p) for p in SMALL_PAYLOADS) - 8 * 6
    assert (acc.frames, acc.intra_frames, acc.predicted_frames) == (6, 2, 4)
    # the same parts from a scan of the file without its index and trailer
    index_at = int.from_bytes(SMALL[-20:-12], "little")
    cut = open_bytes(SMALL[:index_at], salvage=True).accounting()
    assert (cut.header, cut.params, cut.codes, cut.framing) == (
        acc.header,
        acc.params,
        acc.codes,
        acc.framing,
    )
    assert (cut.intra_bytes, cut.predicted_bytes) == (acc.intra_bytes, acc.predicted_bytes)
    assert cut.index == 0 and cut.other == 0


def test_context_manager_leaves_cut_file_on_exception():
    out = io.BytesIO()
    with pytest.raises(RuntimeError), PczWriter(out, make_header(gop=1)) as writer:
        writer.write_frame(b"x" * 20)
        raise RuntimeError
    reader = open_bytes(out.getvalue())
    assert not reader.complete and len(reader) == 1
    with pytest.raises(TruncatedError):
        list(reader)
    assert [f.payload for f in open_bytes(out.getvalue(), salvage=True)] == [b"x" * 20]


def test_writer_refuses_misuse():
    writer = PczWriter(io.BytesIO(), make_header(gop=2))
    with pytest.raises(ValueError):
        writer.write_frame(b"x" * 10, predicted=True)  # no intra yet
    writer.write_frame(b"x" * 10)
    with pytest.raises(ValueError):
        writer.write_params(b"late")
    writer.write_frame(b"x" * 10, predicted=True)
    with pytest.raises(ValueError):
        writer.write_frame(b"x" * 10, predicted=True)  # beyond gop
    with pytest.raises(ValueError):
        writer.write_frame(b"short")  # under frame_param_bytes


@pytest.mark.parametrize(
    "changes, error",
    [
        (dict(width=0), FormatError),
        (dict(width=5000), LimitError),
        (dict(width=4096, height=4096), LimitError),
        (dict(fps_den=0), FormatError),
        (dict(fps_num=100_000), LimitError),
        (dict(models=()), FormatError),
        (dict(models=(ModelRef("Bad Id", bytes(32)),)), FormatError),
        (dict(models=(ModelRef("x" * 65, bytes(32)),)), FormatError),
        (dict(models=(ModelRef("ok", bytes(31)),)), FormatError),
        (dict(models=tuple(ModelRef(f"m{k}", bytes(32)) for k in range(5))), FormatError),
        (dict(quantizer=9), FormatError),
        (dict(code_dtype=5), FormatError),
        (dict(entropy_coder=7), FormatError),
        (dict(code_shape=()), FormatError),
        (dict(code_shape=(1, 1, 1, 1, 1)), FormatError),
        (dict(code_shape=(0, 4)), FormatError),
        (dict(code_shape=(1 << 16, 1 << 16)), LimitError),
        (dict(table_digest=b"\x01" * 32), FormatError),
        (dict(gop=0), FormatError),
    ],
)
def test_header_validation(changes, error):
    with pytest.raises(error):
        PczWriter(io.BytesIO(), make_header(**changes))


def test_unknown_major_version_refused():
    data = bytearray(SMALL)
    data[4] = 13  # this build reads 1.x … 12.x
    with pytest.raises(UnsupportedVersionError, match="version"):
        open_bytes(bytes(data))


def test_varint_fast_paths_match_construct():
    for value in [0, 1, 127, 128, 300, 16383, 16384, (64 << 20), (1 << 63) - 1]:
        encoded = cs.VarInt.build(value)
        assert read_varint(encoded, 0) == (value, len(encoded))
    pairs = [(0, 119), (32, 5000), (64, 9000), (1000, 1 << 40)]
    frames, offsets = IndexEntries(cs.GreedyBytes).parse(IndexEntries(cs.GreedyBytes).build(pairs))
    assert list(zip(frames.tolist(), offsets.tolist())) == pairs
    record = build_record(RecordType.INTRA, b"abc" * 100)
    parsed = Record.parse(record).signed.value
    assert (parsed.type, parsed.payload) == (2, b"abc" * 100)
    assert record == bytes([2]) + cs.VarInt.build(300) + b"abc" * 100 + crc32(record[:-4]).to_bytes(
        4, "little"
    )


# -- truncation ---------------------------------------------------------------------


def whole_frames_before(cut: int) -> int:
    reader = open_bytes(SMALL)
    return sum(1 for f in reader if f.offset + 2 + len(f.payload) + 4 <= cut)


def test_truncation_at_every_offset():
    header_size = open_bytes(SMALL)._header_size
    for cut in range(len(SMALL)):
        data = SMALL[:cut]
        if cut < header_size:
            for salvage in (False, True):
                with pytest.raises(TruncatedError):
                    open_bytes(data, salvage=salvage)
            continue
        expected = SMALL_PAYLOADS[: whole_frames_before(cut)]
        reader = open_bytes(data)
        got = []
        with pytest.raises(TruncatedError):
            for frame in reader:
                got.append(frame.payload)
        assert got == expected, cut
        assert len(reader) == len(expected)
        salvaged = open_bytes(data, salvage=True)
        assert [f.payload for f in salvaged] == expected, cut
        assert not salvaged.damaged
        acc = salvaged.accounting()
        assert acc.header + acc.params + acc.codes + acc.framing + acc.index + acc.other == cut


# -- flipped bits -------------------------------------------------------------------


def read_everything(data: bytes, salvage: bool):
    """Frames via iteration and record(i), params and accounting; raises on damage."""
    reader = open_bytes(data, salvage=salvage)
    frames = list(reader)
    params = reader.params
    for i in range(len(reader)):
        reader.record(i)
        reader.start_of(i)
    reader.accounting()
    return reader, frames, params


def assert_flip_detected(data: bytes, where: str) -> None:
    try:
        _, frames, params = read_everything(data, salvage=False)
    except FormatError:
        pass
    else:
        raise AssertionError(f"flip at {where} not detected")
    # Under salvage: never a different payload, only damaged flags or fewer frames.
    try:
        _, frames, params = read_everything(data, salvage=True)
    except FormatError:
        return
    for frame in frames:
        if frame.payload is not None:
            assert frame.payload == SMALL_PAYLOADS[frame.index], where
        else:
            assert frame.damaged
    assert params in (None, b"centroids" * 3)


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_header_bit_flip_detected():
    header_size = open_bytes(SMALL)._header_size
    for bit in range(header_size * 8):
        with pytest.raises(FormatError):
            open_bytes(flipped(SMALL, bit))


def test_every_bit_flip_of_small_file_detected():
    # The small file has ~4300 bits: all of them, more than the 3000 asked for.
    for bit in range(len(SMALL) * 8):
        assert_flip_detected(flipped(SMALL, bit), f"bit {bit}")


def test_random_bit_flips_detected():
    rng = random.Random(7)
    for _ in range(300):
        bits = rng.sample(range(len(SMALL) * 8), rng.randint(2, 6))
        data = SMALL
        for bit in bits:
            data = flipped(data, bit)
        assert_flip_detected(data, f"bits {bits}")


def test_salvage_continues_past_damage():
    reader = open_bytes(SMALL)
    offsets = [f.offset for f in reader]
    data = bytearray(SMALL)
    data[offsets[1] + 10] ^= 0xFF  # payload of frame 1
    data[offsets[3] + 1] ^= 0x40  # length of frame 3
    data = bytes(data)
    with pytest.raises(ChecksumError, match="offset"):
        list(open_bytes(data))
    salvaged = open_bytes(data, salvage=True)
    frames = list(salvaged)
    assert [f.index for f in frames] == list(range(6))
    assert [f.damaged for f in frames] == [False, True, False, True, False, False]
    assert [f.payload for f in frames if not f.damaged] == [SMALL_PAYLOADS[i] for i in (0, 2, 4, 5)]
    assert salvaged.damaged == [1, 3]
    assert salvaged.record(4).payload == SMALL_PAYLOADS[4]
    assert salvaged.start_of(5) == 4


def test_salvage_without_index_resyncs_by_scanning():
    index_at = int.from_bytes(SMALL[-20:-12], "little")
    offsets = [f.offset for f in open_bytes(SMALL)]
    data = bytearray(SMALL[:index_at])
    data[offsets[2] + 1] = 0x7F  # length of frame 2: now runs far
    frames = list(open_bytes(bytes(data), salvage=True))
    assert [f.payload for f in frames if not f.damaged] == [
        SMALL_PAYLOADS[i] for i in (0, 1, 3, 4, 5)
    ]
    assert sum(f.damaged for f in frames) == 1


def test_damaged_trailer_noticed_or_scanned():
    for pos in range(len(SMALL) - 20, len(SMALL)):
        data = flipped(SMALL, pos * 8 + 3)
        with pytest.raises(FormatError):
            read_everything(data, salvage=False)
        _, frames, _ = read_everything(data, salvage=True)
        assert [f.payload for f in frames] == SMALL_PAYLOADS


# -- limits -------------------------------------------------------------------------


def test_huge_record_length_is_refused_without_allocating():
    header = io.BytesIO()
    PczWriter(header, make_header(gop=1))
    claim = bytes([RecordType.INTRA]) + cs.VarInt.build(60 << 20)  # 60 MB, within the cap
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedError, match="offset"):
            list(open_bytes(header.getvalue() + claim + bytes(100)))
        with pytest.raises(LimitError, match="length"):
            list(open_bytes(header.getvalue() + bytes([2]) + cs.VarInt.build(1 << 40) + bytes(100)))
        salvaged = open_bytes(header.getvalue() + claim + bytes(100), salvage=True)
        assert list(salvaged) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_huge_header_fields_refused():
    body_offset = 8
    data = bytearray(SMALL)
    data[body_offset : body_offset + 2] = (60000).to_bytes(2, "little")  # source_width
    header_size = open_bytes(SMALL)._header_size
    data[header_size - 4 : header_size] = crc32(bytes(data[: header_size - 4])).to_bytes(
        4, "little"
    )
    with pytest.raises(LimitError, match="source_width"):
        open_bytes(bytes(data))


# -- index --------------------------------------------------------------------------


def test_index_overhead_all_intra():
    out = io.BytesIO()
    with PczWriter(out, make_header(gop=1)) as writer:
        for i in range(1000):
            writer.write_frame(frame_payload(i, 100))
    acc = open_bytes(out.getvalue()).accounting()
    assert (acc.framing + acc.index) / acc.frames <= 8
    assert acc.header + acc.params + acc.codes + acc.framing + acc.index == len(out.getvalue())


def test_random_access_matches_iteration_with_gop():
    out = io.BytesIO()
    with PczWriter(out, make_header(gop=8)) as writer:
        for i in range(200):
            writer.write_frame(frame_payload(i, 20 + i % 13), predicted=i % 8 != 0)
    data = out.getvalue()
    for salvage in (False, True):
        reader = open_bytes(data, salvage=salvage)
        frames = list(reader)
        assert len(frames) == len(reader) == 200
        for i in range(200):
            assert reader.record(i) == frames[i]
            assert reader.start_of(i) == i - i % 8
        assert reader.record(-1) == frames[-1]
        with pytest.raises(IndexError):
            reader.record(200)
    # the same answers from a file without its index (scanned)
    index_at = int.from_bytes(data[-20:-12], "little")
    cut = open_bytes(data[:index_at], salvage=True)
    assert [cut.record(i) for i in range(200)] == frames
    assert [cut.start_of(i) for i in range(200)] == [i - i % 8 for i in range(200)]


# -- fuzz ---------------------------------------------------------------------------


def exercise(data: bytes) -> None:
    """Everything a caller may do; only PacodecError (and IndexError) may escape.

    The time bound is on this process's CPU time, not the wall clock: it is a bound on
    the parser's work, which other load on a shared machine does not change."""
    for salvage in (False, True):
        start = time.process_time()
        try:
            reader = open_bytes(data, salvage=salvage)
            n = len(reader)
            for _ in reader:
                pass
            _ = reader.params
            reader.accounting()
            for i in (0, n // 2, n - 1, n):
                try:
                    reader.record(i)
                    reader.start_of(i)
                except IndexError:
                    assert not 0 <= i < n
        except PacodecError:
            pass
        assert time.process_time() - start < 1.0


# No wall-clock deadline: exercise() bounds each parse by CPU time instead, which a busy
# machine does not stretch.
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(data):
    exercise(data)
    exercise(SMALL[:8] + data)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=8)
)
def test_fuzz_mutated_valid_file(edits):
    data = bytearray(SMALL)
    for pos, value in edits:
        data[pos] = value
    exercise(bytes(data))


@FUZZ
@given(st.integers(0, len(SMALL)), st.binary(max_size=64), st.integers(0, len(SMALL)))
def test_fuzz_spliced_valid_file(cut, insert, resume):
    exercise(SMALL[:cut] + insert + SMALL[resume:])


def test_hostile_megabyte_is_fast():
    header = io.BytesIO()
    PczWriter(header, make_header(gop=1))
    h = header.getvalue()
    for filler in (
        bytes([2, 2]) * (1 << 19),
        bytes([2, 0xFF, 0xFF, 0x0F]) * (1 << 18),
        bytes(1 << 20),
    ):
        exercise(h + filler)


def test_many_tiny_records_stay_fast():
    """A 1 MiB cut file of 150 000 one-byte frames: each operation well under a
    second of CPU time (about 0.3–0.6 s); the bound is loose for slower machines."""
    header = io.BytesIO()
    PczWriter(header, make_header(gop=1, frame_param_bytes=0))
    data = header.getvalue() + build_record(RecordType.INTRA, b"x") * 149_000 + b"\x02"
    for salvage in (False, True):
        reader = open_bytes(data, salvage=salvage)
        for operation in (len, lambda r: sum(1 for _ in r), lambda r: r.accounting()):
            start = time.process_time()
            try:
                operation(reader)
            except TruncatedError:
                assert not salvage
            assert time.process_time() - start < 2.0
        assert len(reader) == 149_000


def test_container_imports_neither_torch_nor_av():
    import subprocess
    import sys

    code = "import sys, pacodec.pcz; assert not {'torch', 'av'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ordering_rules():
    header = io.BytesIO()
    PczWriter(header, make_header(gop=2, frame_param_bytes=0))
    h = header.getvalue()
    intra, pred = build_record(RecordType.INTRA, b"i"), build_record(RecordType.PREDICTED, b"p")
    params = build_record(RecordType.PARAMS, b"k")
    for body, message in [
        (pred, "no intra"),
        (intra + params, "PARAMS"),
        (params + params, "PARAMS"),
        (intra + pred + pred, "gop"),
        (intra + b"\x05\x01x" + bytes(4), "unknown record type 0x05"),
        (intra + b"\x02\x80\x00" + bytes(4), "shortest form"),
    ]:
        with pytest.raises(FormatError, match=message):
            list(open_bytes(h + body))
        # salvage reads what it can and raises nothing
        list(open_bytes(h + body, salvage=True))
