"""The subspace sweep shared by the zone studies (ICML Fig. 1, 2, 4 left): H, G-term and H-term of
the full-batch loss on a random d-dimensional subspace, at points (α, T, seed, d).

A point uses the parameters α·θ0(seed), a random basis R(seed) of dimension d and temperature T;
its three projected matrices RᵀHR, RᵀGR, RᵀH-termR (one :func:`gzone.curvature.projected` pass)
are each summarised by :func:`gzone.metrics.spectrum_summary` into a ``subspace`` record. The
same basis serves every α and T of a seed (and, for the dimension sweep, the first d columns of
one basis), so curves are not jittered by basis resampling.

With ``full_space`` every (α, T, seed) also gets one ``full`` record per term in the full
P-dimensional space (``dim = P``): Hutchinson positive curvature with a standard error, Lanczos
extreme eigenvalues and SLQ spectral densities (:mod:`gzone.fullspace`); its probes come from
the seed's ``full-space`` stream, the same for every α, T and term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, fullspace, metrics, models, subspace
from gzone.data import load_dataset
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Finding, series
from gzone.engine.config import (
    ModelDataConfig,
    check_at_least,
    check_choice,
    check_model_data,
    check_positive,
    check_range,
    field,
)
from gzone.engine.study import Context, Point, PointKey, Record, point_key
from gzone.engine.summary import band
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION

TERMS = ("hessian", "gterm", "hterm")
#: the grid fields a sweep's directory may extend (more seeds, a wider or denser grid)
GROWABLE = ("seeds", "alpha_min", "alpha_max", "num_points", "temperature_min",
            "temperature_max", "dims", "chunk_size")


@dataclasses.dataclass(frozen=True)
class SweepConfig(ModelDataConfig):
    """The model, data, basis, seeds and full-space settings of a zone sweep."""

    n_samples: int = field(1000, "first N samples of the split")
    basis: str = field("orthonormal", "random subspace basis", subspace.BASIS_KINDS)
    seeds: int = field(3, "number of seeds (0..N-1): theta0 and the basis of each")
    full_space: bool = field(False, "also measure H, G-term, H-term in the full parameter space "
                                    "(gzone.fullspace): Hutchinson, Lanczos, SLQ densities")
    probes: int = field(100, "full space: Hutchinson probes per term")
    lanczos_iters: int = field(100, "full space: Lanczos steps per run (clipped to P)")
    density_probes: int = field(1, "full space: SLQ probes per term (each one Lanczos run)")


@dataclasses.dataclass(frozen=True)
class AlphaGridConfig(SweepConfig):
    """A sweep over a geometric α grid on a d-dimensional random subspace."""

    dim: int = field(50, "subspace dimension d")
    alpha_min: float = field(1e-2, "smallest initialisation scale alpha of the grid")
    alpha_max: float = field(1e2, "largest initialisation scale alpha of the grid")
    num_points: int = field(21, "grid points (geometric)")


def presets(tiny: dict[str, Any], cpu: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The presets of a sweep: ``tiny`` (a 32-16 MLP on 200 digits, 2 seeds), ``default`` (the
    class defaults: MLP 64-300-100-10 on 1,000 digits, d = 50, 3 seeds), ``cpu`` (LeNet-300-100
    on 1,000 Fashion-MNIST images), ``paper`` = ``lenet300-fashion`` (10,000 images, Fig. 2
    left) and ``lenet5-cifar10`` (3,000 CIFAR-10 images, Fig. 2 right); ``tiny`` and ``cpu`` add
    the sweep's own grid."""
    paper = {**LENET300_FASHION, "n_samples": 10000}
    return {"tiny": {"widths": (32, 16), "n_samples": 200, "seeds": 2, **tiny}, "default": {},
            "cpu": {**LENET300_FASHION, "n_samples": 1000, **cpu}, "paper": paper,
            "lenet300-fashion": paper, "lenet5-cifar10": {**LENET5_CIFAR10, "n_samples": 3000}}


ALPHA_PRESETS = presets(tiny={"dim": 10, "num_points": 9}, cpu={"num_points": 13})


def unused(config: Any) -> tuple[str, ...]:
    """The full-space settings are not read while ``full_space`` is off."""
    return () if config.full_space else ("probes", "lanczos_iters", "density_probes")


