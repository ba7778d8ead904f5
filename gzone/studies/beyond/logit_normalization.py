"""ICML Sec. 6: logit normalisation (Wei et al., 2022) "may change positive curvature" — its
effect on the curvature at initialisation and on trainability across the weight scale α,
against plain cross-entropy.

LogitNorm trains on −log softmax(z / (τ(‖z‖ + ε)))_y: the cross-entropy at temperature T = τ of
the unit logits z / (‖z‖ + ε) (:func:`gzone.objective.unit_logits`; ε = 1e-7 as Wei et al.'s
code). The model is wrapped (:class:`gzone.objective.LogitNormalized`), so every engine —
:func:`gzone.curvature.projected`, the Lanczos operators, :func:`gzone.training.train_grid` — runs
unchanged, the G-term and H-term being those of the normalised logits (Eq. 4 with z/‖z‖ as the
network's output); the argmax, hence accuracy, is the model's.

What the math says: for a network homogeneous of degree L, z(αθ) = α^L z(θ), so with ε = 0 the
unit logits and the loss do not depend on α: ∇ℓ(αθ) = ∇ℓ(θ)/α, H(αθ) = H(θ)/α² (both terms), and
positive curvature Tr/‖·‖_F (Eq. 2), a ratio, is exactly independent of α. Gradient descent at
η = η0·α² (:func:`gzone.training.effective_lr` with degree 0) then follows an α-scaled copy of the
α = 1 trajectory: trainability cannot depend on α. ε breaks this only where ‖z‖ is near ε (the
records keep ε/min‖z‖). Plain cross-entropy trains at the paper's η = η0·α^(2−L).

Points: ``curvature`` (α, loss_kind, τ, seed) — Rᵀ H R, Rᵀ G R, Rᵀ H-term R on a random
orthonormal d-plane (``zone_dim``; positive curvature, spectral norms) at θ = α·θ0(seed), the
loss, ‖∇ℓ‖, the logit norms and, with ``full_space``, ‖G‖₂, ‖H-term‖₂, ‖H‖₂ by Lanczos (the zone:
‖G‖₂ > ‖H-term‖₂, Sec. 4); and ``run`` (α, η0, loss_kind, τ, seed) — full-batch GD, ``log``
records as it goes and a run record as :func:`gzone.studies.icml._common.grid.run_record`
(outcome diverged / zero-logits / trained / untrained). ``loss_kind`` is ``ce`` (τ none) or
``logitnorm`` (τ from ``taus``: 0.04 is Wei et al.'s choice for CIFAR-10).

    gzone run beyond/logit-normalization
    gzone run beyond/logit-normalization --preset cpu --data-dir ../shared/data
    gzone run beyond/logit-normalization --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, lanczos, metrics, models, objective, training
from gzone.engine import BEYOND, Claim, Context, Finding, Point, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ConfigError,
    check_alphas,
    check_at_least,
    check_choice,
    check_positive,
    check_range,
    field,
    run_settings,
)
from gzone.engine.study import batched
from gzone.engine.summary import band, number
from gzone.studies.icml._common import LENET300_FASHION, grid

LOSS_KINDS = ("ce", "logitnorm")
TERMS = curvature.TERMS


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """Curvature at initialisation and GD training over (α, η0), plain CE against LogitNorm."""

    alpha_min: float = field(0.01, "smallest alpha of the log grid")
    alpha_max: float = field(100.0, "largest alpha of the log grid")
    num_alphas: int = field(7, "alphas on the log grid")
    lr0_min: float = field(0.003, "smallest base learning rate lr0 (CE: lr0*alpha^(2-L); "
                                  "LogitNorm: lr0*alpha^2)")
    lr0_max: float = field(3.0, "largest base learning rate lr0")
    num_lr0: int = field(5, "lr0 values on the log grid")
    taus: tuple[float, ...] = field((0.04, 1.0), "LogitNorm temperatures tau, e.g. 0.04,1 "
                                                 "(Wei et al.: 0.04 on CIFAR-10)")
    eps: float = field(objective.LOGIT_NORM_EPS, "epsilon added to the logit norm (Wei et al.'s "
                                                 "code: 1e-7; 0: exact alpha-invariance)")
    full_space: bool = field(True, "also Lanczos ||G||_2, ||H-term||_2, ||H||_2 at init (the zone)")
    lanczos_iters: int = field(30, "full space: Lanczos steps per norm (clipped to P)")
    sharpness: bool = field(False, "log the top Hessian eigenvalue (Lanczos) at every log")
    zone_dim: int = field(20, "d of the random orthonormal plane of the projected curvature")


_PAPER = {**LENET300_FASHION, "n_train": None, "n_test": None, "num_alphas": 13,
          "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 10, "lr0_min": 0.001, "lr0_max": 3.0,
          "steps": 20000, "log_every": 100, "zone_dim": 50, "zone_samples": 10000, "seeds": 3,
          "batch_size": None}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "num_alphas": 3,
             "alpha_min": 0.1, "alpha_max": 10.0, "num_lr0": 2, "lr0_min": 0.03, "lr0_max": 0.3,
             "steps": 20, "log_every": 10, "zone_dim": 6, "zone_samples": 200,
             "full_space": False, "batch_size": 12},
    "default": {},
    "cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_alphas": 7,
            "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 4, "lr0_min": 0.01,
            "lr0_max": 1.0, "steps": 500, "log_every": 50, "zone_dim": 20, "zone_samples": 1000,
            "lanczos_iters": 20},
    "paper": _PAPER,
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    grid.validate_lr0_grid(config)
    check_choice(config, "optimizer", ("gd",))  # the alpha^2 rule is GD's (Adam is scale-free)
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")
    check_at_least(config, "num_alphas", "zone_dim", "lanczos_iters")
    check_alphas(config, "taus")
    if len(set(config.taus)) != len(config.taus):
        raise ConfigError("taus", f"{{name}} repeats a value: {config.taus!r}")
    if isinstance(config.eps, bool) or not (config.eps >= 0 and np.isfinite(config.eps)):
        raise ConfigError("eps", f"{{name}} must be a finite number >= 0, got {config.eps!r}")


def alphas(config: Config) -> list[float]:
    """The log grid of α."""
    return np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()


def settings(config: Config) -> list[tuple[str, float | None]]:
    """(loss_kind, τ) of each objective: plain CE (τ none), then LogitNorm at each τ."""
    return [("ce", None)] + [("logitnorm", float(t)) for t in config.taus]


def points(config: Config, setup: Any) -> list[Point]:
    """The curvature points (seed, objective, α), then the runs (objective, α, η0, seed)."""
    a_grid, lr0s, seeds = alphas(config), grid.lr0_grid(config), range(config.seeds)
    curv = [{"kind": "curvature", "alpha": a, "loss_kind": k, "tau": t, "seed": s}
            for s in seeds for k, t in settings(config) for a in a_grid]
    runs = [{"kind": "run", "alpha": a, "lr0": r, "loss_kind": k, "tau": t, "seed": s}
            for k, t in settings(config) for a in a_grid for r in lr0s for s in seeds]
    return curv + runs


def apply_of(setup: Any, loss_kind: str, eps: float) -> Any:
    """The model's apply (CE) or its logit-normalised wrapper (LogitNorm)."""
    return setup.model.apply if loss_kind == "ce" else objective.LogitNormalized(setup.model.apply, eps)


