"""A second .pcz parser, written only from formats/pcz.md with ``struct``.

``parse_pcz(data)`` is meant for reuse (golden files in formats/samples/): it
returns a plain dict and asserts every rule of the spec it reads.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

from pacodec.pcz import CodeDtype, EntropyCoder, ModelRef, PczWriter, Quantizer, StreamHeader


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """§1 LEB128: (value, position after it)."""
    value = shift = 0
    for k in range(10):
        byte = data[pos + k]
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            assert k == 0 or byte != 0, "varint not in shortest form"
            return value, pos + k + 1
    raise AssertionError("varint over 10 bytes")


def parse_pcz(data: bytes) -> dict:
    """Parse a complete .pcz file per formats/pcz.md; assert every rule on the way."""
    # §3.1 preamble
    magic, major, minor, body_length = struct.unpack_from("<4sBBH", data, 0)
    assert magic == b"PCZ\x00" and major in range(1, 13)  # 2.0 … 12.0 changed payloads (§14.3–§14.14), not the container
    assert body_length <= 4096
    header_end = 8 + body_length + 4
    (header_crc,) = struct.unpack_from("<I", data, 8 + body_length)
    assert header_crc == _crc(data[: 8 + body_length])
    # §3.2 body
    pos = 8
    sw, sh, w, h, fps_num, fps_den, model_count = struct.unpack_from("<HHHHIIB", data, pos)
    pos += 17
    assert 1 <= model_count <= 4
    models = []
    for _ in range(model_count):
        id_length = data[pos]
        assert 1 <= id_length <= 64
        model_id = data[pos + 1 : pos + 1 + id_length].decode("ascii")
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in model_id)
        sha = data[pos + 1 + id_length : pos + 33 + id_length]
        models.append((model_id, sha))
        pos += 33 + id_length
    quantizer, code_dtype, ndim = struct.unpack_from("<BBB", data, pos)
    pos += 3
    assert quantizer in range(5) and code_dtype in range(5) and 1 <= ndim <= 4
    shape = struct.unpack_from(f"<{ndim}I", data, pos)
    pos += 4 * ndim
    frame_param_bytes, entropy_coder = struct.unpack_from("<HB", data, pos)
    pos += 3
    table_digest = data[pos : pos + 32]
    (gop,) = struct.unpack_from("<H", data, pos + 32)
    pos += 34
    assert pos == 8 + body_length, "1.0 body has no extension"
    assert entropy_coder in (0, 1) and gop >= 1
    # §6 trailer
    index_offset, frame_count, trailer_magic, trailer_crc = struct.unpack_from(
        "<QI4sI", data, len(data) - 20
    )
    assert trailer_magic == b"PCZE" and trailer_crc == _crc(data[-20:-4])
    # §4 records
    records = []
    pos = header_end
    while pos < len(data) - 20:
        rtype = data[pos]
        length, payload_at = _varint(data, pos + 1)
        end = payload_at + length
        (crc,) = struct.unpack_from("<I", data, end)
        assert crc == _crc(data[pos:end]), f"record at {pos}"
        assert rtype in (0x01, 0x02, 0x03, 0x7F)
        records.append(
            dict(type=rtype, offset=pos, payload=data[payload_at:end], size=end + 4 - pos)
        )
        pos = end + 4
    assert pos == len(data) - 20
    *body_records, index = records
    assert index["type"] == 0x7F and index["offset"] == index_offset
    frames = [r for r in body_records if r["type"] in (2, 3)]
    params = [r for r in body_records if r["type"] == 1]
    assert len(params) <= 1 and (not params or body_records[0] is params[0])
    assert frames[0]["type"] == 2 if frames else True
    # §5.1 index payload
    payload, p = index["payload"], 0
    totals = []
    for _ in range(11):
        value, p = _varint(payload, p)
        totals.append(value)
    (
        n,
        n_intra,
        n_pred,
        n_params,
        params_payload,
        params_records,
        intra_payload,
        intra_records,
        pred_payload,
        pred_records,
        entry_count,
    ) = totals
    entries, frame, offset = [], 0, 0
    for _ in range(entry_count):
        d_frame, p = _varint(payload, p)
        d_offset, p = _varint(payload, p)
        frame, offset = frame + d_frame, offset + d_offset
        entries.append((frame, offset))
    assert p == len(payload)
    intra = [r for r in frames if r["type"] == 2]
    pred = [r for r in frames if r["type"] == 3]
    assert n == frame_count == len(frames) and n_intra == len(intra) and n_pred == len(pred)
    assert n_params == len(params)
    assert params_payload == sum(len(r["payload"]) for r in params)
    assert params_records == sum(r["size"] for r in params)
    assert intra_payload == sum(len(r["payload"]) for r in intra)
    assert intra_records == sum(r["size"] for r in intra)
    assert pred_payload == sum(len(r["payload"]) for r in pred)
    assert pred_records == sum(r["size"] for r in pred)
    # §5.2: entries are the intra frames listed by the 32-frame rule
    expected, last = [], None
    for number, record in enumerate(frames):
        if record["type"] == 2 and (last is None or number - last >= 32):
            expected.append((number, record["offset"]))
            last = number
    assert entries == expected
    return dict(
        version=(major, minor),
        source=(sw, sh),
        coded=(w, h),
        fps=(fps_num, fps_den),
        models=models,
        quantizer=quantizer,
        code_dtype=code_dtype,
        code_shape=shape,
        frame_param_bytes=frame_param_bytes,
        entropy_coder=entropy_coder,
        table_digest=table_digest,
        gop=gop,
        header_size=header_end,
        params=params[0]["payload"] if params else None,
        frames=[(r["type"], r["payload"]) for r in frames],
        index_entries=entries,
    )


def test_independent_parser_reads_writer_output():
    sha = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]
    header = StreamHeader(
        source_width=160,
        source_height=210,
        width=160,
        height=200,
        fps_num=30000,
        fps_den=1001,
        models=(ModelRef("fc.block-2", sha[0]), ModelRef("res_v1", sha[1])),
        quantizer=Quantizer.KMEANS,
        code_dtype=CodeDtype.INT16,
        code_shape=(16, 3, 2),
        frame_param_bytes=0,
        entropy_coder=EntropyCoder.CONSTRICTION_RANGE,
        table_digest=hashlib.sha256(b"tables").digest(),
        gop=10,
    )
    frames = [(i % 10 != 0, bytes([i % 256]) * (30 + i % 7)) for i in range(100)]
    out = io.BytesIO()
    with PczWriter(out, header) as writer:
        writer.write_params(struct.pack("<4f", 0.0, 0.5, 1.0, 2.0))
        for predicted, payload in frames:
            writer.write_frame(payload, predicted=predicted)
    parsed = parse_pcz(out.getvalue())
    assert parsed["version"] == (1, 0)
    assert parsed["source"] == (160, 210) and parsed["coded"] == (160, 200)
    assert parsed["fps"] == (30000, 1001)
    assert parsed["models"] == [("fc.block-2", sha[0]), ("res_v1", sha[1])]
    assert (parsed["quantizer"], parsed["code_dtype"], parsed["entropy_coder"]) == (3, 3, 1)
    assert parsed["code_shape"] == (16, 3, 2)
    assert parsed["frame_param_bytes"] == 0 and parsed["gop"] == 10
    assert parsed["table_digest"] == hashlib.sha256(b"tables").digest()
    assert parsed["params"] == struct.pack("<4f", 0.0, 0.5, 1.0, 2.0)
    assert parsed["frames"] == [(3 if p else 2, payload) for p, payload in frames]
    assert [f for f, _ in parsed["index_entries"]] == [0, 40, 80]


def test_worked_example_in_spec_matches_writer():
    """The hexdump in formats/pcz.md §12 is what PczWriter writes today."""
    header = StreamHeader(
        160,
        210,
        160,
        200,
        60,
        1,
        (ModelRef("tiny", bytes(range(32))),),
        Quantizer.SCALE,
        CodeDtype.UINT8,
        (2, 2),
        frame_param_bytes=8,
        gop=1,  # a PREDICTED record needs an entropy-coded stream (§3.6)
    )
    out = io.BytesIO()
    with PczWriter(out, header) as writer:
        writer.write_frame(struct.pack("<2f", 0.0, 1.0) + bytes([1, 2, 3, 4]))
        writer.write_frame(struct.pack("<2f", 0.0, 1.0) + bytes([5, 6, 7, 8]))
    spec = (Path(__file__).parent.parent / "formats" / "pcz.md").read_text(encoding="utf-8")
    dump = spec.split("## 12. Worked example", 1)[1].split("```", 2)[1]
    hex_bytes = "".join(line[10:49].replace(" ", "") for line in dump.strip().splitlines())
    assert bytes.fromhex(hex_bytes) == out.getvalue()
    assert parse_pcz(out.getvalue())["frames"][1] == (
        2,
        struct.pack("<2f", 0.0, 1.0) + bytes([5, 6, 7, 8]),
    )