def validate_sweep(config: Any) -> None:
    """The checks every sweep shares (model and data, basis, seeds, full-space settings)."""
    check_model_data(config)
    check_choice(config, "basis", subspace.BASIS_KINDS)
    check_at_least(config, "seeds", "lanczos_iters", "density_probes")
    check_at_least(config, "probes", minimum=2)


def validate_alpha_grid(config: Any) -> None:
    """The checks of a sweep over an α grid."""
    validate_sweep(config)
    check_at_least(config, "dim", "num_points")
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")


def prepare_sweep(config: Any, data_dir: str | None, max_dim: int, dim_name: str) -> Any:
    """The first ``n_samples`` of the split (as the authors) and the model, shapes checked;
    the largest subspace must fit (d ≤ P)."""
    data = load_dataset(config.dataset, config.split, n=config.n_samples, data_dir=data_dir)
    setup = engine_setup.make_setup(config, data)
    engine_setup.check_dim(setup, max_dim, name=dim_name)
    return setup


def sweep_points(config: Any, pairs: Sequence[tuple[float, float]],
                 dims: Sequence[int]) -> list[Point]:
    """Every point (α, T, seed, d) in computation order: seeds, then d, then the (α, T) pairs."""
    return [{"alpha": a, "temperature": t, "seed": s, "dim": d}
            for s in range(config.seeds) for d in sorted(dims) for a, t in pairs]


def _done(records: list[Record]) -> tuple[set[tuple], set[tuple]]:
    """(finished subspace points (α, T, seed, d), finished full-space (α, T, seed)): those with a
    record of every term."""
    seen: dict[tuple, set[str]] = {}
    for r in records:
        if r.get("kind") == "subspace":
            seen.setdefault(("s", r["alpha"], r["temperature"], r["seed"], r["dim"]), set()).add(r["term"])
        elif r.get("kind") == "full":
            seen.setdefault(("f", r["alpha"], r["temperature"], r["seed"]), set()).add(r["term"])
    complete = {k for k, terms in seen.items() if set(TERMS) <= terms}
    return ({k[1:] for k in complete if k[0] == "s"}, {k[1:] for k in complete if k[0] == "f"})


def finished(config: Any, records: list[Record]) -> set[PointKey]:
    """A point is finished once its three subspace records exist and, with ``full_space``, the
    three full-space records of its (α, T, seed)."""
    sub, full = _done(records)
    return {point_key(dict(zip(("alpha", "temperature", "seed", "dim"), p))) for p in sub
            if not config.full_space or p[:3] in full}


def _point_records(config: Any, mode: str, projection: curvature.ProjectedCurvature,
                   point: Point, n_samples: int) -> list[Record]:
    """The three ``subspace`` records of one point; ``projection`` may span a larger nested
    basis, whose leading d×d blocks are the projections onto its first d columns."""
    dim = point["dim"]
    common = {
        "kind": "subspace", "alpha": point["alpha"], "temperature": point["temperature"],
        "seed": point["seed"], "dim": dim, "n_samples": n_samples, "model": config.model,
        "dataset": config.dataset, "dtype": config.dtype, "basis": config.basis, "mode": mode,
        "loss": float(projection.loss), "gradient_norm": float(projection.gradient_norm),
    }
    records = [{**common, "term": term,
                **metrics.spectrum_summary(getattr(projection, term)[:dim, :dim])}
               for term in TERMS]
    eps = jnp.finfo(jnp.dtype(config.dtype)).eps
    norms = {r["term"]: r["spectral_norm"] or 0.0 for r in records}
    if 0 < norms["gterm"] < 10 * eps * norms["hterm"]:
        # H = G + H-term then carries no trace of G in this dtype (use dtype float64)
        for r in records:
            if r["term"] == "hessian":
                r["flags"] = sorted({*r["flags"], "gterm_below_dtype_resolution"})
    return records


def _floats(a: Any) -> list[float]:
    return np.asarray(jax.device_get(a), dtype=np.float64).tolist()


