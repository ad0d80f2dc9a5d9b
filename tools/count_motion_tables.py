"""Count the integer tables of the 4×4 re-prediction's side information (pacodec/blockmotion.py)
and write them to pacodec/motion_tables.py.

    python tools/count_motion_tables.py [--rounds 2] [--model pac-q8] [--all] [CLIPS...]
    python tools/count_motion_tables.py --wide --model pac-q6,pac-q8,pac-q10   (format 8.0's tables)
    python tools/count_motion_tables.py --flags --fresh   (format 9.0's block flag tables)
    python tools/count_motion_tables.py --far --fresh --rounds 3 --model pac-q6,pac-q8,pac-q10   (format 12.0's)

Encodes each training clip (default: clip0, clip4, clip5, clip6, clip7 of
../shared/data/pacman, never the validation or test clips) in a real closed loop at
the default GOP with ``--model``, counts every predicted frame's choice and vector
symbols in their contexts, and freezes the counts as tables (each row positive,
summing to 2^16). The encoder's vector choice is priced with the tables themselves,
so each round encodes with the tables of the round before. The tables are part of
the format (formats/pcz.md §14.5): changing them changes what 2.x files mean, so a
new count needs a new format version. So by default it counts only the half-pixel
offset tables format 6.0 added and keeps the choice and vector tables of 2.0 as they
are; ``--all`` recounts those too (for a new format, not for 6.x). ``--wide`` counts
format 8.0's tables (pcz.md §14.10: choices with the references' activity in exact
GOPs, vectors from a same-reference predictor, offsets by reference) and keeps every
older table as it is; a sparse row leans on its parent's distribution (``backoff``).
``--flags`` counts format 9.0's tables of the 16×16 block flags (pcz.md §14.11: one
per refined level pac-q6 … q10, rows by refine.flag_contexts) and keeps every other;
``--fresh`` starts them from each level's single flag table in its weights. ``--far``
counts format 12.0's tables (pcz.md §14.14: the vector components within ±8 in 8.0's
rows, the far index of a block of choice 4 by its neighbours' far index) and keeps
every other; ``--fresh`` starts them from 8.0's vector tables widened and a far index
table that favours the key frame and a neighbour's index.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pacodec import api, blockmotion  # noqa: E402
from pacodec.models.pac import integer_table  # noqa: E402

CLIPS = ROOT / ".." / "shared" / "data" / "pacman"
TRAINING = ("clip0", "clip4", "clip5", "clip6", "clip7")
OUT = ROOT / "pacodec" / "motion_tables.py"
SPEC = ROOT / "formats" / "pcz.md"
START, END = "<!-- motion-tables: written by tools/count_motion_tables.py -->", "<!-- /motion-tables -->"


def spec_tables(choice: np.ndarray, vector: np.ndarray, fraction: np.ndarray) -> str:
    """The tables as the markdown formats/pcz.md §14.5 shows them."""
    lines = ["CHOICE_TABLES (context: frequencies of choice 0, 1, 2, 3, 4):", "", "```"]
    lines += [f"{k:2d}: {' '.join(f'{int(v):5d}' for v in row)}" for k, row in enumerate(choice)]
    lines += ["```", "", "VECTOR_TABLES (k: frequencies of 0 … 16, i.e. differences −8 … 8):", "", "```"]
    lines += [f"{k}: {' '.join(str(int(v)) for v in row)}" for k, row in enumerate(vector)]
    lines += ["```", "", "FRACTION_TABLES, 6.x (context: frequencies of offset 0, 1, 2, 3):", "", "```"]
    lines += [f"{k}: {' '.join(f'{int(v):5d}' for v in row)}" for k, row in enumerate(fraction)]
    return "\n".join(lines + ["```"])


START8, END8 = "<!-- motion-tables-8: written by tools/count_motion_tables.py -->", "<!-- /motion-tables-8 -->"


START9, END9 = "<!-- flag-tables-9: written by tools/count_motion_tables.py -->", "<!-- /flag-tables-9 -->"


def write_spec_flags(flags: np.ndarray) -> None:
    """formats/pcz.md §14.11's copy of the 9.0 flag tables."""
    lines = ["FLAG_TABLES_9 (level: for contexts 0 … 7, the frequencies of flag 0 and 1):", "", "```"]
    for level, table in zip(REFINED, flags):
        lines.append(f"{level:7s} " + "  ".join(f"{int(a)} {int(b)}" for a, b in table))
    body = "\n".join(lines + ["```"])
    text = SPEC.read_text()
    start, end = text.index(START9) + len(START9), text.index(END9)
    SPEC.write_text(text[:start] + "\n" + body + "\n" + text[end:])


