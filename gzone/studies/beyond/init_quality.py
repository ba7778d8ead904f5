"""ICML Sec. 6: "our findings demonstrate the need for alternative measures to evaluate the quality
of network initializations" — every predictor gzone has, ranked against what training reaches.

Initialisation s is θ = α_s·θ0(s): θ0 of ``split(key(s))`` (as every study) and a scale α_s drawn
log-uniformly in [``alpha_min``, ``alpha_max``] from the seed's ``init-scale`` stream, so that the
initialisations span good and bad ones (at α = 1 alone every predictor would rank noise). Each is
measured at initialisation (an ``init`` record) by: positive curvature of H and of the G-term on
a random d-plane (Eq. 2), ‖G‖₂/‖H-term‖₂ and the sharpness ‖H‖₂ (full space, Lanczos), the loss,
the gradient norm, Γ_p of the batch-mean softmax Hessian (Eq. 10), the mean softmax entropy, and
the condition number λ_max/λ_min of the empirical NTK J Jᵀ of the first ``ntk_samples`` samples
(flagged, not written, when singular). Each is then trained (a ``run`` record) by full-batch GD at
η = η0·α_s^(2−L) for ``steps`` steps, its runs vmapped in batches
(:func:`gzone.training.train_grid`): the final test accuracy and the steps to ``target_accuracy``
(the first log reaching it; a run that never does counts as ``steps + log_every``, censored, and
is flagged). The summary is Spearman's ρ of every predictor with both, with a bootstrap interval
(:func:`gzone.studies.icml._common.inside.rank_correlation`): the table in the report.

    gzone run beyond/init-quality
    gzone run beyond/init-quality --preset cpu --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import curvature, metrics, models, objective, random_model, training
from gzone.engine import BEYOND, Claim, Finding, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ConfigError,
    check_at_least,
    check_positive,
    check_range,
    field,
    run_settings,
)
from gzone.engine.study import Context, batched
from gzone.studies.beyond import _common as zc
from gzone.studies.icml._common import LENET300_FASHION, grid, inside

PREDICTORS = ("pc_hessian", "pc_gterm", "g_over_hterm", "loss", "gradient_norm", "gamma_p",
              "entropy", "sharpness", "ntk_condition")
TARGETS = ("final_test_accuracy", "steps_to_target")


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """Many scaled initialisations, their predictors at init and their training."""

    n_inits: int = field(32, "initialisations (seeds 0..N-1)")
    alpha_min: float = field(0.1, "smallest scale alpha of the log-uniform draw")
    alpha_max: float = field(10.0, "largest scale alpha of the log-uniform draw")
    lr0: float = field(0.1, "base learning rate lr0 (eta = lr0*alpha^(2-L))")
    target_accuracy: float = field(0.5, "train accuracy whose first step is 'steps to target'")
    dim: int = field(20, "d of the random plane of the projected curvature")
    lanczos_iters: int = field(20, "Lanczos steps of ||G||_2, ||H-term||_2 and the sharpness")
    ntk_samples: int = field(20, "samples of the empirical NTK (m: an mK x mK matrix)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (16,), "n_train": 100, "n_test": 50, "n_inits": 6, "steps": 10,
             "log_every": 5, "dim": 4, "lanczos_iters": 5, "ntk_samples": 4,
             "target_accuracy": 0.2, "sharpness": False, "zone_dim": 0, "batch_size": 8},
    "default": {"sharpness": False, "zone_dim": 0},
    "cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "n_inits": 48, "steps": 300,
            "log_every": 25, "dim": 20, "lanczos_iters": 20, "ntk_samples": 20,
            "target_accuracy": 0.7, "sharpness": False, "zone_dim": 0, "batch_size": 16},
    "paper": {**LENET300_FASHION, "n_train": None, "n_test": None, "n_inits": 2000,
              "steps": 5000, "log_every": 100, "dim": 50, "lanczos_iters": 40, "ntk_samples": 50,
              "target_accuracy": 0.8, "sharpness": False, "zone_dim": 0, "batch_size": None},
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    check_at_least(config, "n_inits", "dim", "lanczos_iters", "ntk_samples")
    check_positive(config, "alpha_min", "alpha_max", "lr0", "target_accuracy")
    check_range(config, "alpha_min", "alpha_max")
    if config.n_inits < 3:
        raise ConfigError("n_inits", "{name} must be at least 3 for a rank correlation")
    if not config.target_accuracy < 1:
        raise ConfigError("target_accuracy", "{name} must lie in (0, 1)")


def prepare(config: Config, data_dir: str | None) -> engine_setup.Setup:
    setup = grid.prepare(config, data_dir)
    engine_setup.check_dim(setup, config.dim)
    if config.ntk_samples > len(setup.x):
        raise ConfigError("ntk_samples", f"{{name}}={config.ntk_samples} exceeds the {len(setup.x)} "
                                         "training samples")
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    inits = [{"kind": "init", "seed": s} for s in range(config.n_inits)]
    return inits + [{"kind": "run", "seed": s} for s in range(config.n_inits)]


def scale_of(config: Config, seed: int) -> float:
    """α_s, log-uniform in [alpha_min, alpha_max], from the seed's ``init-scale`` stream."""
    u = float(jax.random.uniform(engine_setup.stream_key(seed, "init-scale")))
    return float(np.exp(np.log(config.alpha_min) + u * np.log(config.alpha_max / config.alpha_min)))


