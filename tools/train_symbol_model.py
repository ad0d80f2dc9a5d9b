"""Train pac-ctx2, the network that gives 7.x predicted frames' residual symbols their
probabilities (pacodec/symbolnet.py, formats/pcz.md §14.7 and §14.9), and ship it.

    python tools/train_symbol_model.py [--workers 2] [--epochs 16]

1. Encode each training clip (clip0, clip4, clip5, clip6, clip7 of ../shared/data/pacman;
   never the validation or test clips) at every refined level (pac-q6 … pac-q10) at
   the default GOP, exactly as the encoder codes them, and collect every coded
   residual symbol of the predicted frames with its features (symbolnet.features:
   what the decoder holds when it reaches that symbol): the symbols a file of the
   current format codes. The encoder prices its symbol choices with the shipped
   pac-ctx2 (refine.LEARNED_PRICES), so a retrained network is trained on the choices
   its predecessor priced; the first pac-ctx2 was trained on the choices pac-ctx (6.x)
   priced. A fifth of the frames are collected without their pixel
   features, as a GOP whose key frame is coded on its own has them.
2. Train the float network (Adam, cross-entropy = the symbols' code length in nats:
   the rate is the loss).
3. Quantize it to integers (16-bit weights, 8-bit activations, power-of-two scales)
   and measure the integer network's code length on the validation clip (clip8)
   against the counted contexts of 3.x and the shipped network (pac-ctx2, or the 6.x
   pac-ctx on its 31 features when there is none yet).
4. Write pacodec/weights/pac-ctx2.safetensors and its manifest entry; the weights it
   replaces stay as a superseded entry (zoo.supersede), since files name the
   weights they were made with by sha256.

About 20 minutes on 2 idle CPU cores (--workers 2): 9 to collect the symbols, 11 to
train 16 epochs. (The first pac-ctx2 trained 6: its last epoch was 0.2024 bits a
symbol on its training set, this one's 0.1954 on the same clips' symbols as the
encoder now chooses them; on clip8's symbols the 16-epoch network codes 1.1–2.0 %
fewer bytes at pac-q7 … q10 than the 6-epoch one it replaced.)
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

TRAINING = ("clip0", "clip4", "clip5", "clip6", "clip7")
VALIDATION = "clip8"
LEVELS = ("pac-q6", "pac-q7", "pac-q8", "pac-q9", "pac-q10")
MODEL = "pac-ctx2"
FILE = f"{MODEL}.safetensors"
NO_PIXELS_SHARE = 0.2
#: Feature scales the float network divides by (folded into W1 when quantized).
SCALE = np.array([4, 4, 4, 9, 15, 4, 8, 4, 9, 31, 31, 31, 31, 15, 1] + [1] * 16
                 + [8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4], np.float32)


def shipped() -> bool:
    """Whether pacodec ships a MODEL yet (the first one is trained without)."""
    from pacodec import zoo

    return any(e["id"] == MODEL for e in zoo.read_manifest(zoo.SHIPPED_DIR))


def collect(job: tuple[str, str, int]) -> dict:
    """Encode one clip at one level; every coded P-frame symbol's (features, symbol)
    and the counted-context code length of the same symbols (3.x)."""
    import torch

    torch.set_num_threads(1)
    import pacodec
    from pacodec import refine, symbolnet, video
    from pacodec.data import shared_clip
    from pacodec.keyframe import REFERENCE

    clip, level, seed = job
    rng = np.random.default_rng(seed)
    from pacodec import api

    if not shipped():
        api.SYMBOL_MODEL = "pac-ctx"  # the first pac-ctx2: the choices 6.x's network priced
    frames = [video.fit(f, 160, 200) for f in video.iter_frames(shared_clip(clip))]
    xs, ys, counted = [], [], []
    state = {"exact": False, "prev": None}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with pacodec.Writer(Path(tmp) / "a.pcz", model=level, fps=30, force=True) as w:
            refiner = w.predictor.coder.refiner
            level_index = LEVELS.index(level)
            key = w.keyframes
            key_encode, predicted = key.encode, refiner.predicted_symbols

            def on_key(frame):
                payload, out = key_encode(frame)
                state["exact"], state["prev"] = payload[0] == REFERENCE, None
                return payload, out

            def on_predicted(frame, base, refs, previous=None):
                out = predicted(frame, base, refs, previous)
                if refs[0] is key.reference:  # a key frame tried against the reference
                    return out
                field, b, s = out
                choice = field.choice
                pixels = state["exact"] and rng.random() >= NO_PIXELS_SHARE
                inputs = symbolnet.FrameInputs(choice, state["prev"], b if pixels else None, refs,
                                               level_index, *s.shape[:2], vectors=field.vectors, wide=True)
                flags = refine.block_flags(s)
                coded = refine._flagged_pixels(flags, *s.shape[:2])
                board = refiner.board
                planes = np.ascontiguousarray(s.transpose(2, 0, 1))
                known = np.zeros_like(planes)
                for index in range(refine.PASSES):
                    channel, pos, ctx = refine._pass_layout(known, index, board, coded)
                    values = planes[channel].reshape(-1)[pos]
                    xs.append(symbolnet.features(known, index, pos, inputs))  # int8
                    ys.append(values.astype(np.int8))
                    counted.append(refiner._bits[index, ctx, values + refiner.max_symbol].sum())
                    known[channel].reshape(-1)[pos] = values
                state["prev"] = s
                return out

            key.encode, refiner.predicted_symbols = on_key, on_predicted
            for f in frames:
                w.write(f)
    x = np.concatenate(xs) if xs else np.zeros((0, symbolnet.INPUTS_7), np.int8)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int8)
    return {"clip": clip, "level": level, "x": x, "y": y, "counted_bits": float(np.sum(counted)),
            "frames": len(frames)}


def collect_all(jobs: list[tuple], collect, workers: int, cache: Path | None, log, noun: str,
                bits_key: str) -> list[dict]:
    """``collect`` of every (clip, level, …) job on ``workers`` processes, or what an
    earlier run kept in ``cache`` (.npz, no pickle); each result a dict of clip, level,
    x, y, ``bits_key`` (the code length of the same y by the counted tables) and frames.
    With ``cache``, a fresh collection is kept there for the next run."""
    if cache is not None and cache.exists():
        data = dict(np.load(cache, allow_pickle=False))
        return [{"clip": str(c), "level": str(lv), "x": data[f"x_{c}_{lv}"], "y": data[f"y_{c}_{lv}"],
                 bits_key: float(data[f"b_{c}_{lv}"]), "frames": int(data[f"n_{c}_{lv}"])}
                for c, lv, *_ in jobs]
    results = []
    with ProcessPoolExecutor(workers) as pool:
        for r in pool.map(collect, jobs):
            results.append(r)
            log(f"{r['clip']} {r['level']}: {len(r['y'])} {noun}")
    if cache is not None:
        np.savez(cache, **{f"{k}_{r['clip']}_{r['level']}": np.asarray(r[key]) for r in results
                           for k, key in (("x", "x"), ("y", "y"), ("b", bits_key), ("n", "frames"))})
    return results


def signed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from pacodec import symbolnet

    return (y.astype(np.int64) * symbolnet.flips(x.astype(np.int64))) + symbolnet.ALPHABET // 2


def train(x: np.ndarray, y: np.ndarray, epochs: int, log) -> dict[str, np.ndarray]:
    import torch

    from pacodec import symbolnet

    torch.manual_seed(0)
    torch.set_num_threads(2)
    inputs, h = symbolnet.SHAPES[MODEL]
    net = torch.nn.Sequential(torch.nn.Linear(inputs, h), torch.nn.ReLU(), torch.nn.Linear(h, h),
                              torch.nn.ReLU(), torch.nn.Linear(h, symbolnet.ALPHABET))
    xf = torch.from_numpy(x.astype(np.float32) / SCALE)
    target = torch.from_numpy(signed(x, y))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    steps = epochs * math.ceil(len(xf) / 4096)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for epoch in range(epochs):
        perm = torch.randperm(len(xf))
        total = 0.0
        for s in range(0, len(xf), 4096):
            idx = perm[s:s + 4096]
            loss = torch.nn.functional.cross_entropy(net(xf[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: {total / len(xf) / math.log(2):.4f} bits a symbol")
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    return {f"{k}{i + 1}": getattr(m, k2).detach().numpy().astype(np.float64).T if k == "W"
            else getattr(m, k2).detach().numpy().astype(np.float64)
            for i, m in enumerate(layers) for k, k2 in (("W", "weight"), ("b", "bias"))}


def quantize(weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Float weights -> the integer tensors of symbolnet.SymbolNet."""
    w1 = weights["W1"] / SCALE[:, None]
    xf = x[:200000].astype(np.float64)
    h1 = np.maximum(xf @ w1 + weights["b1"], 0)
    h2 = np.maximum(h1 @ weights["W2"] + weights["b2"], 0)

    def act_bits(h):  # fractional bits of an activation: its 99.99th percentile at 255
        return int(math.floor(math.log2(255.0 / max(np.percentile(h, 99.99), 1e-6))))

    def weight_bits(w):
        return int(math.floor(math.log2(32767.0 / np.abs(w).max())))

    a1, a2 = act_bits(h1), act_bits(h2)
    s1, s2, s3 = weight_bits(w1), weight_bits(weights["W2"]), weight_bits(weights["W3"])
    logit_bits = 4  # logits in 1/16 nat
    out = {
        "W1": np.rint(w1 * 2.0 ** s1), "b1": np.rint(weights["b1"] * 2.0 ** s1),
        "W2": np.rint(weights["W2"] * 2.0 ** s2), "b2": np.rint(weights["b2"] * 2.0 ** (s2 + a1)),
        "W3": np.rint(weights["W3"] * 2.0 ** s3), "b3": np.rint(weights["b3"] * 2.0 ** (s3 + a2)),
        "S": np.array([s1 - a1, s2 + a1 - a2, s3 + a2 - logit_bits]),
    }
    return {k: v.astype(np.int32) for k, v in out.items()}