def temperature_of(point: Point) -> float:
    """T = 1 for CE, T = τ for LogitNorm (the loss's temperature on the unit logits)."""
    return 1.0 if point["loss_kind"] == "ce" else float(point["tau"])


def lr_of(point: Point, degree: int) -> float:
    """η0·α^(2−L) for CE (the paper's), η0·α² for LogitNorm (degree 0: α-scaled trajectories)."""
    return training.effective_lr(point["lr0"], point["alpha"], degree if point["loss_kind"] == "ce" else 0)


# ----------------------------------------------------------------------------- measurement


def full_space_norms(apply_fn: Any, params: Any, batches: curvature.Batches, temperature: float,
                     *, num_iters: int, key: jax.Array) -> dict[str, Any]:
    """‖G‖₂, ‖H-term‖₂, ‖H‖₂ (largest-magnitude Ritz values, Lanczos) and the zone verdict
    ‖G‖₂ > ‖H-term‖₂ (Sec. 4); None and a flag where a norm is not finite."""
    size = curvature.num_params(params)
    out: dict[str, Any] = {"flags": []}
    for term in TERMS:
        op = curvature.operator(term, apply_fn, params, batches, None, temperature)
        res = lanczos.eigsh(op, size, 1, key=key, num_iters=min(num_iters, size), which="LM")
        value = abs(float(res.eigenvalues[0]))
        out[f"{term}_norm"] = value if np.isfinite(value) else None
        if not np.isfinite(value):
            out["flags"].append(f"nonfinite_{term}_norm")
    g, h = out["gterm_norm"], out["hterm_norm"]
    out["in_zone"] = None if g is None or h is None else bool(g > h)
    return out


