"""Fort & Scherlis Fig. 5 and Eq. (4): the loss against the radius, and Stokes' theorem.

* :func:`run_loss_radius` (Fig. 5a, 5b): per (radius, seed) a ``loss`` record — the loss and
  accuracy at c·θ0 and the full-space Hutchinson Tr(MHM), ‖MHM‖_F — and a ``plane`` record at
  d = ``dim``. :func:`loss_radius_summary` gives the mean loss per radius, the critical radius and
  the fitted power-law exponent against L (the number of weight layers, Sec. 2.5).
* :func:`run_stokes` (Eq. 4): ``sphere_points`` fixed random directions u (uniform on the unit
  sphere of all P coordinates, in antithetic pairs ±u, the same at every radius); at φ = ρ·u, θ = M φ, a ``sphere``
  record with the loss and a Hutchinson estimate of the Laplacian Tr(MHM) (``sphere_probes``
  probes). :func:`stokes_summary` sets the mean Laplacian over each sphere beside
  d²⟨ℓ⟩/dρ² + (D − 1)/ρ · d⟨ℓ⟩/dρ from the mean losses (:func:`gzone.radial.stokes_laplacian`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, directions, radial, results, training
from gzone.experiments import base, fort, radius_sweep
from gzone.experiments.base import Progress, Record


def run_loss_radius(config: fort.FortConfig, out: Path, *, data_dir: str | None,
                    progress: Progress | None) -> None:
    """Fig. 5: ``loss`` and ``plane`` records over radii × seeds."""
    setup = fort.setup_for(config, data_dir)
    base.check_dim(setup, config.dim)
    existing = base.open_results(config, out)
    layers = fort.weight_layers(setup)

    def on_point(c, seed, params, m, batches, common, planes):
        point = fort.scaled(params, c)
        moments = radius_sweep.hutchinson_moments(
            setup.model.apply, point, batches, m, base.stream_key(seed, fort.HUTCHINSON_STREAM),
            config.probes)
        loss, _ = curvature.loss_and_gradient(setup.model.apply, point, batches)
        accuracy = float(training.accuracy(setup.model.apply, point, batches))
        return [base.tag(fort.NAME, "loss", {
            **common, "weight_layers": layers, "loss": float(loss), "accuracy": accuracy,
            "log_classes": math.log(setup.num_classes), **moments,
            "frobenius_norm": math.sqrt(max(moments["frobenius_sq"], 0.0)),
            "flags": [] if math.isfinite(float(loss)) else ["nonfinite_loss"]})]

    radius_sweep.sweep_records(config, setup, out, existing, (config.dim,), progress, {},
                                on_point=on_point, point_kind="loss")


def _by_factor(records: list[Record], kind: str) -> dict[float, list[Record]]:
    groups: dict[float, list[Record]] = {}
    for r in records:
        if r.get("kind") == kind:
            groups.setdefault(r["radius_factor"], []).append(r)
    return dict(sorted(groups.items()))


def loss_radius_summary(records: list[Record], *, fit_above: float = 3.0) -> dict[str, Any]:
    """Mean loss, Tr and ‖·‖_F per radius (over seeds), the critical radius (mean loss first 10 %
    above log K) and the power law fitted where the mean loss exceeds ``fit_above`` × log K."""
    groups = _by_factor(records, "loss")
    if not groups:
        return {"rows": [], "fit": None}
    rows = []
    for c, group in groups.items():
        rows.append({"radius_factor": c, "radius": float(np.mean([g["radius"] for g in group])),
                     "loss": float(np.mean([g["loss"] for g in group])),
                     "trace": float(np.mean([g["trace"] for g in group])),
                     "frobenius_norm": float(np.mean([g["frobenius_norm"] for g in group])),
                     "seeds": len(group)})
    first = next(iter(groups.values()))[0]
    flat = first["log_classes"]
    radii = np.array([r["radius"] for r in rows])
    losses = np.array([r["loss"] for r in rows])
    out = {"rows": rows, "weight_layers": first["weight_layers"], "log_classes": flat,
           "xavier_radius": float(np.mean([g["xavier_radius"] for g in next(iter(groups.values()))])),
           "critical_radius": radial.critical_radius(radii, losses, flat), "fit": None}
    above = radii[losses > fit_above * flat]
    if above.size >= 3:
        out["fit"] = radial.power_law_exponent(radii, losses, r_min=float(above[0]))._asdict()
    return out


def run_stokes(config: fort.FortConfig, out: Path, *, data_dir: str | None,
               progress: Progress | None) -> None:
    """Eq. (4): ``sphere`` records at ``sphere_points`` fixed directions × radii (seed 0's θ0 sets
    the metric and the reference radius ρ_X = ‖M⁻¹θ0‖)."""
    setup = fort.setup_for(config, data_dir)
    existing = base.open_results(config, out)
    done = {(r["radius_factor"], r["point"]) for r in existing if r.get("kind") == "sphere"}
    params0, m, _ = fort.seed_state(setup, config, 0, 1)
    theta0 = fort.flat(params0)
    nonzero = theta0 != 0
    rho_x = float(jnp.linalg.norm(jnp.where(nonzero, theta0 / m, 0.0)))
    _, unravel = jax.flatten_util.ravel_pytree(params0)
    units = sphere_units(config.sphere_points, setup.num_params, setup.dtype)
    batches = fort.batches_for(setup, config, params0, 1)
    todo = [(c, i) for c in fort.radius_factors(config) for i in range(config.sphere_points)
            if (c, i) not in done]
    probe_key = base.stream_key(0, fort.HUTCHINSON_STREAM)
    for c, i in base.iterate(todo, progress):
        rho = c * rho_x
        theta = rho * m * units[i]
        point = unravel(theta)
        loss, _ = curvature.loss_and_gradient(setup.model.apply, point, batches)
        moments = radius_sweep.hutchinson_moments(setup.model.apply, point, batches, m,
                                                  jax.random.fold_in(probe_key, i), config.sphere_probes)
        record = {"model": config.model, "dataset": config.dataset, "radius_factor": c,
                  "rho": rho, "rho_xavier": rho_x, "radius": float(jnp.linalg.norm(theta)),
                  "xavier_radius": float(jnp.linalg.norm(theta0)), "point": i,
                  "num_params": setup.num_params, "loss": float(loss),
                  "laplacian": moments["trace"], "laplacian_stderr": moments["trace_stderr"],
                  "probes": moments["probes"],
                  "flags": [] if math.isfinite(float(loss)) else ["nonfinite_loss"]}
        results.append_records(out, [base.tag(fort.NAME, "sphere", record)])


def sphere_units(num: int, dim: int, dtype) -> jax.Array:
    """The stokes study's ``num`` directions: antithetic pairs ±u of directions uniform on the
    unit sphere (``stream_key(0, SPHERE_STREAM)``). Still uniform, and the odd (gradient) part of
    the loss cancels exactly in every sphere average, which removes the largest Monte Carlo error
    of d⟨ℓ⟩/dρ (amplified by (D − 1)/ρ in Eq. 4)."""
    half = directions.unit_directions(base.stream_key(0, fort.SPHERE_STREAM), -(-num // 2), dim, dtype)
    return jnp.stack([half, -half], axis=1).reshape(-1, dim)[:num]


def stokes_summary(records: list[Record]) -> list[dict[str, float]]:
    """Per radius: the mean loss ⟨ℓ⟩ and mean Laplacian ⟨∇²ℓ⟩ (± standard error over the points)
    over the sphere, and the right-hand side of Eq. (4) from the mean losses."""
    groups = _by_factor(records, "sphere")
    if len(groups) < 3:
        return []
    rows = []
    for c, group in groups.items():
        lap = np.array([g["laplacian"] for g in group], np.float64)
        rows.append({"radius_factor": c, "rho": group[0]["rho"],
                     "radius": float(np.mean([g["radius"] for g in group])),
                     "loss": float(np.mean([g["loss"] for g in group])),
                     "laplacian": float(lap.mean()),
                     "laplacian_stderr": float(lap.std(ddof=1) / math.sqrt(len(lap))) if len(lap) > 1 else float("nan"),
                     "points": len(group)})
    size = next(iter(groups.values()))[0]["num_params"]
    rhs = radial.stokes_laplacian([r["rho"] for r in rows], [r["loss"] for r in rows], size)
    for row, value in zip(rows, rhs):
        row["stokes_laplacian"] = float(value) if np.isfinite(value) else None  # grid ends
    return rows