def _full_records(config: Any, mode: str, setup: Any, batches: curvature.Batches, params: Any,
                  point: Point) -> list[Record]:
    """The three ``full`` records (``space: "full"``, ``dim = P``, basis ``identity``) of the
    point's (α, T, seed)."""
    alpha, temperature, seed = point["alpha"], point["temperature"], point["seed"]
    scaled = models.scale(params, alpha)  # in the parameters' dtype (a NumPy α would promote)
    terms = fullspace.full_space_curvature(
        setup.model.apply, scaled, batches, None, temperature,
        key=engine_setup.stream_key(seed, "full-space"), terms=TERMS, num_probes=config.probes,
        num_iters=config.lanczos_iters, density_probes=config.density_probes, common_probes=True)
    loss, grad = curvature.loss_and_gradient(setup.model.apply, scaled, batches, None, temperature)
    common = {
        "kind": "full", "alpha": alpha, "temperature": temperature, "seed": seed,
        "dim": setup.num_params, "n_samples": len(setup.x), "model": config.model,
        "dataset": config.dataset, "dtype": config.dtype, "basis": "identity", "mode": mode,
        "loss": float(loss), "gradient_norm": float(jnp.linalg.norm(grad)), "space": "full",
        "num_probes": config.probes, "density_probes": config.density_probes,
    }
    records = []
    for term in TERMS:
        c = terms[term]
        top = _floats(c.top_eigenvalues)
        records.append({
            **common, "term": term, "lanczos_iters": min(config.lanczos_iters, setup.num_params),
            "positive_curvature": float(c.positive_curvature), "stderr": float(c.stderr),
            "trace": float(c.trace), "trace_stderr": float(c.trace_stderr),
            "frobenius_norm": float(c.frobenius_norm), "frobenius_stderr": float(c.frobenius_stderr),
            "spectral_norm": float(c.spectral_norm), "top_eigenvalue": top[0],
            "top_eigenvalues": top, "residual_norms": _floats(c.residual_norms),
            "bottom_eigenvalues": _floats(c.bottom_eigenvalues),
            "bottom_residual_norms": _floats(c.bottom_residual_norms),
            "slq_nodes": [_floats(row) for row in c.nodes],
            "slq_weights": [_floats(row) for row in c.weights],
            "flags": ["zero_matrix"] if float(c.spectral_norm) == 0 else [],
        })
    return records


def measure_sweep(ctx: Context, chunk: list[Point], *, mode: str, max_dim: int):
    """The records of each point: its ``subspace`` records (one projection per (α, T, seed),
    reused by the dimension sweep's nested bases) and, with ``full_space``, the ``full`` records
    of its (α, T, seed) if they are not there yet."""
    config, setup = ctx.config, ctx.setup
    done_sub, done_full = ctx.cached("done", lambda: _done(ctx.existing))
    for point in chunk:
        alpha, temperature, seed, dim = (point[f] for f in ("alpha", "temperature", "seed", "dim"))
        params, basis = ctx.cached(("seed", seed), lambda seed=seed: engine_setup.seed_state(
            setup, seed, dim=max_dim, basis=config.basis, init=config.init))
        laid_out = ctx.cached("batches", lambda params=params: {
            t: curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                         config.chunk_size, t) for t in {max_dim, 1}})
        if (alpha, temperature, seed, dim) not in done_sub:
            last = ctx.state.get("last")
            if last is None or last[0] != (alpha, temperature, seed):
                scaled = models.scale(params, alpha)
                projection = curvature.projected(setup.model.apply, scaled, basis,
                                                 laid_out[max_dim], None, temperature)
                ctx.state["last"] = last = ((alpha, temperature, seed), projection)
            yield _point_records(config, mode, last[1], point, len(setup.x))
        if config.full_space and (alpha, temperature, seed) not in done_full:
            yield _full_records(config, mode, setup, laid_out[1], params, point)
            done_full.add((alpha, temperature, seed))


def sweep_rows(records: list[Record], x_field: str) -> list[dict[str, Any]]:
    """Per (space, x, term): the seeds, and the median [min, max] over seeds of positive
    curvature, spectral norm and top eigenvalue."""
    table: dict[tuple, list[Record]] = {}
    for r in records:
        if r.get("kind") in ("subspace", "full"):
            table.setdefault((r["kind"], r[x_field], r["term"]), []).append(r)
    rows = []
    for (kind, x, term), group in sorted(table.items(), key=lambda i: (i[0][0] != "subspace", i[0][1:])):
        row: dict[str, Any] = {"space": kind, x_field: x, "term": term, "seeds": len(group)}
        for metric in ("positive_curvature", "spectral_norm", "top_eigenvalue"):
            stats = band(g[metric] for g in group)
            row[metric] = None if stats is None else stats[0]
            if metric == "positive_curvature":
                row["pc_min"], row["pc_max"] = (None, None) if stats is None else stats[1:]
        rows.append(row)
    return rows


