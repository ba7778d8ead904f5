"""Fort & Scherlis Eq. (4): Stokes' theorem — the mean Laplacian over a sphere is the radial
growth of the mean loss, ⟨∇²ℓ⟩_ρ = d²⟨ℓ⟩/dρ² + (D − 1)/ρ · d⟨ℓ⟩/dρ: the positive mean curvature
of the zone is the loss rising with the radius (the fake valleys).

``sphere_points`` fixed random directions u (uniform on the unit sphere of all P coordinates, in
antithetic pairs ±u, the same at every radius); at φ = ρ·u, θ = M φ, a ``sphere`` record with
the loss and a Hutchinson estimate of the Laplacian Tr(MHM) (``sphere_probes`` probes). Seed 0's
θ0 sets the metric and the reference radius ρ_X = ‖M⁻¹θ0‖. The summary sets the mean Laplacian
over each sphere beside the right side of Eq. (4) from the mean losses
(:func:`gzone.radial.stokes_laplacian`).

    gzone run fort/stokes
    gzone run fort/stokes --sphere-points 64
    gzone run fort/stokes --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, directions, radial
from gzone.engine import FORT, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_at_least, check_positive, check_range, field
from gzone.engine.setup import stream_key
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common

#: radii where both sides of Eq. (4) and the error of the right side are known, at least
MIN_RADII = 3


@dataclasses.dataclass(frozen=True)
class Config(common.NetworkConfig):
    """The loss and the Laplacian at fixed random directions on spheres of growing radius."""

    radius_min: float = field(0.1, "smallest radius, as a factor of the Xavier radius")
    radius_max: float = field(10.0, "largest radius, as a factor of the Xavier radius")
    num_radii: int = field(13, "radii (geometric grid)")
    metric: bool = field(True, "per-layer metric M (theta = M phi)")
    sphere_points: int = field(32, "random points on each sphere (the same directions at every radius)")
    sphere_probes: int = field(4, "Hutchinson probes of the Laplacian at each point")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_samples": 200, "num_radii": 5, "sphere_points": 8,
             "sphere_probes": 2},
    "default": {},
    "cpu": {**common.MNIST, "n_samples": 1000, "num_radii": 9, "sphere_points": 16},
    "paper": {**common.MNIST},
    "mnist": {**common.MNIST},
    "cifar10": {**common.CIFAR10},
}


def validate(config: Config) -> None:
    common.validate_network(config)
    check_positive(config, "radius_min", "radius_max")
    check_range(config, "radius_min", "radius_max")
    check_at_least(config, "num_radii", minimum=3)
    check_at_least(config, "sphere_points", "sphere_probes")


@dataclasses.dataclass(frozen=True)
class Spheres:
    """The model, seed 0's θ0, the metric, the reference radius ρ_X and the directions."""

    setup: Any
    params0: Any
    m: jax.Array
    rho_x: float
    units: jax.Array


