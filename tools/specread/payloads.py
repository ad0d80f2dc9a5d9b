"""Frame payloads of formats/pcz.md §10, §13, §14 and the layouts of §17, from the
spec's text alone: NumPy and the standard library, the range decoder of
rangecoder.py, a safetensors reader of its own. ``Decoder(header, weights)`` checks
the tables against the header's digest; ``symbols(frame)`` returns a frame's integer
symbols in §16's digest order.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np

from .container import INTRA, CODE_DTYPES, Header, Refused
from .rangecoder import CorruptStream, RangeDecoder, TrimmedDecoder, model

# §17: the layout of every model id ----------------------------------------------
FIXED_WIDTH = {"conv4", "conv5", "tiny-conv", "vanilla-fc-1000", "multilayer-fc-1000", "vanilla-fc-500",
               "multilayer-fc-500", "vanilla-fc-compact", "multilayer-fc-compact", "vae", "vae-compact"}
RESIDUAL = {"pac-res", "tiny-pac-res"}
# §3.6: quantizer -> (code_dtype, frame_param_bytes) of fixed-width streams
FIXED_RULES = {0: (0, 0), 1: (1, 0), 2: (1, 8), 3: (1, 0)}
# §13, §14: fixed tables
MODE = [58000, 4000, 3536]
VECTOR = [1000, 2000, 4000, 9000, 33536, 9000, 4000, 2000, 1000]
CHANNELS = (1, 0, 2)   # §14: passes code G, R, B
Q_OF_COUNT = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
# §14.7: the softmax's exponential, EXP[d] = floor(2^16 · exp(−d/16) + 1/2)
EXP = np.floor(65536 * np.exp(-np.arange(256) / 16.0) + 0.5).astype(np.int64)
SYMBOL_NET = {"W1": (31, 32), "b1": (32,), "W2": (32, 32), "b2": (32,), "W3": (32, 65), "b3": (65,), "S": (3,)}
SYMBOL_NET_7 = {"W1": (42, 64), "b1": (64,), "W2": (64, 64), "b2": (64,), "W3": (64, 65), "b3": (65,), "S": (3,)}   # §14.9
CHOICE_NET = {"C_W1": (40, 64), "C_b1": (64,), "C_W2": (64, 64), "C_b2": (64,), "C_W3": (64, 5), "C_b3": (5,),
              "C_S": (3,)}   # §14.13


def spec_motion_tables(spec: Path = Path(__file__).resolve().parents[2] / "formats" / "pcz.md"):
    """§14.5's CHOICE_TABLES and VECTOR_TABLES and §14.8's FRACTION_TABLES, read from the
    spec's own text."""
    text = spec.read_text()
    block = text.split("<!-- motion-tables:", 1)[1].split("<!-- /motion-tables -->", 1)[0]
    choice_part, rest = block.split("VECTOR_TABLES", 1)
    vector_part, fraction_part = rest.split("FRACTION_TABLES", 1)
    rows = lambda part: [[int(v) for v in line.split(":", 1)[1].split()]
                         for line in part.splitlines() if re.match(r"^\s*\d+:", line)]
    return np.array(rows(choice_part)), np.array(rows(vector_part)), np.array(rows(fraction_part))


def spec_motion_tables_8(spec: Path = Path(__file__).resolve().parents[2] / "formats" / "pcz.md"):
    """§14.10's CHOICE_TABLES_8, VECTOR_X_TABLES_8, VECTOR_Y_TABLES_8 and FRACTION_TABLES_8,
    read from the spec's own text."""
    text = spec.read_text()
    block = text.split("<!-- motion-tables-8:", 1)[1].split("<!-- /motion-tables-8 -->", 1)[0]
    choice_part, rest = block.split("VECTOR_X_TABLES_8", 1)
    x_part, rest = rest.split("VECTOR_Y_TABLES_8", 1)
    y_part, fraction_part = rest.split("FRACTION_TABLES_8", 1)
    rows = lambda part: [[int(v) for v in line.split(":", 1)[1].split()]
                         for line in part.splitlines() if re.match(r"^\s*\d+:", line)]
    return tuple(np.array(rows(part)) for part in (choice_part, x_part, y_part, fraction_part))


def spec_far_tables_12(spec: Path = Path(__file__).resolve().parents[2] / "formats" / "pcz.md"):
    """§14.14's VECTOR_X_TABLES_12, VECTOR_Y_TABLES_12 and FAR_TABLES_12, read from the
    spec's own text."""
    text = spec.read_text()
    block = text.split("<!-- far-tables-12:", 1)[1].split("<!-- /far-tables-12 -->", 1)[0]
    _, rest = block.split("VECTOR_X_TABLES_12", 1)
    x_part, rest = rest.split("VECTOR_Y_TABLES_12", 1)
    y_part, far_part = rest.split("FAR_TABLES_12", 1)
    rows = lambda part: [[int(v) for v in line.split(":", 1)[1].split()]
                         for line in part.splitlines() if re.match(r"^\s*\d+:", line)]
    return tuple(np.array(rows(part)) for part in (x_part, y_part, far_part))


def spec_flag_tables_9(spec: Path = Path(__file__).resolve().parents[2] / "formats" / "pcz.md") -> np.ndarray:
    """§14.11's FLAG_TABLES_9 (5 levels × 8 contexts × 2), read from the spec's own text."""
    text = spec.read_text()
    block = text.split("<!-- flag-tables-9:", 1)[1].split("<!-- /flag-tables-9 -->", 1)[0]
    levels = [[int(v) for v in line.split()[1:]] for line in block.splitlines() if re.match(r"^pac-q\d+ ", line)]
    return np.array(levels).reshape(len(levels), -1, 2)


