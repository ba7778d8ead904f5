"""The training grid of ICML Sec. 5, shared by its three studies (Fig. 8, 9 and 12 right).

α-scaled homogeneous networks θ = α·θ0(seed) (Kaiming θ0 by default, T = 1) trained by full-batch
gradient descent (or Adam) at the paper's learning rate η = η0·α^(2−L)
(:func:`gzone.training.effective_lr`). Points:

* ``zone`` (α, seed): ‖G‖₂, ‖H-term‖₂, ‖H‖₂ at θ = α·θ0 (Lanczos) and ``in_zone`` — the
  Goldilocks zone is where ‖G‖₂ > ‖H-term‖₂ (Sec. 4);
* ``run`` (α, η0, seed[, labels]): one run of :func:`gzone.training.train_grid` — runs vmapped
  ``batch_size`` at a time, sharded over the local devices, checkpointed at every log — writing a
  ``log`` record per logged step (the config's fields and the metrics of
  :data:`gzone.training.HISTORY_FIELDS`) and, once finished, a ``run`` record: divergence,
  maxima, the final zero-logit fraction, η·‖H‖₂ at initialisation and the outcome (``diverged``;
  ``zero-logits``: over 75 % zero-logit samples at the end; ``trained``: best train accuracy
  above twice chance; else ``untrained``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, lanczos, models, training
from gzone.engine import setup as engine_setup
from gzone.engine.config import (
    ConfigError,
    TrainTestConfig,
    check_at_least,
    check_choice,
    check_positive,
    check_range,
    check_train_test,
    field,
    run_settings,
)
from gzone.engine.study import Context, Point, batched
from gzone.engine.summary import number

OUTCOMES = ("diverged", "zero-logits", "trained", "untrained")
#: Fig. 8 middle: a run ending with more than this fraction of zero-logit samples is marked.
ZERO_LOGIT_MARK = 0.75
#: Fig. 8 right: η·‖H‖₂ above this is inadmissible (GD on a quadratic diverges beyond 2).
ADMISSIBLE = 2.0


@dataclasses.dataclass(frozen=True)
class GridConfig(TrainTestConfig):
    """How every run of the grid trains, and the zone's measurement at initialisation."""

    steps: int = field(500, "full-batch steps per run")
    log_every: int = field(50, "steps between logs")
    seeds: int = field(1, "seeds (initialisations) per point")
    optimizer: str = field("gd", "gd (the paper: no momentum) or adam", training.OPTIMIZERS)
    sharpness: bool = field(True, "log the top Hessian eigenvalue (warm-started Lanczos) at every log")
    zone_samples: int | None = field(2000, "training samples of the zone's ||G||_2, ||H-term||_2 "
                                           "at init (none: all)")
    batch_size: int | None = field(64, "runs vmapped together (none: as many as the device's memory holds)")
    zone_dim: int = field(50, "d of the zone's projected measurement, as the paper's Fig. 2 "
                              "(d = 50, an orthonormal basis per seed); 0: full space only")


def unused_fields(config: Any) -> tuple[str, ...]:
    """``zone_dim`` is not part of a directory's identity while 0 (directories written before it
    existed resume with ``--zone-dim 0``)."""
    return ("zone_dim",) if config.zone_dim == 0 else ()


def validate_grid(config: Any) -> None:
    """The checks every training grid shares."""
    check_train_test(config)
    check_choice(config, "optimizer", training.OPTIMIZERS)
    check_at_least(config, "steps", "log_every", "seeds", "batch_size", "zone_samples")
    check_at_least(config, "zone_dim", minimum=0)
    if config.log_every > config.steps:
        raise ConfigError("log_every", f"{{name}}={config.log_every} exceeds {{other}}="
                                       f"{config.steps}", other="steps")


def validate_lr0_grid(config: Any) -> None:
    """The η0 log grid: ``lr0_min`` ≤ ``lr0_max``, both > 0, ``num_lr0`` ≥ 1."""
    check_positive(config, "lr0_min", "lr0_max")
    check_range(config, "lr0_min", "lr0_max")
    check_at_least(config, "num_lr0")


def lr0_grid(config: Any) -> list[float]:
    """The η0 log grid."""
    return np.geomspace(config.lr0_min, config.lr0_max, config.num_lr0).tolist()


