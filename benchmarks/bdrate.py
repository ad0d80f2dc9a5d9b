"""Bjøntegaard delta rate and PSNR (DESIGN.md, "Measuring").

A curve is a list of ``(rate, psnr)`` points; rate is any size measure proportional to
bytes (bytes per frame, bpp, kbit/s), the same for both curves.

BD-rate: log-rate as a function of PSNR, interpolated piecewise-cubic and monotone
(PCHIP, as the JCT-VC/JVET common-test-conditions sheets do), integrated over the PSNR
interval both curves cover; the mean log-rate difference is turned into a percentage.
Negative means the test curve needs fewer bytes for the same PSNR. The integration is
the ``bjontegaard`` package's (``method="pchip"``, checked against those sheets by its
authors and here by tests/test_bench_tools.py on JCTVC-E137's published example); what
is ours is the cleaning below and when a figure is "n/a".

Before fitting, each curve is cleaned (``monotone``):
  1. points with a non-finite or non-positive rate, or a PSNR at or above 100 dB (the
     value a lossless frame gets) are dropped;
  2. points are sorted by rate, and a point is kept only if its PSNR is strictly above
     every cheaper point's (the rate–PSNR Pareto front). Dominated points — more bytes
     for no more quality, e.g. a CRF sweep that saturates — are dropped, so rate rises
     strictly with PSNR and log-rate is a function of PSNR.
No convex-hull pruning is done: a non-convex but monotone curve is kept as measured.

A curve with fewer than ``MIN_POINTS`` (4) points after cleaning, or an overlap of less
than ``MIN_OVERLAP_DB`` (1 dB), gives ``None`` ("n/a").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import bjontegaard

MIN_POINTS = 4
MIN_OVERLAP_DB = 1.0
LOSSLESS_PSNR_DB = 100.0

Curve = Sequence[tuple[float, float]]


def monotone(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto front of ``(rate, psnr)`` points, sorted by rate (see module doc)."""
    clean = [(float(r), float(p)) for r, p in points
             if math.isfinite(r) and r > 0 and math.isfinite(p) and p < LOSSLESS_PSNR_DB]
    # Ties on rate: the best PSNR first, so the worse duplicate is the one dropped.
    clean.sort(key=lambda rp: (rp[0], -rp[1]))
    front: list[tuple[float, float]] = []
    for rate, quality in clean:
        if not front or quality > front[-1][1]:
            front.append((rate, quality))
    return front


def _columns(curve: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [r for r, _ in curve], [p for _, p in curve]


def _usable(anchor: Curve, test: Curve):
    a, t = monotone(anchor), monotone(test)
    if len(a) < MIN_POINTS or len(t) < MIN_POINTS:
        return None
    return a, t


def psnr_overlap(anchor: Curve, test: Curve) -> tuple[float, float] | None:
    """The PSNR interval both cleaned curves cover, or None if they do not overlap."""
    a, t = monotone(anchor), monotone(test)
    if not a or not t:
        return None
    lo = max(a[0][1], t[0][1])
    hi = min(a[-1][1], t[-1][1])
    return (lo, hi) if hi > lo else None


def bd_rate(anchor: Curve, test: Curve) -> float | None:
    """Average rate difference of ``test`` against ``anchor`` at equal PSNR, in percent.

    None when either curve has fewer than 4 usable points or the PSNR overlap is
    under 1 dB.
    """
    usable = _usable(anchor, test)
    if usable is None:
        return None
    a, t = usable
    lo = max(a[0][1], t[0][1])
    hi = min(a[-1][1], t[-1][1])
    if hi - lo < MIN_OVERLAP_DB:
        return None
    # min_overlap=0: the 1 dB rule above is ours (bjontegaard would only warn).
    return float(bjontegaard.bd_rate(*_columns(a), *_columns(t), method="pchip",
                                     require_matching_points=False, min_overlap=0))


def bd_rate_over(anchor: Curve, test: Curve, lo: float, hi: float) -> float | None:
    """``bd_rate`` integrated over the PSNR interval [lo, hi] instead of the overlap
    (None unless both cleaned curves cover it and have 4 points): the same PCHIP on
    log-rate, so that two releases' figures against one anchor can be compared over
    one range (a curve whose lowest point moves changes the overlap, and with it the
    BD-rate, even where no point got better). Over the overlap it is ``bd_rate``."""
    from scipy.integrate import quad
    from scipy.interpolate import PchipInterpolator

    usable = _usable(anchor, test)
    if usable is None or hi <= lo:
        return None
    fits = []
    for curve in usable:
        if curve[0][1] > lo or curve[-1][1] < hi:
            return None
        fits.append(PchipInterpolator([p for _, p in curve], [math.log(r) for r, _ in curve]))
    mean = quad(lambda x: float(fits[1](x) - fits[0](x)), lo, hi, limit=200)[0] / (hi - lo)
    return (math.exp(mean) - 1.0) * 100.0


def bd_psnr(anchor: Curve, test: Curve) -> float | None:
    """Average PSNR difference (dB) of ``test`` over ``anchor`` at equal rate.

    Integrated over the log-rate interval both curves cover. None when either curve
    has fewer than 4 usable points, or the curves share no rate range or less than
    1 dB of PSNR (the same conditions as ``bd_rate``, so the two agree on "n/a").
    """
    usable = _usable(anchor, test)
    if usable is None:
        return None
    a, t = usable
    if min(a[-1][1], t[-1][1]) - max(a[0][1], t[0][1]) < MIN_OVERLAP_DB:
        return None
    lo = max(math.log(a[0][0]), math.log(t[0][0]))
    hi = min(math.log(a[-1][0]), math.log(t[-1][0]))
    if hi <= lo:
        return None
    return float(bjontegaard.bd_psnr(*_columns(a), *_columns(t), method="pchip",
                                     require_matching_points=False, min_overlap=0))


def format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"
