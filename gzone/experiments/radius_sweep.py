"""Fort & Scherlis Fig. 3, 4 and Sec. 2.4: curvature on random hyperplanes across radii.

* :func:`run_radius` (Fig. 3a, 3b): per (radius, seed) one projection RᵀMHMR onto the seed's
  largest plane; its leading d × d blocks are the planes of every d in ``dims`` (nested, so the
  d-curves of a seed share directions). One ``plane`` record per (radius, seed, d).
* :func:`run_directions` (Sec. 2.4): per (radius, seed) a ``directions`` record — the measured
  curvatures vᵀ(MHM)v along ``num_directions`` random unit v (fraction > 0, mean, variance), the
  full-space Hutchinson Tr and ‖·‖_F² of MHM (same probes for every radius of a seed) and what
  :mod:`gzone.directions` predicts from them — plus ``plane`` records on Haar-orthonormal planes
  (for which the plane moments are exact) with the predicted ρ_d beside the measured one.
* :func:`run_architectures` (Fig. 4): the radius sweep at one d for each architecture × dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, directions, hutchinson, metrics, results
from gzone.experiments import base, fort
from gzone.experiments.base import Progress, Record, Setup


def plane_record(hessian: jax.Array) -> Record:
    """Spectrum summary of one plane Hessian H_d plus its trace and Frobenius norm;
    ``local_convexity`` is the fraction of positive eigenvalues, ``positive_curvature``
    Tr H_d/‖H_d‖_F."""
    summary = metrics.spectrum_summary(hessian)
    eigs = np.asarray([v for v in summary["eigenvalues"] if v is not None], np.float64)
    return {**summary, "trace": float(eigs.sum()), "frobenius_norm": float(np.sqrt((eigs**2).sum()))}


def sweep_records(config: fort.FortConfig, setup: Setup, out: Path, existing: list[Record],
                   dims: tuple[int, ...], progress: Progress | None, extra: dict[str, Any],
                   basis: str | None = None, on_point=None, point_kind: str = "directions") -> None:
    """The plane records of every (radius, seed, d) not yet in ``existing`` (matched on
    ``extra``'s fields too); ``on_point(c, seed, params, m, batches_1, common, planes)`` returns
    the point's ``point_kind`` records (written with its planes, so a point is all or nothing)."""
    match = tuple(extra)
    done = {(r["radius_factor"], r["seed"], r["dim"], *(r.get(k) for k in match))
            for r in existing if r.get("kind") == "plane"}
    done_point = {(r["radius_factor"], r["seed"], *(r.get(k) for k in match))
                  for r in existing if r.get("kind") == point_kind}
    extra_key = tuple(extra[k] for k in match)
    points = [(c, s) for s in range(config.seeds) for c in fort.radius_factors(config)]
    todo = [p for p in points
            if any((*p, d, *extra_key) not in done for d in dims)
            or (on_point is not None and (*p, *extra_key) not in done_point)]
    states: dict[int, tuple] = {}
    laid_out: dict[int, curvature.Batches] = {}
    for c, seed in base.iterate(todo, progress):
        if seed not in states:
            states[seed] = fort.seed_state(setup, config, seed, max(dims), basis)
        params, m, plane = states[seed]
        if not laid_out:
            laid_out = {t: fort.batches_for(setup, config, params, t) for t in {max(dims), 1}}
        point = fort.scaled(params, c)
        common = {"model": config.model, "dataset": config.dataset, **extra,
                  **fort.radius_fields(params, c), "seed": seed,
                  "n_samples": len(setup.x), "num_params": setup.num_params}
        new = []
        if any((c, seed, d, *extra_key) not in done for d in dims):
            projection = curvature.projected(setup.model.apply, point, plane, laid_out[max(dims)])
            for d in sorted(dims):
                if (c, seed, d, *extra_key) in done:
                    continue
                new.append(base.tag(fort.NAME, "plane", {
                    **common, "dim": d, "basis": basis or config.basis, "metric": config.metric,
                    "loss": float(projection.loss), "gradient_norm": float(projection.gradient_norm),
                    **plane_record(projection.hessian[:d, :d])}))
        if on_point is not None and (c, seed, *extra_key) not in done_point:
            new += on_point(c, seed, params, m, laid_out[1], common, new)
        results.append_records(out, new)


def run_radius(config: fort.FortConfig, out: Path, *, data_dir: str | None,
               progress: Progress | None) -> None:
    """Fig. 3 (a, b): plane records over radii × seeds × ``dims``."""
    setup = fort.setup_for(config, data_dir)
    base.check_dim(setup, max(config.dims), name="dims")
    existing = base.open_results(config, out)
    sweep_records(config, setup, out, existing, tuple(config.dims), progress, {})



@functools.cache
def metric_hessian_matvec(apply_fn: Any):
    """``(v, params, batches, T, m) -> M H M v`` with M = diag(m) (jit-compiled, one per
    ``apply_fn``): the Hessian in the metric coordinates θ = M φ of the per-layer metric."""
    hvp = curvature.matvec("hessian", apply_fn)

    def matvec(v, params, batches, temperature, m):
        return m * hvp(m * v, params, batches, temperature)

    return jax.jit(matvec)


def hutchinson_moments(apply_fn: Any, params: Any, batches: curvature.Batches, m: jax.Array,
                       key: jax.Array, num_probes: int) -> dict[str, float]:
    """Full-space Hutchinson estimates of Tr(MHM) and ‖MHM‖_F² with standard errors, from the
    same Rademacher probes (one product each)."""
    size = int(m.shape[0])
    temperature = jnp.asarray(1.0, m.dtype)
    scale, t, f = hutchinson.hutchinson_samples(metric_hessian_matvec(apply_fn), size, params,
                                                batches, temperature, m, key=key,
                                                num_probes=num_probes)
    traces = np.asarray(scale * t, np.float64)
    frobs = np.asarray(scale**2 * f, np.float64)
    n = len(traces)
    return {"trace": float(traces.mean()), "trace_stderr": float(traces.std(ddof=1) / math.sqrt(n)),
            "frobenius_sq": float(frobs.mean()),
            "frobenius_sq_stderr": float(frobs.std(ddof=1) / math.sqrt(n)), "probes": n}


def direction_record(config: fort.FortConfig, setup: Setup, c: float, seed: int, params: Any,
                     m: jax.Array, batches: curvature.Batches, common: Record,
                     planes: list[Record]) -> list[Record]:
    """The ``directions`` record of one (radius, seed) — measured random-direction curvatures and
    the predictions of :mod:`gzone.directions` from full-space Hutchinson moments — and the
    predicted ρ_d written into that point's ``plane`` records."""
    point = fort.scaled(params, c)
    apply_fn = setup.model.apply
    moments = hutchinson_moments(apply_fn, point, batches, m,
                                 base.stream_key(seed, fort.HUTCHINSON_STREAM), config.probes)
    matvec = metric_hessian_matvec(apply_fn)
    temperature = jnp.asarray(1.0, m.dtype)
    vs = directions.unit_directions(base.stream_key(seed, fort.DIRECTIONS_STREAM),
                                    config.num_directions, setup.num_params, m.dtype)
    kappa = directions.direction_curvatures(lambda v: matvec(v, point, batches, temperature, m), vs)
    predicted = directions.direction_moments(moments["trace"], moments["frobenius_sq"], setup.num_params)
    ratio = moments["trace"] / math.sqrt(moments["frobenius_sq"]) if moments["frobenius_sq"] > 0 else None
    for plane in planes:
        if ratio is not None:
            plane["predicted_positive_curvature"] = directions.plane_ratio(
                moments["trace"], moments["frobenius_sq"], setup.num_params, plane["dim"])
            plane["predicted_positive_curvature_limit"] = directions.plane_ratio_limit(ratio, plane["dim"])
    flags = [] if np.all(np.isfinite(kappa)) else ["nonfinite_curvature"]
    kappa = kappa[np.isfinite(kappa)]
    return [base.tag(fort.NAME, "directions", {
        **common, "num_directions": config.num_directions, **moments,
        "full_positive_curvature": ratio,
        "positive_directions": float(np.mean(kappa > 0)) if kappa.size else None,
        "direction_mean": float(kappa.mean()) if kappa.size else None,
        "direction_variance": float(kappa.var(ddof=1)) if kappa.size > 1 else None,
        "predicted_direction_mean": predicted.mean,
        "predicted_direction_variance": predicted.variance,
        "predicted_positive_directions": directions.positive_direction_fraction(predicted),
        "principal_variance": directions.principal_variance(
            moments["trace"], moments["frobenius_sq"], setup.num_params),
        "flags": flags})]


def run_directions(config: fort.FortConfig, out: Path, *, data_dir: str | None,
                   progress: Progress | None) -> None:
    """Sec. 2.4: ``directions`` records and ``plane`` records on orthonormal planes."""
    setup = fort.setup_for(config, data_dir)
    base.check_dim(setup, max(config.dims), name="dims")
    existing = base.open_results(config, out)

    def on_point(c, seed, params, m, batches, common, planes):
        return direction_record(config, setup, c, seed, params, m, batches, common, planes)

    sweep_records(config, setup, out, existing, tuple(config.dims), progress, {},
                   basis="orthonormal", on_point=on_point)


def run_architectures(config: fort.FortConfig, out: Path, *, data_dir: str | None,
                      progress: Progress | None) -> None:
    """Fig. 4: the radius sweep at d = ``dim`` for every architecture × dataset (each setup is
    built, its data loaded and d ≤ P checked, before anything is written)."""
    jobs = []
    for dataset in config.datasets:
        for spec in config.architectures:
            arch = fort.parse_architecture(spec)
            sub = dataclasses.replace(config, model=arch.model, widths=arch.widths,
                                      activation=arch.activation, use_bias=arch.use_bias,
                                      dataset=dataset)
            setup = fort.setup_for(sub, data_dir)
            base.check_dim(setup, config.dim)
            jobs.append((sub, setup, {"architecture": spec, "label": arch.label, "dataset": dataset}))
    existing = base.open_results(config, out)
    for sub, setup, extra in jobs:
        sweep_records(sub, setup, out, existing, (config.dim,), progress, extra)