def sphere_units(num: int, dim: int, dtype: Any) -> jax.Array:
    """``num`` directions: antithetic pairs ±u of directions uniform on the unit sphere (stream
    ``sphere`` of seed 0). Still uniform, and the odd (gradient) part of the loss cancels exactly
    in every sphere average, which removes the largest Monte Carlo error of d⟨ℓ⟩/dρ (amplified by
    (D − 1)/ρ in Eq. 4)."""
    half = directions.unit_directions(stream_key(0, "sphere"), -(-num // 2), dim, dtype)
    return jnp.stack([half, -half], axis=1).reshape(-1, dim)[:num]


def prepare(config: Config, data_dir: str | None) -> Spheres:
    setup = common.setup_for(config, data_dir)
    params0, m, _ = common.seed_state(setup, config, 0, 1, basis="orthonormal")
    theta0 = common.flat(params0)
    rho_x = float(jnp.linalg.norm(jnp.where(theta0 != 0, theta0 / m, 0.0)))
    return Spheres(setup, params0, m, rho_x, sphere_units(config.sphere_points, setup.num_params,
                                                          setup.dtype))


def points(config: Config, s: Spheres) -> list[dict[str, Any]]:
    return [{"kind": "sphere", "radius_factor": c, "point": i}
            for c in common.radius_factors(config) for i in range(config.sphere_points)]


def measure(ctx, chunk):
    config, s = ctx.config, ctx.setup
    setup = s.setup
    _, unravel = jax.flatten_util.ravel_pytree(s.params0)
    batches = ctx.cached("batches", lambda: common.batches_for(setup, config, s.params0, 1))
    probe_key = stream_key(0, "hutchinson")
    r0 = float(jnp.linalg.norm(common.flat(s.params0)))
    for p in chunk:
        c, i = p["radius_factor"], p["point"]
        rho = c * s.rho_x
        theta = rho * s.m * s.units[i]
        point = unravel(theta)
        loss, _ = curvature.loss_and_gradient(setup.model.apply, point, batches)
        moments = common.hutchinson_moments(setup.model.apply, point, batches, s.m,
                                            jax.random.fold_in(probe_key, i), config.sphere_probes)
        yield [{"kind": "sphere", "model": config.model, "dataset": config.dataset,
                "radius_factor": c, "rho": rho, "rho_xavier": s.rho_x,
                "radius": float(jnp.linalg.norm(theta)), "xavier_radius": r0, "point": i,
                "num_params": setup.num_params, "loss": float(loss), "laplacian": moments["trace"],
                "laplacian_stderr": moments["trace_stderr"], "probes": moments["probes"],
                "flags": [] if math.isfinite(float(loss)) else ["nonfinite_loss"]}]


def discretisation_error(rho: list[float], loss: list[float], size: int,
                         fine: np.ndarray) -> list[float | None]:
    """The error of the right side of Eq. (4) on the grid (``fine``), estimated as Richardson's
    |coarse − fine|/3 against the grid of every other radius (the one of the same parity; step
    doubled, second-order differences); None where the coarse grid has no interior estimate."""
    out: list[float | None] = [None] * len(rho)
    for parity in (0, 1):
        index = list(range(parity, len(rho), 2))
        if len(index) < 3:
            continue
        coarse = radial.stokes_laplacian([rho[i] for i in index], [loss[i] for i in index], size)
        for j, i in enumerate(index):
            if np.isfinite(coarse[j]) and np.isfinite(fine[i]):
                out[i] = float(abs(coarse[j] - fine[i]) / 3)
    return out


def stokes_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per radius: the mean loss ⟨ℓ⟩ and mean Laplacian ⟨∇²ℓ⟩ (± standard error over the points)
    over the sphere, the right-hand side of Eq. (4) from the mean losses (None at the two grid
    ends) and its estimated discretisation error (:func:`discretisation_error`)."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "sphere":
            groups.setdefault(r["radius_factor"], []).append(r)
    if len(groups) < 3:
        return []
    rows = []
    for c, group in sorted(groups.items()):
        lap = np.array([g["laplacian"] for g in group], np.float64)
        rows.append({"radius_factor": c, "rho": group[0]["rho"],
                     "radius": float(np.mean([g["radius"] for g in group])),
                     "loss": float(np.mean([g["loss"] for g in group])),
                     "laplacian": float(lap.mean()),
                     "laplacian_stderr": float(lap.std(ddof=1) / math.sqrt(len(lap)))
                     if len(lap) > 1 else float("nan"), "points": len(group)})
    size = next(iter(groups.values()))[0]["num_params"]
    rho, loss = [r["rho"] for r in rows], [r["loss"] for r in rows]
    rhs = radial.stokes_laplacian(rho, loss, size)
    for row, value, error in zip(rows, rhs, discretisation_error(rho, loss, size, rhs)):
        row["stokes_laplacian"] = float(value) if np.isfinite(value) else None
        row["stokes_discretisation"] = error
    return rows


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return stokes_summary(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """The mean Laplacian over spheres of radius ρ (± 2 standard errors) against
    d²⟨ℓ⟩/dρ² + (D − 1)/ρ · d⟨ℓ⟩/dρ from the mean losses."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    rows = stokes_summary(records)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    if not rows:
        common.empty(ax, "sphere")
    else:
        rho = np.array([row["radius"] for row in rows])
        lap = np.array([row["laplacian"] for row in rows])
        se = np.array([row["laplacian_stderr"] for row in rows])
        ax.errorbar(rho, lap, yerr=2 * se, fmt="o-", ms=3, color="black",
                    label="Hutchinson estimate")
        rhs = np.array([np.nan if row["stokes_laplacian"] is None else row["stokes_laplacian"]
                        for row in rows])
        ax.plot(rho, rhs, "s--", ms=3, color="tab:red",
                label=r"Eq. (4): $\partial_\rho^2\langle\ell\rangle"
                      r" + \frac{D-1}{\rho}\partial_\rho\langle\ell\rangle$")
        common.xavier(ax, [r for r in records if r.get("kind") == "sphere"])
    ax.set(xscale="log", yscale="symlog", xlabel=common.RADIUS_LABEL,
           ylabel=r"mean Laplacian $\langle\mathrm{Tr}(MHM)\rangle$",
           title=r"Stokes (Eq. 4), $\rho = \|M^{-1}\theta\|$")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def check_stokes(rows: list[dict[str, Any]]) -> Finding:
    """Eq. (4): at every radius where the error of both sides is known, the mean Laplacian over
    the sphere equals d²⟨ℓ⟩/dρ² + (D − 1)/ρ · d⟨ℓ⟩/dρ within ``AGREE_Z`` combined errors (its
    standard error over the points and the right side's discretisation error)."""
    expected = (f"|<Laplacian> - (d2<l>/drho2 + (D-1)/rho d<l>/drho)| <= {claims.AGREE_Z} x "
                f"sqrt(stderr^2 + discretisation^2) at every such radius (>= {MIN_RADII} radii)")
    picked = [r for r in rows if claims.finite(r.get("laplacian"), r.get("laplacian_stderr"),
                                               r.get("stokes_laplacian"),
                                               r.get("stokes_discretisation"))]
    z = []
    for r in picked:
        error = math.hypot(r["laplacian_stderr"], r["stokes_discretisation"])
        diff = r["laplacian"] - r["stokes_laplacian"]
        z.append(diff / error if error > 0 else (0.0 if diff == 0 else math.inf))
    measured = {"radius_factors": [r["radius_factor"] for r in picked],
                "laplacian": [r["laplacian"] for r in picked],
                "stokes_laplacian": [r["stokes_laplacian"] for r in picked], "z": z,
                "max_abs_z": max(map(abs, z)) if z else None}
    if len(picked) < MIN_RADII:
        return Finding(INCONCLUSIVE, measured, expected)
    holds = max(map(abs, z)) <= claims.AGREE_Z
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


STUDY = Study(
    name="fort/stokes", paper=FORT, reproduces="Eq. (4)",
    title="mean Laplacian over spheres against the radial derivatives of the mean loss",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"sphere": ("radius_factor", "point")}, legacy={"match": {"study": "fort"}},
    claims=(Claim("stokes", "Eq. (4); Sec. 2.6",
                  "The mean Laplacian of the loss over a sphere of radius r equals "
                  "d2<loss>/dr2 + (D-1)/r d<loss>/dr: its positive mean comes from the loss "
                  "rising with the radius.", check_stokes),),
    doc=__doc__)