def work(config: Config, point: dict[str, Any]) -> int:
    return grid.num_logs(config.steps, config.log_every) if point["kind"] == "run" else 1


chunks = batched(lambda config: config.batch_size, kinds=("run",))


@functools.partial(jax.jit, static_argnums=0)
def ntk_eigenvalues(apply_fn: Any, params: Any, x: jax.Array) -> jax.Array:
    """Eigenvalues (ascending) of the empirical NTK Θ = J Jᵀ of the logits of ``x`` (mK × mK),
    J = ∂ vec z / ∂θ (reverse mode, one row per logit)."""
    flat, unravel = ravel_pytree(params)
    jac = jax.jacrev(lambda p: apply_fn(unravel(p), x).reshape(-1))(flat)
    ntk = jac @ jac.T
    return jnp.linalg.eigvalsh((ntk + ntk.T) / 2)


def ntk_condition(eigs: np.ndarray) -> float | None:
    """λ_max / λ_min of a positive semi-definite spectrum; None when λ_min is not above
    round-off (a singular NTK: no finite condition number)."""
    eigs = np.asarray(eigs, np.float64)
    floor = eigs[-1] * len(eigs) * np.finfo(np.float32).eps
    return float(eigs[-1] / eigs[0]) if eigs[0] > floor else None


def predictors(setup: engine_setup.Setup, config: Config, params: Any, basis: jax.Array,
               batches: curvature.Batches) -> dict[str, Any]:
    """Every predictor at ``params`` (module docstring); NaN/inf and a singular NTK flagged."""
    apply_fn = setup.model.apply
    proj = curvature.projected(apply_fn, params, basis, batches)
    pc = {t: float(metrics.positive_curvature(metrics.eigenvalues(getattr(proj, t))))
          for t in ("hessian", "gterm")}
    norms = {t: zc.spectral_norm(t, apply_fn, params, batches, 1.0, config.lanczos_iters)
             for t in ("gterm", "hterm", "hessian")}
    probs = objective.probs(apply_fn(params, setup.x))
    out: dict[str, Any] = {
        "pc_hessian": pc["hessian"], "pc_gterm": pc["gterm"],
        "g_over_hterm": norms["gterm"] / norms["hterm"] if norms["hterm"] > 0 else float("nan"),
        "loss": float(proj.loss), "gradient_norm": float(proj.gradient_norm),
        "gamma_p": float(random_model.gamma_p(probs)),
        "entropy": float(jnp.mean(metrics.softmax_entropy(probs))), "sharpness": norms["hessian"]}
    eigs = np.asarray(ntk_eigenvalues(apply_fn, params, setup.x[:config.ntk_samples]))
    out["ntk_condition"] = ntk_condition(eigs)
    flags = [] if out["ntk_condition"] is not None else ["ntk_singular"]
    for k in PREDICTORS:
        if out[k] is not None and not np.isfinite(out[k]):
            out[k] = None
            flags.append(f"nonfinite_{k}")
    return {**out, "flags": flags}