def curvature_record(apply_fn: Any, model_apply: Any, params: Any, basis: jax.Array,
                     batches: curvature.Batches, temperature: float, *, input_layer: str | None,
                     eps: float) -> dict[str, Any]:
    """The projected H, G-term, H-term at ``params`` summarised (:func:`gzone.metrics.spectrum_summary`:
    ``pc_<term>``, ``norm_<term>``, ``top_<term>``), the projected zone verdict, the loss, ‖∇ℓ‖ and
    the raw logit norms ‖z‖ (mean, min over samples) with ε/min‖z‖."""
    mats = curvature.projected(apply_fn, params, basis, batches, None, temperature,
                               input_layer=input_layer)
    out: dict[str, Any] = {"loss": float(mats.loss), "gradient_norm": float(mats.gradient_norm)}
    flags: list[str] = []
    for term in TERMS:
        summary = metrics.spectrum_summary(getattr(mats, term))
        out[f"pc_{term}"] = summary["positive_curvature"]
        out[f"norm_{term}"] = summary["spectral_norm"]
        out[f"top_{term}"] = summary["top_eigenvalue"]
        flags += [f"{term}_{f}" for f in summary["flags"]]
    g, h = out["norm_gterm"], out["norm_hterm"]
    out["in_zone_projected"] = None if g is None or h is None else bool(g > h)
    norms = [jnp.linalg.norm(model_apply(params, x), axis=-1)[w > 0] for x, w in zip(batches.x, batches.w)]
    norms = jnp.concatenate(norms)
    out["logit_norm"], out["logit_norm_min"] = float(jnp.mean(norms)), float(jnp.min(norms))
    out["eps_over_logit_norm"] = eps / out["logit_norm_min"] if out["logit_norm_min"] > 0 else None
    out["flags"] = sorted(set(flags))
    return out


def _measure_curvature(ctx: Context, point: Point, thetas: dict[int, Any]) -> dict[str, Any]:
    config, setup = ctx.config, ctx.setup
    seed, kind = point["seed"], point["loss_kind"]
    apply_fn = apply_of(setup, kind, config.eps)
    n = len(setup.x) if config.zone_samples is None else min(config.zone_samples, len(setup.x))
    basis = ctx.cached(("basis", seed), lambda: engine_setup.seed_state(
        setup, seed, dim=config.zone_dim, basis="orthonormal", init=config.init)[1])
    laid = ctx.cached(("batches", kind), lambda: {t: curvature.prepare_batches(
        apply_fn, thetas[seed], setup.x[:n], setup.y[:n], config.chunk_size, t)
        for t in {config.zone_dim, 1}})
    theta = models.scale(thetas[seed], point["alpha"])
    temperature = temperature_of(point)
    record = {**point, "temperature": temperature, "n_samples": n, "zone_dim": config.zone_dim,
              "eps": config.eps if kind == "logitnorm" else None,
              **curvature_record(apply_fn, setup.model.apply, theta, basis, laid[config.zone_dim],
                                 temperature, input_layer=getattr(setup.model, "input_layer", None),
                                 eps=config.eps if kind == "logitnorm" else 0.0)}
    if kind == "ce":
        record["eps_over_logit_norm"] = None
    if config.full_space:
        full = full_space_norms(apply_fn, theta, laid[1], temperature, num_iters=config.lanczos_iters,
                                key=engine_setup.stream_key(seed, "full-space"))
        record = {**record, **full, "flags": sorted({*record["flags"], *full["flags"]})}
    return record


