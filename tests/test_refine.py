"""The refinement layer of pac-q6…q10 (refine.py) and refined files end to end."""

from __future__ import annotations

import numpy as np
import pytest

import pacodec
from pacodec import api, video
from pacodec.cli import render_info
from pacodec.pcz import PczReader
from pacodec.errors import FormatError
from pacodec.models.pac import integer_table
from pacodec.refine import (CONTEXTS, PASSES, REFERENCES, Checkerboard, RefineCoder, count_symbols,
                            pass_contexts, quantize_residual)

R = 32
MOTION_TABLE = integer_table(np.array([[60000.0] + [500.0] * REFERENCES]))[0]  # keep, or reference j


def _coder(frames: np.ndarray, bases: np.ndarray, step: int) -> RefineCoder:
    counts = None
    for f, b in zip(frames, bases):
        counts = count_symbols(quantize_residual(f, b, step, R), R, counts)
    tables = integer_table((counts + 0.5).reshape(-1, 2 * R + 1)).reshape(counts.shape)
    return RefineCoder(step, tables, *frames.shape[1:3])


def _blurred(frames: np.ndarray) -> np.ndarray:
    """A stand-in base layer: the frames smoothed, so residuals sit at edges."""
    import cv2

    return np.stack([cv2.blur(f, (5, 5)) for f in frames])


@pytest.mark.parametrize("step", [8, 16, 40])
def test_round_trip_is_exact_and_within_the_dead_zone(atari_frames, step):
    bases = _blurred(atari_frames)
    coder = _coder(atari_frames[:10], bases[:10], step)
    for frame, base in zip(atari_frames[10:], bases[10:]):
        payload, refined = coder.encode(frame, base)
        assert np.array_equal(coder.decode(payload, base), refined)
        # rounding up from 3/8 of a step: no subpixel ends farther than 5/8 of one away
        assert np.abs(refined.astype(int) - frame).max() <= (5 * step) // 8
        assert np.abs(refined.astype(int) - frame).mean() < np.abs(base.astype(int) - frame).mean()


def test_finer_steps_cost_more_and_reach_closer(atari_frames):
    bases = _blurred(atari_frames)
    sizes, errors = [], []
    for step in (40, 16, 8):
        coder = _coder(atari_frames, bases, step)
        payload, refined = coder.encode(atari_frames[0], bases[0])
        sizes.append(len(payload))
        errors.append(np.mean((refined.astype(float) - atari_frames[0]) ** 2))
    assert sizes[0] < sizes[1] < sizes[2]
    assert errors[0] > errors[1] > errors[2]