def prepare(config: Any, data_dir: str | None) -> engine_setup.Setup:
    """The homogeneous model on ``n_train`` training samples, with ``n_test`` test samples (and
    ``zone_dim`` <= P)."""
    setup = engine_setup.load_train_test(config, data_dir)
    if getattr(config, "zone_dim", 0):
        engine_setup.check_dim(setup, config.zone_dim, name="zone_dim")
    return setup


def grid_points(config: Any, alphas: list[float], lr0s: list[float],
                labels: tuple[str, ...] = ()) -> list[Point]:
    """The zone points (α, seed), then the runs (α, η0, seed), α slowest; with ``labels``, the
    runs of each label kind in turn."""
    zone = [{"kind": "zone", "alpha": a, "seed": s} for a in alphas for s in range(config.seeds)]
    runs = [{"kind": "run", "alpha": a, "lr0": r, "seed": s} for a in alphas for r in lr0s
            for s in range(config.seeds)]
    if labels:
        runs = [{**p, "labels": kind} for kind in labels for p in runs]
    return zone + runs


def num_logs(steps: int, log_every: int) -> int:
    """Logs of a run of ``steps`` steps logged every ``log_every`` (step 0 and the end included)."""
    return len({*range(0, steps, log_every), steps})


def work(config: Any, point: Point) -> int:
    """A run's units of progress are its logs; a zone point is one unit."""
    return num_logs(config.steps, config.log_every) if point["kind"] == "run" else 1


#: runs of the same label kind in batches of ``batch_size``; zone points one at a time
chunks = batched(lambda config: config.batch_size,
                 group=lambda config, p: (p["kind"], p.get("labels")), kinds=("run",))


def zone_norms(setup: engine_setup.Setup, params: Any, *, num_samples: int | None,
               chunk_size: int | None, num_iters: int = 30, basis: Any = None) -> dict[str, Any]:
    """‖G‖₂, ‖H-term‖₂ and ‖H‖₂ at ``params`` on the first ``num_samples`` training samples
    (largest-magnitude Ritz values, Lanczos), and whether ‖G‖₂ > ‖H-term‖₂ (the zone, Sec. 4).
    With a (P, d) ``basis``, also the spectral norms of the projected Rᵀ G R and Rᵀ H-term R and
    their verdict (``*_projected``, ``in_zone_projected``): the zone as the paper's Fig. 2 sees it."""
    n = len(setup.x) if num_samples is None else min(num_samples, len(setup.x))
    batches = curvature.prepare_batches(setup.model.apply, params, setup.x[:n], setup.y[:n],
                                        chunk_size)
    dim = setup.num_params
    out: dict[str, Any] = {}
    for term, name in (("gterm", "gterm_norm"), ("hterm", "hterm_norm"), ("hessian", "hessian_norm")):
        op = curvature.operator(term, setup.model.apply, params, batches)
        res = lanczos.eigsh(op, dim, 1, key=jax.random.key(0), num_iters=min(num_iters, dim),
                            which="LM")
        out[name] = abs(float(res.eigenvalues[0]))
    out["in_zone"] = bool(out["gterm_norm"] > out["hterm_norm"])
    if basis is not None:
        mats = curvature.projected(setup.model.apply, params, basis, setup.x[:n], setup.y[:n],
                                   chunk_size=chunk_size)
        for term, mat in (("gterm", mats.gterm), ("hterm", mats.hterm), ("hessian", mats.hessian)):
            out[f"{term}_norm_projected"] = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(mat))))
        out["in_zone_projected"] = bool(out["gterm_norm_projected"] > out["hterm_norm_projected"])
        out["zone_dim"] = int(basis.shape[1])
    return out


