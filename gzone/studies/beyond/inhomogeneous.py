"""Inhomogeneous networks (ICML Sec. 6: "individual examinations are warranted for architectures
with residual connections or non-homogeneous activation functions"): biases, GELU, tanh,
LayerNorm and a residual CNN against the papers' homogeneous network — the zone under weight
scaling against the zone under temperature, and their trainability.

Zone points as :mod:`gzone.studies.beyond._common` (PC of H on a random d-plane, ‖G‖₂ against
‖H-term‖₂, over α at T = 1 and over T at α = 1); ``run`` points train every variant from
α·θ0(seed) for each ``train_alphas`` by full-batch GD (:func:`gzone.training.train_grid`, the
runs of a variant vmapped) at η = η0 over the ``lr0s`` (no α^(2−L) rule: these networks have no
degree L), logging train and test accuracy; outcomes as the ICML grid (``trained``: best train
accuracy above twice chance). The 2025 follow-up (Revisiting the Goldilocks Zone in
Inhomogeneous Networks, HiLD workshop at ICML 2025) reports that temperature is the more robust
probe of the zone once networks have biases, normalisation or residual connections, and that
LayerNorm networks have low or negative positive curvature yet train well: both are checked.

    gzone run beyond/inhomogeneous
    gzone run beyond/inhomogeneous --preset cpu --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import models, training
from gzone.engine import BEYOND, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ConfigError,
    RunSettings,
    check_alphas,
    check_at_least,
    check_run_settings,
    field,
    run_settings,
)
from gzone.engine.study import Context, batched
from gzone.studies.beyond import _common as zc
from gzone.studies.icml._common import grid


@dataclasses.dataclass(frozen=True)
class Config(zc.ZoneConfig, RunSettings):
    """The zone of inhomogeneous networks under α and T, and their training."""

    variants: tuple[str, ...] = field(("plain", "bias", "gelu", "tanh", "layernorm", "residual"),
                                      "network variants, e.g. plain,gelu", tuple(zc.VARIANTS))
    n_test: int | None = field(None, "first N test samples (none: all)")
    train_alphas: tuple[float, ...] = field((1.0,), "weight scales alpha trained from")
    lr0s: tuple[float, ...] = field((0.03, 0.1, 0.3), "learning rates eta of the runs")
    steps: int = field(300, "full-batch GD steps per run")
    log_every: int = field(50, "steps between logs")
    batch_size: int | None = field(16, "runs vmapped together (none: as many as memory holds)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (16,), "n_samples": 100, "n_test": 50, "variants": ("layernorm",),
             "num_alphas": 3, "num_temperatures": 3, "dim": 4, "seeds": 1, "lanczos_iters": 0,
             "lr0s": (0.1,), "steps": 20, "log_every": 10},
    "default": {},
    "cpu": {"dataset": "fashion_mnist", "widths": (300, 100), "n_samples": 500, "n_test": 500,
            "alpha_min": 0.01, "alpha_max": 100.0, "num_alphas": 9, "temperature_min": 1e-3,
            "temperature_max": 1e3, "num_temperatures": 13, "dim": 20, "seeds": 2,
            "lanczos_iters": 20, "train_alphas": (1.0,), "lr0s": (0.03, 0.1, 0.3),
            "steps": 300, "log_every": 50},
    "paper": {"dataset": "fashion_mnist", "widths": (300, 100), "n_samples": 10000,
              "n_test": None, "alpha_min": 0.01, "alpha_max": 100.0, "num_alphas": 13,
              "temperature_min": 1e-3, "temperature_max": 1e3, "num_temperatures": 13, "dim": 50,
              "seeds": 3, "lanczos_iters": 40, "train_alphas": (0.3, 1.0, 3.0),
              "lr0s": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0), "steps": 5000, "log_every": 250,
              "batch_size": None},
}


def validate(config: Config) -> None:
    zc.validate_zone(config)
    check_alphas(config, "train_alphas")
    check_alphas(config, "lr0s")
    check_at_least(config, "n_test", "steps", "log_every", "batch_size")
    check_run_settings(config)
    if config.log_every > config.steps:
        raise ConfigError("log_every", f"{{name}}={config.log_every} exceeds {{other}}="
                                       f"{config.steps}", other="steps")
    if (set(config.variants) & set(zc.BATCH_NORM_VARIANTS) and config.n_test is not None
            and config.n_test > config.n_samples):
        raise ConfigError("n_test", "{name} must not exceed n_samples with a BatchNorm variant "
                                    "(its test batch is normalised by its own statistics, in one chunk)")


def prepare(config: Config, data_dir: str | None) -> zc.ZoneSetup:
    return zc.prepare_zone(config, data_dir, n_test=config.n_test)


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    runs = [{"kind": "run", "variant": v, "alpha": a, "lr0": lr, "seed": s}
            for v in config.variants for a in config.train_alphas for lr in config.lr0s
            for s in range(config.seeds)]
    return zc.zone_points(config) + runs


def work(config: Config, point: dict[str, Any]) -> int:
    return grid.num_logs(config.steps, config.log_every) if point["kind"] == "run" else 1


def _group(config: Config, p: dict[str, Any]) -> tuple:
    return (p["kind"], p["variant"]) if p["kind"] == "run" else (p["kind"], p["variant"], p["seed"])


chunks = batched(lambda config: config.batch_size, group=_group)


def measure(ctx: Context, chunk: list[dict[str, Any]]):
    """Zone points (:func:`gzone.studies.beyond._common.measure_zone`), or a batch of runs of one
    variant (one vmapped program; ``log`` records as it goes, ``run`` records at the end)."""
    if chunk[0]["kind"] == "zone":
        yield from zc.measure_zone(ctx, chunk)
        return
    config, setup = ctx.config, ctx.setup
    variant = chunk[0]["variant"]
    model = zc.model_of(config, setup, variant)
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[
        models.scale(ctx.cached(("seed", variant, p["seed"]), lambda p=p: zc.seed_state(
            config, setup, variant, p["seed"]))[0], p["alpha"]) for p in chunk])
    lrs = [float(p["lr0"]) for p in chunk]
    logged = [f for f in training.HISTORY_FIELDS if f not in training.SHARPNESS_FIELDS]
    result = training.train_grid(
        model.apply, params, setup.x, setup.y, lr=lrs, steps=config.steps,
        log_every=config.log_every, x_test=setup.x_test, y_test=setup.y_test, sharpness=False,
        chunk_size=zc.chunk_size_of(config, variant, len(setup.x)), batch_size=config.batch_size,
        devices=ctx.devices, **run_settings(config), checkpoint_dir=ctx.checkpoint(),
        on_log=ctx.log_writer(chunk, logged, lambda j: {"lr": lrs[j]}))
    yield [grid.run_record(setup.num_classes, p, lrs[j],
                           {f: result.history[f][j] for f in training.HISTORY_FIELDS},
                           int(result.diverged_at[j]))
           for j, p in enumerate(chunk)]


def training_rows(records: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
    """(variant, α) -> the best test and train accuracy over η and seeds, and outcome counts."""
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for r in records:
        if r.get("kind") != "run":
            continue
        row = out.setdefault((r["variant"], r["alpha"]), {"best_test": None, "best_train": None,
                                                          **dict.fromkeys(grid.OUTCOMES, 0)})
        row[r["outcome"]] += 1
        for f, key in (("max_test_accuracy", "best_test"), ("max_train_accuracy", "best_train")):
            v = r.get(f)
            if v is not None and np.isfinite(v):
                row[key] = v if row[key] is None else max(row[key], v)
    return out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, probe) (:func:`gzone.studies.beyond._common.zone_rows`); the α rows
    also hold the training at each trained α: best test accuracy and outcome counts."""
    rows = zc.zone_rows(records)
    trained = training_rows(records)
    for row in rows:
        if row["probe"] == "alpha":
            mine = {a: t for (v, a), t in trained.items() if v == row["variant"]}
            row["best_test_accuracy"] = {f"{a:g}": t["best_test"] for a, t in sorted(mine.items())}
            row["trained_runs"] = sum(t["trained"] for t in mine.values())
            row["runs"] = sum(sum(t[o] for o in grid.OUTCOMES) for t in mine.values())
    return rows


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """The zone panels (α top, T bottom) and the best test accuracy of each variant."""
    import matplotlib.pyplot as plt

    from gzone import plots

    fig, axes = plt.subplots(2, 3, figsize=(14, 7), squeeze=False)
    zc.zone_figure(records, axes=[row[:2] for row in axes])
    trained = training_rows(records)
    variants = list(dict.fromkeys(v for v, _ in trained))
    alphas = sorted({a for _, a in trained})
    width = 0.8 / max(len(alphas), 1)
    for k, a in enumerate(alphas):
        acc = [trained.get((v, a), {}).get("best_test") or 0.0 for v in variants]
        axes[0][2].bar(np.arange(len(variants)) + k * width, acc, width, label=f"alpha = {a:g}")
    axes[0][2].set_xticks(np.arange(len(variants)) + 0.4 - width / 2, variants, rotation=30)
    axes[0][2].set_ylabel("best test accuracy (over eta, seeds)")
    axes[0][2].legend(fontsize=8)
    axes[1][2].axis("off")
    fig.suptitle(title or "inhomogeneous networks: the zone under alpha and T, and training")
    fig.tight_layout()
    plots.save(fig, path_stem)
    return fig