def steps_to(history: dict[str, np.ndarray], target: float) -> int | None:
    """The first logged step whose train accuracy reaches ``target`` (None: never)."""
    ok = np.isfinite(history["train_accuracy"]) & (history["train_accuracy"] >= target)
    return int(history["step"][ok][0]) if ok.any() else None


def measure(ctx: Context, chunk: list[dict[str, Any]]):
    """An ``init`` point, or a batch of runs (one vmapped program)."""
    config, setup = ctx.config, ctx.setup
    if chunk[0]["kind"] == "init":
        batches = ctx.cached("batches", lambda: curvature.prepare_batches(
            setup.model.apply, engine_setup.seed_params(setup, config.init, 0), setup.x, setup.y,
            config.chunk_size, config.dim))
        for p in chunk:
            theta, basis = engine_setup.seed_state(setup, p["seed"], dim=config.dim,
                                                   basis="orthonormal", init=config.init)
            alpha = scale_of(config, p["seed"])
            yield [{**p, "alpha": alpha, **predictors(setup, config, models.scale(theta, alpha),
                                                       basis, batches)}]
        return
    alphas = [scale_of(config, p["seed"]) for p in chunk]
    lrs = [training.effective_lr(config.lr0, a, setup.degree) for a in alphas]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[
        models.scale(engine_setup.seed_params(setup, config.init, p["seed"]), a)
        for p, a in zip(chunk, alphas)])
    logged = [f for f in training.HISTORY_FIELDS if f not in training.SHARPNESS_FIELDS]
    result = training.train_grid(
        setup.model.apply, params, setup.x, setup.y, lr=lrs, steps=config.steps,
        log_every=config.log_every, x_test=setup.x_test, y_test=setup.y_test, sharpness=False,
        chunk_size=config.chunk_size, batch_size=config.batch_size, devices=ctx.devices,
        **run_settings(config), checkpoint_dir=ctx.checkpoint(),
        on_log=ctx.log_writer(chunk, logged, lambda j: {"alpha": alphas[j], "lr": lrs[j]}))
    out = []
    for j, p in enumerate(chunk):
        h = {f: result.history[f][j] for f in result.history}
        record = grid.run_record(setup.num_classes, p, lrs[j], h, int(result.diverged_at[j]))
        reached = steps_to(h, config.target_accuracy)
        ok = np.isfinite(h["test_accuracy"])
        out.append({**record, "alpha": alphas[j],
                    "final_test_accuracy": float(h["test_accuracy"][ok][-1]) if ok.any() else None,
                    "steps_to_target": reached if reached is not None
                    else config.steps + config.log_every,
                    "flags": [] if reached is not None else ["target_not_reached"]})
    yield out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (target, predictor), strongest first: Spearman's ρ over the initialisations with both,
    its p-value and bootstrap interval."""
    inits = {r["seed"]: r for r in records if r.get("kind") == "init"}
    runs = {r["seed"]: r for r in records if r.get("kind") == "run"}
    seeds = sorted(set(inits) & set(runs))
    rows = []
    for target in TARGETS:
        y = [runs[s].get(target) for s in seeds]
        found = []
        for name in PREDICTORS:
            rc = inside.rank_correlation([inits[s].get(name) for s in seeds], y)
            found.append({"target": target, "predictor": name, "rho": rc["rho"],
                          "interval": rc["interval"], "p_value": rc["p_value"], "n": rc["n"]})
        found.sort(key=lambda r: -abs(r["rho"]) if np.isfinite(r["rho"]) else 0)
        rows += found
    return rows


def _abs_interval(row: dict[str, Any]) -> tuple[float, float]:
    """The bootstrap interval of |ρ| (0 inside when ρ's interval straddles 0)."""
    lo, hi = row["interval"] or (np.nan, np.nan)
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def check_better_than_curvature(rows: list[dict[str, Any]]) -> Finding:
    """Some predictor ranks the final test accuracy better than PC(H): its |ρ| interval lies
    above PC(H)'s |ρ|."""
    expected = ("some predictor's |rho| with the final test accuracy has its bootstrap interval "
                "above PC(H)'s |rho| (reproduced); PC(H)'s interval above every other |rho| "
                "(not reproduced); else inconclusive")
    mine = [r for r in rows if r["target"] == "final_test_accuracy" and np.isfinite(r["rho"])
            and r["interval"] is not None]
    pc = next((r for r in mine if r["predictor"] == "pc_hessian"), None)
    others = [r for r in mine if r["predictor"] != "pc_hessian"]
    measured = {r["predictor"]: r["rho"] for r in mine}
    if pc is None or not others:
        return Finding(INCONCLUSIVE, measured, expected)
    best = max(others, key=lambda r: abs(r["rho"]))
    measured["best_other"] = best["predictor"]
    measured["best_other_interval"] = best["interval"]
    measured["pc_hessian_interval"] = pc["interval"]
    if _abs_interval(best)[0] > abs(pc["rho"]):
        return Finding(REPRODUCED, measured, expected)
    if all(_abs_interval(pc)[0] > abs(r["rho"]) for r in others):
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(INCONCLUSIVE, measured, expected)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """ρ with its bootstrap interval for every predictor and both targets; the strongest
    predictor of the final test accuracy against it."""
    import matplotlib.pyplot as plt

    from gzone import plots

    rows = summarize(records)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, target in zip(axes[:2], TARGETS):
        mine = [r for r in rows if r["target"] == target]
        for i, r in enumerate(mine):
            lo, hi = r["interval"] or (np.nan, np.nan)
            ax.errorbar(r["rho"], i, xerr=[[r["rho"] - lo], [hi - r["rho"]]] if r["interval"] else None,
                        fmt="o", color="C3" if r["predictor"] == "pc_hessian" else "C0")
        ax.set_yticks(range(len(mine)), [r["predictor"] for r in mine])
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlim(-1.05, 1.05)
        ax.set_xlabel(f"Spearman rho with {target}")
    best = next((r for r in rows if r["target"] == "final_test_accuracy"), None)
    if best is not None:
        inits = {r["seed"]: r for r in records if r.get("kind") == "init"}
        runs = {r["seed"]: r for r in records if r.get("kind") == "run"}
        seeds = sorted(set(inits) & set(runs))
        axes[2].scatter([inits[s].get(best["predictor"]) or np.nan for s in seeds],
                        [runs[s].get("final_test_accuracy") or np.nan for s in seeds],
                        c=np.log10([inits[s]["alpha"] for s in seeds]), cmap="viridis", s=18)
        axes[2].set_xlabel(best["predictor"])
        axes[2].set_ylabel("final test accuracy (colour: log10 alpha)")
        if best["predictor"] in ("ntk_condition", "sharpness", "gradient_norm", "g_over_hterm"):
            axes[2].set_xscale("log")
    fig.suptitle(title or "which measure at initialisation predicts training?")
    fig.tight_layout()
    plots.save(fig, path_stem)
    return fig


STUDY = Study(
    name="beyond/init-quality", paper=BEYOND, reproduces="ICML Sec. 6 (measures of init quality)",
    title="every predictor at initialisation against final test accuracy and steps to a target",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"init": ("seed",), "run": ("seed",)}, kinds=("init", "run", "log"),
    chunks=chunks, work=work,
    unused=lambda config: ("optimizer", "zone_samples", "zone_dim", "sharpness", "seeds"),
    claims=(
        Claim("better-than-curvature", "ICML Sec. 6",
              "There are better measures of initialisation quality than positive curvature "
              "(the need for alternative measures).",
              check_better_than_curvature, scales=("cpu", "paper")),
    ),
    report_table=True, doc=__doc__)
