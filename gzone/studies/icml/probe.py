"""ICML App. E, Fig. 12 left: linear probes of the features learned at each initialization scale.

Networks α·θ0 trained for ``steps`` GD steps at η0·α^(2−L) (α in ``probe_alphas``, ``seeds`` seeds) and, per seed, the randomly initialised unscaled θ0; a linear probe
(:func:`gzone.probes.linear_probe`: standardised features, L2 logistic regression with
C = ``probe_c``) on each network's penultimate features (:func:`gzone.models.penultimate_features`)
of the training set, scored on the test set. ``probe`` records: ``features`` = ``trained`` (per
α, seed) or ``random`` (per seed). Features learned far outside the zone (α ≫ 1, lazy) should be
barely better than random ones.

    gzone run icml/probe
    gzone run icml/probe --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from gzone import models, probes, training
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_alphas, check_positive, field, run_settings
from gzone.engine.study import batched
from gzone.studies.icml._common import outside


@dataclasses.dataclass(frozen=True)
class Config(outside.RunConfig):
    """Linear probes of the penultimate features of networks trained at each α."""

    lr0: float = field(0.1, "base learning rate lr0 (lr = lr0 * alpha^(2-L))")
    probe_alphas: tuple[float, ...] = field((0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                                            "alphas whose trained features are probed")
    seeds: int = field(3, "seeds of the probed networks (the paper: 3, min/max bands)")
    probe_c: float = field(probes.DEFAULT_C, "inverse L2 strength C of the logistic-regression "
                                             "probe (standardised features)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**outside.TINY, "probe_alphas": (1.0, 100.0), "seeds": 2},
    "default": {},
    "cpu": {**outside.CPU},
    "paper": {**outside.PAPER, "probe_alphas": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)},
}


def validate(config: Config) -> None:
    outside.validate_runs(config)
    check_positive(config, "lr0", "probe_c")
    check_alphas(config, "probe_alphas")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    random = [{"kind": "probe", "features": "random", "alpha": 1.0, "seed": s}
              for s in range(config.seeds)]
    return random + [{"kind": "probe", "features": "trained", "alpha": a, "seed": s}
                     for a in config.probe_alphas for s in range(config.seeds)]


def probe_features(setup: Any, params: Any, *, c: float) -> dict[str, Any]:
    """The probe on the penultimate features of ``params``: fitted on the training set, scored
    on the test set; ``{"probe_*": None, "note": ...}`` when the features are not finite."""
    train_f = models.penultimate_features(setup.model, params, setup.x)
    test_f = models.penultimate_features(setup.model, params, setup.x_test)
    if not (bool(jnp.all(jnp.isfinite(train_f))) and bool(jnp.all(jnp.isfinite(test_f)))):
        return {"probe_train_accuracy": None, "probe_test_accuracy": None,
                "probe_converged": None, "note": "non-finite features: not probed"}
    fit = probes.linear_probe(train_f, setup.y, test_f, setup.y_test, c=c)
    return {"probe_train_accuracy": fit["train_accuracy"],
            "probe_test_accuracy": fit["test_accuracy"], "probe_converged": fit["converged"]}


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup
    thetas = outside.thetas(ctx, config.seeds)
    if chunk[0]["features"] == "random":
        for p in chunk:
            yield [{**p, "probe_c": config.probe_c,
                    **probe_features(setup, thetas[p["seed"]], c=config.probe_c)}]
        return
    lrs = [training.effective_lr(config.lr0, p["alpha"], setup.degree) for p in chunk]
    grid = training.train_grid(
        setup.model.apply, outside.stack([models.scale(thetas[p["seed"]], p["alpha"]) for p in chunk]),
        setup.x, setup.y, lr=lrs, steps=config.steps, log_every=config.log_every,
        x_test=setup.x_test, y_test=setup.y_test, sharpness=False, chunk_size=config.chunk_size,
        **run_settings(config), checkpoint_dir=ctx.checkpoint(),
        on_log=ctx.log_writer([{k: v for k, v in p.items() if k != "features"} for p in chunk],
                              outside.LOG_FIELDS))
    records = []
    for j, (p, lr) in enumerate(zip(chunk, lrs)):
        diverged = int(grid.diverged_at[j])
        probe = ({"probe_train_accuracy": None, "probe_test_accuracy": None,
                  "probe_converged": None, "note": "diverged: not probed"} if diverged >= 0
                 else probe_features(setup, outside.point(grid.params, j), c=config.probe_c))
        records.append({**p, "lr": lr, "probe_c": config.probe_c,
                        "diverged_at": None if diverged < 0 else diverged,
                        "network_train_accuracy": outside.final(grid.history["train_accuracy"][j]),
                        "network_test_accuracy": outside.final(grid.history["test_accuracy"][j]),
                        **probe})
    yield records


def probe_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``alpha`` (A,), and for the trained features the (A,) mean / min / max over seeds of the
    probe's test accuracy; ``random``: (mean, min, max) over the seeds' random unscaled
    features; NaN where nothing was probed."""
    trained: dict[float, list[float]] = {}
    random: list[float] = []
    for r in records:
        if r.get("kind") != "probe" or r.get("probe_test_accuracy") is None:
            continue
        if r["features"] == "random":
            random.append(r["probe_test_accuracy"])
        else:
            trained.setdefault(r["alpha"], []).append(r["probe_test_accuracy"])
    alphas = sorted(trained)
    stats = {name: np.asarray([fn(trained[a]) for a in alphas]) for name, fn in
             (("mean", np.mean), ("min", np.min), ("max", np.max))}
    rand = ((float(np.mean(random)), float(np.min(random)), float(np.max(random))) if random
            else (float("nan"),) * 3)
    return {"alpha": np.asarray(alphas), **stats, "random": rand}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The random features' probe accuracy, then per α the trained features' (mean, min, max)."""
    t = probe_table(records)
    rows = [{"features": "random", "alpha": 1.0, "probe_test_accuracy": t["random"][0],
             "min": t["random"][1], "max": t["random"][2]}]
    return rows + [{"features": "trained", "alpha": float(a), "probe_test_accuracy": float(t["mean"][i]),
                    "min": float(t["min"][i]), "max": float(t["max"][i])}
                   for i, a in enumerate(t["alpha"])]


#: "α ≫ 1": the largest probed α must be at least this
LARGE_ALPHA = 10.0
#: App. E: features of large-α networks are "only marginally better than those extracted from a
#: randomly initialized network": probe accuracies within this of each other
NEAR_RANDOM = 0.03
#: "features learned within the Goldilocks zone exhibit much better generalizability": α = 1
#: at least this much above the largest α
WELL_ABOVE = 0.05


def check_probe(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 12 left, App. E: at the largest probed α (≥ ``LARGE_ALPHA``) the probe's test
    accuracy (mean over seeds) is within ``NEAR_RANDOM`` of random features' and at least
    ``WELL_ABOVE`` below α = 1's. Inconclusive when the means say so but the seeds' min/max
    bands of α = 1 and the largest α overlap, or a value is missing."""
    expected = (f"largest alpha >= {LARGE_ALPHA:g}: |probe - random| <= {NEAR_RANDOM}, "
                f"probe(alpha = 1) - probe >= {WELL_ABOVE}, seed bands apart")
    random = next((r for r in rows if r["features"] == "random"), None)
    trained = [r for r in rows if r["features"] == "trained"
               and np.isfinite(r["probe_test_accuracy"])]
    ref = next((r for r in trained if r["alpha"] == 1.0), None)
    large = max(trained, key=lambda r: r["alpha"], default=None)
    if (random is None or ref is None or large is None or large["alpha"] < LARGE_ALPHA
            or not np.isfinite(random["probe_test_accuracy"])):
        return Finding(INCONCLUSIVE, {"alphas": [r["alpha"] for r in trained]}, expected)
    acc, acc_random, acc_ref = (r["probe_test_accuracy"] for r in (large, random, ref))
    measured = {"alpha": large["alpha"], "probe_accuracy": acc, "random_features": acc_random,
                "alpha_1": acc_ref, "above_random": acc - acc_random, "below_alpha_1": acc_ref - acc}
    if abs(acc - acc_random) > NEAR_RANDOM or acc_ref - acc < WELL_ABOVE:
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(REPRODUCED if ref["min"] > large["max"] else INCONCLUSIVE, measured, expected)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Probe test accuracy on the features of networks trained at each α (solid, min/max band
    over seeds) and of randomly initialised unscaled networks (dashed, band over seeds)."""
    import matplotlib.pyplot as plt

    from gzone.plots import ALPHA_LABEL, finish

    table = probe_table(records)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    if not len(table["alpha"]):
        outside.empty(ax, "probe")
    else:
        a = table["alpha"]
        ax.plot(a, table["mean"], "-o", color="tab:blue", ms=3, label="trained features")
        ax.fill_between(a, table["min"], table["max"], color="tab:blue", alpha=0.2, lw=0)
        mean, low, high = table["random"]
        if np.isfinite(mean):
            ax.axhline(mean, color="tab:grey", ls="--", label="random unscaled features")
            ax.axhspan(low, high, color="tab:grey", alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("linear probe test accuracy")
    ax.grid(alpha=0.3, lw=0.3)
    return finish(fig, title, path_stem)


STUDY = Study(
    name="icml/probe", paper=ICML, reproduces="Fig. 12 left, App. E",
    title="linear probes of penultimate features of networks trained at each alpha",
    config=Config, presets=PRESETS, validate=validate, prepare=outside.prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"probe": ("features", "alpha", "seed")},
    chunks=batched(lambda config: config.batch_size, kinds=None,
                   group=lambda config, p: p["features"]),
    work=lambda config, p: (outside.num_logs(config.steps, config.log_every)
                            if p["features"] == "trained" else 1), kinds=("probe", "log"), legacy={"match": {"study": "outside"}, "rename": {"probe_seeds": "seeds"}},
    claims=(Claim("lazy-features", "Fig. 12 left; App. E",
                  "A linear probe on the features of large-alpha networks does about as well as "
                  "on random features, and much worse than on those of alpha = 1.",
                  check_probe, scales=("cpu", "paper")),),
    doc=__doc__)
