"""Train the network that gives 11.x predicted frames' 4×4 re-prediction choices their
probabilities (pacodec/choicenet.py, formats/pcz.md §14.13), and ship it in pac-ctx3.

    python tools/train_choice_model.py [--workers 2] [--epochs 50] [--cache choices.npz]

1. Encode each training clip (clip0, clip4, clip5, clip6, clip7 of ../shared/data/pacman;
   never the validation or test clips) at every refined level (pac-q6 … pac-q10) at
   the default GOP, and collect the choices the motion coder codes where the GOP's
   pixels are exact (the blocks the network will code), each with its features
   (choicenet.frame_features / pass_features: what the decoder holds when it reaches
   the block). The encoder's choices do not depend on how they are coded (it prices a
   block's reference by its error and its vector's bits, never by the choice's), so
   the choices of a 10.x encoder are those of an 11.x one. The validation clip
   (clip8) is collected the same way, to measure on.
2. Train the float network (Adam, cross-entropy = the choices' code length in nats:
   the rate is the loss) on the distinct (features, choice) rows, each weighted by
   how often it occurs.
3. Quantize it to integers (tools/train_symbol_model.quantize's scheme: 16-bit
   weights, 8-bit activations, power-of-two scales) and measure the integer network's
   code length of clip8's choices against 8.0's counted tables (motion_tables.CHOICE_TABLES_8).
4. Write pacodec/weights/pac-ctx3.safetensors, the shipped pac-ctx2's tensors and these
   ``C_`` tensors, and its manifest entry.

About 12 minutes on 2 idle CPU cores: 10 to collect 16 million choices (1.4 million
distinct rows), 2 to train 50 epochs (the first 10 epochs got 18 % of 8.0's bytes
back on clip8, 40 epochs with 32 hidden units 22 %, 40 with 64 units 24 %).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

TRAINING = ("clip0", "clip4", "clip5", "clip6", "clip7")
VALIDATION = "clip8"
LEVELS = ("pac-q6", "pac-q7", "pac-q8", "pac-q9", "pac-q10")
MODEL = "pac-ctx3"
SYMBOLS_FROM = "pac-ctx2"
FILE = f"{MODEL}.safetensors"


def _scale():
    """Feature scales the float network divides by (folded into W1 when quantized)."""
    from pacodec import choicenet as cn

    s = np.ones(cn.INPUTS, np.float32)
    s[cn.ACT_AT:cn.GRAD_AT + 1] = 16
    s[cn.PREV_REF_AT:cn.PREV_REF_AT + 4] = 9
    s[cn.VEC_AT:cn.VEC_AT + 2] = 4
    s[cn.ROW_AT] = 50
    s[cn.NEAR_AT:cn.NEAR_AT + 4] = 4
    return s


def collect(job: tuple[str, str]) -> dict:
    """Encode one clip at one level (the current format); every choice the motion coder
    codes in exact GOPs, with its features, and 8.0's table bits of the same choices."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    import pacodec
    from pacodec import blockmotion as bm
    from pacodec import choicenet as cn
    from pacodec import motion_tables as mt
    from pacodec import video
    from pacodec.data import shared_clip

    clip, level = job
    k = LEVELS.index(level)
    table_bits = -np.log2(np.asarray(mt.CHOICE_TABLES_8, np.float64) / 65536.0)
    frames = [video.fit(f, 160, 200) for f in video.iter_frames(shared_clip(clip))]
    xs, ys, bits = [], [], [0.0]
    with tempfile.TemporaryDirectory() as tmp:
        with pacodec.Writer(Path(tmp) / "a.pcz", model=level, fps=30, force=True) as w:
            coder = w.predictor.coder.refiner.motion_coder
            encode = coder.encode

            def on_encode(encoder, field, previous, refs=None):
                if refs is not None:
                    base = cn.frame_features(refs, previous.choice, previous.vectors, k)
                    known = np.zeros_like(field.choice)
                    for parity, pos in enumerate(bm._parities(*field.choice.shape)):
                        xs.append(cn.pass_features(base, known, parity, pos).astype(np.int8))
                        ys.append(field.choice.ravel()[pos].astype(np.int8))
                        known.ravel()[pos] = field.choice.ravel()[pos]
                    act = bm.activity(refs, *field.choice.shape)
                    for _, ctx, values in bm.choice_symbols(field.choice, previous.choice, act):
                        bits[0] += float(table_bits[ctx, values].sum())
                return encode(encoder, field, previous, refs)

            coder.encode = on_encode
            for f in frames:
                w.write(f)
    x = np.concatenate(xs) if xs else np.zeros((0, cn.INPUTS), np.int8)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int8)
    return {"clip": clip, "level": level, "x": x, "y": y, "table_bits": bits[0], "frames": len(frames)}


