"""Write the range-coder conformance vectors, formats/vectors/range-coder.json.

    python tools/make_vectors.py

Each vector is a list of integer tables (frequencies summing to 2^16), a list of
segments (table number, symbols), and the u32 words that entropy coder 1
(formats/pcz.md §15) turns them into, made here with the library pacodec codes with
(constriction, as pacodec.entropy calls it). tests/test_range_vectors.py checks that
the installed constriction still makes exactly these words, and
tests/test_specread.py that the spec's own coder (tools/specread) does. The vectors
are seeded: regenerate only when the coder changes on purpose (a new coder id).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "formats" / "vectors" / "range-coder.json"
SEED = 16


def _table(rng: np.random.Generator, n: int, skew: float) -> list[int]:
    """n positive frequencies summing to 2^16 (every entry ≥ 1, the rest by weight)."""
    weights = rng.random(n) ** skew
    free = (1 << 16) - n
    table = 1 + np.floor(weights / weights.sum() * free).astype(np.int64)
    table[int(np.argmax(table))] += (1 << 16) - table.sum()
    return [int(v) for v in table]


def cases() -> list[dict]:
    rng = np.random.default_rng(SEED)
    mode = [58000, 4000, 3536]  # pcz.md §13's MODE and VECTOR tables
    vector = [1000, 2000, 4000, 9000, 33536, 9000, 4000, 2000, 1000]
    extreme = [1, 65534, 1]      # a near-certain symbol next to the rarest possible
    flat2 = [32768, 32768]
    wide = _table(rng, 255, 6.0)  # 2R + 1 = 255 symbols, peaked like a latent channel's
    out = [
        {"name": "empty", "tables": [mode], "segments": []},
        {"name": "one symbol", "tables": [mode], "segments": [[0, [0]]]},
        {"name": "one rare symbol", "tables": [extreme], "segments": [[0, [2]]]},
        {"name": "mode table, all skip", "tables": [mode], "segments": [[0, [0] * 130]]},
        {"name": "modes then vectors", "tables": [mode, vector],
         "segments": [[0, [0, 1, 2, 0, 0, 2, 1, 0]], [1, [4, 5, 3, 4, 0, 8, 4, 4, 2, 6]]]},
        {"name": "rare symbols in a row", "tables": [extreme], "segments": [[0, [0, 2, 0, 2, 2, 0, 1, 2, 0, 0]]]},
        {"name": "certain symbols in a row", "tables": [extreme], "segments": [[0, [1] * 300]]},
        {"name": "flat binary", "tables": [flat2], "segments": [[0, [int(v) for v in rng.integers(0, 2, 200)]]]},
    ]
    for k in range(6):  # random tables and symbols drawn from them; several tables interleaved
        tables = [_table(rng, int(n), float(s)) for n, s in zip(rng.integers(2, 70, 3), rng.uniform(0.5, 8, 3))]
        segments = []
        for _ in range(int(rng.integers(3, 8))):
            t = int(rng.integers(0, len(tables)))
            p = np.asarray(tables[t], np.float64) / (1 << 16)
            segments.append([t, [int(v) for v in rng.choice(len(p), size=int(rng.integers(1, 400)), p=p)]])
        out.append({"name": f"random {k}", "tables": tables, "segments": segments})
    p = np.asarray(wide, np.float64) / (1 << 16)
    drawn = [int(v) for v in rng.choice(255, size=2000, p=p)]
    out.append({"name": "255-symbol table", "tables": [wide], "segments": [[0, drawn]]})
    cut = _held_back_prefix(wide, drawn)
    out.append({"name": "ends while a word is held back", "tables": [wide], "segments": [[0, drawn[:cut]]]})
    return out


def _held_back_prefix(table: list[int], symbols: list[int]) -> int:
    """The shortest prefix after which the encoder holds a word back (§15.2's inverted
    situation), so the vectors cover the end of a stream in that state. Found with the
    spec's coder (tools/specread); the words themselves still come from constriction."""
    from tools.specread.rangecoder import RangeEncoder, model

    cdf, encoder = model(table), RangeEncoder()
    for n, s in enumerate(symbols, start=1):
        encoder.encode(s, cdf)
        if encoder.inverted:
            return n
    raise AssertionError("no prefix ends in the inverted situation")


def encode(tables: list[list[int]], segments: list) -> tuple[list[int], str]:
    """The words pacodec's coder makes (pacodec.entropy: float64 table / 2^16,
    perfect=False), and their trimmed form (§15.4, hex)."""
    from pacodec.entropy import Categorical, RangeEncoder, trimmed_stream

    models = [Categorical(np.asarray(t, np.float64) / float(1 << 16), perfect=False) for t in tables]
    encoder = RangeEncoder()
    for t, symbols in segments:
        encoder.encode(np.asarray(symbols, np.int32), models[t])
    return [int(w) for w in encoder.get_compressed()], trimmed_stream(encoder).hex()


def main() -> int:
    from importlib.metadata import version

    vectors = []
    for case in cases():
        words, trimmed = encode(case["tables"], case["segments"])
        vectors.append({**case, "words": words, "trimmed": trimmed})
    doc = {"coder": "entropy coder 1, formats/pcz.md §15",
           "made_with": f"constriction {version('constriction')}",
           "words": "u32 values; a payload stores them in this order, each little-endian",
           "trimmed": "the same stream in §15.4's trimmed form (version 10.x), hex",
           "vectors": vectors}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{OUT}: {len(vectors)} vectors, {sum(len(v['words']) for v in vectors)} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