def run_record(num_classes: int, point: Point, lr: float, history: dict[str, np.ndarray],
               diverged_at: int) -> dict[str, Any]:
    """The ``run`` record of one finished point from its (NaN-padded) history row (module
    docstring for the outcome)."""
    ok = np.isfinite(history["loss"])
    h = {f: v[ok] for f, v in history.items()}

    def best(name):
        values = h[name][np.isfinite(h[name])]
        return float(values.max()) if len(values) else float("nan")

    final_zero = float(h["zero_logit_samples"][-1])
    sharp0 = float(h["sharpness"][0])
    if diverged_at >= 0:
        outcome = "diverged"
    elif final_zero > ZERO_LOGIT_MARK:
        outcome = "zero-logits"
    else:
        outcome = "trained" if best("train_accuracy") > 2 / num_classes else "untrained"
    return {**point, "lr": lr,
            "diverged_at": None if diverged_at < 0 else int(diverged_at),
            "last_step": int(h["step"][-1]), "max_train_accuracy": best("train_accuracy"),
            "max_test_accuracy": best("test_accuracy"),
            "final_train_accuracy": float(h["train_accuracy"][-1]),
            "final_test_accuracy": float(h["test_accuracy"][-1]),
            "max_parameter_norm": best("parameter_norm"), "final_zero_logit_samples": final_zero,
            "initial_sharpness": sharp0 if np.isfinite(sharp0) else None,
            "lr_sharpness": lr * abs(sharp0) if np.isfinite(sharp0) else None, "outcome": outcome,
            **_preconditioned(h, lr)}


def _preconditioned(h: dict[str, np.ndarray], lr: float) -> dict[str, Any]:
    """Adam's preconditioned sharpness, where logged: its largest value over the run's logs and
    η times it (Adam's stability threshold is η·λ = 38, Cohen et al. 2022)."""
    values = h.get("preconditioned_sharpness")
    if values is None:
        return {}
    values = values[np.isfinite(values)]
    top = float(values.max()) if len(values) else None
    return {"max_preconditioned_sharpness": top,
            "lr_max_preconditioned_sharpness": None if top is None else lr * top}


def measure(ctx: Context, chunk: list[Point]):
    """A zone point, or a batch of runs (one vmapped program; its ``log`` records as it goes,
    the ``run`` records at the end)."""
    config, setup = ctx.config, ctx.setup
    thetas = ctx.cached("thetas", lambda: {s: engine_setup.seed_params(setup, config.init, s)
                                           for s in range(config.seeds)})
    if chunk[0]["kind"] == "zone":
        dim = getattr(config, "zone_dim", 0)
        for p in chunk:
            theta = models.scale(thetas[p["seed"]], p["alpha"])
            seed = p["seed"]
            basis = None if not dim else ctx.cached(("zone-basis", seed), lambda seed=seed: (
                engine_setup.seed_state(setup, seed, dim=dim, basis="orthonormal",
                                        init=config.init)[1]))
            yield [{**p, **zone_norms(setup, theta, num_samples=config.zone_samples,
                                      chunk_size=config.chunk_size, basis=basis)}]
        return
    labels = chunk[0].get("labels", getattr(config, "labels", "true"))
    optimizer = chunk[0].get("optimizer", config.optimizer)
    sharpness = getattr(config, "sharpness", False)
    preconditioned = optimizer == "adam" and getattr(config, "preconditioned_sharpness", False)
    lrs = [run_lr(config, p, setup.degree) for p in chunk]
    params = jax.tree_util.tree_map(
        lambda *a: jnp.stack(a), *[models.scale(thetas[p["seed"]], p["alpha"]) for p in chunk])
    fields = dataclasses.asdict(config)
    unmeasured = {} if sharpness else dict.fromkeys(training.SHARPNESS_FIELDS)
    if hasattr(config, "preconditioned_sharpness") and not preconditioned:
        unmeasured.update(dict.fromkeys(training.PRECONDITIONED_FIELDS))
    logged = [f for f in training.HISTORY_FIELDS if sharpness or f not in training.SHARPNESS_FIELDS]
    logged += list(training.PRECONDITIONED_FIELDS) if preconditioned else []
    grid = training.train_grid(
        setup.model.apply, params, setup.x, setup.y, lr=lrs, steps=config.steps,
        log_every=config.log_every, x_test=setup.x_test, y_test=setup.y_test,
        optimizer=optimizer, labels=labels, sharpness=sharpness,
        key=engine_setup.stream_key(0, "training-labels"), chunk_size=config.chunk_size,
        devices=ctx.devices, **run_settings(config), checkpoint_dir=ctx.checkpoint(),
        preconditioned_sharpness=preconditioned,
        on_log=ctx.log_writer(chunk, logged, lambda j: {**fields, "lr": lrs[j], **unmeasured}))
    yield [{**run_record(setup.num_classes, p, lrs[j], {
        f: grid.history[f][j] for f in grid.history}, int(grid.diverged_at[j]))}
        for j, p in enumerate(chunk)]