def distinct(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (features, choice) rows and how often each occurs."""
    rows = np.ascontiguousarray(np.concatenate([x, y[:, None]], axis=1).astype(np.int8))
    keys = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
    unique, counts = np.unique(keys, return_counts=True)
    u = unique.view(np.int8).reshape(len(unique), -1)
    return u[:, :-1], u[:, -1].astype(np.int64), counts


def train(x: np.ndarray, y: np.ndarray, weight: np.ndarray, epochs: int, log) -> dict[str, np.ndarray]:
    import torch

    from pacodec import choicenet as cn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    h = cn.HIDDEN
    net = torch.nn.Sequential(torch.nn.Linear(cn.INPUTS, h), torch.nn.ReLU(), torch.nn.Linear(h, h),
                              torch.nn.ReLU(), torch.nn.Linear(h, cn.CHOICES))
    xf = torch.from_numpy(x.astype(np.float32) / _scale())
    target = torch.from_numpy(y)
    wt = torch.from_numpy(weight.astype(np.float32))
    total_weight = float(wt.sum())
    batch = 2048
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    steps = epochs * math.ceil(len(xf) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for epoch in range(epochs):
        perm = torch.randperm(len(xf))
        total = 0.0
        for s in range(0, len(xf), batch):
            idx = perm[s:s + batch]
            ce = torch.nn.functional.cross_entropy(net(xf[idx]), target[idx], reduction="none")
            loss = (ce * wt[idx]).sum() / total_weight * (len(xf) / len(idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float((ce.detach() * wt[idx]).sum())
        log(f"epoch {epoch + 1}/{epochs}: {total / total_weight / math.log(2):.4f} bits a choice")
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    return {f"{k}{i + 1}": getattr(m, k2).detach().numpy().astype(np.float64).T if k == "W"
            else getattr(m, k2).detach().numpy().astype(np.float64)
            for i, m in enumerate(layers) for k, k2 in (("W", "weight"), ("b", "bias"))}


def _symbol_tool():
    """tools/train_symbol_model.py, whose collection and quantization this tool shares."""
    sys.path.insert(0, str(ROOT / "tools"))
    import train_symbol_model

    return train_symbol_model


def quantize(weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Float weights -> choicenet.ChoiceNet's ``C_`` tensors (the symbol model's scheme)."""
    tsm = _symbol_tool()
    saved = tsm.SCALE
    tsm.SCALE = _scale()
    try:
        q = tsm.quantize(weights, x)
    finally:
        tsm.SCALE = saved
    return {f"C_{k}": v for k, v in q.items()}


def code_length(net, x: np.ndarray, y: np.ndarray) -> float:
    bits = 0.0
    for s in range(0, len(x), 65536):
        t = net.tables(x[s:s + 65536].astype(np.int64))
        bits += float(-np.log2(t[np.arange(len(t)), y[s:s + 65536].astype(np.int64)] / 65536.0).sum())
    return bits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--cache", type=Path, default=None, help="keep the collected choices in this .npz")
    parser.add_argument("--no-write", action="store_true", help="measure only; ship nothing")
    args = parser.parse_args(argv)
    from pacodec.data import shared_clip

    if any(shared_clip(c) is None for c in (*TRAINING, VALIDATION)):
        print("the training clips are absent (../shared/data/pacman)", file=sys.stderr)
        return 2
    t0 = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - t0:6.0f} s] {message}", flush=True)

    jobs = [(c, lv) for c in (*TRAINING, VALIDATION) for lv in LEVELS]
    results = _symbol_tool().collect_all(jobs, collect, args.workers, args.cache, log, "choices", "table_bits")
    train_set = [r for r in results if r["clip"] in TRAINING]
    x = np.concatenate([r["x"] for r in train_set])
    y = np.concatenate([r["y"] for r in train_set])
    dx, dy, counts = distinct(x, y)
    log(f"training on {len(y)} choices of {len(train_set)} clip-levels ({len(dy)} distinct rows)")
    weights = train(dx, dy, counts, args.epochs, log)
    tensors = quantize(weights, dx)
    from pacodec.choicenet import ChoiceNet

    net = ChoiceNet(tensors)
    from pacodec import zoo

    shipped = zoo.load(MODEL)[0].choice_network()  # what the weights this run replaces code
    measured = {"clip": f"{VALIDATION}.mp4, every choice the motion coder codes in exact GOPs at the default GOP",
                "levels": {}}
    for r in results:
        if r["clip"] != VALIDATION:
            continue
        learned = code_length(net, r["x"], r["y"])
        before = code_length(shipped, r["x"], r["y"])
        n = r["frames"]
        measured["levels"][r["level"]] = {"tables_8_bytes_per_frame": round(r["table_bits"] / 8 / n, 2),
                                          "learned_bytes_per_frame": round(learned / 8 / n, 2)}
        log(f"{r['level']}: 8.0's tables {r['table_bits'] / 8 / n:.2f} B a frame, learned {learned / 8 / n:.2f} "
            f"({100 * (learned / max(r['table_bits'], 1e-9) - 1):+.1f} %), the shipped network's "
            f"{before / 8 / n:.2f} ({100 * (learned / max(before, 1e-9) - 1):+.1f} %)")
    if not args.no_write:
        write(tensors, measured, args.epochs, len(y))
    return 0