def sweep_figure(records: list[Record], x_field: str, *, title: str | None = None,
                 path_stem: Any = None) -> list[Any]:
    """The zone figure (:func:`gzone.plots.zone_figure`) and, with full-space records, their
    spectral densities (:func:`gzone.plots.density_figure`, ``<path_stem>-densities``)."""
    from gzone import plots

    drawn = [plots.zone_figure(records, x_field, title=title, path_stem=path_stem)]
    if any(r.get("kind") == "full" and r.get("slq_nodes") for r in records):
        stem = None if path_stem is None else f"{path_stem}-densities"
        drawn.append(plots.density_figure(records, x_field, title=f"{title or ''} full space",
                                            path_stem=stem))
    return drawn


#: PC(H) "vanishes" at an end of the grid: at most this fraction of its peak (ICML Fig. 1, 2)
VANISH_FRACTION = 0.1
#: the zone: where PC(H) is at least this fraction of its peak
ZONE_FRACTION = 0.5


def zone_check(x_field: str) -> Callable[[list[dict[str, Any]]], Finding]:
    """The check of the zone claim over ``x_field`` (α or T) on :func:`sweep_rows`: the median
    positive curvature of H peaks inside the grid and falls to at most ``VANISH_FRACTION`` of its
    peak at both ends, and ‖G‖₂ > ‖H-term‖₂ (Eq. 6) exactly where it is high — at every x with
    PC(H) ≥ ``ZONE_FRACTION`` × peak — and < at both ends. Inconclusive when the medians hold but
    some seed's PC(H) at an end exceeds the vanishing level, or the grid has under 5 points."""
    expected = (f"PC(H) peaks inside the {x_field} grid, |PC(H)| <= {VANISH_FRACTION} x peak at "
                f"both ends; ||G||_2 > ||H-term||_2 where PC(H) >= {ZONE_FRACTION} x peak, "
                f"< at both ends")

    def check(rows: list[dict[str, Any]]) -> Finding:
        x, pc = series(rows, x_field, "hessian", "positive_curvature")
        _, g = series(rows, x_field, "gterm", "spectral_norm")
        _, h = series(rows, x_field, "hterm", "spectral_norm")
        _, low = series(rows, x_field, "hessian", "pc_min")  # the seeds' band
        _, high = series(rows, x_field, "hessian", "pc_max")
        if len(x) < 3 or any(v is None for v in (*pc, *g, *h)):
            return Finding(INCONCLUSIVE, {"points": len(x)}, expected)
        peak_at = int(np.argmax(pc))
        peak = pc[peak_at]
        if peak <= 0:  # no positive curvature anywhere: no zone
            return Finding(NOT_REPRODUCED, {f"{x_field}_peak": x[peak_at], "pc_peak": peak}, expected)
        level = VANISH_FRACTION * abs(peak)
        zone = [i for i, v in enumerate(pc) if v >= ZONE_FRACTION * peak]
        measured = {
            f"{x_field}_peak": x[peak_at], "pc_peak": peak, "pc_ends": [pc[0], pc[-1]],
            "zone": [x[zone[0]], x[zone[-1]]], "g_over_hterm_in_zone": min(g[i] / h[i] for i in zone),
            "g_over_hterm_at_ends": [g[0] / h[0], g[-1] / h[-1]]}
        holds = (0 < peak_at < len(x) - 1 and abs(pc[0]) <= level
                 and abs(pc[-1]) <= level and all(g[i] > h[i] for i in zone)
                 and g[0] < h[0] and g[-1] < h[-1])
        if not holds:
            return Finding(NOT_REPRODUCED, measured, expected)
        seeds_vanish = all(max(abs(lo), abs(hi)) <= level
                           for lo, hi in ((low[0], high[0]), (low[-1], high[-1])))
        return Finding(REPRODUCED if seeds_vanish and len(x) >= 5 else INCONCLUSIVE, measured, expected)

    return check
