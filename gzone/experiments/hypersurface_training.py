"""Fort & Scherlis Fig. 2 (conclusions 3–5): training on random hyperplanes and hyperspheres.

For each surface (``hs_surfaces``), dimension d (``hs_dims``) and seed: the seed's Xavier θ0 and
a random basis R (the sparse ±1 basis of :func:`gzone.hypersurface.sparse_basis`, never a dense
P × d matrix) with the per-layer metric M; the surface through θ0 is scaled to each radius factor
s of ``hs_radii`` (:func:`gzone.hypersurface.surface_point`: θ = s(θ0 + M R θ̂) on the
hyperplane, its projection onto the sphere of radius s‖θ0‖ on the hypersphere) and θ̂ ∈ R^d is
trained with minibatch Adam (``hs_lr``, ``hs_epochs`` epochs of ``hs_batch``) — all radii of a
(surface, d, seed) one vmapped program (:func:`gzone.hypersurface.train_hypersurface`). One
``hypersurface`` record per (surface, d, seed, radius) with the final accuracies, radius and
per-epoch curves. The full-space reference is the same trainer with the identity basis
(d = P; surface ``full``): the same optimiser, metric and minibatches.

:func:`intrinsic_dimension`: per surface and radius, the smallest d whose mean test accuracy
reaches ``hs_fraction`` × the full-space test accuracy at the Xavier radius (s = 1; the
baseline of Li et al.) — None where no d does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import hypersurface, results
from gzone.experiments import base, fort
from gzone.experiments.base import ConfigError, Progress, Record
from gzone.experiments.init_selection import load_train_test

BASIS_STREAM = 9  # the bases of the hypersurface study (θ0 is the seed's, as in every study)
BATCH_STREAM = 10  # its minibatch permutations


def identity_basis(num_params: int, dtype: Any) -> hypersurface.SparseBasis:
    """The identity as a :class:`gzone.hypersurface.SparseBasis` (P non-zeros): full space."""
    index = jnp.arange(num_params, dtype=jnp.int32)
    return hypersurface.SparseBasis(index, index, jnp.ones((num_params,), dtype), num_params, num_params)


def jobs(config: fort.FortConfig, num_params: int) -> list[tuple[str, int, int]]:
    """(surface, d, seed) of every training grid, the full-space reference first."""
    out = [("full", num_params, s) for s in range(config.seeds)]
    return out + [(surface, d, s) for surface in config.hs_surfaces for d in sorted(config.hs_dims)
                  for s in range(config.seeds)]


def run_hypersurface_training(config: fort.FortConfig, out: Path, *, data_dir: str | None,
                              progress: Progress | None) -> None:
    """Fig. 2: ``hypersurface`` records of every (surface, d, seed, radius)."""
    setup, x_test, y_test = load_train_test(config, data_dir)
    base.check_dim(setup, max(config.hs_dims), name="hs_dims")
    if config.hs_batch > len(setup.x):
        raise ConfigError("hs_batch", f"{{name}}={config.hs_batch} exceeds the {len(setup.x)} "
                                      f"training samples; choose a smaller {{name}}")
    existing = base.open_results(config, out)
    done = {(r["surface"], r["dim"], r["seed"]) for r in existing if r.get("kind") == "hypersurface"}
    todo = [j for j in jobs(config, setup.num_params) if j not in done]
    for surface, dim, seed in base.iterate(todo, progress):
        params0, m, _ = fort.seed_state(setup, config, seed, 1)  # θ0 and the metric M
        key = jax.random.fold_in(base.stream_key(seed, BASIS_STREAM), dim)
        basis = (identity_basis(setup.num_params, setup.dtype) if surface == "full"
                 else hypersurface.sparse_basis(key, setup.num_params, dim, setup.dtype))
        trained = hypersurface.train_hypersurface(
            setup.model.apply, params0, basis, setup.x, setup.y,
            surface="hyperplane" if surface == "full" else surface,
            scales=np.asarray(config.hs_radii), lr=config.hs_lr, epochs=config.hs_epochs,
            batch_size=config.hs_batch, key=base.stream_key(seed, BATCH_STREAM), metric=m,
            x_test=x_test, y_test=y_test)
        h = trained.history
        r0 = float(jnp.linalg.norm(fort.flat(params0)))
        records = []
        for j, factor in enumerate(config.hs_radii):
            diverged = int(trained.diverged_at[j])
            curve = {f: [None if not np.isfinite(v) else float(v) for v in h[f][j]]
                     for f in ("loss", "train_accuracy", "test_accuracy", "radius")}
            records.append(base.tag(fort.NAME, "hypersurface", {
                "surface": surface, "dim": dim, "seed": seed, "radius_factor": factor,
                "radius": factor * r0, "xavier_radius": r0, "num_params": setup.num_params,
                "final_radius": _last(curve["radius"]),
                "final_train_accuracy": _last(curve["train_accuracy"]),
                "final_test_accuracy": _last(curve["test_accuracy"]),
                "epochs": [int(e) for e in np.asarray(h["epoch"])[j]],
                **{f"curve_{f}": v for f, v in curve.items()},
                "diverged_at": None if diverged < 0 else diverged,
                "flags": [] if diverged < 0 else ["diverged"]}))
        results.append_records(out, records)


def _last(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return finite[-1] if finite else None


def accuracy_table(records: list[Record]) -> dict[tuple[str, int], dict[float, float]]:
    """(surface, d) -> {radius factor: mean final test accuracy over seeds}."""
    groups: dict[tuple[str, int, float], list[float]] = {}
    for r in records:
        if r.get("kind") == "hypersurface" and r.get("final_test_accuracy") is not None:
            groups.setdefault((r["surface"], r["dim"], r["radius_factor"]), []).append(r["final_test_accuracy"])
    table: dict[tuple[str, int], dict[float, float]] = {}
    for (surface, dim, factor), values in sorted(groups.items()):
        table.setdefault((surface, dim), {})[factor] = float(np.mean(values))
    return table


def intrinsic_dimension(records: list[Record], fraction: float = 0.9) -> dict[str, dict[float, int | None]]:
    """surface -> {radius factor: smallest d reaching ``fraction`` × the full-space test accuracy
    at the Xavier radius (or None)} (module docstring)."""
    table = accuracy_table(records)
    full = next((acc for (surface, _), acc in table.items() if surface == "full"), None)
    if not full or 1.0 not in full:
        return {}
    threshold = fraction * full[1.0]
    out: dict[str, dict[float, int | None]] = {}
    for (surface, dim), accs in sorted(table.items()):
        if surface == "full":
            continue
        for factor, acc in accs.items():
            best = out.setdefault(surface, {}).get(factor)
            if acc >= threshold and (best is None or dim < best):
                out[surface][factor] = dim
            else:
                out[surface].setdefault(factor, None)
    return out