def check_temperature_robust(rows: list[dict[str, Any]]) -> Finding:
    """Temperature finds a zone in more inhomogeneous variants than weight scaling does."""
    expected = ("a zone (PC(H) peaking inside the grid, vanishing at both ends, ||G||_2 > "
                "||H-term||_2 somewhere) under T for more inhomogeneous variants than under alpha")
    variants = [r["variant"] for r in rows if r["probe"] == "alpha" and r["variant"] != "plain"]
    found = {p: {v: (zc.row_of(rows, v, p) or {}).get("has_zone") for v in variants}
             for p in zc.PROBES}
    peaks = {p: [np.log10(r["peak_at"]) for r in rows if r["probe"] == p and r.get("peak_at")]
             for p in zc.PROBES}
    measured = {"zone_under_alpha": found["alpha"], "zone_under_temperature": found["temperature"],
                **{f"peak_spread_decades_{p}": float(np.ptp(v)) if len(v) > 1 else None
                   for p, v in peaks.items()}}
    if not variants or any(v is None for f in found.values() for v in f.values()):
        return Finding(INCONCLUSIVE, measured, expected)
    n_a, n_t = sum(found["alpha"].values()), sum(found["temperature"].values())
    if n_t > n_a:
        return Finding(REPRODUCED, measured, expected)
    if n_t < n_a or n_t == len(variants):
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(INCONCLUSIVE, measured, expected)


