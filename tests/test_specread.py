"""The spec proves itself: tools/specread, written from formats/pcz.md alone (standard
library and NumPy; its own range decoder), reads what pacodec writes bit for bit.

On every golden sample and on fresh files of every shipped model id and GOP mode, its
symbol digest (§16) equals ``Reader.symbol_digest()`` and its accounting equals
``pacodec info --json``; its range coder makes and reads the conformance vectors; and
on damaged files both readers agree on which frames survive (§7).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pacodec
from pacodec import api
from pacodec.errors import FormatError, PacodecError
from tools import specread
from tools.specread.rangecoder import CorruptStream, RangeDecoder, RangeEncoder, model, trimmed, trimmed_words

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "formats" / "samples"
GOLDEN = sorted(p.stem for p in SAMPLES.glob("*.json"))
SHIPPED = ROOT / "pacodec" / "weights"
VECTORS = json.loads((ROOT / "formats" / "vectors" / "range-coder.json").read_text())["vectors"]


def _same_as_pacodec(path: Path, expect_digest: str | None = None) -> specread.Result:
    result = specread.read(path, [SHIPPED])
    with pacodec.open(path) as reader:
        digest = reader.symbol_digest()
    assert result.digest == digest
    if expect_digest is not None:
        assert digest == expect_digest
    assert result.info == api.probe(path)
    return result


# -- the range coder of §15 ------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_spec_range_coder_passes_the_vectors(vector):
    cdfs = [model(t) for t in vector["tables"]]
    encoder = RangeEncoder()
    for t, symbols in vector["segments"]:
        for s in symbols:
            encoder.encode(s, cdfs[t])
    assert encoder.finish() == vector["words"]
    decoder = RangeDecoder(vector["words"])
    for t, symbols in vector["segments"]:
        assert decoder.decode_many(cdfs[t], len(symbols)) == symbols
    assert decoder.exhausted()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_spec_trimmed_streams_are_the_vectors_and_the_shortest(vector):
    """§15.4 by the spec's coder: the trimmed form is the vectors', decodes to the
    symbols with zero bytes read past its end, and is the shortest: one byte fewer
    (its zero bytes dropped too) decodes to other symbols or not at all."""
    cdfs = [model(t) for t in vector["tables"]]
    encoder = RangeEncoder()
    for t, symbols in vector["segments"]:
        for s in symbols:
            encoder.encode(s, cdfs[t])
    got = trimmed(encoder)
    assert got.hex() == vector["trimmed"]
    if not got:
        assert vector["words"] == []
        return
    assert got[-1] != 0

    def decodes(payload: bytes) -> bool:
        decoder = RangeDecoder(trimmed_words(payload))
        try:
            return all(decoder.decode_many(cdfs[t], len(symbols)) == symbols for t, symbols in vector["segments"])
        except CorruptStream:
            return False

    assert decodes(got)
    shorter = got[:-1].rstrip(b"\0")
    if shorter:  # (no stream is empty: §15.4)
        assert not decodes(shorter)


def test_the_vectors_reach_the_coder_s_rare_paths():
    """Held-back words (carries) and a stream sealed while holding one: the paths a
    careless implementation gets wrong, exercised by the vectors."""
    inversions, held_at_end = 0, 0
    for vector in VECTORS:
        cdfs = [model(t) for t in vector["tables"]]
        encoder = RangeEncoder()
        for t, symbols in vector["segments"]:
            for s in symbols:
                encoder.encode(s, cdfs[t])
        inversions += encoder.inversions
        held_at_end += encoder.inverted > 0
    assert inversions > 10 and held_at_end >= 1


def test_spec_model_quantizes_tables_as_written():
    assert model([58000, 4000, 3536]) == [0, 14847998, 15871999, 1 << 24]   # §15.1's example
    with pytest.raises(ValueError):
        model([65536, 0])


# -- golden samples and fresh files ----------------------------------------------
@pytest.mark.parametrize("name", GOLDEN)
def test_specread_matches_every_golden_sample(name):
    expected = json.loads((SAMPLES / f"{name}.json").read_text())
    result = _same_as_pacodec(SAMPLES / f"{name}.pcz", expected["symbols_sha256"])
    assert all(result.survivors) and len(result.survivors) == expected["info"]["frames"]


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from pacodec.data import record_atari
    from pacodec.video import fit

    return np.stack([fit(f, 160, 200) for f in record_atari(game="ms_pacman", frames=130, seed=16)][-3:])


def _encode(path: Path, frames: np.ndarray, **kwargs) -> Path:
    with pacodec.Writer(path, fps=30, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return path


SHIPPED_IDS = sorted(m["id"] for m in json.loads((SHIPPED / "manifest.json").read_text())["models"]
                     if m["id"] not in ("pac-res", "pac-key", "pac-ctx", "pac-ctx2", "pac-ctx3"))   # they only serve: models[1] … models[3]


def test_every_shipped_id_is_covered():
    from tools.specread.payloads import layout_of

    assert len(SHIPPED_IDS) == 17
    assert {layout_of(i)[0] for i in SHIPPED_IDS} == {"fixed", "entropy", "two-layer"}


@pytest.mark.parametrize("model_id", SHIPPED_IDS)
def test_specread_matches_fresh_intra_files_of_every_shipped_id(tmp_path, frames, model_id):
    _same_as_pacodec(_encode(tmp_path / "a.pcz", frames[:2], model=model_id, gop=1))


@pytest.mark.parametrize("quantizer", ["none", "scale", "kmeans"])
def test_specread_matches_every_fixed_width_quantizer(tmp_path, frames, quantizer):
    result = _same_as_pacodec(_encode(tmp_path / "a.pcz", frames[:2], model="conv4", quantizer=quantizer))
    assert (result.container.params is not None) == (quantizer == "kmeans")


@pytest.mark.parametrize("model_id", ["pac-q2", "pac-q9"])
def test_specread_matches_fresh_predicted_files(tmp_path, frames, model_id):
    """GOP mode: §13 P-frames (pac-q2, with pac-res) and two-layer ones with 4×4 blocks
    taken from up to two references (pac-q9)."""
    n = 2 if model_id == "pac-q2" else 3   # pac-q2's P-frame search is the slow one
    result = _same_as_pacodec(_encode(tmp_path / "a.pcz", frames[:n], model=model_id, gop=4))
    assert result.info["predicted_frames"] == n - 1
    if model_id == "pac-q9":   # 3.0 and later: Atari frames are far from pac-key's maze, coded on their own
        assert result.info["key_frames"] == {"own": 1, "reference": 0}


@pytest.mark.parametrize("model_id, gop, version", [("conv4", 1, "1.1"), ("pac-q9", 4, "12.1")])
def test_specread_reads_letterboxed_files_of_both_majors(tmp_path, frames, model_id, gop, version):
    """§3.2.1: a padded file is x.1 and both readers agree on its fit and picture."""
    wide = np.ascontiguousarray(np.concatenate([frames[:2], frames[:2]], axis=2))   # 320x200: twice as wide
    with pacodec.Writer(tmp_path / "a.pcz", model=model_id, gop=gop, fps=30, fit="pad") as writer:
        for frame in wide:
            writer.write(frame)
    result = _same_as_pacodec(tmp_path / "a.pcz")
    assert result.info["version"] == version
    assert result.info["fit"] == "pad" and result.info["picture"] == [0, 50, 160, 100]


def test_specread_imports_neither_pacodec_nor_its_libraries():
    code = ("import sys\n"
            "for name in ('pacodec', 'constriction', 'construct', 'torch', 'safetensors'):\n"
            "    sys.modules[name] = None\n"
            "from tools.specread.__main__ import main\n"
            f"sys.exit(main([{str(SAMPLES / 'pac-q8-gop4.pcz')!r}, '--weights', {str(SHIPPED)!r}, '--json']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = json.loads((SAMPLES / "pac-q8-gop4.json").read_text())
    assert json.loads(done.stdout)["symbols_sha256"] == expected["symbols_sha256"]


def test_specread_refuses_tables_that_differ_from_the_header(tmp_path):
    data = bytearray((SAMPLES / "pac-q3-intra.pcz").read_bytes())
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "pac.safetensors").write_bytes(b"")   # no file with the header's sha256
    path = tmp_path / "a.pcz"
    path.write_bytes(bytes(data))
    with pytest.raises(specread.Refused, match="no weights"):
        specread.read(path, [weights])


# -- damage: both readers agree on what survives --------------------------------
def _damage(data: bytes, rng: random.Random, header_size: int) -> bytes:
    out = bytearray(data)
    kind = rng.choice(["flip", "flip", "flips", "zeros", "cut", "cut-flip"])
    if kind.startswith("cut"):
        out = out[: rng.randrange(header_size + 1, len(out))]
    if kind != "cut":
        for _ in range(1 if kind == "flip" else rng.randrange(2, 6)):
            at = rng.randrange(header_size, len(out))
            if kind == "zeros":
                out[at:at + rng.randrange(1, 40)] = bytes(len(out[at:at + 40]))[: rng.randrange(1, 40)]
            else:
                out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def _pacodec_survivors(path: Path):
    try:
        with pacodec.open(path, salvage=True) as reader:
            n = sum(1 for _ in reader)
            lost = set(reader.damaged)
    except PacodecError as exc:
        return f"refused: {type(exc).__name__}"
    return [i not in lost for i in range(n)]


def _specread_survivors(path: Path):
    try:
        result = specread.read(path, [SHIPPED], salvage=True)
    except specread.Refused:
        return "refused"
    return result.survivors


@pytest.mark.parametrize("name,cases", [("pac-q3-gop4", 14), ("pac-q8-gop4", 8), ("conv4-naive", 8)])
def test_both_readers_agree_on_which_frames_survive_damage(tmp_path, name, cases):
    original = (SAMPLES / f"{name}.pcz").read_bytes()
    header_size = specread.read(SAMPLES / f"{name}.pcz", symbols=False).container.header.size
    rng = random.Random(16)
    outcomes = set()
    for case in range(cases):
        path = tmp_path / f"{case}.pcz"
        path.write_bytes(_damage(original, rng, header_size))
        ours, theirs = _pacodec_survivors(path), _specread_survivors(path)
        if isinstance(ours, str):
            assert theirs == "refused", (case, ours)
        else:
            assert theirs == ours, case
            outcomes.add((len(ours), sum(ours)))
    assert len(outcomes) >= 3   # the damage varied what was lost: the test saw real cases


@pytest.mark.parametrize("name", GOLDEN)
def test_info_of_a_cut_file_is_the_spec_s(tmp_path, name):
    """§7.1, §19: `info` describes a cut file (whole records; the tail in other_bytes)
    whatever its model, as the spec's reader does; strict decoding refuses it."""
    data = (SAMPLES / f"{name}.pcz").read_bytes()
    for cut in (len(data) - 21, len(data) * 2 // 3, 400):
        path = tmp_path / f"cut{cut}.pcz"
        path.write_bytes(data[:cut])
        facts = api.probe(path)
        assert facts == specread.read(path, salvage=True, symbols=False).info
        assert not facts["complete"] and sum(facts["parts"].values()) + facts["other_bytes"] == cut
        with pytest.raises(specread.Refused, match="cut"):
            specread.read(path, symbols=False)
        with pytest.raises(PacodecError, match="cut|ends"):
            with pacodec.open(path) as reader:
                list(reader)


def test_index_totals_must_be_shortest_form_varints(tmp_path):
    """§1 holds in the index too: both readers refuse a total written in a longer form."""
    import struct
    import zlib

    data = (SAMPLES / "conv4-naive.pcz").read_bytes()
    index_at = struct.unpack_from("<Q", data, len(data) - 20)[0]
    assert data[index_at] == 0x7F and data[index_at + 1] < 0x80
    payload = data[index_at + 2 : len(data) - 24]
    longer = bytes([payload[0] | 0x80, 0x00]) + payload[1:]   # frame_count in two bytes
    record = bytes([0x7F, len(longer)]) + longer
    record += struct.pack("<I", zlib.crc32(record) & 0xFFFFFFFF)
    path = tmp_path / "a.pcz"
    path.write_bytes(data[:index_at] + record + data[-20:])
    with pytest.raises(specread.Refused, match="shortest"):
        specread.read(path, symbols=False)
    with pytest.raises(PacodecError):
        api.probe(path)


# -- versions (§9) and stream rules (§3.6) ------------------------------------------
def _rebuild(data: bytes, *, major: int = 1, minor: int = 0, extension: bytes = b"", body_edit=None) -> bytes:
    """The file with another version, header extension or body, its records unchanged
    and its index and trailer moved to match (CRCs recomputed)."""
    import struct
    import zlib

    from tools.specread.container import read_varint

    crc = lambda b: struct.pack("<I", zlib.crc32(b) & 0xFFFFFFFF)  # noqa: E731
    body_length = struct.unpack_from("<H", data, 6)[0]
    body = bytearray(data[8 : 8 + body_length]) + extension
    if body_edit:
        body_edit(body)
    head = b"PCZ\x00" + bytes([major, minor]) + struct.pack("<H", len(body)) + bytes(body)
    head += crc(head)
    shift = len(head) - (12 + body_length)
    index_at = struct.unpack_from("<Q", data, len(data) - 20)[0]
    length, pos = read_varint(data, index_at + 1, len(data))
    payload = data[pos : pos + length]
    at = 0
    for _ in range(11):
        _, at = read_varint(payload, at, len(payload))
    frame0, at2 = read_varint(payload, at, len(payload))
    offset0, at3 = read_varint(payload, at2, len(payload))

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    payload = payload[:at] + varint(frame0) + varint(offset0 + shift) + payload[at3:]
    record = b"\x7f" + varint(len(payload)) + payload
    record += crc(record)
    trailer = struct.pack("<QI", index_at + shift, struct.unpack_from("<I", data, len(data) - 12)[0]) + b"PCZE"
    return head + data[12 + body_length : index_at] + record + trailer + crc(trailer)


def _fit_fields(fit: int, x: int, y: int, w: int, h: int) -> bytes:
    """§3.2.1's 9 bytes: fit and the picture rectangle."""
    import struct

    return struct.pack("<BHHHH", fit, x, y, w, h)


def test_a_newer_minor_version_with_header_fields_appended_decodes(tmp_path):
    """A 1.2 file: §3.2.1's fields, then fields this build does not know, skipped."""
    name = "pac-q3-intra"
    expected = json.loads((SAMPLES / f"{name}.json").read_text())["symbols_sha256"]
    path = tmp_path / "v12.pcz"
    path.write_bytes(_rebuild((SAMPLES / f"{name}.pcz").read_bytes(), minor=2,
                              extension=_fit_fields(1, 0, 10, 160, 180) + b"\x07new"))
    result = _same_as_pacodec(path, expected)
    assert result.info["version"] == "1.2" and result.container.header.extension == b"\x07new"
    assert result.info["fit"] == "pad" and result.info["picture"] == [0, 10, 160, 180]


def test_both_readers_hold_a_1_1_header_to_its_fields(tmp_path):
    """§3.2.1, §3.5: a x.1 header has exactly its 9 bytes after gop, a known fit, and a
    picture inside the frame (whole for stretch)."""
    data = (SAMPLES / "conv4-naive.pcz").read_bytes()
    good = tmp_path / "good.pcz"
    good.write_bytes(_rebuild(data, minor=1, extension=_fit_fields(0, 0, 0, 160, 200)))
    result = _same_as_pacodec(good)
    assert result.info["fit"] == "stretch" and result.info["picture"] == [0, 0, 160, 200]
    for name, extension, why in (
        ("short", _fit_fields(1, 0, 0, 160, 200)[:8], "fit|ends inside"),
        ("long", _fit_fields(1, 0, 0, 160, 200) + b"\0", "after"),
        ("unknown-fit", _fit_fields(2, 0, 0, 160, 200), "fit"),
        ("outside", _fit_fields(1, 0, 20, 160, 190), "picture"),
        ("empty", _fit_fields(1, 0, 20, 160, 0), "picture"),
        ("stretch-not-whole", _fit_fields(0, 0, 10, 160, 180), "picture"),
    ):
        path = tmp_path / f"{name}.pcz"
        path.write_bytes(_rebuild(data, minor=1, extension=extension))
        with pytest.raises(FormatError, match=why):
            api.probe(path)
        with pytest.raises(specread.Refused):
            specread.read(path, [SHIPPED])


def test_versions_a_reader_cannot_read_are_refused_naming_them(tmp_path):
    data = (SAMPLES / "conv4-naive.pcz").read_bytes()
    quantizer_at = 17 + 1 + len("conv4") + 32   # §3.2: the quantizer byte after the one model

    def unknown_quantizer(body):
        body[quantizer_at] = 9

    fields = _fit_fields(0, 0, 0, 160, 200)   # §3.2.1, which minor 2 keeps
    for version, kwargs in (("13.0", {"major": 13}),
                            ("12.2", {"major": 12, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("11.2", {"major": 11, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("10.2", {"major": 10, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("9.2", {"major": 9, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("8.2", {"major": 8, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("7.2", {"major": 7, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("6.2", {"major": 6, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("5.2", {"major": 5, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("4.2", {"major": 4, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("3.2", {"major": 3, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("2.2", {"major": 2, "minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("1.2", {"minor": 2, "extension": fields, "body_edit": unknown_quantizer}),
                            ("1.2", {"minor": 2, "extension": _fit_fields(7, 0, 0, 160, 200)})):
        path = tmp_path / f"v{version}.pcz"
        path.write_bytes(_rebuild(data, **kwargs))
        with pytest.raises(PacodecError, match=version.replace(".", r"\.")):
            pacodec.open(path)
        with pytest.raises(specread.Refused, match=version.replace(".", r"\.")):
            specread.read(path, [SHIPPED])
    # An older file (1.0, the oldest) with the same unknown value is refused as damaged.
    path = tmp_path / "v1.0.pcz"
    path.write_bytes(_rebuild(data, body_edit=unknown_quantizer))
    with pytest.raises(PacodecError, match="quantizer"):
        pacodec.open(path)


def test_both_readers_refuse_a_stream_that_breaks_the_coding_rules(tmp_path):
    """§3.6: a scale stream whose frame_param_bytes is not 8."""
    data = (SAMPLES / "conv4-naive.pcz").read_bytes()
    fpb_at = 17 + 1 + len("conv4") + 32 + 3 + 4 * 3   # after quantizer, dtype, ndim and a 3-D shape

    def scale_without_params(body):
        assert body[fpb_at:fpb_at + 2] == b"\0\0"
        body[fpb_at - 15] = 2   # quantizer 2 (scale), frame_param_bytes still 0

    path = tmp_path / "a.pcz"
    path.write_bytes(_rebuild(data, body_edit=scale_without_params))
    with pytest.raises(PacodecError, match="frame_param_bytes"):
        pacodec.open(path)
    with pytest.raises(specread.Refused, match="3.6"):
        specread.read(path, [SHIPPED])


def test_both_readers_refuse_a_fixed_width_payload_of_the_wrong_length(tmp_path):
    """§10: a naive payload one byte short of its code entries."""
    from pacodec.pcz import PczReader, PczWriter

    with open(SAMPLES / "conv4-naive.pcz", "rb") as f:
        reader = PczReader(f)
        header, first = reader.header, next(iter(reader)).payload
    path = tmp_path / "short.pcz"
    with open(path, "wb") as f, PczWriter(f, header) as writer:
        writer.write_frame(first[:-1])
    with pytest.raises(PacodecError, match="16639"):
        with pacodec.open(path) as decoded:
            list(decoded)
    with pytest.raises(specread.Refused, match="16639"):
        specread.read(path, [SHIPPED])