def test_contexts_read_only_earlier_passes():
    rng = np.random.default_rng(0)
    board = Checkerboard(12, 10)
    symbols = rng.integers(-2, 3, size=(3, 12, 10)).astype(np.int32)
    for index in range(PASSES):
        ctx = pass_contexts(symbols, index, board)
        assert ctx.min() >= 0 and ctx.max() < CONTEXTS
        # Scramble what the decoder has not decoded yet: this pass and later ones.
        from pacodec.refine import CHANNEL_ORDER

        scrambled = symbols.copy()
        channel = CHANNEL_ORDER[index // 2]
        scrambled[channel].reshape(-1)[board.positions[index % 2]] = 9
        for later in CHANNEL_ORDER[index // 2 + 1:]:
            scrambled[later] = -7
        if index % 2 == 0:
            scrambled[channel].reshape(-1)[board.positions[1]] = 5
        assert np.array_equal(pass_contexts(scrambled, index, board), ctx)


def test_a_payload_that_does_not_fit_is_a_format_error(atari_frames):
    bases = _blurred(atari_frames)
    coder = _coder(atari_frames, bases, 16)
    payload, _ = coder.encode(atari_frames[0], bases[0])
    with pytest.raises(FormatError):
        coder.decode(payload + bytes(4), bases[0])  # words left over
    with pytest.raises(FormatError):
        coder.decode(payload[:-3], bases[0])  # not whole words


def test_tiny_refined_file_end_to_end(tmp_path, clip, tiny_weights):
    base_file, refined_file = tmp_path / "base.pcz", tmp_path / "hi.pcz"
    api.encode(clip, base_file, model="tiny-pac", weights_dir=tiny_weights, gop=1)
    facts = api.encode(clip, refined_file, model="tiny-pac-hi", weights_dir=tiny_weights, gop=1)
    assert facts["gop"] == 1 and facts["predicted_frames"] == 0
    layers = facts["layers"]
    assert layers["base"] + layers["refinement"] + layers["layer_lengths"] == facts["parts"]["codes"]
    assert layers["layer_lengths"] == 4 * facts["frames"]
    assert facts["codes_fixed_width"] == facts["frames"] * (8 * 13 * 10 + 3 * 200 * 160)
    assert sum(facts["parts"].values()) == facts["file_bytes"]
    src = [video.fit(f, 160, 200) for f in video.iter_frames(clip)]
    with pacodec.open(base_file, weights_dir=tiny_weights) as r:
        base = list(r)
    with pacodec.open(refined_file, weights_dir=tiny_weights) as r:
        refined = list(r)
        assert np.array_equal(r[5], refined[5])  # seeking decodes the same frame
    # tiny-pac-hi = tiny-pac's network at level 1 plus a residual at step 16: far closer
    # than tiny-pac at its own (default) level, and within 5/8 of a step everywhere.
    err = lambda frames: np.mean([np.mean((a.astype(float) - b) ** 2) for a, b in zip(frames, src)])
    assert err(refined) < err(base) / 4
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(refined, src)) <= 10
    text = render_info(api.probe(refined_file))
    assert f"base {layers['base']:,} + refinement {layers['refinement']:,}" in text


def test_refined_predicted_frames_stay_within_their_bound(tmp_path, clip, tiny_weights):
    """GOP 4 (the default for refined ids is 32): intra frames end within 5/8 of a step
    of their source, P-frames (prediction from the last frames plus the rate–distortion
    optimised residual) within RD_MAX_ERROR steps; seeking gives the frames decoding
    from the start gives."""
    from pacodec.refine import RD_MAX_ERROR

    out = tmp_path / "p.pcz"
    facts = api.encode(clip, out, model="tiny-pac-hi", weights_dir=tiny_weights, gop=4)
    assert facts["gop"] == 4 and facts["predicted_frames"] == 15 and facts["intra_frames"] == 5
    assert [m["id"] for m in facts["models"]] == ["tiny-pac-hi", "tiny-pac-res", "pac-key", "pac-ctx3"]
    # Atari frames are far from pac-key's maze: every key frame is coded on its own (§14.6)
    assert facts["key_frames"] == {"own": 5, "reference": 0}
    by_type = facts["bytes_by_type"]
    assert by_type["predicted"] / 15 < by_type["intra"] / 5
    layers = facts["layers"]
    assert layers["base"] + layers["refinement"] + layers["layer_lengths"] == facts["parts"]["codes"]
    src = [video.fit(f, 160, 200) for f in video.iter_frames(clip)]
    with pacodec.open(out, weights_dir=tiny_weights) as r:
        frames = list(r)
        assert all(np.array_equal(r[i], frames[i]) for i in (1, 6, 19))
        symbols = list(r.iter_symbols())
    errors = [np.abs(a.astype(int) - b).max() for a, b in zip(frames, src)]
    assert max(errors[::4]) <= 10  # intra frames, Δ = 16
    assert max(errors) <= RD_MAX_ERROR * 16
    # a P-frame's symbols: 13×10 modes, 13×10×2 vectors, its residual latents, then
    # one refinement symbol a subpixel
    assert all(len(s) >= 13 * 10 * 3 + 3 * 200 * 160 for s in symbols)


def test_lambda_trades_the_predicted_residual(tmp_path, clip, tiny_weights):
    """--lambda scales the refined P-frames' rate–distortion λ: a larger one writes
    fewer predicted-frame bytes for a lower PSNR; intra frames are untouched."""
    facts = {}
    for lam in (0.25, 8.0):
        out = tmp_path / f"l{lam}.pcz"
        facts[lam] = api.encode(clip, out, model="tiny-pac-hi", weights_dir=tiny_weights, gop=4, lam=lam)
        facts[lam]["psnr"] = api.compare(out, clip, weights_dir=tiny_weights)["psnr"]
    low, high = facts[0.25], facts[8.0]
    assert high["bytes_by_type"]["predicted"] < low["bytes_by_type"]["predicted"]
    assert high["bytes_by_type"]["intra"] == low["bytes_by_type"]["intra"]
    assert high["psnr"] < low["psnr"]


def test_other_refinement_tables_are_refused(tmp_path, clip, tiny_weights):
    """The header's table digest covers the refinement tables: a file coded with one set
    is refused by weights whose refinement tables differ, even when forced past sha256."""
    from pacodec import zoo
    from pacodec.errors import WeightsError

    out = tmp_path / "hi.pcz"
    api.encode(clip, out, model="tiny-pac-hi", weights_dir=tiny_weights, max_frames=3)
    model, _ = zoo.load("tiny-pac-hi", tiny_weights)
    assert api.probe(out)["table_digest"] == api.tables_digest(model).hex()
    entry = next(e for e in zoo.read_manifest(tiny_weights) if e["id"] == "tiny-pac-hi")
    model.refine_tables[1, 0, 0, 0] += 1
    other = tmp_path / "other"
    other.mkdir()
    zoo.write_manifest_entry(other, {**entry, "sha256": zoo.save(model, other / entry["file"])})
    with pytest.raises(WeightsError, match="tables"):
        pacodec.open(out, weights_dir=other, force_weights=True)
    with pacodec.open(out, weights_dir=tiny_weights) as r:  # the right tables decode it
        assert len(list(r)) == 3


def test_shipped_refined_levels_layer_on_their_base(tmp_path, atari_frames):
    """pac-q7's base layer is pac-q2's payload byte for byte, and the refinement gets closer."""
    from pacodec.models.pac import RefinedConfig

    frames = atari_frames[:3]
    paths = {}
    for model in ("pac-q2", "pac-q7"):
        paths[model] = tmp_path / f"{model}.pcz"
        with api.Writer(paths[model], model=model, gop=1) as w:
            for f in frames:
                w.write(f)
    assert RefinedConfig.refinements[1][0] == 1  # pac-q7 = level 1 (pac-q2) + a residual
    with open(paths["pac-q2"], "rb") as fa, open(paths["pac-q7"], "rb") as fb:
        pairs = list(zip(PczReader(fa), PczReader(fb)))
    assert len(pairs) == 3
    for a, b in pairs:
        n = int.from_bytes(b.payload[:4], "little")
        assert b.payload[4:4 + n] == a.payload
    with pacodec.open(paths["pac-q2"]) as r2, pacodec.open(paths["pac-q7"]) as r7:
        for f, x2, x7 in zip(frames, r2, r7):
            assert np.mean((x7.astype(float) - f) ** 2) < np.mean((x2.astype(float) - f) ** 2)


def test_models_lists_the_refined_levels_with_their_figures():
    rows = {r["id"]: r for r in api.list_models()}

    def intra(model_id):  # the all-intra figures (measured for every level)
        return next(m for m in rows[model_id]["measured_all"] if m.get("gop", 1) == 1)

    for k in range(6, 11):
        row = rows[f"pac-q{k}"]
        assert row["weights"] and row["code_bytes"]["fixed_width_int8"] == 16640 + 3 * 200 * 160
        assert intra(f"pac-q{k}")["psnr"] > intra("pac-q5")["psnr"]
    psnrs = [intra(f"pac-q{k}")["psnr"] for k in range(6, 11)]
    assert psnrs == sorted(psnrs) and psnrs[-1] > 40
    assert rows["pac-q3"]["code_bytes"]["fixed_width_int8"] == 16640


@pytest.mark.parametrize("damage", ["claims_too_much", "no_length", "random_refinement", "random_base"])
def test_crafted_refined_payloads_are_clean_errors(tmp_path, clip, tiny_weights, damage):
    """Payloads that pass their CRC (a crafted file) but do not fit the two-layer layout
    or do not decode: a one-line error and exit 2, never a traceback."""
    from conftest import run_cli
    from pacodec.pcz import PczWriter

    good = tmp_path / "good.pcz"
    api.encode(clip, good, model="tiny-pac-hi", weights_dir=tiny_weights, gop=4, max_frames=6)
    with open(good, "rb") as f:
        reader = PczReader(f)
        header = reader.header
        records = [(r.payload, r.type.name == "PREDICTED") for r in reader]
    rng = np.random.default_rng(1)
    payload, predicted = records[1]
    n = int.from_bytes(payload[:4], "little")
    crafted = {
        "claims_too_much": (len(payload)).to_bytes(4, "little") + payload[4:],
        "no_length": payload[:3],
        "random_refinement": payload[:4 + n] + rng.integers(0, 2**32, 50, dtype=np.uint32).tobytes(),
        "random_base": (40).to_bytes(4, "little") + rng.integers(0, 2**32, 10, dtype=np.uint32).tobytes()
        + payload[4 + n:],
    }[damage]
    bad = tmp_path / "bad.pcz"
    with open(bad, "wb") as f:
        w = PczWriter(f, header)
        for i, (p, pred) in enumerate(records):
            w.write_frame(crafted if i == 1 else p, predicted=pred)
        w.close()
    with pytest.raises(pacodec.PacodecError):
        with pacodec.open(bad, weights_dir=tiny_weights) as r:
            list(r)
    out = tmp_path / "out.mkv"
    result = run_cli("decode", str(bad), "-o", str(out), "--weights", str(tiny_weights))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob("out.mkv*"))


