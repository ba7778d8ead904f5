"""Linear probes of learned features (ICML App. E, Fig. 12 left).

:func:`linear_probe` fits a multinomial logistic regression (scikit-learn's ``LogisticRegression``,
L2-regularised, lbfgs) on standardised features (``StandardScaler`` fitted on the training
features) and reports its accuracy on the training and held-out features. Standardising first
makes the probe blind to the feature scale: the penultimate activations of an α-scaled
homogeneous network are α^(L−1) times those of the unscaled one, and an L2 penalty of fixed
strength would otherwise regularise them differently.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

#: the probe's inverse L2 strength (scikit-learn's ``C``: the loss is Σ cross-entropy + ‖W‖²/(2C))
DEFAULT_C = 1.0


def linear_probe(
    train_features: Any, train_labels: Any, test_features: Any, test_labels: Any, *,
    c: float = DEFAULT_C, max_iter: int = 1000,
) -> dict[str, Any]:
    """Fit the probe on (``train_features`` (N, F), ``train_labels`` (N,)) and evaluate it:
    ``{"train_accuracy", "test_accuracy", "converged"}`` (``converged``: lbfgs stopped before
    ``max_iter``). Non-finite features are refused (the caller flags the network instead)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs = [np.asarray(a, np.float64) for a in (train_features, test_features)]
    ys = [np.asarray(a) for a in (train_labels, test_labels)]
    for name, a in (("train_features", xs[0]), ("test_features", xs[1])):
        if a.ndim != 2:
            raise ValueError(f"{name} must be (samples, features), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} hold non-finite values; a diverged network has no features "
                             "to probe")
    if not (isinstance(c, (int, float)) and np.isfinite(c) and c > 0):
        raise ValueError(f"c must be a finite number > 0, got {c!r}")
    if len(np.unique(ys[0])) < 2:
        raise ValueError("train_labels hold a single class; the probe needs at least two")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=max_iter))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(xs[0], ys[0])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {"train_accuracy": float(probe.score(xs[0], ys[0])),
            "test_accuracy": float(probe.score(xs[1], ys[1])), "converged": converged}