def code_length(net, x: np.ndarray, y: np.ndarray) -> float:
    """Bits of the symbols under the integer network's tables."""
    from pacodec import symbolnet

    bits = 0.0
    for s in range(0, len(x), 65536):
        xb = x[s:s + 65536].astype(np.int64)
        t = net.tables(xb)
        k = signed(xb, y[s:s + 65536])
        bits += float(-np.log2(t[np.arange(len(k)), k] / symbolnet.TOTAL).sum())
    return bits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--cache", type=Path, default=None, help="keep the collected symbols in this .npz")
    args = parser.parse_args(argv)
    from pacodec.data import shared_clip

    if any(shared_clip(c) is None for c in (*TRAINING, VALIDATION)):
        print("the training clips are absent (../shared/data/pacman)", file=sys.stderr)
        return 2
    t0 = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - t0:6.0f} s] {message}", flush=True)

    jobs = [(c, lv, 1000 * i + j) for i, c in enumerate((*TRAINING, VALIDATION)) for j, lv in enumerate(LEVELS)]
    results = collect_all(jobs, collect, args.workers, args.cache, log, "symbols", "counted_bits")
    train_set = [r for r in results if r["clip"] in TRAINING]
    x = np.concatenate([r["x"] for r in train_set])
    y = np.concatenate([r["y"] for r in train_set])
    log(f"training on {len(y)} symbols of {len(train_set)} clip-levels")
    weights = train(x, y, args.epochs, log)
    tensors = quantize(weights, x)
    from pacodec import symbolnet

    net = symbolnet.SymbolNet(tensors, MODEL)
    from pacodec import zoo

    replaced = MODEL if shipped() else "pac-ctx"
    previous = zoo.load(replaced)[0].network()
    width = symbolnet.SHAPES[replaced][0]  # 6.x's features: the first 31
    measured = {"clip": f"{VALIDATION}.mp4, every coded residual symbol of its predicted frames at the default GOP",
                "levels": {}}
    for r in results:
        if r["clip"] != VALIDATION:
            continue
        learned = code_length(net, r["x"], r["y"])
        before = code_length(previous, r["x"][:, :width], r["y"])
        measured["levels"][r["level"]] = {
            "counted_contexts_bytes_per_frame": round(r["counted_bits"] / 8 / r["frames"], 1),
            "learned_bytes_per_frame": round(learned / 8 / r["frames"], 1),
            "replaced_network_bytes_per_frame": round(before / 8 / r["frames"], 1)}
        log(f"{r['level']}: counted contexts {r['counted_bits'] / 8 / r['frames']:.1f} B a frame, "
            f"learned {learned / 8 / r['frames']:.1f}, the shipped network {before / 8 / r['frames']:.1f}")
    write(tensors, measured, args.epochs, len(y))
    return 0