def _spec_tables(start: str, end: str, tables: list[tuple[str, np.ndarray]]) -> None:
    """Write ``tables`` (title, table) between formats/pcz.md's markers ``start`` and
    ``end``, each row as "k: frequencies"; nothing if the spec has no such markers (its
    section is written by hand first, with the markers)."""
    lines = []
    for title, table in tables:
        lines += [title, "", "```"] + [f"{k:3d}: {' '.join(f'{int(v):5d}' for v in row)}"
                                       for k, row in enumerate(table)] + ["```", ""]
    text = SPEC.read_text()
    if start not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    SPEC.write_text(f"{head}{start}\n" + "\n".join(lines[:-1]) + f"\n{end}{tail}")


def write_spec_wide(wide: dict[str, np.ndarray]) -> None:
    """formats/pcz.md §14.10's copy of the 8.0 tables."""
    _spec_tables(START8, END8, [("CHOICE_TABLES_8 (context: frequencies of choice 0 … 4):", wide["choice"]),
                                ("VECTOR_X_TABLES_8 (row: frequencies of dx − px + 8 = 0 … 16):", wide["vector_x"]),
                                ("VECTOR_Y_TABLES_8 (row: frequencies of dy − py + 8 = 0 … 16):", wide["vector_y"]),
                                ("FRACTION_TABLES_8 (row: frequencies of offset 0 … 3):", wide["fraction"])])


def write_spec(choice: np.ndarray, vector: np.ndarray, fraction: np.ndarray) -> None:
    text = SPEC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    SPEC.write_text(f"{head}{START}\n{spec_tables(choice, vector, fraction)}\n{END}{tail}")