def test_block_flags_skip_unchanged_blocks(atari_frames):
    """Predicted-frame coding: a frame whose residual is zero but in one block costs the
    flags and that block; flags and symbols round-trip exactly."""
    from pacodec.refine import block_flags

    bases = _blurred(atari_frames)
    counts, flags = None, np.zeros(2, np.int64)
    for f, b in zip(atari_frames, bases):
        counts = count_symbols(quantize_residual(f, b, 16, R), R, counts, flags)
    assert flags.sum() == len(atari_frames) * 13 * 10
    tables = integer_table((counts + 0.5).reshape(-1, 2 * R + 1)).reshape(counts.shape)
    flag_table = integer_table(flags[None] + 0.5)[0]
    coder = RefineCoder(16, tables, 200, 160, flag_table=flag_table, motion_table=MOTION_TABLE)
    coder.rd_scale = 0  # no rate–distortion choices: every pixel ends within 5/8 of a step
    plain = RefineCoder(16, tables, 200, 160)
    frame = bases[0].copy()
    frame[20:30, 40:50] = 255 - frame[20:30, 40:50]  # one changed patch, inside block (1, 2)…(1, 3)
    payload, refined = coder.encode(frame, bases[0], [bases[0]])
    assert np.array_equal(coder.decode(payload, bases[0], [bases[0]]), refined)
    assert block_flags(coder.symbols(frame, bases[0])).sum() == 2
    assert len(payload) < len(plain.encode(frame, bases[0])[0])
    for f, b, ref in zip(atari_frames[1:5], bases[1:5], atari_frames[:4]):
        payload, refined = coder.encode(f, b, [ref])
        assert np.array_equal(coder.decode(payload, b, [ref]), refined)
        assert np.abs(refined.astype(int) - f).max() <= 10


