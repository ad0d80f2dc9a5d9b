"""Quantizers: exact byte costs, error bounds, and refusal of corrupt payloads."""

from __future__ import annotations

import numpy as np
import pytest

from pacodec import quantize
from pacodec.errors import FormatError, InputError
from pacodec.models.pac import integer_table

ENTRIES = 1000


@pytest.fixture
def codes() -> np.ndarray:
    return np.random.default_rng(0).random(ENTRIES).astype(np.float32)


@pytest.mark.parametrize("name,per_entry,params", [("none", 4, 0), ("naive", 1, 0), ("scale", 1, 8),
                                                   ("kmeans", 1, 0)])
def test_payload_size_is_stated_exactly(name, per_entry, params, codes):
    q = quantize.make(name)
    q.fit(codes[None])
    payload = q.quantize(codes)
    assert len(payload) == q.frame_bytes(ENTRIES) == ENTRIES * per_entry + params


def test_none_is_exact(codes):
    q = quantize.make("none")
    assert np.array_equal(q.dequantize(q.quantize(codes), ENTRIES), codes)


def test_naive_rounds_and_clamps(codes):
    q = quantize.make("naive")
    back = q.dequantize(q.quantize(codes), ENTRIES)
    assert np.max(np.abs(back - codes)) <= 0.5 / 255 + 1e-7
    # Out of range clamps instead of wrapping (the workshop's 1.2*255 wrapped to 50).
    high = q.dequantize(q.quantize(np.array([1.2, -0.3], np.float32)), 2)
    assert high.tolist() == [1.0, 0.0]


def test_scale_error_bounded_by_half_a_step():
    codes = np.random.default_rng(1).normal(3, 5, ENTRIES).astype(np.float32)
    q = quantize.make("scale")
    back = q.dequantize(q.quantize(codes), ENTRIES)
    step = (codes.max() - codes.min()) / 255
    assert np.max(np.abs(back - codes)) <= step / 2 + 1e-5


def test_scale_constant_codes_round_trip():
    q = quantize.make("scale")
    codes = np.full(10, 0.25, np.float32)
    assert np.allclose(q.dequantize(q.quantize(codes), 10), 0.25)


def test_kmeans_maps_to_nearest_centroid(codes):
    q = quantize.KMeansQuantizer()
    params = q.fit(np.stack([codes, codes[::-1]]))
    assert len(params) == 4 * 256 == q.stream_param_bytes()
    back = q.dequantize(q.quantize(codes), ENTRIES)
    nearest = q.centroids[np.abs(codes[:, None] - q.centroids[None]).argmin(axis=1)]
    assert np.allclose(back, nearest)
    again = quantize.KMeansQuantizer.from_params(params)
    assert np.array_equal(again.dequantize(q.quantize(codes), ENTRIES), back)


def test_kmeans_rejects_labels_beyond_codebook():
    q = quantize.KMeansQuantizer.from_params(np.arange(4, dtype="<f4").tobytes())
    with pytest.raises(FormatError, match="beyond"):
        q.dequantize(bytes([0, 1, 9]), 3)


@pytest.mark.parametrize("params", [b"", b"abc", np.array([np.nan], "<f4").tobytes(),
                                    np.zeros(300, "<f4").tobytes()])
def test_kmeans_rejects_bad_centroids(params):
    with pytest.raises(FormatError):
        quantize.KMeansQuantizer.from_params(params)


def test_float_codes_with_nan_are_corrupt():
    q = quantize.make("none")
    with pytest.raises(FormatError, match="NaN"):
        q.dequantize(np.array([1.0, np.inf], "<f4").tobytes(), 2)


def test_scale_rejects_inverted_or_nan_range():
    q = quantize.make("scale")
    for lo, hi in [(1.0, 0.0), (np.nan, 1.0)]:
        with pytest.raises(FormatError):
            q.dequantize(np.array([lo, hi], "<f4").tobytes() + bytes(4), 4)


def test_wrong_payload_length_is_corrupt():
    with pytest.raises(FormatError):
        quantize.make("naive").dequantize(bytes(5), 6)


def test_unknown_quantizer_is_input_error():
    with pytest.raises(InputError):
        quantize.make("lloyd")


def test_entropy_quantizer_round_trips_integers():
    rng = np.random.default_rng(2)
    pmf = np.exp(-np.abs(np.arange(-15, 16)))[None].repeat(4, axis=0)
    q = quantize.EntropyQuantizer(integer_table(pmf), (4, 5, 6))
    codes = np.clip(rng.laplace(0, 1.5, (4, 5, 6)), -20, 20).astype(np.float32)
    back = q.dequantize(q.quantize(codes), codes.size).reshape(codes.shape)
    assert np.array_equal(back, np.clip(np.rint(codes), -15, 15))
    # Entropy coding makes a peaked source smaller than its fixed-width symbols.
    assert len(q.quantize(codes)) < q.symbol_bytes(codes.size)


def test_integer_tables_sum_exactly_and_have_no_zero():
    pmf = np.random.default_rng(3).random((7, 33)) ** 6
    pmf[:, 5] = 0
    table = integer_table(pmf)
    assert table.dtype == np.int32 and np.all(table >= 1) and np.all(table.sum(axis=1) == 1 << 16)


def test_naive_is_refused_for_unbounded_codes():
    """The VAE's μ is not kept in [0, 1]: naive would clamp it silently, so it is refused
    and such models default to per-frame min/max scaling instead."""
    from pacodec import api
    from pacodec.models.base import build_model

    vae = build_model("vae-compact")
    assert vae.code_range is None
    with pytest.raises(InputError, match="not bounded"):
        api._make_quantizer(vae, "naive")
    assert api._make_quantizer(vae, None).name == "scale"
    assert api.quantizers_for(vae) == ("scale", "none", "kmeans")
    conv = build_model("tiny-conv")
    assert conv.code_range == (0.0, 1.0) and api._make_quantizer(conv, None).name == "naive"