def count(clips: list[Path], model: str, choices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    choice_counts = np.zeros((blockmotion.CHOICE_CONTEXTS, choices), np.int64)
    vector_counts = np.zeros((blockmotion.VECTOR_CONTEXTS, blockmotion.DIFFS), np.int64)
    fraction_counts = np.zeros((blockmotion.FRACTION_CONTEXTS, blockmotion.FRACTIONS), np.int64)
    original = blockmotion.MotionCoder.encode

    def counting(self, encoder, field, previous, refs=None):  # refs: what 8.x's contexts read
        blockmotion.count(field, previous, choice_counts, vector_counts, fraction_counts)
        return original(self, encoder, field, previous, refs)

    blockmotion.MotionCoder.encode = counting
    try:
        encode_each(clips, [model])
    finally:
        blockmotion.MotionCoder.encode = original
    return choice_counts, vector_counts, fraction_counts


#: A sparse 8.x row's prior: this many symbols drawn from its parent row's distribution.
BACKOFF = 4.0


def backoff(counts: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Rows of ``counts`` (C, S) smoothed toward their parent rows (``parent``: C row
    indices into the sums of counts over rows sharing a parent), each parent itself
    smoothed by half a count a symbol: frequency tables that trust a row's own counts
    once it has many and fall back on the parent's shape where it has few."""
    groups = np.zeros((parent.max() + 1, counts.shape[1]))
    np.add.at(groups, parent, counts)
    groups += 0.5
    prior = groups / groups.sum(axis=1, keepdims=True)
    return integer_table(counts + BACKOFF * prior[parent])


def encode_each(clips: list[Path], models) -> None:
    """Encode every clip with every model id, at the default GOP, into a scratch file:
    the counting hooks installed around it see each frame as the encoder codes it."""
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for level in models:
                report = api.encode(clip, Path(tmp) / "out.pcz", model=level, force=True)
                print(f"  {clip.name} {level}: {report['frames']} frames, {report['file_bytes']} bytes", flush=True)


def count_wide(clips: list[Path], model: str, far: bool = False) -> dict[str, np.ndarray]:
    """8.x's symbols (``far``: 12.x's, vectors within ±8 and the far indices) of every
    predicted frame of ``clips`` encoded with each of ``model`` (ids separated by
    commas: every level shares the tables)."""
    width = 4 * (blockmotion.SEARCH_12 if far else blockmotion.SEARCH) + 1
    counts = {"choice": np.zeros((blockmotion.CHOICE_CONTEXTS_8, 1 + blockmotion.REFERENCES), np.int64),
              "choice2": np.zeros((blockmotion.CHOICE_CONTEXTS, 1 + blockmotion.REFERENCES), np.int64),
              "vector_x": np.zeros((blockmotion.VECTOR_X_CONTEXTS_8, width), np.int64),
              "vector_y": np.zeros((blockmotion.VECTOR_Y_CONTEXTS_8, width), np.int64),
              "fraction": np.zeros((blockmotion.FRACTION_CONTEXTS_8, blockmotion.FRACTIONS), np.int64)}
    if far:
        counts["far"] = np.zeros((blockmotion.FAR_CONTEXTS, blockmotion.FAR), np.int64)
    original = blockmotion.MotionCoder.encode

    def counting(self, encoder, field, previous, refs=None):
        if self.far != far:
            raise SystemExit(f"this build's encoder writes {'12.x' if self.far else '8.x … 11.x'} fields: "
                             f"it cannot count {'12.0' if far else '8.0'}'s tables")
        blockmotion.count_wide(field, previous, refs, counts)
        return original(self, encoder, field, previous, refs)

    blockmotion.MotionCoder.encode = counting
    try:
        encode_each(clips, model.split(","))
    finally:
        blockmotion.MotionCoder.encode = original
    return counts


def _vector_rows(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vector tables (8.x's or 12.x's) from their counts: each row leans on its
    predictor kind's rows of every reference."""
    refs = blockmotion.REFERENCES
    return {"vector_x": backoff(counts["vector_x"], np.arange(blockmotion.VECTOR_X_CONTEXTS_8) // refs),
            "vector_y": backoff(counts["vector_y"], (np.arange(blockmotion.VECTOR_Y_CONTEXTS_8) // (2 * refs)) * 2
                                + np.arange(blockmotion.VECTOR_Y_CONTEXTS_8) % 2)}


def wide_tables(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 8.x tables from ``count_wide``'s counts: choice rows lean on their 2.0
    context (all activities), vector and offset rows on their predictor kind's (or
    6.x context's) rows of every reference."""
    activities = blockmotion.CHOICE_CONTEXTS_8 // blockmotion.CHOICE_CONTEXTS
    refs = blockmotion.REFERENCES
    return {"choice": backoff(counts["choice"], np.arange(blockmotion.CHOICE_CONTEXTS_8) // activities),
            **_vector_rows(counts),
            "fraction": backoff(counts["fraction"], np.arange(blockmotion.FRACTION_CONTEXTS_8) // refs)}


def _shipped_wide(tables) -> dict[str, np.ndarray] | None:
    """The 8.0 tables ``tables`` (the motion_tables module) holds, kept as they are."""
    if not hasattr(tables, "CHOICE_TABLES_8"):
        return None
    return {"choice": tables.CHOICE_TABLES_8, "vector_x": tables.VECTOR_X_TABLES_8,
            "vector_y": tables.VECTOR_Y_TABLES_8, "fraction": tables.FRACTION_TABLES_8}


def provisional_wide() -> dict[str, np.ndarray]:
    """8.x tables before any count: each row its 2.0/6.0 counterpart's (round 1 prices
    vectors with these)."""
    from pacodec import motion_tables as mt

    refs, act = blockmotion.REFERENCES, blockmotion.CHOICE_CONTEXTS_8 // blockmotion.CHOICE_CONTEXTS
    x = np.arange(blockmotion.VECTOR_X_CONTEXTS_8)
    kind = np.minimum(x // refs, 2)
    return {"choice": np.repeat(mt.CHOICE_TABLES, act, axis=0), "vector_x": mt.VECTOR_TABLES[kind],
            "vector_y": np.repeat(mt.VECTOR_TABLES[kind], 2, axis=0),
            "fraction": np.repeat(mt.FRACTION_TABLES, refs, axis=0)}


#: (name, comment) of each table motion_tables.py holds, in its order; the 8.0 ones last.
TABLES = (
    ("CHOICE_TABLES", "(CHOICE_CONTEXTS, 1 + REFERENCES): frequencies of a 4×4 block's choice per context."),
    ("VECTOR_TABLES", "(VECTOR_CONTEXTS, DIFFS): frequencies of a vector component's difference −8 … 8."),
    ("FRACTION_TABLES", "(FRACTION_CONTEXTS, FRACTIONS), format 6.x: frequencies of a taken block's half-pixel\n"
                        "#: offset fx + 2·fy per context."),
    ("CHOICE_TABLES_8", "(CHOICE_CONTEXTS_8, 1 + REFERENCES): a 4×4 block's choice in an exact GOP, context\n"
                        "#: 12 × 2.0's + 3 · a1 + a2 (the references' activity around the block)."),
    ("VECTOR_X_TABLES_8", "(VECTOR_X_CONTEXTS_8, DIFFS): dx − px, row 4 · predictor kind + reference − 1."),
    ("VECTOR_Y_TABLES_8", "(VECTOR_Y_CONTEXTS_8, DIFFS): dy − py, row 2 · (dx's row) + (dx ≠ px)."),
    ("FRACTION_TABLES_8", "(FRACTION_CONTEXTS_8, FRACTIONS): a half-pixel offset, row 4 · 6.x's context + reference − 1."),
    ("FLAG_TABLES_9", "(refined levels, FLAG_CONTEXTS, 2), format 9.0: frequencies of a 16×16 block's flag 0\n"
                      "#: and 1 per level (pac-q6 … q10) and context 2 · b + p (refine.flag_contexts)."),
    ("VECTOR_X_TABLES_12", "(VECTOR_X_CONTEXTS_8, 4 · SEARCH_12 + 1): dx − px + 16, rows as VECTOR_X_TABLES_8."),
    ("VECTOR_Y_TABLES_12", "(VECTOR_Y_CONTEXTS_8, 4 · SEARCH_12 + 1): dy − py + 16, rows as VECTOR_Y_TABLES_8."),
    ("FAR_TABLES_12", "(FAR_CONTEXTS, FAR): a block of choice 4's far index k = 0 … 12, row blockmotion.far_context."),
)


def write(choice: np.ndarray, vector: np.ndarray, fraction: np.ndarray, note: str,
          wide: dict[str, np.ndarray] | None = None, flags: np.ndarray | None = None,
          far: dict[str, np.ndarray] | None = None) -> None:
    tables = [choice, vector, fraction]
    if wide is not None:
        tables += [wide["choice"], wide["vector_x"], wide["vector_y"], wide["fraction"]]
        if flags is not None:
            tables.append(flags)
            if far is not None:
                tables += [far["vector_x"], far["vector_y"], far["far"]]
    blocks = []
    for (name, comment), table in zip(TABLES, tables):
        if name == "CHOICE_TABLES_8":
            blocks.append("# Format 8.0 (pcz.md §14.10, blockmotion.WideTables).\n")
        if name == "VECTOR_X_TABLES_12":
            blocks.append("# Format 12.0 (pcz.md §14.14, blockmotion.MotionCoder's far_tables).\n")
        if name == "FLAG_TABLES_9":
            blocks.append("# Format 9.0 (pcz.md §14.11, refine.flag_contexts).\n")
            body = "\n".join("    [" + ", ".join(f"[{int(a)}, {int(b)}]" for a, b in level) + "]," for level in table)
        else:
            body = "\n".join(f"    [{', '.join(str(int(v)) for v in row)}]," for row in table)
        blocks.append(f"#: {comment}\n{name} = np.array([\n{body}\n], dtype=np.int32)\n")
    OUT.write_text(f'''"""Integer tables of the 4×4 re-prediction's side information (blockmotion.py,
formats/pcz.md §14.5, §14.8, §14.10, §14.14) and of 9.0's block flags (refine.py, §14.11).
Generated by ``python tools/count_motion_tables.py``; do not edit: they are part of
the format (choices and vectors since 2.0, half-pixel offsets since 6.0, the wider
contexts' tables since 8.0, the flags' since 9.0, the far references' since 12.0). {note}"""

import numpy as np

''' + "\n".join(blocks))


REFINED = ("pac-q6", "pac-q7", "pac-q8", "pac-q9", "pac-q10")


def count_flags(clips: list[Path]) -> np.ndarray:
    """9.x: (levels, FLAG_CONTEXTS, 2) counts of the 16×16 block flags of every predicted
    frame of ``clips`` encoded at each refined level, in their contexts."""
    from pacodec import refine

    counts = np.zeros((len(REFINED), refine.FLAG_CONTEXTS, 2), np.int64)
    original = refine.RefineCoder.encode

    def counting(self, frame, base, refs=None, previous=None):
        payload, out = original(self, frame, base, refs, previous)
        if self.predicted and self.flag_tables is not None:
            ctx = refine.flag_contexts(out.motion.choice, getattr(refs[0], "symbols", None), *frame.shape[:2])
            np.add.at(counts[self.level], (ctx.ravel(), refine.block_flags(out.symbols).ravel().astype(np.int64)), 1)
        return payload, out

    refine.RefineCoder.encode = counting
    try:
        encode_each(clips, REFINED)
    finally:
        refine.RefineCoder.encode = original
    return counts


def provisional_flags() -> np.ndarray:
    """9.x flag tables before any count: every context of a level its weights' single table."""
    from pacodec import refine, zoo

    rows = []
    for level in REFINED:
        table = np.asarray(zoo.load(level)[0].refine_flag_table(), np.float64)
        rows.append(np.repeat(integer_table(table[None]), refine.FLAG_CONTEXTS, axis=0))
    return np.stack(rows)


def _shipped_far(tables) -> dict[str, np.ndarray] | None:
    """The 12.0 tables ``tables`` (the motion_tables module) holds, kept as they are."""
    if not hasattr(tables, "FAR_TABLES_12"):
        return None
    return {"vector_x": tables.VECTOR_X_TABLES_12, "vector_y": tables.VECTOR_Y_TABLES_12, "far": tables.FAR_TABLES_12}


def _widened(table: np.ndarray, width: int) -> np.ndarray:
    """Rows of an 8.x vector table (17 differences) widened to ``width`` (33): each
    side's new entries share the mass of its outermost old entry, renormalised."""
    extra = (width - table.shape[1]) // 2
    rows = []
    for row in np.asarray(table, np.float64):
        rows.append(np.concatenate([np.full(extra, row[0] / extra), row, np.full(extra, row[-1] / extra)]))
    return integer_table(np.array(rows))


def provisional_far() -> dict[str, np.ndarray]:
    """12.x tables before any count (round 1 prices the search with these): 8.0's vector
    tables widened; far index k favoured 4:1 at 0 (the key frame) and, in a row with a
    neighbour's index, 8:1 at that index."""
    from pacodec import motion_tables as mt

    width = 4 * blockmotion.SEARCH_12 + 1
    far = np.ones((blockmotion.FAR_CONTEXTS, blockmotion.FAR))
    far[:, 0] += 3
    for k in range(blockmotion.FAR):
        far[1 + k, k] += 7
    return {"vector_x": _widened(mt.VECTOR_X_TABLES_8, width), "vector_y": _widened(mt.VECTOR_Y_TABLES_8, width),
            "far": integer_table(far)}


def far_tables(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 12.x tables from ``count_wide(..., far=True)``'s counts: vector rows lean on their predictor
    kind's rows (as ``wide_tables``), far index rows on all of them together."""
    return {**_vector_rows(counts), "far": backoff(counts["far"], np.zeros(blockmotion.FAR_CONTEXTS, np.int64))}


START12, END12 = "<!-- far-tables-12: written by tools/count_motion_tables.py -->", "<!-- /far-tables-12 -->"


def write_spec_far(far: dict[str, np.ndarray]) -> None:
    """formats/pcz.md §14.14's copy of the 12.0 tables."""
    _spec_tables(START12, END12, [("VECTOR_X_TABLES_12 (row: frequencies of dx − px + 16 = 0 … 32):", far["vector_x"]),
                                  ("VECTOR_Y_TABLES_12 (row: frequencies of dy − py + 16 = 0 … 32):", far["vector_y"]),
                                  ("FAR_TABLES_12 (row: frequencies of k = 0 … 12):", far["far"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--model", default="pac-q8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="recount the choice and vector tables too (a new format)")
    parser.add_argument("--wide", action="store_true", help="count format 8.0's tables, keep the older ones")
    parser.add_argument("--flags", action="store_true", help="count format 9.0's block flag tables, keep the others")
    parser.add_argument("--far", action="store_true", help="count format 12.0's tables, keep the others")
    parser.add_argument("--fresh", action="store_true",
                        help="with --wide: start from tables copied from the older ones (else from the shipped 8.0); "
                             "with --flags: from each level's single flag table")
    args = parser.parse_args(argv)
    clips = args.clips or [CLIPS / f"{name}.mp4" for name in TRAINING]
    import importlib

    import pacodec.motion_tables as tables

    if args.far:
        if args.fresh or not hasattr(tables, "FAR_TABLES_12"):
            write(tables.CHOICE_TABLES, tables.VECTOR_TABLES, tables.FRACTION_TABLES, "Provisional 12.0 tables.",
                  _shipped_wide(tables), tables.FLAG_TABLES_9, provisional_far())
            tables = importlib.reload(tables)
        for k in range(args.rounds):
            print(f"round {k + 1} of {args.rounds}", flush=True)
            counts = count_wide(clips, args.model, far=True)
            far = far_tables(counts)
            write(tables.CHOICE_TABLES, tables.VECTOR_TABLES, tables.FRACTION_TABLES,
                  f"Counted the 12.0 tables with {args.model} on {', '.join(c.stem for c in clips)}, "
                  f"{args.rounds} rounds; the 9.0 flag tables with pac-q6 … q10, 2 rounds; the others as 8.0 "
                  "(--wide, pac-q6,pac-q8,pac-q10, 2 rounds), 6.0 and 2.0 counted them.",
                  _shipped_wide(tables), tables.FLAG_TABLES_9, far)
            write_spec_far(far)
            tables = importlib.reload(tables)
            print(f"  vectors {int(counts['vector_x'].sum())}, far indices {int(counts['far'].sum())}", flush=True)
        return 0

    if args.flags:
        if args.fresh or not hasattr(tables, "FLAG_TABLES_9"):
            write(tables.CHOICE_TABLES, tables.VECTOR_TABLES, tables.FRACTION_TABLES, "Provisional 9.0 tables.",
                  _shipped_wide(tables), provisional_flags(), _shipped_far(tables))
            tables = importlib.reload(tables)
        for k in range(args.rounds):
            print(f"round {k + 1} of {args.rounds}", flush=True)
            counts = count_flags(clips)
            flags = np.stack([integer_table(c.astype(np.float64) + 0.5) for c in counts])
            write(tables.CHOICE_TABLES, tables.VECTOR_TABLES, tables.FRACTION_TABLES,
                  f"Counted the 9.0 flag tables with pac-q6 … q10 on {', '.join(c.stem for c in clips)}, "
                  f"{args.rounds} rounds; the others as 8.0 (--wide, pac-q6,pac-q8,pac-q10, 2 rounds), 6.0 and 2.0 "
                  "counted them.", _shipped_wide(tables), flags, _shipped_far(tables))
            write_spec_flags(flags)
            tables = importlib.reload(tables)
            print(f"  flags {int(counts.sum())}, set {int(counts[..., 1].sum())}", flush=True)
        return 0

    if args.wide:
        if args.fresh or not hasattr(tables, "CHOICE_TABLES_8"):
            write(tables.CHOICE_TABLES, tables.VECTOR_TABLES, tables.FRACTION_TABLES, "Provisional 8.0 tables.",
                  provisional_wide(), getattr(tables, "FLAG_TABLES_9", None), _shipped_far(tables))
            tables = importlib.reload(tables)
        for k in range(args.rounds):
            print(f"round {k + 1} of {args.rounds}", flush=True)
            counts = count_wide(clips, args.model)
            wide = wide_tables(counts)
            write(tables.CHOICE_TABLES, tables.VECTOR_TABLES, tables.FRACTION_TABLES,
                  f"Counted the 8.0 tables with {args.model} on {', '.join(c.stem for c in clips)}, "
                  f"{args.rounds} rounds (the older ones as 2.0 and 6.0 counted them).", wide,
                  getattr(tables, "FLAG_TABLES_9", None), _shipped_far(tables))
            write_spec_wide(wide)
            tables = importlib.reload(tables)
            print(f"  exact-GOP choices {int(counts['choice'].sum())}, others {int(counts['choice2'].sum())}, "
                  f"vectors {int(counts['vector_x'].sum())}, offsets {int(counts['fraction'].sum())}", flush=True)
        return 0

    for k in range(args.rounds):
        print(f"round {k + 1} of {args.rounds}", flush=True)
        choice_counts, vector_counts, fraction_counts = count(clips, args.model, tables.CHOICE_TABLES.shape[1])
        choice, vector = tables.CHOICE_TABLES, tables.VECTOR_TABLES
        if args.all:
            choice = integer_table(choice_counts.astype(np.float64) + 0.5)
            vector = integer_table(vector_counts.astype(np.float64) + 0.5)
        fraction = integer_table(fraction_counts.astype(np.float64) + 0.5)
        what = "all tables" if args.all else "the half-pixel offsets (choices and vectors as 2.0 counted them)"
        write(choice, vector, fraction, f"Counted {what} with {args.model} on {', '.join(c.stem for c in clips)}, "
                                        f"{args.rounds} rounds.", _shipped_wide(tables),
              getattr(tables, "FLAG_TABLES_9", None), _shipped_far(tables))
        write_spec(choice, vector, fraction)
        tables = importlib.reload(tables)
        print(f"  choice symbols {int(choice_counts.sum())}, vectors {int(vector_counts.sum()) // 2}, "
              f"offsets {int(fraction_counts.sum())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