def test_rate_distortion_choices_only_drop_what_does_not_pay(atari_frames):
    """rd_optimize moves symbols toward zero only (never up, never across zero); with
    λ = 0 it changes nothing (mid-grey: no clipping), with a large λ it empties a frame
    of small residuals, and a coder using it writes a smaller payload that decodes to
    exactly what the encoder reconstructed."""
    from pacodec.refine import Checkerboard, rd_optimize, table_prices

    rng = np.random.default_rng(5)
    base = np.full((32, 48, 3), 128, np.uint8)
    frame = np.clip(base.astype(int) + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    symbols = quantize_residual(frame, base, 16, R)
    assert (symbols != 0).any()
    bits = np.full((PASSES, CONTEXTS, 2 * R + 1), 8.0)
    bits[:, :, R] = 0.5
    flag_bits = np.array([0.1, 4.0])
    board = Checkerboard(32, 48)
    bits = table_prices(bits, board)
    same = rd_optimize(frame, base, symbols, 16, bits, 0.0, flag_bits, board)
    assert np.array_equal(same, symbols)
    lowered = rd_optimize(frame, base, symbols, 16, bits, 30.0, flag_bits, board)
    assert np.all(np.abs(lowered) <= np.abs(symbols)) and np.all(lowered * symbols >= 0)
    assert (lowered != symbols).any()
    assert not rd_optimize(frame, base, symbols, 16, bits, 1e9, flag_bits, board).any()

    counts, flags = None, np.zeros(2, np.int64)
    bases = _blurred(atari_frames)
    for f, b in zip(atari_frames, bases):
        counts = count_symbols(quantize_residual(f, b, 16, R), R, counts, flags)
    tables = integer_table((counts + 0.5).reshape(-1, 2 * R + 1)).reshape(counts.shape)
    coder = RefineCoder(16, tables, 200, 160, flag_table=integer_table(flags[None] + 0.5)[0],
                        motion_table=MOTION_TABLE)
    sizes = []
    for scale in (0.0, 2.0):
        coder.rd_scale = scale
        payload, refined = coder.encode(atari_frames[1], bases[1], [atari_frames[0]])
        assert np.array_equal(coder.decode(payload, bases[1], [atari_frames[0]]), refined)
        sizes.append(len(payload))
    assert sizes[1] < sizes[0]


def test_sprites_that_move_are_taken_from_the_reference():
    """A patch that moved by (1, 3) between reference and frame, on a base that missed it:
    4×4 blocks are re-predicted from the displaced reference, so the residual is empty
    there and the layer is far smaller than without motion."""
    from pacodec.refine import apply_motion, choose_motion

    rng = np.random.default_rng(2)
    ref = np.full((40, 48, 3), 30, np.uint8)
    ref[8:20, 8:20] = rng.integers(0, 255, (12, 12, 3))
    frame = np.full_like(ref, 30)
    frame[9:21, 11:23] = ref[8:20, 8:20]
    choice, vectors = choose_motion(frame, ref, [ref])  # the base: the unmoved reference
    moved = choice != 0
    assert moved.any() and set(choice[moved]) == {1} and {tuple(v) for v in vectors[moved]} == {(-1, -3)}
    assert np.array_equal(apply_motion(ref, [ref], choice, vectors)[12:20, 12:20], frame[12:20, 12:20])


def test_blocks_are_taken_from_an_older_reference_when_it_matches():
    """A sprite whose current look is in the frame before last (an animation cycle):
    its blocks name reference 2, decode to that look, and a decoder holding fewer
    references than a block names refuses the frame with FormatError."""
    from pacodec.refine import REFERENCES, apply_motion, choose_motion

    assert REFERENCES >= 2
    rng = np.random.default_rng(3)
    look_a, look_b = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    older = np.full((32, 32, 3), 20, np.uint8)
    older[8:16, 8:16] = look_a
    last = np.full_like(older, 20)
    last[8:16, 8:16] = look_b
    frame = np.full_like(older, 20)
    frame[8:16, 9:17] = look_a  # look A again, one pixel to the right
    choice, vectors = choose_motion(frame, last, [last, older])
    moved = choice != 0
    assert moved.any() and set(choice[moved]) == {2}
    out = apply_motion(last, [last, older], choice, vectors)
    assert np.array_equal(out[8:16, 12:16], frame[8:16, 12:16])
    with pytest.raises(FormatError):
        apply_motion(last, [last], choice, vectors)


@pytest.mark.parametrize("shape", [(200, 160), (30, 22), (17, 9)])
def test_half_pixel_blocks_are_the_rounded_means_the_format_defines(shape):
    """pcz.md §14.8 at every offset, vector and edge (blocks cut by the frame too): the
    decoder's block copy, the planes the encoder searches, and the costs it reads from
    them all agree with the definition."""
    from pacodec.refine import apply_motion, half_pel_costs, half_pel_planes

    h, w = shape
    rng = np.random.default_rng(h)
    refs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    rows, cols = -(-h // 4), -(-w // 4)
    choice = rng.integers(0, 3, (rows, cols))
    vectors = rng.integers(-4, 5, (rows, cols, 2))
    fraction = rng.integers(0, 4, (rows, cols))
    out = apply_motion(np.zeros_like(refs[0]), refs, choice, vectors, fraction)

    def pixel(ref, y, x):  # reads beyond the frame take the nearest edge pixel
        return ref[min(max(y, 0), h - 1), min(max(x, 0), w - 1)].astype(np.int64)

    for r, c in zip(*np.nonzero(choice)):
        ref, (dy, dx), f = refs[choice[r, c] - 1], vectors[r, c], fraction[r, c]
        for y in range(4 * r, min(4 * r + 4, h)):
            for x in range(4 * c, min(4 * c + 4, w)):
                a, b = pixel(ref, y + dy, x + dx), pixel(ref, y + dy, x + dx + 1)
                cc, d = pixel(ref, y + dy + 1, x + dx), pixel(ref, y + dy + 1, x + dx + 1)
                want = [a, (a + b + 1) >> 1, (a + cc + 1) >> 1, (a + b + cc + d + 2) >> 2][f]
                np.testing.assert_array_equal(out[y, x], want)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    blocks = np.arange(rows * cols)
    j, whole = rng.integers(0, 2, len(blocks)), rng.integers(-4, 5, (len(blocks), 2))
    costs, ints, offsets = half_pel_costs(frame, [half_pel_planes(ref) for ref in refs], blocks, j, whole)
    for i in range(0, len(blocks), 5):
        for m in range(8):
            if not np.isfinite(costs[i, m]):
                assert np.abs(2 * whole[i] + [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0),
                                              (1, 1)][m]).max() > 8
                continue
            one = np.zeros((rows, cols), np.int64)
            one.flat[i] = j[i] + 1
            v = np.zeros((rows, cols, 2), np.int64)
            v.reshape(-1, 2)[i] = ints[i, m]
            f = np.zeros((rows, cols), np.int64)
            f.flat[i] = offsets[i, m]
            pred = apply_motion(np.zeros_like(frame), refs, one, v, f).astype(np.int64)
            r, c = divmod(i, cols)
            err = (pred - frame)[4 * r:4 * r + 4, 4 * c:4 * c + 4]
            assert costs[i, m] == (err ** 2).sum()


def test_a_sprite_half_a_pixel_away_is_taken_at_its_half_pixel_offset():
    """A 6.0 encoder takes blocks at a half-pixel offset where the frame holds the
    reference moved by half a pixel, and the decoder rebuilds the same frame."""
    from pacodec import refine
    from pacodec.refine import half_pel_planes

    import cv2

    rng = np.random.default_rng(5)
    ref = np.full((64, 64, 3), 20, np.uint8)
    # A smooth patch, as sprites scaled to the frame are: the best whole vector is next
    # to the true position (the search looks at half pixels around the best whole one).
    ref[16:40, 16:40] = cv2.resize(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8), (24, 24))
    pad = refine.HALF_PAD
    frame = half_pel_planes(ref)[1][pad:pad + 64, pad + 2:pad + 2 + 64].astype(np.uint8)  # 2.5 pixels left
    predictor = api._predictor(api._load_model("pac-q10", None, "cpu")[0], None, "cpu")
    refiner = predictor.coder.refiner
    assert refiner.motion_coder.half_pel
    refiner.board = refine.Checkerboard(64, 64)
    field, base, _ = refiner.predicted_symbols(frame, ref, [ref])
    inner = (slice(5, 9), slice(4, 8))  # 4×4 blocks inside the moved patch (pixels 20…35, 16…31)
    assert (field.choice[inner] == 1).all() and (field.fraction[inner] == 1).all()
    assert (field.vectors[inner] == (0, 2)).all()
    assert np.array_equal(base[20:36, 16:32], frame[20:36, 16:32])