def measure(ctx: Context, chunk: list[Point]):
    """A curvature point, or a batch of runs of one loss kind (one vmapped program, τ as each
    run's temperature; ``log`` records as it goes, ``run`` records at the end)."""
    config, setup = ctx.config, ctx.setup
    thetas = ctx.cached("thetas", lambda: {s: engine_setup.seed_params(setup, config.init, s)
                                           for s in range(config.seeds)})
    if chunk[0]["kind"] == "curvature":
        for p in chunk:
            yield [_measure_curvature(ctx, p, thetas)]
        return
    kind = chunk[0]["loss_kind"]
    lrs = [lr_of(p, setup.degree) for p in chunk]
    temps = [temperature_of(p) for p in chunk]
    params = jax.tree_util.tree_map(
        lambda *a: jnp.stack(a), *[models.scale(thetas[p["seed"]], p["alpha"]) for p in chunk])
    unmeasured = {} if config.sharpness else dict.fromkeys(training.SHARPNESS_FIELDS)
    logged = [f for f in training.HISTORY_FIELDS
              if config.sharpness or f not in training.SHARPNESS_FIELDS]
    result = training.train_grid(
        apply_of(setup, kind, config.eps), params, setup.x, setup.y, lr=lrs,
        temperature=np.asarray(temps), steps=config.steps, log_every=config.log_every,
        x_test=setup.x_test, y_test=setup.y_test, optimizer=config.optimizer, labels="true",
        sharpness=config.sharpness, key=engine_setup.stream_key(0, "training-labels"),
        chunk_size=config.chunk_size, devices=ctx.devices, **run_settings(config),
        checkpoint_dir=ctx.checkpoint(),
        on_log=ctx.log_writer(chunk, logged, lambda j: {"lr": lrs[j], "temperature": temps[j],
                                                        **unmeasured}))
    yield [{**grid.run_record(setup.num_classes, p, lrs[j], {
        f: result.history[f][j] for f in training.HISTORY_FIELDS}, int(result.diverged_at[j])),
        "temperature": temps[j]} for j, p in enumerate(chunk)]


#: runs of one loss kind (one apply) in batches of ``batch_size``; curvature points alone
chunks = batched(lambda config: config.batch_size,
                 group=lambda config, p: (p["kind"], p["loss_kind"]), kinds=("run",))


# ----------------------------------------------------------------------------- summaries


def _order(kind: str, tau: float | None) -> tuple:
    return (LOSS_KINDS.index(kind), -1.0 if tau is None else tau)


def _median(group: list[dict[str, Any]], name: str) -> float | None:
    stats = band(r.get(name) for r in group)
    return None if stats is None else stats[0]


