"""What the Section 4 and App. D studies share (ICML Fig. 3-6, 10): one recipe for Eq. (8) on
real softmax outputs and logit gradients (the G-term prediction study and the dimension sweep
both call :func:`eq8_prediction`), the uncertainty of a summary number (a percentile bootstrap,
Spearman's ρ with its p-value and interval, a Student t interval of a mean), and reading the
``quantity``/``value`` rows of :func:`gzone.engine.summary.as_rows` back as a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from gzone import random_model
from gzone.engine.summary import to_float

#: Eq. (8) "approximates the positive curvature of the true G-term ... very well" (Sec. 4, Fig. 3)
#: gives no number; the stated tolerance: |E G_* − G_*| at most 25 % of the true value
EQ8_REL_TOL = 0.25
#: confidence level of every interval the Section 4 claims read
LEVEL = 0.95
#: bootstrap resamples (percentile intervals)
RESAMPLES = 2000


# ----------------------------------------------------------------------------- Eq. (8)


def eq8_prediction(probs: Any, jr: Any, *, unbiased: bool = False
                   ) -> tuple[random_model.LogitGradientStats, dict[str, float | None]]:
    """Eq. (8) as the paper evaluates it (Sec. 4, Fig. 3): σ_c², σ_e² estimated from the logit
    gradients ``jr`` (N, K, d) in a d-dimensional subspace
    (:func:`gzone.random_model.logit_gradient_stats`), Γ_p of the batch of softmax outputs
    ``probs`` (N, K), and the positive curvature of E G_*
    (:func:`gzone.random_model.expected_gterm_curvature`). Returns the estimated statistics and
    the record fields ``sigma_c2``, ``sigma_e2``, ``gamma_p``, ``predicted_positive_curvature``
    (None where d < K: Eq. (7) needs K orthogonal class means in d dimensions)."""
    stats = random_model.logit_gradient_stats(jr, unbiased=unbiased)
    d, k = int(np.shape(jr)[-1]), int(np.shape(probs)[-1])
    predicted = None if d < k else to_float(
        random_model.expected_gterm_curvature(probs, stats.sigma_c2, stats.sigma_e2, d))
    return stats, {"sigma_c2": to_float(stats.sigma_c2), "sigma_e2": to_float(stats.sigma_e2),
                   "gamma_p": to_float(random_model.gamma_p(probs)),
                   "predicted_positive_curvature": predicted}


def relative_gap(true: float | None, predicted: float | None) -> float | None:
    """|predicted − true| / |true|; None when either is missing or the true value is 0."""
    if true is None or predicted is None or not np.isfinite([true, predicted]).all() or true == 0:
        return None
    return abs(predicted - true) / abs(true)


# ----------------------------------------------------------------------------- intervals


def finite(values: Iterable[Any]) -> np.ndarray:
    """Values as a float array, None -> NaN."""
    return np.array([np.nan if v is None else v for v in values], float)


def bootstrap_interval(statistic: Callable[..., np.ndarray], *columns: Sequence[float],
                       level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
                       ) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic`` over the rows where every column is
    finite: rows resampled with replacement ``resamples`` times (fixed ``seed``);
    ``statistic(*arrays)`` maps arrays of shape (resamples, n) to (resamples,). None with
    fewer than 3 rows or no finite resampled value."""
    data = [finite(c) for c in columns]
    ok = np.logical_and.reduce([np.isfinite(c) for c in data])
    n = int(ok.sum())
    if n < 3:
        return None
    index = np.random.default_rng(seed).integers(0, n, (resamples, n))
    with np.errstate(all="ignore"):
        values = np.asarray(statistic(*(c[ok][index] for c in data)), float)
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of (B, n) arrays (average ranks for ties)."""
    import scipy.stats  # here, not at the top: scipy takes ~1 s to import

    ra = scipy.stats.rankdata(a, axis=-1)
    rb = scipy.stats.rankdata(b, axis=-1)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    return np.sum(ra * rb, -1) / np.sqrt(np.sum(ra**2, -1) * np.sum(rb**2, -1))


def rank_correlation(a: Sequence[float], b: Sequence[float], *, level: float = LEVEL,
                     resamples: int = RESAMPLES) -> dict[str, Any]:
    """Spearman's ρ over the pairs where both are finite, its two-sided p-value
    (``scipy.stats.spearmanr``) and a percentile bootstrap interval; NaN / None with fewer than
    3 pairs or a constant side."""
    import scipy.stats

    x, y = finite(a), finite(b)
    ok = np.isfinite(x) & np.isfinite(y)
    nan = float("nan")
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return {"rho": nan, "p_value": nan, "interval": None, "n": int(ok.sum())}
    result = scipy.stats.spearmanr(x[ok], y[ok])
    return {"rho": float(result.statistic), "p_value": float(result.pvalue),
            "interval": bootstrap_interval(_row_spearman, x[ok], y[ok], level=level,
                                           resamples=resamples),
            "n": int(ok.sum())}


def mean_interval(values: Iterable[Any], level: float = LEVEL) -> list[float] | None:
    """Student t interval of the mean of the finite values; None with fewer than 2."""
    import scipy.stats

    v = finite(values)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    half = scipy.stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return [float(v.mean() - half), float(v.mean() + half)]


def against(interval: Sequence[float] | None, low: float, high: float = float("inf")) -> str:
    """Where an interval lies with respect to the band [low, high]: ``inside``, ``outside``
    (no overlap), ``straddles`` (overlaps an edge) or ``missing``."""
    if interval is None or not np.isfinite(interval).all():
        return "missing"
    lo, hi = interval
    if low <= lo and hi <= high:
        return "inside"
    if hi < low or lo > high:
        return "outside"
    return "straddles"


def quantities(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``{quantity: value}`` dict of :func:`gzone.engine.summary.as_rows` rows."""
    return {r["quantity"]: r["value"] for r in rows if "quantity" in r}