def layout_of(model_id: str) -> tuple[str, object]:
    """§17: (layout, level rule) of an id in models[0]: ("fixed", None), ("entropy", l
    or "config") or ("two-layer", k: the refined level)."""
    if model_id in FIXED_WIDTH:
        return "fixed", None
    if model_id in ("pac", "tiny-pac"):
        return "entropy", "config"
    m = re.fullmatch(r"pac-q(\d+)", model_id)
    if m and 1 <= int(m.group(1)) <= 5:
        return "entropy", int(m.group(1)) - 1
    if m and 6 <= int(m.group(1)) <= 10:
        return "two-layer", int(m.group(1)) - 6
    if model_id == "pac-hi":
        return "two-layer", 0
    if model_id == "tiny-pac-hi":
        return "two-layer", 1
    raise Refused(f"model id {model_id!r} is not in §17's table")


# safetensors --------------------------------------------------------------------
def read_safetensors(data: bytes) -> tuple[dict, dict]:
    """u64 LE header length n, n bytes of JSON, then the tensors' bytes: ({name: array}
    for every I32 and U8 tensor (§18), the "__metadata__" strings)."""
    if len(data) < 8:
        raise Refused("weights: not safetensors")
    n = struct.unpack_from("<Q", data, 0)[0]
    if n > len(data) - 8:
        raise Refused("weights: header beyond the file")
    head = json.loads(data[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in head.items():
        if name == "__metadata__" or info["dtype"] not in ("I32", "U8"):
            continue
        dtype, size = ("<i4", 4) if info["dtype"] == "I32" else ("u1", 1)
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if end - begin != size * count or base + end > len(data):
            raise Refused(f"weights: tensor {name} does not fit")
        tensors[name] = np.frombuffer(data, dtype, count, base + begin).reshape(info["shape"])
    return tensors, head.get("__metadata__", {})


class Weights:
    """Safetensors files found by their sha256 in some folders (§17: a decoder finds
    weights by the sha256 the header names, whatever the file is called)."""

    def __init__(self, folders) -> None:
        self.by_sha: dict[bytes, Path] = {}
        for folder in folders:
            for path in sorted(Path(folder).glob("*.safetensors")):
                self.by_sha.setdefault(hashlib.sha256(path.read_bytes()).digest(), path)

    def load(self, sha: bytes, model_id: str) -> tuple[dict, dict]:
        path = self.by_sha.get(sha)
        if path is None:
            raise Refused(f"no weights with sha256 {sha.hex()[:16]}… for {model_id}")
        tensors, meta = read_safetensors(path.read_bytes())
        return tensors, json.loads(meta.get("config", "{}"))


def _i32(*arrays) -> bytes:
    return b"".join(np.ascontiguousarray(a, "<i4").tobytes() for a in arrays)


def _check_tables(tables: np.ndarray, what: str) -> None:
    if tables.shape[-1] < 2 or np.any(tables < 1) or np.any(tables.sum(axis=-1) != 1 << 16):
        raise Refused(f"weights: {what} are not positive frequencies summing to 2^16")


def _fraction_context(c, f, c_prev, f_prev, r: int, col: int) -> int:
    """§14.8: 1 + the offset of the left block if taken, else of the block above if
    taken, else of this block in the previous record if taken there; else 0."""
    if col > 0 and c[r, col - 1]:
        return 1 + f[r, col - 1]
    if r > 0 and c[r - 1, col]:
        return 1 + f[r - 1, col]
    if c_prev[r, col]:
        return 1 + f_prev[r, col]
    return 0


class Decoder:
    """The symbols of every frame of one header (§10, §13, §14, §16)."""

    def __init__(self, header: Header, weights: Weights) -> None:
        self.h = header
        model_id, sha = header.models[0]
        self.layout, rule = layout_of(model_id)
        self.fixed_item = CODE_DTYPES[header.code_dtype][1]
        if self.layout == "fixed":
            if header.quantizer == 4 or header.entropy_coder != 0:
                raise Refused(f"{model_id} has no entropy model, yet the file is entropy-coded")
            if header.gop > 1:
                raise Refused(f"{model_id} has no predicted frames; gop must be 1")
            if (header.code_dtype, header.frame_param_bytes) != FIXED_RULES[header.quantizer]:
                raise Refused(f"quantizer {header.quantizer} breaks §3.6 (code_dtype, frame_param_bytes)")
            return
        if header.quantizer != 4 or header.entropy_coder != 1:
            raise Refused(f"{model_id} codes with quantizer 4 and entropy coder 1")
        if header.frame_param_bytes != 0:
            raise Refused("entropy-coded frames have no frame_param_bytes (§3.6)")
        tensors, config = weights.load(sha, model_id)
        if self.layout == "entropy":
            self.level = int(config["level"]) if rule == "config" else rule
            refined = None
        else:
            base_level, self.step = config["refinements"][rule]
            self.level = int(base_level)
            refined = [tensors[name][rule] for name in
                       ("refine_tables", "refine_tables_p", "refine_flag_tables_p", "refine_motion_tables_p")]
        self.tables = tensors["tables"][self.level]                  # (C, 2R+1)
        _check_tables(self.tables, "tables")
        digest = hashlib.sha256(_i32(self.tables)).digest()            # §10
        if refined is not None:
            for t, name in zip(refined, ("refine_tables", "refine_tables_p", "flag table", "motion table")):
                _check_tables(t, name)
            digest = hashlib.sha256(digest + _i32(*refined)).digest()  # §14
            self.refine, self.refine_p, flag, motion = refined
            self.r_refine = self.refine.shape[-1] // 2
            self.refine_cdfs = [[model(t) for t in row] for row in self.refine]
            self.refine_p_cdfs = [[model(t) for t in row] for row in self.refine_p]
            self.flag_cdf, self.motion_cdf = model(flag), model(motion)
            if header.version[0] >= 2:   # §14.5
                choice, vector, fraction = spec_motion_tables()
                for t, name in ((choice, "CHOICE_TABLES"), (vector, "VECTOR_TABLES"), (fraction, "FRACTION_TABLES")):
                    _check_tables(t, name)
                self.choice_cdfs = [model(t) for t in choice]
                self.diff_cdfs = [model(t) for t in vector]
                self.fraction_cdfs = [model(t) for t in fraction]
            if header.version[0] >= 8:   # §14.10
                tables8 = spec_motion_tables_8()
                for t, name, shape in zip(tables8, ("CHOICE_TABLES_8", "VECTOR_X_TABLES_8", "VECTOR_Y_TABLES_8",
                                                    "FRACTION_TABLES_8"), ((288, 5), (16, 17), (32, 17), (20, 4))):
                    if t.shape != shape:
                        raise Refused(f"the spec's {name} is not {shape}")
                    _check_tables(t, name)
                self.choice8_cdfs, self.x8_cdfs, self.y8_cdfs, self.fraction8_cdfs = (
                    [model(t) for t in table] for table in tables8)
            self.search = 4   # vectors within ±search (§14.5)
            if header.version[0] >= 12:   # §14.14: vectors within ±8 with their own tables; far indices
                tables12 = spec_far_tables_12()
                for t, name, shape in zip(tables12, ("VECTOR_X_TABLES_12", "VECTOR_Y_TABLES_12", "FAR_TABLES_12"),
                                          ((16, 33), (32, 33), (14, 13))):
                    if t.shape != shape:
                        raise Refused(f"the spec's {name} is not {shape}")
                    _check_tables(t, name)
                self.x8_cdfs, self.y8_cdfs, self.far_cdfs = ([model(t) for t in table] for table in tables12)
                self.search = 8
            if header.version[0] >= 9:   # §14.11: the flags in contexts, the level's table
                flags9 = spec_flag_tables_9()
                if flags9.shape != (5, 8, 2):
                    raise Refused("the spec's FLAG_TABLES_9 is not 5 × 8 × 2")
                _check_tables(flags9[rule], "FLAG_TABLES_9")
                self.flag9_cdfs = [model(t) for t in flags9[rule]]
        # §14.5: (choices, vectors, §14.8 half-pixel offsets, §14.14 far indices) of the previous PREDICTED record
        self.previous = None
        if digest != header.table_digest:
            raise Refused("the weights' tables differ from those the file was coded with (table_digest)")
        shape = header.code_shape
        if len(shape) != 3 or shape[0] != self.tables.shape[0]:
            raise Refused(f"code_shape {shape} does not fit tables of {self.tables.shape[0]} channels")
        self.r = self.tables.shape[1] // 2
        if header.code_dtype != (2 if self.r <= 127 else 3):
            raise Refused("code_dtype is int8 for tables of R ≤ 127, else int16 (§3.6)")
        self.cdfs = [model(t) for t in self.tables]
        self.vector_cdf = model(VECTOR)
        self.mode_cdf = model(MODE)
        self.rows, self.cols = -(-header.height // 16), -(-header.width // 16)
        if header.gop > 1 and refined is not None and header.version[0] >= 3 and (
                len(header.models) < 3 or header.models[2][0] != "pac-key"):
            raise Refused("a 3.x two-layer stream with predicted frames names pac-key as models[2] (§14.6)")
        self.net = None   # §14.7: 4.x symbol model
        self.wide = False   # §14.9: 7.x features
        if header.gop > 1 and refined is not None and header.version[0] >= 4:
            ctx_id, shapes = ("pac-ctx2", SYMBOL_NET_7) if header.version[0] >= 7 else ("pac-ctx", SYMBOL_NET)
            if header.version[0] >= 11:   # §14.13: and the choices' network
                ctx_id, shapes = "pac-ctx3", {**SYMBOL_NET_7, **CHOICE_NET}
            self.wide = header.version[0] >= 7   # §14.9: 42 features
            if len(header.models) < 4 or header.models[3][0] != ctx_id:
                raise Refused(f"a {header.version[0]}.x two-layer stream with predicted frames names {ctx_id} "
                              "as models[3] (§14.7, §14.9, §14.13)")
            net, _ = weights.load(header.models[3][1], ctx_id)
            self.net = {k: np.asarray(net.get(k, np.zeros(0)), np.int64) for k in shapes}
            for k, shape in shapes.items():
                if self.net[k].shape != shape:
                    raise Refused(f"{ctx_id} tensor {k} is not {shape} (§18)")
            for p in ("",) + (("C_",) if header.version[0] >= 11 else ()):
                if max(np.abs(self.net[p + k]).max() for k in ("W1", "W2", "W3")) > 1 << 15 or \
                        self.net[p + "S"].min() < 0 or self.net[p + "S"].max() > 40:
                    raise Refused(f"{ctx_id} weights outside 16 bits or shifts outside 0 … 40 (§18)")
            if self.r_refine != 32:
                raise Refused("the symbol model codes −32 … 32 (§14.7)")
            key, _ = weights.load(header.models[2][1], "pac-key")
            self.key_frame = np.asarray(key["frame"], np.int64)
            self.k = int(rule)
            self.gop_frames = None   # the GOP's references when exact, newest first (§14.3)
            self.prev_symbols = None
        if header.gop > 1:   # §13: models[1], the residual model, at the same level
            if len(header.models) < 2:
                raise Refused("predicted frames need a residual model in models[1]")
            res_id, res_sha = header.models[1]
            res, _ = weights.load(res_sha, res_id)
            self.res_tables = res["tables"][self.level]
            _check_tables(self.res_tables, "residual tables")
            self.res_r = self.res_tables.shape[1] // 2
            self.res_cdfs = [model(t) for t in self.res_tables]

    def forget(self) -> None:
        self.previous = None
        if getattr(self, "net", None) is not None:   # §16: a 4.x GOP that lost a record parses no more
            self.gop_frames, self.prev_symbols, self.broken = None, None, True

    # -- §16 -----------------------------------------------------------------
    def symbols(self, frame) -> bytes:
        """The digest bytes of one sound frame record (§16)."""
        payload = frame.payload
        if not payload:
            raise Refused(f"frame {frame.number}: an empty payload, which no layout allows (§10)")
        if self.layout == "fixed":
            body = payload[self.h.frame_param_bytes:]
            entries = int(np.prod(self.h.code_shape))
            if len(body) != entries * self.fixed_item:
                raise Refused(f"frame {frame.number}: {len(body)} code bytes, {entries} entries expected")
            return body
        try:
            if self.layout == "entropy":
                if frame.type == INTRA:
                    return _i32(self.intra(payload))
                return _i32(*self.predicted(payload))
            if frame.type != INTRA and self.net is not None:   # §14.7
                if getattr(self, "broken", False):
                    return b""
                return _i32(*self.refinement(payload, predicted=True, learned=True))
            if frame.type != INTRA and self.h.version[0] >= 2:   # §14.5: the refinement layer alone
                return _i32(*self.refinement(payload, predicted=True))
            if frame.type == INTRA:
                self.previous = None
            kind = []
            if frame.type == INTRA and self.h.version[0] >= 3 and self.h.gop > 1:   # §14.6: a key frame
                if not payload or payload[0] > 1:
                    raise Refused(f"frame {frame.number}: key frame kind {payload[:1].hex() or 'missing'}")
                kind, payload = [np.array([payload[0]])], payload[1:]
                if self.net is not None:   # §14.7: a new GOP, exact when of kind 1
                    self.broken, self.prev_symbols = False, None
                    self.gop_frames = [self.key_frame] if kind[0][0] == 1 else None
                if kind[0][0] == 1:   # predicted from the reference, with no previous motion
                    parts = self.refinement(payload, predicted=True, learned=self.net is not None)
                    self.previous, self.prev_symbols = None, None
                    if self.net is not None:   # F is no reference of the GOP's P-frames
                        self.gop_frames = self.gop_frames[:1]
                    return _i32(*kind, *parts)
            if len(payload) < 4:
                raise Refused(f"frame {frame.number}: a two-layer payload without its length")
            n = struct.unpack_from("<I", payload, 0)[0]
            if n > len(payload) - 4:
                raise Refused(f"frame {frame.number}: base layer of {n} bytes in {len(payload) - 4}")
            base, refinement = payload[4:4 + n], payload[4 + n:]
            if frame.type == INTRA:
                return _i32(*kind, self.intra(base), *self.refinement(refinement, predicted=False))
            return _i32(*self.predicted(base), *self.refinement(refinement, predicted=True))
        except CorruptStream as exc:
            raise Refused(f"frame {frame.number}: {exc}") from None

    @staticmethod
    def _stream(payload: bytes) -> RangeDecoder:
        if len(payload) % 4:
            raise Refused("an entropy-coded payload is not whole 32-bit words")
        return RangeDecoder(struct.unpack(f"<{len(payload) // 4}I", payload))

    @staticmethod
    def _trimmed_stream(payload: bytes) -> RangeDecoder:
        """§15.4: a 10.x stream, its bytes the words big-endian, zero bytes after its end."""
        try:
            return TrimmedDecoder(payload)
        except CorruptStream as exc:
            raise Refused(str(exc)) from None

    @staticmethod
    def _end(decoder: RangeDecoder) -> None:
        if not decoder.exhausted():
            raise Refused("an entropy-coded stream does not end where its symbols do (§15.3), or is not "
                          "the shortest form of its symbols (§15.4)")

    def intra(self, payload: bytes) -> np.ndarray:
        """§10: C × h·w symbols −R…R, channel by channel."""
        d = self._stream(payload)
        per_channel = self.h.code_shape[1] * self.h.code_shape[2]
        out = np.array([d.decode_many(cdf, per_channel) for cdf in self.cdfs]) - self.r
        self._end(d)
        return out

    def predicted(self, payload: bytes) -> list[np.ndarray]:
        """§13: (modes, vectors of every block as dy, dx, residual symbols by channel)."""
        d = self._stream(payload)
        n = self.rows * self.cols
        modes = np.array(d.decode_many(self.mode_cdf, n))
        vectors = np.zeros((n, 2), np.int64)
        moved = np.flatnonzero(modes != 0)
        comps = np.array(d.decode_many(self.vector_cdf, 2 * len(moved))).reshape(-1, 2) - 4   # dx, dy
        vectors[moved] = comps[:, ::-1]
        count = int((modes == 2).sum())
        symbols = np.array([d.decode_many(cdf, count) for cdf in self.res_cdfs]).reshape(-1) - self.res_r \
            if count else np.zeros(0, np.int64)
        self._end(d)
        return [modes, vectors.reshape(-1), symbols]

    def references(self) -> list[np.ndarray]:
        """§14.3, §14.14: the exact references Ref₁ … Ref_m of the next record from the
        GOP's frames (newest first, the key frame last): from 12.0 on the last three,
        the key frame, then the older ones."""
        frames = self.gop_frames
        if self.h.version[0] < 12 or len(frames) <= 4:
            return frames[:4]
        return frames[:3] + frames[-1:] + frames[3:-1]

    def motion_2(self, d: RangeDecoder, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """§14.5: the choices C (rows × cols) and vectors V (rows × cols × [dy, dx]); §14.8
        (6.x): and the half-pixel offsets F (rows × cols; all 0 before 6.0); §14.14
        (12.x): and the far indices K (rows × cols; all 0 before 12.0)."""
        zeros = np.zeros((rows, cols), np.int64)
        c_prev, v_prev, f_prev, k_prev = self.previous if self.previous is not None else (
            zeros, np.zeros((rows, cols, 2), np.int64), zeros, zeros)
        activity = None
        if self.h.version[0] >= 8 and getattr(self, "gop_frames", None) is not None:   # §14.10
            refs = self.references()[:4]
            h, w = self.h.height, self.h.width
            bins = []
            for j, edges in ((2, (0, 62, 510)), (3, (0, 254))):
                other = refs[min(j, len(refs)) - 1]
                s_j = np.zeros((rows, cols), np.int64)
                for r in range(rows):
                    for col in range(cols):
                        ys = slice(max(4 * r - 2, 0), min(4 * r + 6, h))
                        xs = slice(max(4 * col - 2, 0), min(4 * col + 6, w))
                        s_j[r, col] = np.abs(refs[0][ys, xs].astype(np.int64) - other[ys, xs]).sum()
                bins.append(sum((s_j > e).astype(np.int64) for e in edges))
            activity = 3 * bins[0] + bins[1]
        if self.h.version[0] >= 11 and getattr(self, "gop_frames", None) is not None:   # §14.13
            c = self._learned_choices(d, rows, cols, c_prev, v_prev)
            k = self._far(d, c, c_prev, k_prev)
            return self._vectors_8(d, c, np.zeros((rows, cols, 2), np.int64), c_prev, v_prev, f_prev) + (k,)
        taken = np.pad((c_prev != 0).astype(np.int64), 1)
        p = taken[1:-1, 1:-1]
        b = np.minimum(sum(taken[dy:dy + rows, dx:dx + cols] for dy in range(3) for dx in range(3)), 2)
        c = np.zeros((rows, cols), np.int64)
        parity = np.add.outer(np.arange(rows), np.arange(cols)) % 2
        for odd in (0, 1):
            if odd:
                mine = np.pad((c != 0).astype(np.int64), 1)
                n = np.minimum(mine[:-2, 1:-1] + mine[2:, 1:-1] + mine[1:-1, :-2] + mine[1:-1, 2:], 2)
                ctx = 6 + 3 * (3 * p + b) + n
            else:
                ctx = 3 * p + b
            cdfs = self.choice_cdfs
            if activity is not None:   # §14.10, exact references
                ctx, cdfs = 12 * ctx + activity, self.choice8_cdfs
            where = np.flatnonzero((parity == odd).reshape(-1))
            contexts = ctx.reshape(-1)[where]
            flat = c.reshape(-1)
            for k in np.unique(contexts):
                members = where[contexts == k]
                flat[members] = d.decode_many(cdfs[k], len(members))
        v = np.zeros((rows, cols, 2), np.int64)
        if self.h.version[0] >= 8:
            k = self._far(d, c, c_prev, k_prev)
            return self._vectors_8(d, c, v, c_prev, v_prev, f_prev) + (k,)
        for r in range(rows):
            for col in range(cols):
                if not c[r, col]:
                    continue
                if col > 0 and c[r, col - 1]:
                    k, pred = 1, v[r, col - 1]
                elif r > 0 and c[r - 1, col]:
                    k, pred = 1, v[r - 1, col]
                elif c_prev[r, col]:
                    k, pred = 2, v_prev[r, col]
                else:
                    k, pred = 0, np.zeros(2, np.int64)
                dx, dy = np.array(d.decode_many(self.diff_cdfs[k], 2)) - 8
                vec = pred + (dy, dx)
                if np.abs(vec).max() > 4:
                    raise CorruptStream("a 4 × 4 vector outside −4 … 4 (§14.5)")
                v[r, col] = vec
        f = np.zeros((rows, cols), np.int64)
        if self.h.version[0] >= 6:   # §14.8
            for r, col in zip(*np.nonzero(c)):
                f[r, col] = d.decode(self.fraction_cdfs[_fraction_context(c, f, c_prev, f_prev, r, col)])
        return c, v, f, zeros

    def _far(self, d: RangeDecoder, c, c_prev, k_prev) -> np.ndarray:
        """§14.14 (12.x): the far index K of every block with C = 4, raster order, in
        the row of the first neighbour before it (left, above, above right, above left)
        with C = 4, else of this block in the previous record if C′ = 4, else row 0."""
        rows, cols = c.shape
        k = np.zeros((rows, cols), np.int64)
        if self.h.version[0] < 12:
            return k
        for r, col in zip(*np.nonzero(c == 4)):
            row = 0
            for y, x in ((r, col - 1), (r - 1, col), (r - 1, col + 1), (r - 1, col - 1)):
                if y >= 0 and 0 <= x < cols and c[y, x] == 4:
                    row = 1 + k[y, x]
                    break
            else:
                if c_prev[r, col] == 4:
                    row = 1 + k_prev[r, col]
            k[r, col] = d.decode(self.far_cdfs[row])
        return k

    def _learned_choices(self, d: RangeDecoder, rows: int, cols: int, c_prev, v_prev) -> np.ndarray:
        """§14.13: the choices C of a record with exact references, each with the choice
        network's table, the even blocks then the odd ones, raster order in each."""
        refs = self.references()[:4]
        h, w = self.h.height, self.h.width

        def bits(n):   # bit length, exactly (Python integers)
            return np.array([int(v).bit_length() for v in n.reshape(-1)], np.int64).reshape(n.shape)

        def window_sum(plane, margin):   # Σ over the channels and each block grown by margin, cut by the frame
            out = np.zeros((rows, cols), np.int64)
            for r in range(rows):
                for col in range(cols):
                    out[r, col] = plane[max(4 * r - margin, 0):min(4 * r + 4 + margin, h),
                                        max(4 * col - margin, 0):min(4 * col + 4 + margin, w)].sum()
            return out

        f = np.zeros((rows, cols, 40), np.int64)
        for j in (2, 3, 4):
            diff = np.abs(refs[0].astype(np.int64) - refs[min(j, len(refs)) - 1])
            for i, margin in enumerate((0, 2, 6)):
                f[:, :, 3 * (j - 2) + i] = bits(window_sum(diff, margin))
        grad = np.zeros((h, w, 3), np.int64)
        grad[:, :-1] = np.abs(refs[0][:, 1:].astype(np.int64) - refs[0][:, :-1])
        f[:, :, 9] = bits(window_sum(grad, 0))
        around = np.pad(c_prev, 1)
        for r in range(rows):
            for col in range(cols):
                f[r, col, 10 + c_prev[r, col]] = 1
                for i, (dy, dx) in enumerate(((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))):
                    f[r, col, 15 + i] = around[r + 1 + dy, col + 1 + dx] != 0
                box = around[r:r + 3, col:col + 3]
                for j in range(1, 5):
                    f[r, col, 22 + j] = (box == j).sum()
        f[:, :, 27:29] = v_prev
        f[:, :, 29] = np.arange(rows)[:, None]
        f[:, :, 35 + self.k] = 1
        c = np.zeros((rows, cols), np.int64)
        for odd in (0, 1):
            blocks = [(r, col) for r in range(rows) for col in range(cols) if (r + col) % 2 == odd]
            x = np.array([f[r, col] for r, col in blocks], np.int64)
            if odd:
                mine = np.pad(c, 1)
                x[:, 34] = 1
                for i, (r, col) in enumerate(blocks):
                    near = [mine[r, col + 1], mine[r + 2, col + 1], mine[r + 1, col], mine[r + 1, col + 2]]
                    for j in range(1, 5):
                        x[i, 29 + j] = near.count(j)
            tables = self._tables(x, "C_")
            for i, (r, col) in enumerate(blocks):
                c[r, col] = d.decode(model(tables[i]))
        return c

    def _vectors_8(self, d: RangeDecoder, c, v, c_prev, v_prev, f_prev):
        """§14.10: the vectors, then the half-pixel offsets, of the blocks taken."""
        rows, cols = c.shape
        for r in range(rows):
            for col in range(cols):
                j = c[r, col]
                if not j:
                    continue
                around = [(r, col - 1), (r - 1, col), (r - 1, col + 1), (r - 1, col - 1)]
                taken = [v[y, x] for y, x in around if y >= 0 and 0 <= x < cols and c[y, x]]
                same = [v[y, x] for y, x in around if y >= 0 and 0 <= x < cols and c[y, x] == j]
                if same:
                    k, pred = 1, same[0]
                elif c_prev[r, col] == j:
                    k, pred = 2, v_prev[r, col]
                elif taken:
                    k, pred = 3, taken[0]
                elif c_prev[r, col]:
                    k, pred = 3, v_prev[r, col]
                else:
                    k, pred = 0, np.zeros(2, np.int64)
                row = 4 * k + j - 1
                centre = 2 * self.search   # §14.10: 8; §14.14: 16
                ex = d.decode(self.x8_cdfs[row])
                ey = d.decode(self.y8_cdfs[2 * row + (ex != centre)])
                vec = pred + (ey - centre, ex - centre)
                if np.abs(vec).max() > self.search:
                    raise CorruptStream(f"a 4 × 4 vector outside −{self.search} … {self.search} (§14.10, §14.14)")
                v[r, col] = vec
        f = np.zeros((rows, cols), np.int64)
        for r, col in zip(*np.nonzero(c)):
            k = _fraction_context(c, f, c_prev, f_prev, r, col)
            f[r, col] = d.decode(self.fraction8_cdfs[4 * k + c[r, col] - 1])
        return c, v, f

    def refinement(self, payload: bytes, predicted: bool, learned: bool = False) -> list[np.ndarray]:
        """§14: (predicted: the 4×4 blocks' references, the vectors of the moved ones as
        dy, dx) and the H×W×3 symbols, R, G, B per pixel; ``learned``: the symbols of
        §14.7."""
        trimmed = predicted and self.h.version[0] >= 10   # §15.4
        d = self._trimmed_stream(payload) if trimmed else self._stream(payload)
        h, w = self.h.height, self.h.width
        parts = []
        coded = np.ones((h, w), bool)
        if predicted and self.h.version[0] >= 2:
            refs, vectors, fractions, far = self.motion_2(d, -(-h // 4), -(-w // 4))
            self.previous = (refs, vectors, fractions, far)
            parts.append(refs.reshape(-1))
            if self.h.version[0] >= 12:   # §16, §14.14
                parts.append(far[refs == 4])
            parts.append(vectors[refs != 0].reshape(-1))
            if self.h.version[0] >= 6:   # §16
                parts.append(fractions[refs != 0])
        elif predicted:
            count = (-(-h // 4)) * (-(-w // 4))
            refs = np.array(d.decode_many(self.motion_cdf, count))
            moved = int((refs != 0).sum())
            comps = np.array(d.decode_many(self.vector_cdf, 2 * moved)).reshape(-1, 2) - 4
            parts += [refs, comps[:, ::-1].reshape(-1)]
        if predicted and self.h.version[0] >= 9:   # §14.11
            rows, cols = -(-h // 16), -(-w // 16)
            prev = getattr(self, "prev_symbols", None)
            flags = np.zeros((rows, cols), np.int64)
            for r in range(rows):
                for col in range(cols):
                    n = int((refs[4 * r:4 * r + 4, 4 * col:4 * col + 4] != 0).sum())
                    b = int(n >= 1) + int(n >= 3) + int(n >= 7)
                    p = int(prev is not None and (prev[:, 16 * r:16 * r + 16, 16 * col:16 * col + 16] != 0).any())
                    flags[r, col] = d.decode(self.flag9_cdfs[2 * b + p])
            coded = np.kron(flags, np.ones((16, 16), np.int64))[:h, :w] != 0
        elif predicted:
            rows, cols = -(-h // 16), -(-w // 16)
            flags = np.array(d.decode_many(self.flag_cdf, rows * cols)).reshape(rows, cols)
            coded = np.kron(flags, np.ones((16, 16), np.int64))[:h, :w] != 0
        if learned:
            known = self.learned_symbols(d, refs, vectors, fractions, coded, far)
            self._end(d)
            return parts + [known.transpose(1, 2, 0).reshape(-1)]
        cdfs = self.refine_p_cdfs if predicted else self.refine_cdfs
        known = np.zeros((3, h, w), np.int64)
        parity = (np.add.outer(np.arange(h), np.arange(w)) % 2)
        for index in range(6):
            channel, odd = CHANNELS[index // 2], index % 2
            earlier = CHANNELS[: index // 2]
            if earlier:
                p = np.minimum(np.abs(known[list(earlier)]).sum(axis=0), 3)
                nonzero = np.pad((known[list(earlier)] != 0).any(axis=0).astype(np.int64), 1)
                window = sum(nonzero[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
                base = 4 * p + Q_OF_COUNT[window]
            else:
                base = np.zeros((h, w), np.int64)
            ctx = 4 * base
            if odd:
                mine = np.pad((known[channel] != 0).astype(np.int64), 1)
                ctx = ctx + np.minimum(mine[:-2, 1:-1] + mine[2:, 1:-1] + mine[1:-1, :-2] + mine[1:-1, 2:], 3)
            where = np.flatnonzero(((parity == odd) & coded).reshape(-1))   # raster order
            contexts = ctx.reshape(-1)[where]
            plane = known[channel].reshape(-1)
            for c in np.unique(contexts):   # contexts ascending, raster order inside each
                members = where[contexts == c]
                plane[members] = np.array(d.decode_many(cdfs[index][c], len(members))) - self.r_refine
        self._end(d)
        return parts + [known.transpose(1, 2, 0).reshape(-1)]

    # -- §14.7 ---------------------------------------------------------------
    def _moved(self, frames: list[np.ndarray], choices: np.ndarray, vectors: np.ndarray,
               fractions: np.ndarray, far: np.ndarray) -> np.ndarray:
        """§14.3: reference 1 with each 4 × 4 block of choice j ≠ 0 copied from reference j
        displaced by its vector (reads beyond the frame take the nearest edge pixel); §14.8:
        at a half-pixel offset fx + 2·fy, the rounded mean of the 2 or 4 pixels around;
        §14.14: a block of choice 4 from reference 4 + K."""
        h, w = self.h.height, self.h.width
        out = frames[0].copy()
        for r, c in zip(*np.nonzero(choices)):
            j = int(choices[r, c]) + (int(far[r, c]) if choices[r, c] == 4 else 0)
            if j > len(frames):
                raise CorruptStream(f"a 4 × 4 block names reference {j} of {len(frames)}")
            dy, dx = vectors[r, c]
            fx, fy = fractions[r, c] % 2, fractions[r, c] // 2
            ys = np.arange(4 * r, min(4 * r + 4, h)) + dy
            xs = np.arange(4 * c, min(4 * c + 4, w)) + dx
            ref = frames[j - 1].astype(np.int64)
            at = lambda oy, ox: ref[np.ix_(np.clip(ys + oy, 0, h - 1), np.clip(xs + ox, 0, w - 1))]
            if fx and fy:
                block = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1) + 2) >> 2
            elif fx or fy:
                block = (at(0, 0) + at(fy, fx) + 1) >> 1
            else:
                block = at(0, 0)
            out[4 * r:4 * r + len(ys), 4 * c:4 * c + len(xs)] = block
        return out

    def _tables(self, x: np.ndarray, prefix: str = "") -> np.ndarray:
        """§14.7: the network's tables (n × 65) for n symbols' features (n × 31), in int64
        arithmetic (NumPy's integer products are exact); ``prefix`` "C_": §14.13's
        choice network (n × 5 for n × 40)."""
        n = {k: self.net[prefix + k] for k in ("W1", "b1", "W2", "b2", "W3", "b3", "S")}
        h1 = np.clip((x @ n["W1"] + n["b1"]) >> n["S"][0], 0, 255)
        h2 = np.clip((h1 @ n["W2"] + n["b2"]) >> n["S"][1], 0, 255)
        z = (h2 @ n["W3"] + n["b3"]) >> n["S"][2]
        e = EXP[np.minimum(z.max(axis=1, keepdims=True) - z, 255)]
        f = e * (65536 - z.shape[1]) // e.sum(axis=1, keepdims=True) + 1
        rows = np.arange(len(f))
        f[rows, f.argmax(axis=1)] += 65536 - f.sum(axis=1)   # argmax: the first largest
        return f

    def learned_symbols(self, d: RangeDecoder, choices: np.ndarray, vectors: np.ndarray, fractions: np.ndarray,
                        coded: np.ndarray, far: np.ndarray) -> np.ndarray:
        """§14.7: the residual symbols (3 × H × W) with the symbol model's tables; updates
        the GOP's frames (when exact) and S′. A pass's features read only earlier passes,
        so they are computed for the whole pass before its symbols are read."""
        h, w = self.h.height, self.h.width
        frames = self.gop_frames
        exact = frames is not None
        if exact:
            listed = self.references()
            refs = listed[:4]
            base = self._moved(listed, choices, vectors, fractions, far)
            stack = np.stack(refs)
            spread = stack.max(axis=0) - stack.min(axis=0)
            spread_any = np.pad(spread.max(axis=2), 1)
            right = np.concatenate([base[:, 1:], base[:, -1:]], axis=1)
            below = np.concatenate([base[1:], base[-1:]], axis=0)
            grad = (np.abs(base - right) + np.abs(base - below)) >> 3
        prev = np.zeros((3, h, w), np.int64) if self.prev_symbols is None else self.prev_symbols
        prev_any = np.pad((prev != 0).any(axis=0).astype(np.int64), 1)
        known = np.zeros((3, h, w), np.int64)
        choice_px = np.kron(choices, np.ones((4, 4), np.int64))[:h, :w]
        parity = np.add.outer(np.arange(h), np.arange(w)) % 2

        def window(padded, k, ys, xs, reduce):
            values = [padded[ys + dy, xs + dx] for dy in range(2 * k + 1) for dx in range(2 * k + 1)]
            return reduce(np.stack(values), axis=0)

        for index in range(6):
            c, odd = CHANNELS[index // 2], index % 2
            ys, xs = np.nonzero((parity == odd) & coded)   # raster order
            if not len(ys):
                continue
            f = np.zeros((len(ys), 42 if self.wide else 31), np.int64)
            earlier = list(CHANNELS[: index // 2])
            if earlier:
                e = known[earlier]
                f[:, 0] = np.minimum(np.abs(e[0][ys, xs]), 4)
                if len(earlier) > 1:
                    f[:, 1] = np.minimum(np.abs(e[1][ys, xs]), 4)
                f[:, 2] = np.clip(e[:, ys, xs].sum(axis=0), -4, 4)
                f[:, 3] = window(np.pad((e != 0).any(axis=0).astype(np.int64), 1), 1, ys, xs, np.sum)
                f[:, 4] = np.minimum(window(np.pad(np.abs(e).sum(axis=0), 2), 2, ys, xs, np.sum), 15)
            if odd:
                mine = np.pad(np.abs(known[c]), 1)
                around = np.stack([mine[ys, xs + 1], mine[ys + 2, xs + 1], mine[ys + 1, xs], mine[ys + 1, xs + 2]])
                f[:, 5] = (around != 0).sum(axis=0)
                f[:, 6] = np.minimum(around.sum(axis=0), 8)
            f[:, 7] = np.minimum(np.abs(prev[c, ys, xs]), 4)
            f[:, 8] = np.minimum(window(prev_any, 1, ys, xs, np.sum), 9)
            if exact:
                f[:, 9] = np.minimum(spread[ys, xs, c] >> 3, 31)
                f[:, 10] = np.minimum(window(spread_any, 1, ys, xs, np.max) >> 3, 31)
                f[:, 11] = np.minimum(grad[ys, xs, c], 31)
                f[:, 12] = np.minimum(np.abs(base[ys, xs, c] - refs[0][ys, xs, c]) >> 3, 31)
                f[:, 13] = base[ys, xs, c] >> 4
                f[:, 14] = 1
            f[:, 15 + index] = 1
            f[:, 21 + self.k] = 1
            f[np.arange(len(ys)), 26 + choice_px[ys, xs]] = 1
            if self.wide:   # §14.9
                if earlier:
                    f[:, 31] = np.clip(known[earlier[0], ys, xs], -31, 31)
                    if len(earlier) > 1:
                        f[:, 32] = np.clip(known[earlier[1], ys, xs], -31, 31)
                if odd:
                    mine = np.pad(known[c], 1)
                    f[:, 33] = np.clip(mine[ys + 1, xs] + mine[ys + 1, xs + 2] + mine[ys, xs + 1] + mine[ys + 2, xs + 1],
                                       -31, 31)
                if exact:
                    f[:, 34:37] = base[ys, xs] >> 4
                    f[:, 37:40] = (base[ys, xs] - refs[0][ys, xs]) >> 4
                f[:, 40] = np.clip(prev[c, ys, xs], -31, 31)
                blocks = choice_px[ys, xs]
                dy, dx = vectors[ys // 4, xs // 4, 0], vectors[ys // 4, xs // 4, 1]
                moved = np.clip(prev[c, np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)], -31, 31)
                f[:, 41] = np.where(blocks == 1, moved, np.where(blocks == 0, f[:, 40], 0))
            tables = self._tables(f)
            sign = np.where(f[:, 2] < 0, -1, 1)
            for i in range(len(ys)):
                known[c, ys[i], xs[i]] = sign[i] * (d.decode(model(tables[i])) - 32)
        if exact:   # §14.3: the frame this record makes, reference 1 of the next
            out = np.clip(base + self.step * known.transpose(1, 2, 0), 0, 255)
            if self.h.version[0] >= 12:   # §14.14: the last 15 and the GOP's intra frame
                self.gop_frames = [out] + frames[:-1][:14] + [frames[-1]]
            elif self.h.version[0] >= 5:   # the GOP's intra frame stays the last reference
                self.gop_frames = [out] + frames[:-1][:2] + [frames[-1]]
            else:
                self.gop_frames = [out] + frames[:3]
        self.prev_symbols = known.copy()
        return known
