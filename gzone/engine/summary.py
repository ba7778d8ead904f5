"""Small statistics that the studies' measurements and summaries share (NaN-aware, on plain
records: JSON values, None for what was not finite)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import metrics

Record = dict[str, Any]


def to_float(x: Any) -> float:
    """A 0-d array (or number) as a Python float."""
    return float(np.asarray(x))


def positive_curvature(matrix: jax.Array) -> float:
    """Tr/‖·‖_F (Eq. 2) of a symmetric matrix; NaN when undefined (zero matrix)."""
    value = metrics.spectrum_summary(matrix)["positive_curvature"]
    return float("nan") if value is None else value


def mean_entropy(p: jax.Array) -> float:
    """Mean softmax entropy (nats) over samples of probabilities ``p`` (N, K)."""
    return to_float(jnp.mean(metrics.softmax_entropy(p)))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both are finite; NaN with fewer than 3
    such pairs or a constant side."""
    import scipy.stats  # here, not at the top: scipy takes ~1 s to import
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a[ok], b[ok]).statistic)


def number(value: Any) -> float:
    """A record value as a float (None -> NaN)."""
    return float("nan") if value is None else float(value)


def mean(values: Iterable[Any]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def band(values: Iterable[Any]) -> tuple[float, float, float] | None:
    """(median, min, max) of the values that are not None (None when there are none)."""
    kept = np.array([v for v in values if v is not None], float)
    return (float(np.median(kept)), float(kept.min()), float(kept.max())) if kept.size else None


def group(records: Iterable[Record], key: Callable[[Record], Any],
          kind: str | None = None) -> dict[Any, list[Record]]:
    """Records (of ``kind``, when given) grouped by ``key(record)``, groups sorted by key."""
    out: dict[Any, list[Record]] = {}
    for r in records:
        if kind is None or r.get("kind") == kind:
            out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items(), key=lambda item: item[0]))


def of_kind(records: Iterable[Record], kind: str) -> list[Record]:
    """The records of one kind."""
    return [r for r in records if r.get("kind") == kind]


def as_rows(values: dict[str, Any]) -> list[dict[str, Any]]:
    """A dict of headline numbers as a two-column table: one row ``{"quantity", "value"}`` each."""
    return [{"quantity": k, "value": v} for k, v in values.items()]


def median_band(table: dict[Any, list[Any]]) -> tuple[np.ndarray, ...]:
    """(keys, median, min, max) over the finite values of each entry of ``{key: values}`` (None
    and NaN skipped; NaN where nothing is left), keys in sorted order."""
    keys = sorted(table)
    stats = []
    for k in keys:
        v = np.array([np.nan if x is None else x for x in table[k]], float)
        v = v[np.isfinite(v)]
        stats.append((np.median(v), v.min(), v.max()) if v.size else (np.nan,) * 3)
    med, low, high = (np.array(s) for s in zip(*stats)) if stats else (np.array([]),) * 3
    return np.array(keys, float), med, low, high
