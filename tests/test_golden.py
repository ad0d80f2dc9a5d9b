"""Golden files pin the format and decoding across versions (DESIGN.md, Determinism).

Decoded symbols must match their recorded digest exactly; decoded pixels come from
float networks and may differ by rounding between CPUs, so they may differ by 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import pacodec
from pacodec import api
from pacodec.errors import FormatError

from test_pcz_spec import parse_pcz

SAMPLES = Path(__file__).resolve().parents[1] / "formats" / "samples"
NAMES = sorted(p.stem for p in SAMPLES.glob("*.json"))


def weights_named_by(path: Path, folder: Path) -> Path:
    """A weights folder whose current entries are the weights the sample ``path`` names,
    for each model whose shipped weights were retrained after it was made (zoo.supersede
    keeps the old ones): its frames coded again with these give its bytes, as a writer
    of its day did."""
    import shutil

    from pacodec import zoo

    folder.mkdir()
    for model in api.probe(path)["models"]:
        named = zoo.find(model["id"], sha256=model["weights_sha256"])
        assert named is not None and named.sha256 == model["weights_sha256"], model
        if named.sha256 != zoo.find(model["id"]).sha256:
            shutil.copyfile(named.path, folder / named.path.name)
            entry = {k: v for k, v in named.entry.items() if k != "superseded"}
            zoo.write_manifest_entry(folder, {**entry, "file": named.path.name})
    return folder


def test_there_are_golden_samples():
    assert "conv4-naive" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_golden_info_is_unchanged(name):
    expected = json.loads((SAMPLES / f"{name}.json").read_text())
    facts = api.probe(SAMPLES / f"{name}.pcz")
    facts.pop("file")
    assert facts == expected["info"]
    assert sum(facts["parts"].values()) == facts["file_bytes"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_parses_by_the_spec_alone(name):
    data = (SAMPLES / f"{name}.pcz").read_bytes()
    expected = json.loads((SAMPLES / f"{name}.json").read_text())["info"]
    parsed = parse_pcz(data)
    assert parsed["coded"] == (expected["width"], expected["height"])
    assert [m[0] if isinstance(m, tuple) else m for m in parsed["models"]]
    assert len(parsed["frames"]) == expected["frames"]
    assert parsed["gop"] == expected["gop"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_symbols_and_pixels(name):
    expected = json.loads((SAMPLES / f"{name}.json").read_text())
    with pacodec.open(SAMPLES / f"{name}.pcz") as reader:
        assert reader.symbol_digest() == expected["symbols_sha256"]
        frames = list(reader)
    stored = sorted((SAMPLES / name).glob("frame_*.png"))
    assert len(stored) == len(frames) == expected["info"]["frames"]
    for frame, path in zip(frames, stored):
        want = cv2.imread(str(path))[..., ::-1]
        assert np.abs(frame.astype(int) - want.astype(int)).max() <= 1, path.name


def test_info_of_a_predictive_file_names_both_models_and_bytes_by_frame_type():
    from pacodec.cli import render_info

    facts = api.probe(SAMPLES / "pac-q3-gop4.pcz")
    text = render_info(facts)
    intra, predicted = facts["bytes_by_type"]["intra"], facts["bytes_by_type"]["predicted"]
    assert intra + predicted + facts["parts"]["header"] + facts["parts"]["index"] == facts["file_bytes"]
    for m in facts["models"]:
        assert f"{m['id']}  weights sha256 {m['weights_sha256']}" in text
    assert [m["id"] for m in facts["models"]] == ["pac-q3", "pac-res"]
    assert (f"intra {intra:,} bytes in {facts['intra_frames']} frames "
            f"({intra / facts['intra_frames']:.1f} a frame)") in text
    assert f"predicted {predicted:,} bytes in {facts['predicted_frames']} frames" in text


def test_a_6x_sample_takes_blocks_at_half_pixel_offsets(monkeypatch):
    """pac-q8-hp (a disc drawn anti-aliased at half-pixel positions) pins §14.8: a 6.0
    file whose P-frames take blocks at every kind of half-pixel offset, which decode to
    the frames pinned by its digest and PNGs (test_golden_symbols_and_pixels)."""
    from pacodec import refine

    path = SAMPLES / "pac-q8-hp.pcz"
    assert api.probe(path)["version"] == "6.0"
    offsets: list[int] = []
    apply_motion = refine.apply_motion

    def spy_motion(base, refs, choice, vectors, fraction=None, far=None):
        offsets.extend([] if fraction is None else fraction[np.asarray(choice) != 0].tolist())
        return apply_motion(base, refs, choice, vectors, fraction, far)

    monkeypatch.setattr(refine, "apply_motion", spy_motion)
    with pacodec.open(path) as reader:
        assert len(list(reader)) == 12
    assert set(offsets) == {0, 1, 2, 3}


def test_a_7x_sample_reads_the_wider_features_of_pac_ctx2(monkeypatch):
    """pac-q8-c2 (pac-q8-hp's frames as a 7.0 file) pins §14.9: its symbols are read with
    pac-ctx2's 42 features, and every group of the 11 new ones (the earlier channels'
    exact symbols, the neighbours' sum, the predicted colour and its change, the
    previous record's symbols here and where the vector points) takes non-zero values
    in it, so its digest and PNGs (test_golden_symbols_and_pixels) hold each to the spec."""
    from pacodec import symbolnet

    path = SAMPLES / "pac-q8-c2.pcz"
    facts = api.probe(path)
    assert facts["version"] == "7.0" and facts["models"][3]["id"] == "pac-ctx2"
    rows: list[np.ndarray] = []
    features = symbolnet.features

    def spy(known, index, pos, inputs):
        x = features(known, index, pos, inputs)
        rows.append(np.array(x))
        return x

    monkeypatch.setattr(symbolnet, "features", spy)
    with pacodec.open(path) as reader:
        assert len(list(reader)) == 12
    x = np.concatenate(rows)
    assert x.shape[1] == symbolnet.INPUTS_7
    wide = x[:, symbolnet.WIDE_AT:] != 0
    for group in ((0, 1), (2,), (3, 4, 5), (6, 7, 8), (9,), (10,)):
        assert wide[:, list(group)].any(), [symbolnet.WIDE_NAMES[g] for g in group]


def test_an_8x_sample_codes_its_side_information_in_the_wider_contexts(monkeypatch):
    """pac-q8-m8 (pac-q8-hp's frames as an 8.0 file) pins §14.10: its GOP is exact (key
    frame from the reference), so its choices are read in contexts of the references'
    activity, which takes non-zero values where the disc moved, and its vectors from
    same-reference predictors; its digest and PNGs (test_golden_symbols_and_pixels)
    hold both to the spec, and tests/test_specread.py reads it from the spec alone."""
    from pacodec import blockmotion

    path = SAMPLES / "pac-q8-m8.pcz"
    facts = api.probe(path)
    assert facts["version"] == "8.0" and facts["models"][3]["id"] == "pac-ctx2"
    activities: list[np.ndarray] = []
    kinds: list[int] = []
    activity, predictor8 = blockmotion.activity, blockmotion.predictor8

    def spy_activity(refs, rows, cols):
        out = activity(refs, rows, cols)
        activities.append(out)
        return out

    def spy_predictor(choice, vectors, previous, r, c, j):
        out = predictor8(choice, vectors, previous, r, c, j)
        kinds.append(out[0])
        return out

    monkeypatch.setattr(blockmotion, "activity", spy_activity)
    monkeypatch.setattr(blockmotion, "predictor8", spy_predictor)
    with pacodec.open(path) as reader:
        assert len(list(reader)) == 12
    assert len(activities) == 12 and any(a.any() for a in activities)
    assert 1 in kinds and {2, 3} & set(kinds)


def test_a_9x_sample_codes_its_block_flags_in_contexts(monkeypatch):
    """pac-q8-f9 (pac-q8-hp's frames as a 9.0 file) pins §14.11: its 16×16 block flags
    are read in contexts of the 4×4 blocks taken in them and of the previous record's
    flags, and both parts take non-zero values (the disc moves, and its residual stays
    in the blocks it was in); its digest and PNGs (test_golden_symbols_and_pixels) hold
    that to the spec, and tests/test_specread.py reads it from the spec alone."""
    from pacodec import refine

    path = SAMPLES / "pac-q8-f9.pcz"
    facts = api.probe(path)
    assert facts["version"] == "9.0" and facts["models"][3]["id"] == "pac-ctx2"
    seen: list[np.ndarray] = []
    flag_contexts = refine.flag_contexts

    def spy(choice, previous_symbols, h, w):
        out = flag_contexts(choice, previous_symbols, h, w)
        seen.append(out)
        return out

    monkeypatch.setattr(refine, "flag_contexts", spy)
    with pacodec.open(path) as reader:
        assert len(list(reader)) == 12
    contexts = np.concatenate([s.ravel() for s in seen])
    assert len(seen) == 12  # the key frame (from the reference) and 11 P-frames
    assert (contexts // 2 > 0).any() and (contexts % 2 == 1).any()


def test_a_10x_sample_stores_its_predicted_streams_trimmed(tmp_path, monkeypatch):
    """pac-q8-t10 (pac-q8-f9's source frames as a 10.0 file) pins §14.12: its frames
    coded again give its bytes exactly; coded with whole-word streams (a 9.0 file) they
    give the same symbols (the digest) in more bytes; its payloads are not whole words,
    and read as 9.x reads them (whole little-endian words) it does not decode."""
    from tools.make_golden import DRAWN, reference_frames, write_source

    path = SAMPLES / "pac-q8-t10.pcz"
    facts = api.probe(path)
    assert facts["version"] == "10.0"
    expected = json.loads((SAMPLES / "pac-q8-t10.json").read_text())
    source = write_source(tmp_path / "half.mkv", reference_frames(DRAWN, half=True))
    again = tmp_path / "again.pcz"
    monkeypatch.setattr(api, "SYMBOL_MODEL", "pac-ctx2")  # a writer of 10.x (no choice network, §14.13)
    monkeypatch.setattr(api, "FAR_REFERENCES_MAJOR", 99)  # ... nor far references (§14.14)
    api.encode(source, again, model="pac-q8", gop=12)
    assert again.read_bytes() == path.read_bytes()
    lengths = [len(payload) for kind, payload in parse_pcz(path.read_bytes())["frames"] if kind == 3]
    assert lengths and any(n % 4 for n in lengths)
    monkeypatch.setattr(api, "TRIMMED_MAJOR", 99)  # a writer and reader that know no trimmed streams
    nine = tmp_path / "nine.pcz"
    assert api.encode(source, nine, model="pac-q8", gop=12)["version"] == "9.0"
    with pacodec.open(nine) as reader:
        assert reader.symbol_digest() == expected["symbols_sha256"]
    assert nine.stat().st_size > path.stat().st_size
    with pytest.raises(FormatError):
        with pacodec.open(path) as reader:
            list(reader)


def test_an_11x_sample_codes_its_choices_with_the_network(tmp_path, monkeypatch):
    """pac-q8-n11 (pac-q8-t10's source frames as an 11.0 file) pins §14.13: its frames
    coded again by an 11.0 writer (four references within ±4, as before 12.0) with the
    weights it names (pac-ctx3 was retrained since) give its bytes exactly; every record's choices (the key frame's, from the reference, and the
    11 P-frames') are coded in two passes with pac-ctx3's choice network; a 10.0 writer
    (CHOICE_TABLES_8) codes the same symbols (the digest); and a reader that parses its
    choices with the tables does not get its frames."""
    from pacodec import blockmotion, choicenet
    from tools.make_golden import DRAWN, reference_frames, write_source

    path = SAMPLES / "pac-q8-n11.pcz"
    facts = api.probe(path)
    assert facts["version"] == "11.0" and facts["models"][3]["id"] == "pac-ctx3"
    expected = json.loads((SAMPLES / "pac-q8-n11.json").read_text())
    source = write_source(tmp_path / "half.mkv", reference_frames(DRAWN, half=True))
    again = tmp_path / "again.pcz"
    monkeypatch.setattr(api, "FAR_REFERENCES_MAJOR", 99)  # a writer of 11.0 at most
    weights = weights_named_by(path, tmp_path / "weights")
    assert api.encode(source, again, model="pac-q8", gop=12, weights_dir=weights)["version"] == "11.0"
    assert again.read_bytes() == path.read_bytes()
    calls: list[int] = []
    tables = choicenet.ChoiceNet.tables
    monkeypatch.setattr(choicenet.ChoiceNet, "tables", lambda self, x: calls.append(len(x)) or tables(self, x))
    with pacodec.open(path) as reader:
        frames = [np.array(f) for f in reader]
    assert len(calls) == 2 * 12 and sum(calls) == 12 * 50 * 40
    monkeypatch.setattr(api, "SYMBOL_MODEL", "pac-ctx2")
    ten = tmp_path / "ten.pcz"
    assert api.encode(source, ten, model="pac-q8", gop=12)["version"] == "10.0"
    with pacodec.open(ten) as reader:
        assert reader.symbol_digest() == expected["symbols_sha256"]
    monkeypatch.setattr(blockmotion.MotionCoder, "use_choice_model", lambda self, network, level: None)
    other = []
    try:
        with pacodec.open(path) as reader:
            other = [np.array(f) for f in reader]
    except FormatError:
        pass
    assert len(other) < len(frames) or any(not np.array_equal(a, b) for a, b in zip(frames, other))


def test_a_12x_sample_takes_blocks_from_far_references(tmp_path, monkeypatch):
    """pac-q8-r12 (a disc whose mouth cycles every 4 frames while it moves 2 pixels a
    frame, one GOP of 12) pins §14.14: its frames coded again (with the weights it names)
    give its bytes exactly;
    its later P-frames take blocks of choice 4 from a far reference (K ≥ 1: the frame
    4 before, where the mouth was as it is now) at vectors beyond ±4; and an 11.x reader
    (four references, 8.0's vector tables) does not get its frames."""
    from pacodec import refine
    from tools.make_golden import DRAWN, reference_frames, write_source

    path = SAMPLES / "pac-q8-r12.pcz"
    facts = api.probe(path)
    assert facts["version"] == "12.0" and facts["models"][3]["id"] == "pac-ctx3"
    source = write_source(tmp_path / "far.mkv", reference_frames(DRAWN, far=True))
    again = tmp_path / "again.pcz"
    api.encode(source, again, model="pac-q8", gop=12, weights_dir=weights_named_by(path, tmp_path / "weights"))
    assert again.read_bytes() == path.read_bytes()
    taken: list[tuple[int, int, int]] = []  # (references held, far index, |vector|) of each far block
    apply_motion = refine.apply_motion

    def spy(base, refs, choice, vectors, fraction=None, far=None):
        if far is not None:
            for r, c in zip(*np.nonzero(np.asarray(choice) == 4)):
                taken.append((len(refs), int(far[r, c]), int(np.abs(vectors[r, c]).max())))
        return apply_motion(base, refs, choice, vectors, fraction, far)

    monkeypatch.setattr(refine, "apply_motion", spy)
    with pacodec.open(path) as reader:
        frames = [np.array(f) for f in reader]
    assert any(k >= 1 and v > 4 for _, k, v in taken)
    assert all(4 + k <= held for held, k, _ in taken)
    monkeypatch.undo()
    monkeypatch.setattr(api, "FAR_REFERENCES_MAJOR", 99)  # read it as 11.x would
    other = []
    try:
        with pacodec.open(path) as reader:
            other = [np.array(f) for f in reader]
    except FormatError:
        pass
    assert len(other) < len(frames) or any(not np.array_equal(a, b) for a, b in zip(frames, other))


def test_a_5x_sample_takes_blocks_from_the_intra_frame_after_four_records(monkeypatch):
    """pac-q8-lt (one GOP of 12 frames) pins §14.3's 5.0 rule: every P-frame's last
    reference is the GOP's intra frame, its later P-frames take 4×4 blocks from it
    (reference 4), and decoding them with the 4.x rule (the last four frames) gives
    frames that do not parse."""
    from pacodec import refine

    path = SAMPLES / "pac-q8-lt.pcz"
    assert api.probe(path)["version"] == "5.0"
    held: list[tuple[int, np.ndarray]] = []  # per frame: how many references, the last one
    named: set[int] = set()  # the frames with a block naming reference 4
    decode, apply_motion = refine.LayeredPredictor.decode, refine.apply_motion

    def spy_decode(self, payload, refs):
        held.append((len(refs), np.array(refs[-1])))
        return decode(self, payload, refs)

    def spy_motion(base, refs, choice, vectors, fraction=None, far=None):
        if (np.asarray(choice) == 4).any():
            named.add(len(held) - 1)
        return apply_motion(base, refs, choice, vectors, fraction, far)

    monkeypatch.setattr(refine.LayeredPredictor, "decode", spy_decode)
    monkeypatch.setattr(refine, "apply_motion", spy_motion)
    with pacodec.open(path) as reader:
        frames = [np.array(f) for f in reader]
    # held[0]: the key frame, predicted from pac-key's learned frame alone (§14.6)
    assert [n for n, _ in held] == [1, 1, 2, 3] + [4] * 8
    assert all(np.array_equal(last, frames[0]) for _, last in held[1:])
    assert max(named) >= 6  # frame 6 on (the 5th P-frame), reference 4 is only the intra frame

    monkeypatch.setattr(refine.LayeredPredictor, "decode", decode)
    monkeypatch.setattr(refine, "apply_motion", apply_motion)
    monkeypatch.setattr(api, "_remember", lambda coder, frame, history: [frame] + history[:3])  # the 4.x rule
    other = []
    with pytest.raises(FormatError, match="frame [5-9]|frame 1[01]"):  # its symbols' features read the references
        with pacodec.open(path) as reader:
            for frame in reader:
                other.append(np.array(frame))
    assert len(other) >= 5 and all(np.array_equal(a, b) for a, b in zip(frames[:5], other[:5]))  # the rules agree


def test_the_reference_rule_of_each_major(tmp_path):
    """api._remember: 4.x keeps the last four frames; 5.x … 11.x the last three and the
    GOP's intra frame; 12.x the last fifteen and the GOP's intra frame."""
    from types import SimpleNamespace

    from pacodec.refine import LayeredPredictor

    frames = [np.full((2, 2, 3), k, np.uint8) for k in range(20)]  # frame k, k = 0 the intra frame
    for long_term, far, want in ((False, False, [19, 18, 17, 16]), (True, False, [19, 18, 17, 0]),
                                 (True, True, list(range(19, 4, -1)) + [0])):
        coder = LayeredPredictor(None, SimpleNamespace(far=far), base_layer=False, long_term=long_term)
        history = [frames[0]]
        for frame in frames[1:]:
            history = api._remember(coder, frame, history)
            assert len(history) <= (16 if far else 4)
        assert [int(f[0, 0, 0]) for f in history] == want