def test_the_context_counts_are_their_definition_at_every_pixel():
    """refine._box3 and _cross4 (OpenCV on float32) count the non-zero values of the 3×3
    window and of the 4 neighbours, zero outside the plane, on planes of odd sizes."""
    from pacodec.refine import _box3, _cross4

    rng = np.random.default_rng(3)
    for h, w in ((200, 160), (17, 9), (1, 5)):
        mask = rng.random((h, w)) < 0.5
        p = np.pad(mask.astype(np.int64), 1)
        box = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
        cross = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
        assert np.array_equal(_box3(mask), box) and np.array_equal(_cross4(mask), cross)


def test_the_cli_and_the_api_share_the_default_model():
    import inspect

    from pacodec import cli

    assert inspect.signature(cli.encode).parameters["model"].default == api.DEFAULT_MODEL == "pac-q8"


def test_scene_cut_starts_a_new_gop(tmp_path, atari_frames, tiny_weights):
    """At a long GOP, a frame unlike the last (here a new scene from frame 10: the maze
    upside down, colours swapped) is coded intra; `info` lists where a decoder can start,
    and seeking past the cut decodes only from it, giving what decoding from the start gives."""
    frames = np.concatenate([atari_frames[:10], atari_frames[10:, ::-1, ::-1]])
    out = tmp_path / "cut.pcz"
    with pacodec.Writer(out, model="tiny-pac-hi", weights_dir=tiny_weights, gop=250) as writer:
        for frame in frames:
            writer.write(frame)
    facts = api.probe(out)
    assert facts["gop"] == 250 and facts["intra_at"] == [0, 10]
    assert facts["longest_gop"] == 10
    assert "intra frames at 0, 10 (at most 250 apart); a seek decodes at most 10 frames" in render_info(facts)
    with pacodec.open(out, weights_dir=tiny_weights) as r:
        decoded = list(r)
        assert r.pcz.start_of(15) == 10
        assert np.array_equal(r[15], decoded[15])


