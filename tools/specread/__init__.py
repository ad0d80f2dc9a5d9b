"""specread: a second, independent reader of .pcz files, written from formats/pcz.md alone.

Python's standard library and NumPy only: no pacodec, no constriction, no construct.
It parses every record and checks every CRC (container.py), decodes every frame's
integer symbols with its own range decoder (rangecoder.py, payloads.py) given the
weights' integer tables, and computes §16's symbol digest and §19's accounting.
Its purpose is to prove the spec: tests/test_specread.py checks that it agrees with
pacodec bit for bit.

    python -m tools.specread FILE.pcz --weights DIR [--salvage] [--json]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .container import (CODE_DTYPES, ENTROPY_CODERS, FITS, INTRA, QUANTIZERS, Container, Refused, accounting,
                        read_container, survivors)

__all__ = ["Refused", "Result", "read", "info"]


@dataclass
class Result:
    container: Container
    survivors: list[bool]       # per frame: does it decode (§7.2)
    digest: str | None          # §16, over the sound records; None when not decoded
    info: dict                  # §19, as `pacodec info --json` prints it


def read(path, weights=(), salvage: bool = False, symbols: bool = True) -> Result:
    """Parse (and with ``symbols`` decode) one file; Refused when the spec refuses it."""
    from .payloads import Decoder, Weights

    data = Path(path).read_bytes()
    c = read_container(data, salvage)
    if c.params_records and c.header.quantizer != 3:
        raise Refused("only a kmeans stream has a PARAMS record (§3.6)")
    if c.header.quantizer == 3 and c.params is None and not salvage:
        raise Refused("a kmeans stream needs its PARAMS record (§3.6)")
    digest = None
    corrupt: set[int] = set()   # §7.2: sound records whose payload is corrupt (salvage)
    if symbols:
        decoder = Decoder(c.header, Weights(weights))
        sha = hashlib.sha256()
        for frame in c.frames:
            if not frame.damaged:
                try:
                    sha.update(decoder.symbols(frame))
                    continue
                except Refused:
                    if not salvage:
                        raise
                    corrupt.add(frame.number)
            decoder.forget()   # §14.5: a lost record leaves no previous P-frame
        digest = sha.hexdigest()
    return Result(c, survivors(c, corrupt), digest, info(c, str(path)))


REFINED = {"pac-hi", "tiny-pac-hi", "pac-q6", "pac-q7", "pac-q8", "pac-q9", "pac-q10"}   # §17: two-layer ids


def info(c: Container, name: str) -> dict:
    """§19's accounting and the header's facts, keyed as `pacodec info --json` keys them."""
    h, acc = c.header, accounting(c)
    frames = acc["frames"]
    refined = h.models[0][0] in REFINED
    sound = [f for f in c.frames if not f.damaged]
    intra_at = [f.number for f in sound if f.type == INTRA] if h.gop > 1 else None
    starts = intra_at + [frames] if h.gop > 1 else []
    longest = max((b - a for a, b in zip(starts, starts[1:])), default=min(frames, 1))
    entries = 1
    for s in h.code_shape:
        entries *= s
    fixed_width = frames * entries * CODE_DTYPES[h.code_dtype][1] + frames * h.frame_param_bytes
    if refined:
        fixed_width += frames * 3 * h.width * h.height
    layers = keys = None
    if refined:
        layers = {"base": 0, "refinement": 0, "layer_lengths": 0}
        if h.version[0] >= 3 and h.gop > 1:   # §14.6, §19: key frames by kind
            keys = {"own": 0, "reference": 0}
        for f in sound:
            payload = f.payload
            if keys is not None and f.type == INTRA and payload:   # the kind byte
                layers["layer_lengths"] += 1
                if payload[0] < 2:
                    keys[("own", "reference")[payload[0]]] += 1
                if payload[0] == 1:
                    layers["refinement"] += len(payload) - 1
                    continue
                payload = payload[1:]
            if h.version[0] >= 2 and f.type != INTRA:   # §14.5: the refinement layer alone
                layers["refinement"] += len(payload)
            elif len(payload) >= 4:
                n = int.from_bytes(payload[:4], "little")
                layers["layer_lengths"] += 4
                layers["base"] += min(n, len(payload) - 4)
                layers["refinement"] += max(0, len(payload) - 4 - n)
    raw = frames * h.width * h.height * 3
    out = {
        "file": name, "file_bytes": c.size, "frames": frames,
        "intra_frames": acc["intra_frames"], "predicted_frames": acc["predicted_frames"],
        "width": h.width, "height": h.height, "source_width": h.source_width, "source_height": h.source_height,
        "fps": h.fps_num / h.fps_den, "fps_fraction": f"{h.fps_num}/{h.fps_den}",
        "version": f"{h.version[0]}.{h.version[1]}",
        "model": h.models[0][0], "weights_sha256": h.models[0][1].hex(),
        "models": [{"id": m, "weights_sha256": s.hex()} for m, s in h.models],
        "quantizer": QUANTIZERS[h.quantizer], "code_dtype": CODE_DTYPES[h.code_dtype][0],
        "code_shape": list(h.code_shape), "frame_param_bytes": h.frame_param_bytes,
        "entropy_coder": ENTROPY_CODERS[h.entropy_coder],
        "table_digest": h.table_digest.hex() if h.entropy_coder else None,
        "gop": h.gop, "complete": c.complete,
        **({"fit": FITS[h.fit], "picture": list(h.picture)} if h.picture is not None else {}),
        "intra_at": intra_at, "longest_gop": longest,
        "other_bytes": acc["other"],
        "parts": {k: acc[k] for k in ("header", "params", "codes", "framing", "index")},
        "bytes_by_type": {"intra": acc["intra"], "predicted": acc["predicted"]},
        "codes_fixed_width": fixed_width,
        **({"layers": layers} if layers is not None else {}),
        **({"key_frames": keys} if keys is not None else {}),
        "raw_bytes": raw,
        "bytes_per_frame": c.size / frames if frames else None,
        "ratio": raw / c.size if c.size else None,
        "codes_ratio": raw / acc["codes"] if acc["codes"] else None,
    }
    return out
