"""Entropy coder 1 is what formats/pcz.md §15 says, on whatever constriction is installed.

formats/vectors/range-coder.json holds tables, symbols and the u32 words they code to
(tools/make_vectors.py). pyproject.toml pins constriction; these tests prove the pin
holds: the installed library, called as pacodec.entropy calls it, makes exactly those
words and decodes them back, so a release that changed the bits fails here first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pacodec.entropy import Categorical, RangeDecoder, RangeEncoder, TableCoder, TrimmedDecoder, trimmed_stream
from pacodec.errors import FormatError

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "formats" / "vectors" / "range-coder.json").read_text())
CASES = {v["name"]: v for v in VECTORS["vectors"]}


def _models(tables):
    return [Categorical(np.asarray(t, np.float64) / float(1 << 16), perfect=False) for t in tables]


@pytest.mark.parametrize("name", sorted(CASES))
def test_constriction_encodes_the_vectors(name):
    case = CASES[name]
    models = _models(case["tables"])
    encoder = RangeEncoder()
    for t, symbols in case["segments"]:
        encoder.encode(np.asarray(symbols, np.int32), models[t])
    assert [int(w) for w in encoder.get_compressed()] == case["words"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_constriction_decodes_the_vectors(name):
    case = CASES[name]
    models = _models(case["tables"])
    decoder = RangeDecoder(np.asarray(case["words"], np.uint32))
    for t, symbols in case["segments"]:
        assert [int(s) for s in decoder.decode(models[t], len(symbols))] == symbols
    assert decoder.maybe_exhausted()


@pytest.mark.parametrize("name", sorted(CASES))
def test_trimmed_streams_are_the_vectors_and_decode(name):
    """Format 10.x's trimmed streams (§15.4): pacodec.entropy.trimmed_stream makes the
    vectors' bytes from constriction's state, and constriction decodes them, read
    big-endian with zero bytes past the end, to the symbols."""
    case = CASES[name]
    models = _models(case["tables"])
    encoder = RangeEncoder()
    for t, symbols in case["segments"]:
        encoder.encode(np.asarray(symbols, np.int32), models[t])
    payload = trimmed_stream(encoder)
    assert payload.hex() == case["trimmed"]
    if not case["segments"] or not any(len(s) for _, s in case["segments"]):
        assert payload == b""
        return
    decoder = TrimmedDecoder(payload)
    for t, symbols in case["segments"]:
        assert [int(s) for s in decoder.decode(models[t], len(symbols))] == symbols
    decoder.finish()


def test_a_trimmed_stream_is_exactly_the_shortest_form_of_its_symbols():
    """§15.4: a decoder refuses an empty trimmed stream or one ending in a zero byte at
    once, and after its symbols one with a byte more, or another value that decodes
    to the same symbols: only the shortest, least form is a stream."""
    case = CASES["random 0"]
    models = _models(case["tables"])
    payload = bytes.fromhex(case["trimmed"])
    for bad in (b"", payload + b"\0"):
        with pytest.raises(FormatError):
            TrimmedDecoder(bad)
    original = [symbols for _, symbols in case["segments"]]
    same = 0
    for bad in (payload + b"\x01", payload + b"\xff", payload[:-1] + bytes([payload[-1] ^ 1]) + b"\x80"):
        decoder = TrimmedDecoder(bad)
        decoded = [[int(s) for s in decoder.decode(models[t], len(symbols))] for t, symbols in case["segments"]]
        if decoded == original:  # the same symbols in other bytes: not the stream of them
            same += 1
            with pytest.raises(FormatError):
                decoder.finish()
        else:  # other symbols: their stream only if it is their shortest form
            encoder = RangeEncoder()
            for t, symbols in zip((t for t, _ in case["segments"]), decoded):
                encoder.encode(np.asarray(symbols, np.int32), models[t])
            if trimmed_stream(encoder) != bad:
                with pytest.raises(FormatError):
                    decoder.finish()
    assert same >= 1


def test_trimming_saves_the_seal_s_spare_bytes():
    """Across the vectors the trimmed streams are shorter than the words, never longer:
    the seal's one or two words (§15.2) mostly become a byte or two."""
    words = sum(4 * len(case["words"]) for case in CASES.values())
    cut = sum(len(case["trimmed"]) // 2 for case in CASES.values())
    assert all(len(case["trimmed"]) // 2 <= 4 * len(case["words"]) for case in CASES.values())
    assert cut <= words - 2 * sum(1 for case in CASES.values() if case["words"])


def test_words_too_many_are_not_exhausted():
    """§15.3's end test, which pacodec uses to call a payload corrupt. (One extra word
    can pass it: the decoder reads up to one word past a stream whose seal was a single
    word, as if it were zero bits, so §15.3 defines the end by this test, not by a count.)"""
    case = CASES["random 0"]
    models = _models(case["tables"])
    decoder = RangeDecoder(np.asarray(case["words"] + [0, 0], np.uint32))
    for t, symbols in case["segments"]:
        decoder.decode(models[t], len(symbols))
    assert not decoder.maybe_exhausted()


def test_the_table_coder_writes_the_vectors_as_little_endian_words():
    """pacodec.entropy.TableCoder (§10: row c codes channel c) makes the same words."""
    case = CASES["random 2"]
    table = case["tables"][0]
    symbols = [s for t, s in case["segments"] if t == 0][0]
    coder = TableCoder(np.asarray([table], np.int32))
    payload = coder.encode(np.asarray([symbols]))
    encoder = RangeEncoder()
    encoder.encode(np.asarray(symbols, np.int32), _models([table])[0])
    assert payload == np.asarray(encoder.get_compressed(), "<u4").tobytes()
    assert coder.decode(payload, len(symbols)).tolist() == [symbols]
    with pytest.raises(FormatError):
        coder.decode(payload + bytes(8), len(symbols))


def test_the_vectors_cover_the_coder_s_corners():
    """Empty stream, carries into held-back words, a stream ending with one held back."""
    assert CASES["empty"]["words"] == []
    assert {"ends while a word is held back", "rare symbols in a row", "255-symbol table"} <= set(CASES)
    assert VECTORS["made_with"] == "constriction 0.5.0"