def test_errors_where_the_picture_stands_still_weigh_more():
    """persistence_weight marks the subpixels whose source did not change since the
    previous source frame; rd_optimize weighted by it keeps more symbols there (an
    error left where nothing moves stays on screen) and the same elsewhere."""
    from pacodec.refine import Checkerboard, persistence_weight, rd_optimize, table_prices

    rng = np.random.default_rng(6)
    base = np.full((32, 48, 3), 128, np.uint8)
    frame = np.clip(base.astype(int) + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    previous = frame.copy()
    previous[:, 24:] = (previous[:, 24:].astype(int) + 100) % 256  # the right half changed since the previous frame
    weight = persistence_weight(frame, previous, 8.0)
    assert (weight[:, :24] == 8).all() and (weight[:, 24:] == 1).all()
    assert persistence_weight(frame, None, 8.0) is None and persistence_weight(frame, previous, 1.0) is None
    symbols = quantize_residual(frame, base, 16, R)
    bits = np.full((PASSES, CONTEXTS, 2 * R + 1), 8.0)
    bits[:, :, R] = 0.5
    board = Checkerboard(32, 48)
    args = (frame, base, symbols, 16, table_prices(bits, board), 30.0, np.array([0.1, 4.0]), board)
    plain, weighted = rd_optimize(*args), rd_optimize(*args, weight=weight)
    assert (weighted[:, :24] != 0).sum() > (plain[:, :24] != 0).sum()
    assert np.array_equal(weighted[:, 32:], plain[:, 32:])  # beyond the 16×16 blocks that straddle the halves


def test_the_encoders_whole_frame_contexts_are_the_passes_contexts():
    """refine._symbol_contexts (the encoder's pricing, whole planes at once) gives every
    subpixel the pass and context the coding passes themselves compute (``_passes``,
    pass by pass, as a decoder does), on frames of every shape of parity."""
    from pacodec.refine import Checkerboard, _passes, _symbol_contexts, _symbol_contexts_at

    rng = np.random.default_rng(9)
    for h, w in ((8, 8), (9, 13), (200, 160)):
        for density in (0.05, 0.5):
            s = rng.integers(-5, 6, (h, w, 3)) * (rng.random((h, w, 3)) < density)
            board = Checkerboard(h, w)
            want_pass, want_ctx = np.full((3, h * w), -1), np.full((3, h * w), -1)
            for index, channel, pos, _, ctx in _passes(s, board):
                want_pass[channel, pos], want_ctx[channel, pos] = index, ctx
            passes, contexts = _symbol_contexts(s, board)
            assert np.array_equal(passes, want_pass.reshape(3, h, w).transpose(1, 2, 0))
            assert np.array_equal(contexts, want_ctx.reshape(3, h, w).transpose(1, 2, 0))
            assert len(np.unique(contexts)) > 4
            # ... and so does the pricing at a few subpixels (rd_optimize's ``at``),
            # reading around each of them instead of the whole planes
            at = np.flatnonzero(rng.random(h * w * 3) < 0.2)
            some_pass, some_ctx = _symbol_contexts_at(s, at)
            assert np.array_equal(some_pass, passes.reshape(-1)[at])
            assert np.array_equal(some_ctx, contexts.reshape(-1)[at])


def test_pricing_at_a_few_subpixels_is_pricing_the_whole_frame_there():
    """A pricer asked at flat indices ``at`` (what rd_optimize asks, to spend its time
    on the non-zero symbols only) gives the same bits there as over the whole frame,
    for the counted tables both ways it computes them (around each subpixel, or whole
    planes when many are asked)."""
    from pacodec.refine import Checkerboard, table_prices

    rng = np.random.default_rng(4)
    h, w = 40, 24
    bits = rng.random((6, 64, 9)) * 8
    price = table_prices(bits, Checkerboard(h, w))
    s = rng.integers(-4, 5, (h, w, 3)) * (rng.random((h, w, 3)) < 0.1)
    lower = s - np.sign(s)
    whole_s, whole_lower = price(s, (s, lower))
    for share in (0.02, 0.5):  # both of its ways
        at = np.flatnonzero(rng.random(s.size) < share)
        got_s, got_lower = price(s, (s.reshape(-1)[at], lower.reshape(-1)[at]), at)
        assert np.array_equal(got_s, whole_s.reshape(-1)[at])
        assert np.array_equal(got_lower, whole_lower.reshape(-1)[at])
        assert not np.array_equal(got_s, got_lower)


REFINED_IDS = ("pac-q6", "pac-q7", "pac-q8", "pac-q9", "pac-q10")


def test_the_first_pass_screens_with_a_denser_levels_tables():
    """The encoder's first rate–distortion pass of predicted frames prices with the
    counted tables of the level SCREEN_LEVELS denser (the densest level with its own):
    pac-q6's own tables, counted on the sparse symbols its encoder once chose, priced
    away blocks the symbol model would keep. The coded tables stay the level's own."""
    from pacodec.refine import SCREEN_LEVELS

    assert SCREEN_LEVELS >= 1
    for k, name in enumerate(REFINED_IDS):
        model, _ = api._load_model(name, None, "cpu")
        assert model.config.refine_level == k
        coder = model.refine_coder(predicted=True)
        own = model.refine_tables_p[k].numpy().astype(np.float64)
        denser = model.refine_tables_p[min(k + SCREEN_LEVELS, len(REFINED_IDS) - 1)].numpy().astype(np.float64)
        np.testing.assert_allclose(coder._bits, -np.log2(own / own.sum(axis=-1, keepdims=True)))
        np.testing.assert_allclose(coder._screen_bits, -np.log2(denser / denser.sum(axis=-1, keepdims=True)))
        if k < len(REFINED_IDS) - 1:
            assert not np.allclose(coder._screen_bits, coder._bits)
    with pytest.raises(ValueError, match="screening tables"):
        coder.screen_with(np.ones((PASSES, CONTEXTS, 3)))


def test_each_refined_level_has_its_own_lambda_that_lambda_scales():
    """A level's λ is RD_SCALE · LEVEL_RD_SCALE[level] · Δ² (pac-q6: 5 Δ², which keeps
    its files about as small as before the screening above), and --lambda multiplies it."""
    from pacodec.refine import LEVEL_RD_SCALE, RD_SCALE

    assert len(LEVEL_RD_SCALE) == len(REFINED_IDS) and LEVEL_RD_SCALE[0] > 1
    for k, name in enumerate(REFINED_IDS[:2]):
        model, _ = api._load_model(name, None, "cpu")
        for lam in (1.0, 2.5):
            refiner = api._predictor(model, None, "cpu", lam=lam).coder.refiner
            assert refiner.rd_scale == pytest.approx(RD_SCALE * LEVEL_RD_SCALE[k] * lam)


def test_each_refined_level_prices_its_vectors_bits_at_its_own_price():
    """A taken block's vector and offset bits cost LEVEL_VECTOR_PRICE[level] quarters of
    the level's motion price (pac-q6: a whole one, nearer what its λ makes a bit cost),
    and the search is handed that price."""
    from pacodec import blockmotion, refine
    from pacodec.refine import LEVEL_VECTOR_PRICE

    assert len(LEVEL_VECTOR_PRICE) == len(REFINED_IDS) and LEVEL_VECTOR_PRICE[0] > LEVEL_VECTOR_PRICE[1]
    rng = np.random.default_rng(2)
    ref = np.full((64, 64, 3), 20, np.uint8)
    ref[8:56, 8:56] = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    frame = np.roll(ref, (1, -2), axis=(0, 1))
    seen = []
    choose = blockmotion.MotionCoder.choose_vectors

    def spy(self, costs, blocks, keep, price, bit_price, *args, **kwargs):
        seen.append((price, bit_price))
        return choose(self, costs, blocks, keep, price, bit_price, *args, **kwargs)

    for k, name in enumerate(REFINED_IDS[:2]):
        refiner = api._predictor(api._load_model(name, None, "cpu")[0], None, "cpu").coder.refiner
        assert refiner.vector_price == LEVEL_VECTOR_PRICE[k]
        refiner.board = refine.Checkerboard(64, 64)
        blockmotion.MotionCoder.choose_vectors = spy
        try:
            refiner.predicted_symbols(frame, ref, [ref])
        finally:
            blockmotion.MotionCoder.choose_vectors = choose
        price, bit_price = seen[-1]
        assert price == refiner.motion_price() and bit_price == pytest.approx(LEVEL_VECTOR_PRICE[k] * price / 4)


def test_the_9x_flag_contexts_are_the_specs_counts():
    """refine.flag_contexts by the letter of pcz.md §14.11: 2 · b + p, b binning the 4×4
    blocks taken inside each 16×16 block (0 | 1–2 | 3–6 | 7 or more, the bottom row of
    16×16 blocks holding only two rows of 4×4 blocks), p the previous predicted frame's
    flag there, 0 without one."""
    from pacodec.refine import flag_contexts

    h, w = 200, 160
    choice = np.zeros((50, 40), np.int64)
    choice[0, 0] = 1                      # block (0, 0): 1 taken -> b = 1
    choice[4:6, 4] = 2; choice[7, 7] = 3  # block (1, 1): 3 taken -> b = 2
    choice[8:12, 8:10] = 4                # block (2, 2): 8 taken -> b = 3
    choice[48:50, 36:40] = 1              # block (12, 9), the cut bottom row: 8 taken -> b = 3
    choice[4, 8:10] = 1                   # block (1, 2): 2 taken -> b = 1
    previous = np.zeros((h, w, 3), np.int32)
    previous[20, 40, 2] = -1              # block (1, 2) held a symbol (blue only)
    previous[199, 0, 0] = 3               # block (12, 0)
    ctx = flag_contexts(choice, previous, h, w)
    assert ctx.shape == (13, 10)
    want = np.zeros((13, 10), np.int64)
    want[0, 0], want[1, 1], want[2, 2], want[12, 9] = 2, 4, 6, 6
    want[1, 2] = 2 * 1 + 1
    want[12, 0] = 1
    np.testing.assert_array_equal(ctx, want)
    np.testing.assert_array_equal(flag_contexts(choice, None, h, w), want - (want % 2))


@pytest.mark.parametrize("shape", [(64, 48), (30, 22)])  # (30, 22): blocks cut by the frame's edge
def test_the_motion_search_costs_are_every_vectors_error_on_any_thread_count(shape):
    """refine.search_costs (the gathered windows, Σw² − 2Σw·t + Σt², a thread per few
    references) gives for every block, reference and vector within ±search the squared
    error of the reference read at that offset (edge pixels beyond the frame, only the
    block's pixels inside the frame counted), the same on 1 and 2 threads; with the
    residual's price, that price at the RD_CANDIDATES vectors of least error and inf
    elsewhere."""
    from pacodec.refine import (MOTION_BLOCK, RD_CANDIDATES, _rate_by_magnitude, _residual_cost, reference_windows,
                                search_costs)

    rng = np.random.default_rng(5)
    h, w = shape
    refs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cols = -(-w // MOTION_BLOCK)
    blocks = np.array([0, 3, cols + 1, (-(-h // MOTION_BLOCK)) * cols - 1])
    residual = (6, 63, 36.0, _rate_by_magnitude(63))
    for search in (4, 8):
        side = 2 * search + 1
        plain = search_costs(frame, blocks, refs, search)
        assert plain.shape == (len(blocks), len(refs), side * side)
        for i, flat in enumerate(blocks):
            r, c = divmod(int(flat), cols)
            y0, x0 = r * MOTION_BLOCK, c * MOTION_BLOCK
            bh, bw = min(MOTION_BLOCK, h - y0), min(MOTION_BLOCK, w - x0)
            target = frame[y0:y0 + bh, x0:x0 + bw].astype(np.int64)
            for j, ref in enumerate(refs):
                for k in range(side * side):
                    dy, dx = k // side - search, k % side - search
                    ys = np.clip(np.arange(y0, y0 + bh) + dy, 0, h - 1)
                    xs = np.clip(np.arange(x0, x0 + bw) + dx, 0, w - 1)
                    assert plain[i, j, k] == ((ref[np.ix_(ys, xs)].astype(np.int64) - target) ** 2).sum()
        windows = [reference_windows(ref) for ref in refs]
        for threads in (1, 2):
            assert np.array_equal(search_costs(frame, blocks, refs, search, None, windows, threads), plain)
        priced = search_costs(frame, blocks, refs, search, residual, windows, 1)
        assert np.array_equal(search_costs(frame, blocks, refs, search, residual, windows, 2), priced)
        assert (np.isfinite(priced).sum(axis=2) == RD_CANDIDATES).all()
        kth = np.sort(plain, axis=2)[:, :, RD_CANDIDATES - 1:RD_CANDIDATES]
        assert (plain[np.isfinite(priced)] <= np.broadcast_to(kth, plain.shape)[np.isfinite(priced)]).all()
        i, j, k = (a[0] for a in np.nonzero(np.isfinite(priced)))
        dy, dx = k // side - search, k % side - search
        r, c = divmod(int(blocks[i]), cols)
        y0, x0 = r * MOTION_BLOCK, c * MOTION_BLOCK
        ys = np.clip(np.arange(y0, y0 + MOTION_BLOCK) + dy, 0, h - 1)
        xs = np.clip(np.arange(x0, x0 + MOTION_BLOCK) + dx, 0, w - 1)
        inside = ((np.arange(y0, y0 + MOTION_BLOCK) < h)[:, None] & (np.arange(x0, x0 + MOTION_BLOCK) < w)[None])
        tgt = frame[np.ix_(np.minimum(np.arange(y0, y0 + MOTION_BLOCK), h - 1),
                           np.minimum(np.arange(x0, x0 + MOTION_BLOCK), w - 1))].astype(np.float32)
        d = (refs[j][np.ix_(ys, xs)].astype(np.float32) - tgt) * inside[..., None]
        assert priced[i, j, k] == pytest.approx(float(_residual_cost(d.transpose(2, 0, 1)[None], *residual)[0]))