def write(tensors: dict[str, np.ndarray], measured: dict, epochs: int, symbols: int) -> None:
    import torch

    from pacodec import symbolnet, zoo
    from pacodec.models import build_model

    model = build_model(MODEL)
    for name, value in tensors.items():
        getattr(model, name).copy_(torch.from_numpy(value))
    data = zoo.serialize(model)
    sha = hashlib.sha256(data).hexdigest()
    zoo.supersede(zoo.SHIPPED_DIR, [MODEL], sha)  # files made with the old weights keep decoding
    (zoo.SHIPPED_DIR / FILE).write_bytes(data)
    entry = {
        "id": MODEL, "file": FILE, "sha256": sha, "family": "pac", "config": model.config_dict(),
        "architecture": "integer MLP {} features -> {} -> {} -> 65 values, int32 weights, 8-bit activations, "
                        "softmax by table (pacodec/symbolnet.py, formats/pcz.md §14.9)".format(
                            *symbolnet.SHAPES[MODEL], symbolnet.SHAPES[MODEL][1]),
        "training": {"data": [f"../shared/data/pacman/{c}.mp4" for c in TRAINING], "epochs": epochs,
                     "symbols": symbols, "levels": list(LEVELS),
                     "method": "cross-entropy (code length) of every coded residual symbol of the predicted "
                               "frames the encoder writes at the default GOP; integer quantization after",
                     "command": f"python tools/train_symbol_model.py --epochs {epochs}"},
        "measured": measured,
    }
    zoo.write_manifest_entry(zoo.SHIPPED_DIR, entry)
    print(f"wrote {zoo.SHIPPED_DIR / FILE} (sha256 {sha})")


if __name__ == "__main__":
    sys.exit(main())