def run_lr(config: Any, point: Point, degree: int | None) -> float:
    """η of a run: the paper's η0·α^(2−L) (:func:`gzone.training.effective_lr`), or for an
    ``adam`` point of a config whose ``adam_lr`` is ``"alpha"``, η0·α (Adam's step does not scale
    with the gradient: η ∝ α keeps the step relative to ‖θ‖ = α‖θ0‖ the same for every α)."""
    if point.get("optimizer", config.optimizer) == "adam" and getattr(config, "adam_lr", "") == "alpha":
        return float(point["lr0"]) * float(point["alpha"])
    return training.effective_lr(point["lr0"], point["alpha"], degree)


# ----------------------------------------------------------------------------- summaries


def run_table(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The ``run`` records as arrays over (α, η0), averaged over seeds: ``alpha`` (A,),
    ``lr0`` (R,), (A, R) maps of each numeric field (NaN where nothing was recorded), and the
    fractions of seeds whose outcome is ``zero_logits``, ``diverged`` and ``trained``."""
    runs = [r for r in records if r.get("kind") == "run"]
    a_values = sorted({r["alpha"] for r in runs})
    r_values = sorted({r["lr0"] for r in runs})
    shape = (len(a_values), len(r_values))
    numeric = ("max_train_accuracy", "max_test_accuracy", "final_train_accuracy",
               "final_test_accuracy", "max_parameter_norm", "final_zero_logit_samples",
               "initial_sharpness", "lr_sharpness", "lr")
    sums = {f: np.zeros(shape) for f in (*numeric, "zero_logits", "diverged", "trained")}
    counts = {f: np.zeros(shape) for f in sums}
    for r in runs:
        i, j = a_values.index(r["alpha"]), r_values.index(r["lr0"])
        for f in numeric:
            if r[f] is not None and np.isfinite(r[f]):
                sums[f][i, j] += r[f]
                counts[f][i, j] += 1
        for f, flag in (("zero_logits", r["outcome"] == "zero-logits"),
                        ("diverged", r["outcome"] == "diverged"),
                        ("trained", r["outcome"] == "trained")):
            sums[f][i, j] += flag
            counts[f][i, j] += 1
    table = {f: np.where(counts[f] > 0, sums[f] / np.maximum(counts[f], 1), np.nan) for f in sums}
    return {"alpha": np.asarray(a_values), "lr0": np.asarray(r_values), **table}


def zone_alphas(records: list[dict[str, Any]], space: str = "auto") -> dict[float, bool]:
    """α -> whether ‖G‖₂ > ‖H-term‖₂ at initialisation for the majority of seeds, in the d-plane
    of Fig. 2 (``space="projected"``) or the full space (``"full"``); ``"auto"``: projected where
    the records have it (the paper's Fig. 8 strip refers to Fig. 2), else full."""
    zone = [r for r in records if r.get("kind") == "zone"]
    if space == "auto":
        space = "projected" if zone and all("in_zone_projected" in r for r in zone) else "full"
    key = "in_zone_projected" if space == "projected" else "in_zone"
    votes: dict[float, list[bool]] = {}
    for r in zone:
        if key in r:
            votes.setdefault(r["alpha"], []).append(bool(r[key]))
    return {a: sum(v) > len(v) / 2 for a, v in sorted(votes.items())}


def curves(records: list[dict[str, Any]], alpha: float,
           field_name: str) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """η0 -> (steps, mean over seeds of ``field_name``) of the ``log`` records at ``alpha``."""
    rows: dict[float, dict[int, list[float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r["alpha"] == alpha and r[field_name] is not None:
            rows.setdefault(r["lr0"], {}).setdefault(r["step"], []).append(r[field_name])
    return {lr0: (np.asarray(sorted(by_step)), np.asarray([np.mean(by_step[s]) for s in sorted(by_step)]))
            for lr0, by_step in sorted(rows.items())}


def outcomes(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers: the outcome counts; per α the best (over η0) maximum train and test
    accuracy, the largest η0 whose runs (most seeds) are ``trained`` (the staircase of Fig. 8
    left), and the α of the zone."""
    table = run_table(records)
    out: dict[str, Any] = {"runs": sum(r.get("kind") == "run" for r in records),
                           "outcomes": {o: sum(r.get("kind") == "run" and r["outcome"] == o
                                               for r in records) for o in OUTCOMES}}
    if not len(table["alpha"]):
        return out
    largest = {}
    for i, alpha in enumerate(table["alpha"]):
        trained = [lr0 for j, lr0 in enumerate(table["lr0"]) if table["trained"][i, j] > 0.5]
        largest[f"{alpha:.3g}"] = float(max(trained)) if trained else None
    with np.errstate(all="ignore"):
        out["best_train_accuracy"] = {f"{a:.3g}": float(np.nanmax(row)) if np.isfinite(row).any()
                                      else None for a, row in zip(table["alpha"], table["max_train_accuracy"])}
        out["best_test_accuracy"] = {f"{a:.3g}": float(np.nanmax(row)) if np.isfinite(row).any()
                                     else None for a, row in zip(table["alpha"], table["max_test_accuracy"])}
    out["largest_trainable_lr0"] = largest
    out["zone_alphas"] = [a for a, inside in zone_alphas(records).items() if inside]
    return out


def zero_logit_curves(records: list[dict[str, Any]]) -> dict:
    """labels -> (α, η0) -> (steps, mean over seeds of ``zero_logit_samples``)."""
    rows: dict = {}
    for r in records:
        value = number(r.get("zero_logit_samples")) if r.get("kind") == "log" else np.nan
        if np.isfinite(value) and r.get("step") is not None:
            by_step = rows.setdefault(r.get("labels"), {}).setdefault((r["alpha"], r["lr0"]), {})
            by_step.setdefault(r["step"], []).append(value)
    return {labels: {key: (np.asarray(sorted(s)), np.asarray([np.mean(s[k]) for k in sorted(s)]))
                     for key, s in sorted(runs.items())} for labels, runs in rows.items()}


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per α: whether it is in the zone, the outcome counts of its runs, the best train and test
    accuracy over η0, the largest η0 whose runs train and the next η0 tried above it (the
    staircase edge of Fig. 8 left lies between the two; None when the largest η0 trains), the
    runs inadmissible at initialisation (η·‖H‖₂ > 2, Fig. 8 right) and how many of them fail,
    and the runs above the largest trained η0 and how many of them diverge or end with zero
    logits (Fig. 8 middle)."""
    table = run_table(records)
    zone, full = zone_alphas(records), zone_alphas(records, "full")
    out = []
    for i, alpha in enumerate(table["alpha"]):
        runs = [r for r in records if r.get("kind") == "run" and r["alpha"] == alpha]
        trained = [lr0 for j, lr0 in enumerate(table["lr0"]) if table["trained"][i, j] > 0.5]
        finite = lambda row: row[np.isfinite(row)]  # noqa: E731
        best_train, best_test = finite(table["max_train_accuracy"][i]), finite(table["max_test_accuracy"][i])
        edge = max(trained) if trained else None
        above = [] if edge is None else [r for r in runs if r["lr0"] > edge]
        inadmissible = [r for r in runs if number(r.get("lr_sharpness")) > ADMISSIBLE]
        out.append({"alpha": float(alpha), "zone": zone.get(alpha),
                    "zone_full_space": full.get(alpha),
                    **{o: sum(r["outcome"] == o for r in runs) for o in OUTCOMES},
                    "best_train": float(best_train.max()) if best_train.size else None,
                    "best_test": float(best_test.max()) if best_test.size else None,
                    "largest_trained_lr0": None if edge is None else float(edge),
                    "next_lr0": min((float(r["lr0"]) for r in above), default=None),
                    "inadmissible": len(inadmissible),
                    "inadmissible_failed": sum(r["outcome"] != "trained" for r in inadmissible),
                    "above_edge": len(above),
                    "above_edge_diverged_or_zero": sum(r["outcome"] in ("diverged", "zero-logits")
                                                       for r in above)})
    return out
