"""Fort & Scherlis Fig. 6 (observation 7): selecting initialisations by their local convexity.

``inits`` Xavier draws θ0(i) (seed i). Each is measured on its own random d-plane (d = ``dim``,
the per-layer metric, as in the radius sweep): the fraction of positive eigenvalues and
Tr H_d/‖H_d‖_F of the plane Hessian, and the initial loss on the test split (the paper's
"initial validation loss") — one ``init`` record each. Then all draws are trained in full space
with Adam (full batch: ``train_lr``, ``train_steps`` steps; the paper: 10 epochs of minibatch
Adam) as vmapped batches (checkpointed and resumed); one ``trained`` record per draw holds the
first logged step whose test accuracy reaches ``target_accuracy`` (null and flagged
``target_not_reached`` when it never does).

The summary (:func:`selection_summary`): per measure the Spearman correlation with the steps to
target and a one-sided Mann–Whitney U test that the draws in the favourable ``select_quantile``
(high convexity, low loss) reach the target in fewer steps than those in the unfavourable one.
Runs that never reach the target rank last (steps = budget + one log).

    gzone run fort/init-selection
    gzone run fort/init-selection --inits 64 --target-accuracy 0.85
    gzone run fort/init-selection --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gzone import curvature, subspace, training
from gzone.engine import FORT, Claim, ConfigError, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_at_least, check_choice, check_positive, field, run_settings
from gzone.engine.setup import check_dim
from gzone.engine.study import batched
from gzone.engine.summary import spearman
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common

#: measure -> True when a high value is the favourable one
MEASURES = {"local_convexity": True, "positive_curvature": True, "initial_test_loss": False}
#: "statistically significantly faster" (obs. 7): the one-sided Mann-Whitney p-value below this
SIGNIFICANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Config(common.TrainingConfig):
    """Plane measures of Xavier draws against their steps to a target test accuracy."""

    dim: int = field(50, "hyperplane dimension d of the measures")
    basis: str = field("sparse", "random basis (the paper: sparse)", subspace.BASIS_KINDS)
    metric: bool = field(True, "per-layer metric M on the hyperplane (theta = theta0 + M R theta_hat)")
    inits: int = field(32, "Xavier initialisations measured and trained (seeds 0..N-1)")
    target_accuracy: float = field(0.9, "the test accuracy whose first logged step is 'steps to target'")
    select_quantile: float = field(0.25, "top and bottom quantile compared (Mann-Whitney U)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**common.TRAIN_TINY, "dim": 10, "inits": 6, "target_accuracy": 0.5},
    "default": {},
    "cpu": {**common.MNIST, "n_samples": 2000, "n_test": 1000, "inits": 32, "train_steps": 300},
    "paper": {**common.MNIST, "n_samples": None, "n_test": None, "inits": 200,
              "train_steps": 1000, "train_log_every": 5, "batch_size": None},
    "mnist": {**common.MNIST, "n_samples": None, "n_test": None, "inits": 200,
              "train_steps": 1000, "train_log_every": 5},
}


def validate(config: Config) -> None:
    common.validate_training(config)
    check_choice(config, "basis", subspace.BASIS_KINDS)
    check_positive(config, "target_accuracy", "select_quantile")
    check_at_least(config, "dim")
    check_at_least(config, "inits", minimum=4)
    if config.target_accuracy > 1:
        raise ConfigError("target_accuracy", f"{{name}} must be at most 1, got {config.target_accuracy!r}")
    if config.select_quantile > 0.5:
        raise ConfigError("select_quantile", f"{{name}} must be at most 0.5, got {config.select_quantile!r}")


def prepare(config: Config, data_dir: str | None) -> Any:
    setup = common.load_train_test(config, data_dir)
    check_dim(setup, config.dim)
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return ([{"kind": "init", "seed": s} for s in range(config.inits)]
            + [{"kind": "trained", "seed": s} for s in range(config.inits)])


def steps_to_target(history: dict[str, np.ndarray], target: float) -> int | None:
    """The first logged step whose test accuracy is at least ``target`` (None if none)."""
    reached = np.flatnonzero(np.nan_to_num(history["test_accuracy"], nan=-1.0) >= target)
    return int(history["step"][reached[0]]) if reached.size else None


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup
    states = ctx.cached("states", lambda: {s: common.seed_state(setup, config, s, config.dim)
                                           for s in range(config.inits)})
    if chunk[0]["kind"] == "init":
        train_batches = ctx.cached("train", lambda: common.batches_for(setup, config, states[0][0],
                                                                       config.dim))
        test_batches = ctx.cached("test", lambda: curvature.prepare_batches(
            setup.model.apply, states[0][0], setup.x_test, setup.y_test, config.chunk_size, 1))
        for p in chunk:
            params, _, plane = states[p["seed"]]
            projection = curvature.projected(setup.model.apply, params, plane, train_batches)
            test_loss, _ = curvature.loss_and_gradient(setup.model.apply, params, test_batches)
            summary = common.plane_record(projection.hessian)
            yield [{"kind": "init", "seed": p["seed"], **common.radius_fields(params, 1.0),
                    "dim": config.dim, "local_convexity": summary["local_convexity"],
                    "positive_curvature": summary["positive_curvature"],
                    "initial_train_loss": float(projection.loss),
                    "initial_test_loss": float(test_loss), "flags": summary["flags"]}]
        return
    grid = training.train_grid(
        setup.model.apply, common.stack([states[p["seed"]][0] for p in chunk]), setup.x, setup.y,
        lr=[config.train_lr] * len(chunk), steps=config.train_steps,
        log_every=config.train_log_every, x_test=setup.x_test, y_test=setup.y_test,
        optimizer="adam", sharpness=False, chunk_size=config.chunk_size,
        **run_settings(config), checkpoint_dir=ctx.checkpoint(), on_log=ctx.log_writer(chunk, common.TRAIN_LOG_FIELDS))
    records = []
    for j, p in enumerate(chunk):
        history = {f: grid.history[f][j] for f in training.HISTORY_FIELDS}
        reached = steps_to_target(history, config.target_accuracy)
        final = history["test_accuracy"][history["step"] >= 0]
        diverged = int(grid.diverged_at[j])
        flags = ([] if reached is not None else ["target_not_reached"]) + (
            [] if diverged < 0 else ["diverged"])
        records.append({"kind": "trained", "seed": p["seed"],
                        "target_accuracy": config.target_accuracy, "steps_to_target": reached,
                        "budget": config.train_steps, "final_test_accuracy": float(final[-1]),
                        "diverged_at": None if diverged < 0 else diverged, "flags": flags})
    yield records


def selection_summary(records: list[dict[str, Any]], quantile: float = 0.25) -> dict[str, Any]:
    """Per measure: Spearman ρ with the steps to target and the one-sided Mann–Whitney U p-value of
    favourable- vs unfavourable-quantile draws (module docstring); plus the draws used."""
    import scipy.stats  # here, not at the top: scipy takes ~1 s to import
    inits = {r["seed"]: r for r in records if r.get("kind") == "init"}
    trained = {r["seed"]: r for r in records if r.get("kind") == "trained"}
    seeds = sorted(set(inits) & set(trained))
    if len(seeds) < 4:
        return {"draws": len(seeds), "measures": {}}
    budget = trained[seeds[0]]["budget"]
    steps = np.array([trained[s]["steps_to_target"] if trained[s]["steps_to_target"] is not None
                      else budget + 1 for s in seeds], float)
    out: dict[str, Any] = {"draws": len(seeds), "reached": int(sum(
        trained[s]["steps_to_target"] is not None for s in seeds)),
        "median_steps": float(np.median(steps)), "measures": {}}
    k = max(1, int(math.floor(quantile * len(seeds))))
    for measure_name, high_is_good in MEASURES.items():
        values = np.array([np.nan if inits[s][measure_name] is None else inits[s][measure_name]
                           for s in seeds])
        ok = np.isfinite(values)
        if ok.sum() < 4:
            continue
        order = np.argsort(values[ok])
        ranked = steps[ok][order]
        good, bad = (ranked[-k:], ranked[:k]) if high_is_good else (ranked[:k], ranked[-k:])
        test = scipy.stats.mannwhitneyu(good, bad, alternative="less")
        out["measures"][measure_name] = {
            "spearman": spearman(values[ok].tolist(), steps[ok].tolist()),
            "favourable_median_steps": float(np.median(good)),
            "unfavourable_median_steps": float(np.median(bad)),
            "mannwhitney_u": float(test.statistic), "p_value": float(test.pvalue), "per_quantile": k}
    return out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per measure: Spearman ρ with the steps to target, the median steps of the favourable and
    unfavourable quantiles and the Mann–Whitney p-value (draws, reached and median steps in
    every row)."""
    s = selection_summary(records)
    head = {"draws": s["draws"], "reached": s.get("reached"), "median_steps": s.get("median_steps")}
    return [{"measure": name, **head, **{k: m[k] for k in (
        "spearman", "favourable_median_steps", "unfavourable_median_steps", "p_value")}}
        for name, m in s["measures"].items()] or [head]


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Steps to the target test accuracy against (a) the fraction of positive eigenvalues,
    (b) Tr H_d/‖H_d‖_F, (c) the initial test loss of each Xavier draw (Spearman ρ and the
    Mann–Whitney p-value in each title; draws that never reach the target drawn at the budget as
    crosses); (d) the initial loss against Tr H_d/‖H_d‖_F."""
    import matplotlib.pyplot as plt

    from gzone.plots import PLANE_POSITIVE_CURVATURE_LABEL, finish

    inits = {r["seed"]: r for r in records if r.get("kind") == "init"}
    trained = {r["seed"]: r for r in records if r.get("kind") == "trained"}
    seeds = sorted(set(inits) & set(trained))
    summary = selection_summary(records)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    names = {"local_convexity": common.POSITIVE_EIGENVALUES_LABEL,
             "positive_curvature": PLANE_POSITIVE_CURVATURE_LABEL,
             "initial_test_loss": "initial test loss"}
    for ax, (name, label) in zip(axes[:3], names.items()):
        if not seeds:
            common.empty(ax, "trained")
        for s in seeds:
            x, steps = inits[s][name], trained[s]["steps_to_target"]
            if x is None:
                continue
            if steps is None:
                ax.plot([x], [trained[s]["budget"]], "x", color="tab:red", ms=5)
            else:
                ax.plot([x], [steps], "o", color="black", ms=4)
        stats = summary["measures"].get(name)
        ax.set(xlabel=label, ylabel="steps to target test accuracy",
               title="" if stats is None else
               rf"Spearman $\rho$ = {stats['spearman']:.2f}, MWU $p$ = {stats['p_value']:.2g}")
    ax = axes[3]
    pairs = [(inits[s]["positive_curvature"], inits[s]["initial_test_loss"]) for s in inits
             if inits[s]["positive_curvature"] is not None]
    if pairs:
        ax.plot(*np.array(pairs).T, "o", color="tab:blue", ms=4)
    radii = [r["xavier_radius"] for r in inits.values()]
    ax.set(xlabel=PLANE_POSITIVE_CURVATURE_LABEL, ylabel="initial test loss",
           title="(d) all draws at the Xavier radius"
           + (f" $r$ = {np.mean(radii):.3g}" if radii else ""))
    return finish(fig, title, path_stem)


def selection_check(measure_name: str):
    """The check that draws selected for ``measure_name`` (the favourable quantile) reach the
    target test accuracy faster (Fig. 6, obs. 7): reproduced with a one-sided Mann–Whitney
    p-value below ``SIGNIFICANCE``; not reproduced when the favourable draws are slower (median
    steps); inconclusive otherwise (faster or tied but not significant, or not measured)."""
    better = "high" if MEASURES[measure_name] else "low"
    expected = (f"draws in the {better}-{measure_name} quantile reach the target in fewer steps: "
                f"one-sided Mann-Whitney p < {SIGNIFICANCE}")

    def check(rows: list[dict[str, Any]]) -> Finding:
        row = next((r for r in rows if r.get("measure") == measure_name), None)
        if row is None:
            return Finding(INCONCLUSIVE, {"draws": next((r.get("draws") for r in rows), 0)},
                           expected)
        measured = {k: row.get(k) for k in ("p_value", "favourable_median_steps",
                                            "unfavourable_median_steps", "spearman", "draws",
                                            "reached")}
        good, bad, p = (row.get("favourable_median_steps"), row.get("unfavourable_median_steps"),
                        row.get("p_value"))
        if not claims.finite(good, bad, p):
            return Finding(INCONCLUSIVE, measured, expected)
        verdict = (REPRODUCED if p < SIGNIFICANCE else NOT_REPRODUCED if good > bad
                   else INCONCLUSIVE)
        return Finding(verdict, measured, expected)

    return check


STUDY = Study(
    name="fort/init-selection", paper=FORT, reproduces="Fig. 6",
    title="convexity of Xavier draws on a random plane against their steps to a test accuracy",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"init": ("seed",), "trained": ("seed",)},
    chunks=batched(lambda config: config.batch_size, kinds=("trained",)),
    work=lambda config, p: (common.num_logs(config.train_steps, config.train_log_every)
                            if p["kind"] == "trained" else 1), kinds=("init", "trained", "log"), legacy={"match": {"study": "fort"}},
    claims=(
        Claim("select-by-eigenvalues", "Fig. 6(a); obs. 7",
              "Xavier initializations selected for a high fraction of positive Hessian "
              "eigenvalues train statistically significantly faster on MNIST.",
              selection_check("local_convexity"), scales=("cpu", "paper")),
        Claim("select-by-trace-ratio", "Fig. 6(b); obs. 7",
              "Xavier initializations selected for a high Tr H/||H|| train statistically "
              "significantly faster on MNIST.", selection_check("positive_curvature"),
              scales=("cpu", "paper")),
        Claim("select-by-initial-loss", "Fig. 6(c); Sec. 3",
              "Xavier initializations selected for a low initial validation loss train "
              "statistically significantly faster on MNIST.", selection_check("initial_test_loss"),
              scales=("cpu", "paper")),
    ),
    doc=__doc__)
