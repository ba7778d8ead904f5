"""Fort & Scherlis Fig. 2 (conclusions 3–5): training on random hyperplanes and hyperspheres —
it succeeds only where the surface crosses the Goldilocks zone, and the intrinsic dimension
depends on the radius.

For each surface (``hs_surfaces``), dimension d (``hs_dims``) and seed: the seed's Xavier θ0 and
a random sparse ±1 basis R (:func:`gzone.hypersurface.sparse_basis`, never a dense P × d matrix)
with the per-layer metric M; the surface through θ0 is scaled to each radius factor s of
``hs_radii`` (θ = s(θ0 + M R θ̂) on the hyperplane, its projection onto the sphere of radius
s‖θ0‖ on the hypersphere) and θ̂ ∈ R^d is trained with minibatch Adam (``hs_lr``, ``hs_epochs``
epochs of ``hs_batch``) — all radii of a (surface, d, seed) one vmapped program
(:func:`gzone.hypersurface.train_hypersurface`); the bases are padded to
:func:`gzone.hypersurface.nnz_capacity` (P, d), so the seeds of a (surface, d) share one compiled
program (each d compiles its own). One ``hypersurface`` record per (surface, d,
seed, radius) with the final accuracies, radius and per-epoch curves. The full-space reference
is the same trainer with the identity basis (d = P; surface ``full``).

The intrinsic dimension (:func:`intrinsic_dimension`) at each radius is the smallest d whose
mean test accuracy reaches ``hs_fraction`` × the full-space test accuracy at the Xavier radius
(s = 1, the baseline of Li et al.); every record carries the fraction it is summarised with.

    gzone run fort/hypersurface-training
    gzone run fort/hypersurface-training --hs-fraction 0.8
    gzone run fort/hypersurface-training --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import curvature, hypersurface, metrics
from gzone.engine import FORT, Claim, ConfigError, Finding, Study
from gzone.engine.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    fraction_verdict,
    wilson_interval,
)
from gzone.engine.config import (
    check_alphas,
    check_at_least,
    check_dims,
    check_fraction,
    check_positive,
    field,
)
from gzone.engine.setup import check_dim, stream_key
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common

SURFACES = ("hyperplane", "hypersphere")
#: a d "depends on the radius" when its mean final test accuracy varies over the radii by at least
#: this much (ten accuracy points: well above the seeds' spread of the means)
SPREAD_MIN = 0.1
#: "near the zone": within this factor of the Xavier radius, which lies in the zone (concl. 7)
NEAR_ZONE = 3.0
#: a hyperplane "trains" when its mean test accuracy at the Xavier radius reaches this fraction
#: of the full-space one; "low variance": a standard deviation over seeds of at most STD_MAX
#: (three accuracy points; the paper gives no number)
TRAINED_FRACTION = 0.5
STD_MAX = 0.03


@dataclasses.dataclass(frozen=True)
class Config(common.NetworkConfig):
    """Minibatch Adam on θ̂ on random hyperplanes and hyperspheres through each radius."""

    seeds: int = field(3, "seeds (theta0 and basis) per surface and d")
    metric: bool = field(True, "per-layer metric M on the surfaces (theta = theta0 + M R theta_hat)")
    n_test: int | None = field(None, "first N test samples (none: all)")
    hs_surfaces: tuple[str, ...] = field(SURFACES, "surfaces trained on", SURFACES)
    hs_dims: tuple[int, ...] = field((10, 30, 100, 300, 1000), "dimensions d of the random surfaces")
    hs_radii: tuple[float, ...] = field((0.1, 0.3, 1.0, 3.0, 10.0), "radius factors (1 = Xavier: "
                                        "the full-space baseline)")
    hs_lr: float = field(0.01, "Adam learning rate on theta_hat (minibatches)")
    hs_epochs: int = field(10, "epochs of minibatch Adam on theta_hat (default 10; the paper "
                                "does not give its number of epochs for Fig. 2)")
    hs_batch: int = field(100, "minibatch size")
    hs_fraction: float = field(0.9, "intrinsic dimension = smallest d reaching this fraction of "
                                    "the full-space test accuracy at the Xavier radius (0 < f <= 1)")
    hs_hessian_dim: int = field(100, "the d x d Hessian in theta_hat at the start and the end of "
                                     "training on every hyperplane of d <= this (obs. 1: its "
                                     "fraction of positive eigenvalues); 0: none")


def unused_fields(config: Config) -> tuple[str, ...]:
    """``hs_hessian_dim`` is not part of a directory's identity while 0 (directories written
    before it existed resume with ``--hs-hessian-dim 0``)."""
    return ("hs_hessian_dim",) if config.hs_hessian_dim == 0 else ()


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_samples": 200, "seeds": 1, "n_test": 100, "hs_dims": (10,),
             "hs_radii": (0.3, 1.0, 3.0), "hs_epochs": 2, "hs_batch": 50},
    "default": {},
    "cpu": {**common.MNIST, "n_samples": 2000, "n_test": 1000, "seeds": 2,
            "hs_dims": (10, 30, 100, 300)},
    "paper": {**common.MNIST, "n_samples": None, "n_test": None},
    "mnist": {**common.MNIST, "n_samples": None, "n_test": None},
    "cifar10": {**common.CIFAR10, "n_samples": None, "n_test": None},
}


def validate(config: Config) -> None:
    common.validate_network(config)
    check_at_least(config, "seeds", "n_test", "hs_epochs", "hs_batch")
    check_at_least(config, "hs_hessian_dim", minimum=0)
    check_positive(config, "hs_lr")
    check_fraction(config, "hs_fraction")
    check_alphas(config, "hs_radii")
    check_dims(config, "hs_dims")
    if not config.hs_surfaces or any(s not in SURFACES for s in config.hs_surfaces):
        raise ConfigError("hs_surfaces", f"{{name}} must name hyperplane and/or hypersphere, got "
                                         f"{config.hs_surfaces!r}")
    if 1.0 not in config.hs_radii:
        raise ConfigError("hs_radii", "{name} must include 1 (the Xavier radius: the full-space "
                                      "baseline of the intrinsic dimension)")


def prepare(config: Config, data_dir: str | None) -> Any:
    setup = common.load_train_test(config, data_dir)
    check_dim(setup, max(config.hs_dims), name="hs_dims")
    if config.hs_batch > len(setup.x):
        raise ConfigError("hs_batch", f"{{name}}={config.hs_batch} exceeds the {len(setup.x)} "
                                      f"training samples; choose a smaller {{name}}")
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    """(surface, d, seed) of every training grid, the full-space reference first."""
    full = [{"kind": "hypersurface", "surface": "full", "dim": setup.num_params, "seed": s}
            for s in range(config.seeds)]
    return full + [{"kind": "hypersurface", "surface": surface, "dim": d, "seed": s}
                   for surface in config.hs_surfaces for d in sorted(config.hs_dims)
                   for s in range(config.seeds)]


def identity_basis(num_params: int, dtype: Any) -> hypersurface.SparseBasis:
    """The identity as a :class:`gzone.hypersurface.SparseBasis` (P non-zeros): full space."""
    index = jnp.arange(num_params, dtype=jnp.int32)
    return hypersurface.SparseBasis(index, index, jnp.ones((num_params,), dtype), num_params, num_params)


def plane_fractions(apply_fn: Any, params0: Any, basis: hypersurface.SparseBasis,
                    metric: jax.Array, theta_hats: jax.Array, scales: Any,
                    batches: curvature.Batches) -> list[tuple[float | None, float | None]]:
    """(start, end) per radius factor s: the fraction of positive eigenvalues of the d × d Hessian
    in θ̂ of the loss on the hyperplane θ = s(θ0 + M R θ̂) (Sec. 2.1; obs. 1), at θ̂ = 0 and at the
    trained θ̂ (None where that θ̂ is not finite). The Hessian in θ̂ is s²(MR)ᵀH(MR): the projection
    onto the plane's columns MR (the factor s² > 0 changes no sign)."""
    origin, unravel = ravel_pytree(params0)
    plane = metric[:, None] * hypersurface.to_dense(basis)

    def fraction(theta_hat: jax.Array, scale: float) -> float | None:
        if not bool(jnp.all(jnp.isfinite(theta_hat))):
            return None
        point = hypersurface.hyperplane_point(origin, basis, metric, theta_hat, scale)
        hessian = curvature.projected(apply_fn, unravel(point), plane, batches).hessian
        return metrics.spectrum_summary(hessian)["local_convexity"]

    zero = jnp.zeros((basis.dim,), origin.dtype)
    return [(fraction(zero, float(s)), fraction(theta_hats[j], float(s)))
            for j, s in enumerate(scales)]