def write(tensors: dict[str, np.ndarray], measured: dict, epochs: int, choices: int) -> None:
    import torch

    from pacodec import choicenet, symbolnet, zoo
    from pacodec.models import build_model

    model = build_model(MODEL)
    symbols = zoo.load(SYMBOLS_FROM)[0]
    for name in ("W1", "b1", "W2", "b2", "W3", "b3", "S"):
        getattr(model, name).copy_(getattr(symbols, name))
    for name, value in tensors.items():
        getattr(model, name).copy_(torch.from_numpy(value))
    data = zoo.serialize(model)
    sha = hashlib.sha256(data).hexdigest()
    zoo.supersede(zoo.SHIPPED_DIR, [MODEL], sha)  # files made with the old weights keep decoding
    (zoo.SHIPPED_DIR / FILE).write_bytes(data)
    inputs, hidden = symbolnet.SHAPES[SYMBOLS_FROM]
    entry = {
        "id": MODEL, "file": FILE, "sha256": sha, "family": "pac", "config": model.config_dict(),
        "architecture": f"two integer MLPs: the residual symbols' ({SYMBOLS_FROM}'s tensors, {inputs} features -> "
                        f"{hidden} -> {hidden} -> 65, formats/pcz.md §14.9) and the 4×4 choices' (C_ tensors, "
                        f"{choicenet.INPUTS} features -> {choicenet.HIDDEN} -> {choicenet.HIDDEN} -> "
                        f"{choicenet.CHOICES}, pacodec/choicenet.py, §14.13); int32 weights, 8-bit activations, "
                        "softmax by table",
        "training": {"data": [f"../shared/data/pacman/{c}.mp4" for c in TRAINING], "epochs": epochs,
                     "choices": choices, "levels": list(LEVELS),
                     "method": "choice network: cross-entropy (code length) of every choice the motion coder "
                               "codes in exact GOPs at the default GOP; integer quantization after. Symbol "
                               f"network: the shipped {SYMBOLS_FROM}'s tensors, copied",
                     "command": f"python tools/train_choice_model.py --epochs {epochs}"},
        "measured": measured,
    }
    zoo.write_manifest_entry(zoo.SHIPPED_DIR, entry)
    print(f"wrote {zoo.SHIPPED_DIR / FILE} (sha256 {sha})")


if __name__ == "__main__":
    sys.exit(main())