#: LayerNorm "trains well": its best test accuracy at alpha = 1 within this of the ReLU network's
TRAINS_WELL_MARGIN = 0.05


def check_layernorm(rows: list[dict[str, Any]]) -> Finding:
    """LayerNorm: lower positive curvature at initialisation than the ReLU network with biases,
    and a best test accuracy (α = 1) within :data:`TRAINS_WELL_MARGIN` of it."""
    expected = (f"PC(H) at alpha = T = 1 of layernorm below that of bias (or below 0), and its best "
                f"test accuracy at alpha = 1 at least bias's - {TRAINS_WELL_MARGIN}")
    ln, base = zc.row_of(rows, "layernorm", "alpha"), zc.row_of(rows, "bias", "alpha")
    if ln is None or base is None:
        return Finding(INCONCLUSIVE, {"measured": "needs the layernorm and bias variants"}, expected)
    acc = {name: (r.get("best_test_accuracy") or {}).get("1") for name, r in
           (("layernorm", ln), ("bias", base))}
    measured = {"pc_at_1_layernorm": ln.get("pc_at_1"), "pc_at_1_bias": base.get("pc_at_1"),
                "best_test_layernorm": acc["layernorm"], "best_test_bias": acc["bias"]}
    if None in measured.values():
        return Finding(INCONCLUSIVE, measured, expected)
    low = ln["pc_at_1"] < base["pc_at_1"] or ln["pc_at_1"] < 0
    trains = acc["layernorm"] >= acc["bias"] - TRAINS_WELL_MARGIN
    return Finding(REPRODUCED if low and trains else NOT_REPRODUCED, measured, expected)


STUDY = Study(
    name="beyond/inhomogeneous", paper=BEYOND,
    reproduces="ICML Sec. 6 (inhomogeneous networks); the 2025 follow-up's claims",
    title="biases, GELU/tanh, LayerNorm, residual: the zone under alpha vs T, and training",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"zone": ("variant", "probe", "value", "seed"), "run": ("variant", "alpha", "lr0", "seed")},
    kinds=("zone", "run", "log"), chunks=chunks, work=work,
    claims=(
        Claim("temperature-more-robust", "Revisiting the Goldilocks Zone in Inhomogeneous "
              "Networks (HiLD, ICML 2025)",
              "Softmax temperature is a more robust probe of the Goldilocks zone than weight "
              "scaling once networks have biases, normalisation or residual connections.",
              check_temperature_robust, scales=("default", "cpu", "paper")),
        Claim("layernorm-low-curvature-trains", "Revisiting the Goldilocks Zone in "
              "Inhomogeneous Networks (HiLD, ICML 2025)",
              "LayerNorm networks show low or negative positive curvature at initialisation yet "
              "train well.",
              check_layernorm, scales=("cpu", "paper")),
    ),
    report_table=True, doc=__doc__)