def _last(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return finite[-1] if finite else None


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup
    for p in chunk:
        surface, dim, seed = p["surface"], p["dim"], p["seed"]
        params0, m, _ = common.seed_state(setup, config, seed, 1, basis="orthonormal")
        key = jax.random.fold_in(stream_key(seed, "hypersurface-basis"), dim)
        basis = (identity_basis(setup.num_params, setup.dtype) if surface == "full"
                 else hypersurface.sparse_basis(key, setup.num_params, dim, setup.dtype))
        trained = hypersurface.train_hypersurface(
            setup.model.apply, params0, basis, setup.x, setup.y,
            surface="hyperplane" if surface == "full" else surface,
            scales=np.asarray(config.hs_radii), lr=config.hs_lr, epochs=config.hs_epochs,
            batch_size=config.hs_batch, key=stream_key(seed, "hypersurface-batches"), metric=m,
            x_test=setup.x_test, y_test=setup.y_test)
        h = trained.history
        r0 = float(jnp.linalg.norm(common.flat(params0)))
        fractions = [(None, None)] * len(config.hs_radii)
        if surface == "hyperplane" and dim <= config.hs_hessian_dim:
            batches = ctx.cached(("batches", dim), lambda dim=dim, params0=params0:
                                 common.batches_for(setup, config, params0, dim))
            fractions = plane_fractions(setup.model.apply, params0, basis, m, trained.theta_hat,
                                        config.hs_radii, batches)
        records = []
        for j, factor in enumerate(config.hs_radii):
            diverged = int(trained.diverged_at[j])
            curve = {f: [None if not np.isfinite(v) else float(v) for v in h[f][j]]
                     for f in ("loss", "train_accuracy", "test_accuracy", "radius")}
            records.append({
                **p, "radius_factor": factor, "radius": factor * r0, "xavier_radius": r0,
                "num_params": setup.num_params, "hs_fraction": config.hs_fraction,
                "final_radius": _last(curve["radius"]),
                "final_train_accuracy": _last(curve["train_accuracy"]),
                "final_test_accuracy": _last(curve["test_accuracy"]),
                "epochs": [int(e) for e in np.asarray(h["epoch"])[j]],
                "positive_eigenvalues_start": fractions[j][0],
                "positive_eigenvalues_end": fractions[j][1],
                **{f"curve_{f}": v for f, v in curve.items()},
                "diverged_at": None if diverged < 0 else diverged,
                "flags": [] if diverged < 0 else ["diverged"]})
        yield records


def _accuracies(records: list[dict[str, Any]]) -> dict[tuple[str, int, float], list[float]]:
    """(surface, d, radius factor) -> the seeds' final test accuracies."""
    groups: dict[tuple[str, int, float], list[float]] = {}
    for r in records:
        if r.get("kind") == "hypersurface" and r.get("final_test_accuracy") is not None:
            groups.setdefault((r["surface"], r["dim"], r["radius_factor"]), []).append(r["final_test_accuracy"])
    return groups


def accuracy_table(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[float, float]]:
    """(surface, d) -> {radius factor: mean final test accuracy over seeds}."""
    table: dict[tuple[str, int], dict[float, float]] = {}
    for (surface, dim, factor), values in sorted(_accuracies(records).items()):
        table.setdefault((surface, dim), {})[factor] = float(np.mean(values))
    return table


def recorded_fraction(records: list[dict[str, Any]], default: float = 0.9) -> float:
    """The ``hs_fraction`` the records were written with (``default`` for records without one)."""
    return next((r["hs_fraction"] for r in records if r.get("kind") == "hypersurface"
                 and r.get("hs_fraction") is not None), default)


def intrinsic_dimension(records: list[dict[str, Any]],
                        fraction: float | None = None) -> dict[str, dict[float, int | None]]:
    """surface -> {radius factor: the smallest d reaching ``fraction`` (default: the records'
    ``hs_fraction``) × the full-space test accuracy at the Xavier radius, or None}."""
    fraction = recorded_fraction(records) if fraction is None else fraction
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


def fraction_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (d, radius factor) of the hyperplanes with plane Hessians: the mean fraction of positive
    eigenvalues at the start and the end of training, the runs measured at both and how many of
    them rose (obs. 1)."""
    groups: dict[tuple[int, float], list[tuple[float, float]]] = {}
    for r in records:
        start, end = r.get("positive_eigenvalues_start"), r.get("positive_eigenvalues_end")
        if r.get("kind") == "hypersurface" and r.get("surface") == "hyperplane" \
                and claims.finite(start, end):
            groups.setdefault((r["dim"], r["radius_factor"]), []).append((start, end))
    return [{"plane_hessian_dim": dim, "radius_factor": factor,
             "positive_eigenvalues_start": float(np.mean([a for a, _ in pairs])),
             "positive_eigenvalues_end": float(np.mean([b for _, b in pairs])),
             "runs": len(pairs), "rises": sum(b > a for a, b in pairs)}
            for (dim, factor), pairs in sorted(groups.items())]


def radius_key(factor: float) -> str:
    """The summary column of the radius factor ``factor``: ``r=<factor>r_X``."""
    return f"r={factor:g}r_X"


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (surface, d): the mean final test accuracy at each radius factor, the seeds and the
    standard deviation over seeds at the Xavier radius; then per surface the intrinsic dimension
    at each radius (at the records' ``hs_fraction``)."""
    seeds = _accuracies(records)
    rows = [{"surface": surface, "dim": dim, **{radius_key(f): acc for f, acc in accs.items()},
             "seeds": len(seeds.get((surface, dim, 1.0), [])),
             "std_at_xavier": float(np.std(seeds[(surface, dim, 1.0)], ddof=1))
             if len(seeds.get((surface, dim, 1.0), [])) > 1 else None}
            for (surface, dim), accs in accuracy_table(records).items()]
    fraction = recorded_fraction(records)
    return rows + fraction_rows(records) + [{"surface": surface, "dim": f"intrinsic ({fraction:.0%})",
                    **{radius_key(f): d for f, d in sorted(by_radius.items())}}
                   for surface, by_radius in intrinsic_dimension(records).items()]


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Final test accuracy against the radius of the surface, one curve per d, for each surface
    (dashed: full space); last panel the intrinsic dimension against the radius."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    table = accuracy_table(records)
    surfaces = sorted({s for s, _ in table if s != "full"}) or ["hyperplane"]
    fig, axes = plt.subplots(1, len(surfaces) + 1, figsize=(5 * (len(surfaces) + 1), 3.8))
    hs = [r for r in records if r.get("kind") == "hypersurface"]
    r_x = float(np.mean([r["xavier_radius"] for r in hs])) if hs else 1.0
    dims = sorted({d for s, d in table if s != "full"})
    colors = common.colors(dims, "plasma")
    for ax, surface in zip(axes, surfaces):
        if not table:
            common.empty(ax, "hypersurface")
        for (s, d), accs in table.items():
            if s == surface or s == "full":
                xs = sorted(accs)
                ax.plot([x * r_x for x in xs], [accs[x] for x in xs], "o--" if s == "full" else "o-",
                        ms=3, color="black" if s == "full" else colors[d],
                        label="full space" if s == "full" else f"$d$ = {d}")
        common.xavier(ax, hs)
        ax.set(xscale="log", xlabel=common.RADIUS_LABEL, ylabel="final test accuracy",
               title=f"random {surface}s")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax = axes[-1]
    found = False
    for surface, by_radius in intrinsic_dimension(records).items():
        xs = sorted(by_radius)
        ys = [np.nan if by_radius[x] is None else by_radius[x] for x in xs]
        found = found or bool(np.isfinite(ys).any())
        ax.plot([x * r_x for x in xs], ys, "o-", ms=4, label=surface)
    common.xavier(ax, hs)
    ax.set(xscale="log", xlabel=common.RADIUS_LABEL,
           ylabel=f"intrinsic dimension ({recorded_fraction(records):.0%})",
           title="intrinsic dimension against radius" + ("" if found else " (no d reached it)"))
    if found:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def _by_radius(row: dict[str, Any]) -> dict[float, Any]:
    """A summary row's ``r=<factor>r_X`` columns as {radius factor: value}, ascending."""
    return dict(sorted((float(k[2:-3]), v) for k, v in row.items()
                       if k.startswith("r=") and k.endswith("r_X")))


def _near_zone(factor: float) -> bool:
    return 1 / NEAR_ZONE <= factor <= NEAR_ZONE


def check_radius_dependence(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 2, concl. 3–4: on each surface, every d whose accuracy varies over the radii by at
    least ``SPREAD_MIN`` trains best at a radius near the zone (within ``NEAR_ZONE`` of r_X), and
    the intrinsic dimension varies with the radius, smallest near the zone (a d never reached
    counts as larger than every d)."""
    expected = (f"each surface: every d whose accuracy spans >= {SPREAD_MIN} over the radii is "
                f"best within x{NEAR_ZONE:g} of r_X; the intrinsic dimension varies with the radius and "
                f"is smallest within x{NEAR_ZONE:g} of r_X")
    surfaces = sorted({r["surface"] for r in rows if r.get("surface") not in (None, "full")})
    measured: dict[str, Any] = {}
    verdicts = []
    for surface in surfaces:
        best, verdict = {}, []
        for row in rows:
            if row.get("surface") == surface and isinstance(row.get("dim"), int):
                accs = {f: a for f, a in _by_radius(row).items() if claims.finite(a)}
                if accs and max(accs.values()) - min(accs.values()) >= SPREAD_MIN:
                    best[str(row["dim"])] = max(accs, key=accs.__getitem__)
        verdict.append(INCONCLUSIVE if not best else REPRODUCED if all(
            _near_zone(f) for f in best.values()) else NOT_REPRODUCED)
        intrinsic = next((_by_radius(r) for r in rows if r.get("surface") == surface
                          and str(r.get("dim")).startswith("intrinsic")), {})
        reached = {f: d for f, d in intrinsic.items() if d is not None}
        if not reached:
            verdict.append(INCONCLUSIVE)
        else:
            smallest = min(reached.values())
            varies = len(set(intrinsic.values())) > 1
            verdict.append(REPRODUCED if varies and all(
                _near_zone(f) for f, d in reached.items() if d == smallest) else NOT_REPRODUCED)
        measured[surface] = {"best_radius_factor": best, "intrinsic_dimension": {
            f"{f:g}": d for f, d in intrinsic.items()}, "verdict": claims.worst(verdict)}
        verdicts += verdict
    return Finding(claims.worst(verdicts), measured, expected)


def check_low_variance(rows: list[dict[str, Any]]) -> Finding:
    """Concl. 5: on random hyperplanes through the Xavier radius (in the zone) the final test
    accuracy varies little between hyperplanes of one d: at every d that trains (mean accuracy
    at least ``TRAINED_FRACTION`` of the full space's at r_X) the standard deviation over seeds is
    at most ``STD_MAX``."""
    expected = (f"std over seeds of the final test accuracy at r_X <= {STD_MAX} for every "
                f"hyperplane d reaching >= {TRAINED_FRACTION} x the full-space accuracy "
                f"(>= 2 seeds)")
    full = next((_by_radius(r).get(1.0) for r in rows if r.get("surface") == "full"), None)
    planes = [r for r in rows if r.get("surface") == "hyperplane" and isinstance(r.get("dim"), int)]
    std = {str(r["dim"]): r.get("std_at_xavier") for r in planes}
    accuracy = {str(r["dim"]): _by_radius(r).get(1.0) for r in planes}
    measured = {"full_space_accuracy": full, "accuracy_at_xavier": accuracy, "std_at_xavier": std,
                "seeds": min((r.get("seeds") or 0 for r in planes), default=0)}
    if not claims.finite(full):
        return Finding(INCONCLUSIVE, measured, expected)
    trained = [d for d, a in accuracy.items() if claims.finite(a) and a >= TRAINED_FRACTION * full]
    measured["trained_dims"] = trained
    if not trained or not claims.finite(*(std[d] for d in trained)):
        return Finding(INCONCLUSIVE, measured, expected)
    holds = all(std[d] <= STD_MAX for d in trained)
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


def check_fraction_rises(rows: list[dict[str, Any]]) -> Finding:
    """Obs. 1: the fraction of positive eigenvalues of the plane Hessian rises as θ̂ is optimized
    within the hyperplane. Over the runs on hyperplanes through radii near the zone (within
    ``NEAR_ZONE`` of r_X, where the paper sees the excess), the fraction of runs whose end fraction
    exceeds the start one: reproduced when its 95 % Wilson interval lies above 1/2, not reproduced
    when below, inconclusive when it straddles 1/2 or nothing was measured."""
    expected = (f"more than half of the hyperplane runs within x{NEAR_ZONE:g} of r_X end with a "
                f"larger fraction of positive plane-Hessian eigenvalues than they start with "
                f"(95 % Wilson interval above 1/2)")
    picked = [r for r in rows if "plane_hessian_dim" in r and _near_zone(r["radius_factor"])]
    k, n = sum(r["rises"] for r in picked), sum(r["runs"] for r in picked)
    low, high = wilson_interval(k, n)
    measured = {"rises": k, "runs": n, "wilson_95": [low, high],
                "start_end": {f"d={r['plane_hessian_dim']} r={r['radius_factor']:g}r_X": [
                    r["positive_eigenvalues_start"], r["positive_eigenvalues_end"]]
                    for r in rows if "plane_hessian_dim" in r}}
    return Finding(fraction_verdict(k, n, 0.5), measured, expected)


STUDY = Study(
    name="fort/hypersurface-training", paper=FORT, reproduces="Fig. 2",
    title="training on random hyperplanes and hyperspheres; intrinsic dimension against radius",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"hypersurface": ("surface", "dim", "seed")}, growable=("seeds",), legacy={"match": {"study": "fort"}},
    unused=unused_fields,
    claims=(
        Claim("radius-dependence", "Fig. 2; concl. 3-4",
              "Training on a random low-dimensional hyperplane or hypersphere succeeds best where "
              "it crosses the Goldilocks zone, so the intrinsic dimension depends on the radius.",
              check_radius_dependence),
        Claim("low-variance", "Concl. 5; Sec. 1.2",
              "The final accuracy reached on random hyperplanes of one dimension through the zone "
              "varies little from hyperplane to hyperplane.", check_low_variance),
        Claim("fraction-rises", "Obs. 1",
              "The fraction of positive eigenvalues of the Hessian on a random hyperplane rises as "
              "one optimizes within the hyperplane.", check_fraction_rises),
    ),
    doc=__doc__)