def _majority(group: list[dict[str, Any]], name: str) -> bool | None:
    votes = [bool(r[name]) for r in group if r.get(name) is not None]
    return sum(votes) > len(votes) / 2 if votes else None


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (loss_kind, τ, α): the medians over seeds of PC(H), PC(G-term), PC(H-term) on the
    plane, the zone (full space and plane, majority of seeds), the full-space norms, the initial
    loss and logit norm (ε/min‖z‖: the largest over seeds); and of its runs the outcome counts,
    the best (over η0) seed-mean maximum train and test accuracy, the largest η0 whose runs
    train (most seeds) and whether any η0 trains."""
    keys = {(r["loss_kind"], r.get("tau"), r["alpha"]) for r in records
            if r.get("kind") in ("curvature", "run")}
    out = []
    for kind, tau, alpha in sorted(keys, key=lambda k: (*_order(k[0], k[1]), k[2])):
        same = [r for r in records if r.get("loss_kind") == kind and r.get("tau") == tau
                and r.get("alpha") == alpha]
        curv = [r for r in same if r["kind"] == "curvature"]
        runs = [r for r in same if r["kind"] == "run"]
        row: dict[str, Any] = {"loss_kind": kind, "tau": tau, "alpha": float(alpha),
                               "seeds": len(curv)}
        for name in ("pc_hessian", "pc_gterm", "pc_hterm", "gterm_norm", "hterm_norm",
                     "hessian_norm", "loss", "logit_norm"):
            row[name] = _median(curv, name)
        row["in_zone"] = _majority(curv, "in_zone")
        row["in_zone_projected"] = _majority(curv, "in_zone_projected")
        ratios = [r["eps_over_logit_norm"] for r in curv if r.get("eps_over_logit_norm") is not None]
        row["eps_over_logit_norm"] = max(ratios) if ratios else None
        row["runs"] = len(runs)
        row.update({o: sum(r["outcome"] == o for r in runs) for o in grid.OUTCOMES})
        table = grid.run_table(runs)
        trained = [lr0 for j, lr0 in enumerate(table["lr0"]) if table["trained"][0, j] > 0.5] \
            if runs else []
        for name, f in (("best_train", "max_train_accuracy"), ("best_test", "max_test_accuracy")):
            values = table[f][0][np.isfinite(table[f][0])] if runs else np.array([])
            row[name] = float(values.max()) if values.size else None
        row["largest_trained_lr0"] = float(max(trained)) if trained else None
        row["trains"] = bool(trained) if runs else None
        out.append(row)
    return out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows(records)


# ----------------------------------------------------------------------------- claims


#: LogitNorm's PC(H) "does not change with α": max − min over the α grid at most this (Eq. 2 units)
PC_TOLERANCE = 0.01
#: CE's PC(H) "changes with α": max − min over the grid at least this
CE_MIN_SPREAD = 0.1
#: ε/min‖z‖ at most this: ε's effect on the normalised logits is negligible (a measured aside)
EPS_NEGLIGIBLE = 1e-3
#: LogitNorm's trainability "does not change with α": best train accuracy within this over α
ACCURACY_TOLERANCE = 0.02


def _series(rows: list[dict[str, Any]], kind: str, tau: float | None,
            name: str) -> tuple[list[float], list[Any]]:
    picked = sorted((r["alpha"], r.get(name)) for r in rows
                    if r.get("loss_kind") == kind and r.get("tau") == tau)
    return [a for a, _ in picked], [v for _, v in picked]


def _taus(rows: list[dict[str, Any]]) -> list[float]:
    return sorted({r["tau"] for r in rows if r.get("loss_kind") == "logitnorm"})


def _spread(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None]
    return None if not kept or len(kept) < len(values) else float(max(kept) - min(kept))


def check_pc_invariant(rows: list[dict[str, Any]]) -> Finding:
    """Max − min over α of the median PC(H) under LogitNorm at most :data:`PC_TOLERANCE` for
    every τ, while under CE at least :data:`CE_MIN_SPREAD` (else inconclusive: the grid shows
    no contrast). Measured beside it: the spread over the α where ε/min‖z‖ ≤
    :data:`EPS_NEGLIGIBLE` (ε's share; the verdict is on the whole grid)."""
    expected = (f"LogitNorm: PC(H) the same at every alpha (exact for eps = 0; spread <= "
                f"{PC_TOLERANCE}); CE: PC(H) varies over the alpha grid (spread >= {CE_MIN_SPREAD})")
    a_ce, pc_ce = _series(rows, "ce", None, "pc_hessian")
    taus = _taus(rows)
    ln = {t: _series(rows, "logitnorm", t, "pc_hessian")[1] for t in taus}
    measured: dict[str, Any] = {
        "alphas": a_ce, "ce_pc_hessian": pc_ce, "ce_spread": _spread(pc_ce),
        **{f"logitnorm_tau{t:g}_pc_hessian": v for t, v in ln.items()},
        **{f"logitnorm_tau{t:g}_spread": _spread(v) for t, v in ln.items()},
        "max_eps_over_logit_norm": max((r["eps_over_logit_norm"] for r in rows
                                        if r.get("eps_over_logit_norm") is not None), default=None)}
    for t in taus:  # for the reading, not the verdict: the spread where ε is negligible
        kept = [r["pc_hessian"] for r in rows if r.get("loss_kind") == "logitnorm"
                and r.get("tau") == t and number(r.get("eps_over_logit_norm")) <= EPS_NEGLIGIBLE]
        measured[f"logitnorm_tau{t:g}_spread_eps_negligible"] = _spread(kept)
    spreads = [_spread(v) for v in ln.values()]
    if len(a_ce) < 3 or not ln or measured["ce_spread"] is None or None in spreads:
        return Finding(INCONCLUSIVE, measured, expected)
    if max(spreads) > PC_TOLERANCE:
        return Finding(NOT_REPRODUCED, measured, expected)
    if measured["ce_spread"] < CE_MIN_SPREAD:
        return Finding(INCONCLUSIVE, measured, expected)
    return Finding(REPRODUCED, measured, expected)


def _trained_alphas(rows: list[dict[str, Any]], kind: str, tau: float | None) -> list[float]:
    a, trains = _series(rows, kind, tau, "trains")
    return [x for x, t in zip(a, trains) if t]


def check_trains_where_ce_fails(rows: list[dict[str, Any]]) -> Finding:
    """Reproduced when, for every τ, LogitNorm trains (some η0, most seeds) at an α where CE
    trains at no η0; not reproduced when CE fails somewhere but no τ gains an α; inconclusive
    when CE trains at every α of the grid (no room) or the τ disagree."""
    expected = ("LogitNorm trains at every alpha where it trains at any (its runs are alpha-scaled "
                "copies), including alphas where CE at lr0*alpha^(2-L) trains at no lr0")
    a_all, _ = _series(rows, "ce", None, "trains")
    ce = _trained_alphas(rows, "ce", None)
    taus = _taus(rows)
    ln = {t: _trained_alphas(rows, "logitnorm", t) for t in taus}
    gained = {t: sorted(set(v) - set(ce)) for t, v in ln.items()}
    measured: dict[str, Any] = {
        "alphas": a_all, "ce_trained_alphas": ce,
        "ce_best_train": _series(rows, "ce", None, "best_train")[1],
        **{f"logitnorm_tau{t:g}_trained_alphas": v for t, v in ln.items()},
        **{f"logitnorm_tau{t:g}_best_train": _series(rows, "logitnorm", t, "best_train")[1]
           for t in taus},
        **{f"logitnorm_tau{t:g}_gained_alphas": v for t, v in gained.items()}}
    if not a_all or not taus or any(v is None for v in _series(rows, "ce", None, "trains")[1]):
        return Finding(INCONCLUSIVE, measured, expected)
    if all(gained.values()):
        return Finding(REPRODUCED, measured, expected)
    if len(ce) < len(a_all) and not any(gained.values()):
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(INCONCLUSIVE, measured, expected)


def check_trainability_invariant(rows: list[dict[str, Any]]) -> Finding:
    """The best train accuracy under LogitNorm (over η0) within :data:`ACCURACY_TOLERANCE`
    across α for every τ (the α-scaled copies of the α = 1 runs, up to ε and float32 rounding)."""
    expected = (f"LogitNorm at lr0*alpha^2: the best train accuracy the same at every alpha "
                f"(spread <= {ACCURACY_TOLERANCE})")
    taus = _taus(rows)
    best = {t: _series(rows, "logitnorm", t, "best_train")[1] for t in taus}
    spreads = {t: _spread(v) for t, v in best.items()}
    measured = {**{f"logitnorm_tau{t:g}_best_train": v for t, v in best.items()},
                **{f"logitnorm_tau{t:g}_spread": s for t, s in spreads.items()},
                "ce_best_train": _series(rows, "ce", None, "best_train")[1]}
    if not taus or any(s is None for s in spreads.values()) or \
            any(len(v) < 2 for v in best.values()):
        return Finding(INCONCLUSIVE, measured, expected)
    ok = all(s <= ACCURACY_TOLERANCE for s in spreads.values())
    return Finding(REPRODUCED if ok else NOT_REPRODUCED, measured, expected)


# ----------------------------------------------------------------------------- figure


def _label(kind: str, tau: float | None) -> str:
    return "cross-entropy" if kind == "ce" else rf"LogitNorm $\tau$ = {tau:g}"


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """PC(H) (solid) and PC(G-term) (dashed) at initialisation against α, one colour per
    objective; and the best-train-accuracy heat maps over (α, η0), CE beside each τ
    (``<path_stem>-heatmaps``)."""
    import matplotlib.pyplot as plt

    from gzone import plots

    table = rows(records)
    objectives = sorted({(r["loss_kind"], r["tau"]) for r in table}, key=lambda k: _order(*k))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    colors = plt.get_cmap("tab10")
    for i, (kind, tau) in enumerate(objectives):
        for name, style in (("pc_hessian", "-"), ("pc_gterm", "--")):
            a, v = _series(table, kind, tau, name)
            keep = [(x, y) for x, y in zip(a, v) if y is not None]
            if keep:
                ax.plot(*zip(*keep), style, marker="o", ms=3, color="black" if kind == "ce" else colors(i),
                        label=f"{_label(kind, tau)}" + (" (G-term)" if name == "pc_gterm" else ""))
    ax.set_xscale("log")
    ax.set_xlabel(plots.ALPHA_LABEL)
    ax.set_ylabel(plots.POSITIVE_CURVATURE_LABEL)
    ax.axhline(0, color="grey", lw=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    plots.finish(fig, title or "logit normalisation: positive curvature at initialisation",
                 path_stem, ax=ax)
    return [fig, heatmaps(records, title=title,
                          path_stem=None if path_stem is None else f"{path_stem}-heatmaps")]


def heatmaps(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """The maximum train accuracy (mean over seeds) over (α, η0), one panel per objective; cells
    where most seeds diverged or ended with zero logits are marked."""
    import matplotlib.pyplot as plt

    from gzone import plots

    runs = [r for r in records if r.get("kind") == "run"]
    objectives = sorted({(r["loss_kind"], r.get("tau")) for r in runs}, key=lambda k: _order(*k))
    fig, axes = plt.subplots(1, max(len(objectives), 1), squeeze=False,
                             figsize=(3.4 * max(len(objectives), 1), 3.2))
    for ax, (kind, tau) in zip(axes[0], objectives):
        t = grid.run_table([r for r in runs if r["loss_kind"] == kind and r.get("tau") == tau])
        image = ax.imshow(t["max_train_accuracy"].T, origin="lower", vmin=0, vmax=1,
                          cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(t["max_train_accuracy"]):
            if np.isfinite(value):
                ax.text(i, j, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if value < 0.5 else "black")
        for mark, name in (("div.", "diverged"), ("0-logits", "zero_logits")):
            for (i, j), share in np.ndenumerate(t[name]):
                if share > 0.5:
                    ax.text(i, j, f"\n\n{mark}", ha="center", va="center", fontsize=5, color="red")
        ax.set_xticks(range(len(t["alpha"])), [f"{a:.3g}" for a in t["alpha"]], rotation=45)
        ax.set_yticks(range(len(t["lr0"])), [f"{v:.3g}" for v in t["lr0"]])
        ax.set_xlabel(plots.ALPHA_LABEL)
        ax.set_ylabel(plots.LR0_LABEL)
        ax.set_title(_label(kind, tau), fontsize=9)
        fig.colorbar(image, ax=ax, label="best train accuracy")
    return plots.finish(fig, title or "logit normalisation: trainability", path_stem)


STUDY = Study(
    name="beyond/logit-normalization", paper=BEYOND,
    reproduces="ICML Sec. 6 (logit normalisation, Wei et al. 2022)",
    title="logit normalisation against CE: positive curvature at init and trainability over alpha",
    config=Config, presets=PRESETS, validate=validate, prepare=grid.prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"curvature": ("alpha", "loss_kind", "tau", "seed"),
          "run": ("alpha", "lr0", "loss_kind", "tau", "seed")},
    chunks=chunks, work=grid.work, kinds=("curvature", "run", "log"),
    unused=lambda config: () if config.full_space else ("lanczos_iters",),
    claims=(
        Claim("pc-alpha-invariant", "ICML Sec. 6; Wei et al. 2022",
              "Under logit normalisation positive curvature of H at initialisation does not "
              "change with alpha (the normalised logits of a homogeneous network are "
              "alpha-invariant), while under plain cross-entropy it does.",
              check_pc_invariant),
        Claim("trains-where-ce-fails", "ICML Sec. 5-6; Wei et al. 2022",
              "With logit normalisation (GD at lr0*alpha^2) networks train at initialisation "
              "scales alpha where plain cross-entropy (at lr0*alpha^(2-L)) trains at no lr0.",
              check_trains_where_ce_fails),
        Claim("trainability-alpha-invariant", "ICML Sec. 6 (the math of homogeneity)",
              "With logit normalisation the best train accuracy does not depend on alpha: the "
              "runs at lr0*alpha^2 are alpha-scaled copies of the runs at alpha = 1.",
              check_trainability_invariant),
    ),
    doc=__doc__)
