"""ICML Sec. 5 (Fig. 8, 9, 12 right): does the Goldilocks zone predict trainability?

α-scaled homogeneous networks θ = α·θ0(seed) (Kaiming θ0 by default, T = 1) trained by full-batch
gradient descent (or Adam) at the paper's learning rate η = η0·α^(2−L)
(:func:`gzone.training.effective_lr`), over a grid of (α, η0, seed):

* ``mode="grid"`` (Fig. 8): α on a log grid × η0 on a log grid × seeds;
* ``mode="curves"`` (Fig. 9): the chosen ``curve_alphas`` × the η0 grid × seeds.

Every point is a run of :func:`gzone.training.train_grid` — the points vmapped ``batch_size`` at
a time, sharded over the local devices, checkpointed at every log under ``<out>/checkpoints`` —
and at every α the Goldilocks zone is located at θ0 by gzone's curvature engine: ‖G‖₂ and
‖H-term‖₂ at initialisation (Lanczos), the zone being where ‖G‖₂ > ‖H-term‖₂ (Sec. 4).

Records (``RECORD_FIELDS``), written as they are computed:

* ``log``: one per (α, η0, seed, logged step) with the config fields and the metrics of
  :data:`gzone.training.HISTORY_FIELDS` (pandas: ``pd.read_json(path, lines=True)``);
* ``run``: one per finished (α, η0, seed): divergence, maxima (train accuracy, parameter norm),
  the final zero-logit fraction, η·‖H‖₂ at initialisation, and the outcome (``diverged``,
  ``zero-logits`` — over 75 % zero-logit samples at the end —, ``trained``, ``untrained``);
* ``zone``: one per (α, seed): ‖G‖₂, ‖H-term‖₂, ‖H‖₂ at θ = α·θ0 and ``in_zone``.

A rerun resumes: finished runs are skipped, a run cut short resumes from its checkpoint (its logs
already written are not written again). A grid split over processes (``jax.distributed``) runs
each process's slice (:func:`gzone.sharding.process_points`) into ``<out>/process-<i>-of-<n>``;
:func:`load` reads them all.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import gzone
from gzone import curvature, data, lanczos, models, results, sharding, training
from gzone.experiments import base
from gzone.experiments.base import ConfigError, Progress, Record, Setup

NAME = "trainability"
MODES = ("grid", "curves")
OUTCOMES = ("diverged", "zero-logits", "trained", "untrained")
#: Fig. 8 middle: a run ending with more than this fraction of zero-logit samples is marked.
ZERO_LOGIT_MARK = 0.75
#: Fig. 8 right: η·‖H‖₂ above this is inadmissible (GD on a quadratic diverges beyond 2).
ADMISSIBLE = 2.0
POINT_FIELDS = ("alpha", "lr0", "seed")
RUN_FIELDS = ("lr", "diverged_at", "last_step", "max_train_accuracy", "max_test_accuracy",
              "final_train_accuracy", "final_test_accuracy", "max_parameter_norm",
              "final_zero_logit_samples", "initial_sharpness", "lr_sharpness", "outcome")
ZONE_FIELDS = ("gterm_norm", "hterm_norm", "hessian_norm", "in_zone")
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "log": (*POINT_FIELDS, "lr", *training.HISTORY_FIELDS),
    "run": (*POINT_FIELDS, *RUN_FIELDS),
    "zone": ("alpha", "seed", *ZONE_FIELDS),
}


#: Named settings. ``default``: the embedded digits MLP 64-300-100-10, a few minutes on 2 CPU
#: cores; ``fashion-cpu``: LeNet-300-100 on 1,000 Fashion-MNIST images for 1,000 steps (CPU
#: scale, about ten minutes); ``lenet300-fashion`` / ``lenet5-cifar10``: the paper's full
#: training sets and 20,000 steps (GPU work); ``tiny``: the tests and the notebook.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "num_alphas": 3, "num_lr0": 2,
             "alpha_min": 0.1, "alpha_max": 10.0, "lr0_min": 0.03, "lr0_max": 0.3, "steps": 40,
             "log_every": 20, "zone_samples": 200, "curve_alphas": (0.1, 10.0), "batch_size": 4},
    "fashion-cpu": {"model": "lenet300", "dataset": "fashion_mnist", "n_train": 1000,
                    "n_test": 1000, "num_alphas": 7, "alpha_min": 0.01, "alpha_max": 100.0,
                    "num_lr0": 5, "lr0_min": 0.003, "lr0_max": 1.0, "steps": 1000,
                    "log_every": 100, "zone_samples": 1000},
    "lenet300-fashion": {"model": "lenet300", "dataset": "fashion_mnist", "n_train": None,
                         "n_test": None, "num_alphas": 13, "alpha_min": 0.01, "alpha_max": 100.0,
                         "num_lr0": 10, "lr0_min": 0.001, "lr0_max": 3.0, "steps": 20000,
                         "log_every": 100, "batch_size": 16, "curve_alphas": (0.01, 1.0, 1000.0)},
    "lenet5-cifar10": {"model": "lenet5", "dataset": "cifar10", "n_train": None, "n_test": None,
                       "num_alphas": 13, "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 10,
                       "lr0_min": 0.001, "lr0_max": 3.0, "steps": 20000, "log_every": 100,
                       "batch_size": 8},
}


@dataclasses.dataclass(frozen=True)
class TrainabilityConfig:
    """Fig. 8 / 9: full-batch training of alpha-scaled networks over (alpha, lr0, seed)."""

    mode: str = dataclasses.field(default="grid", metadata={
        "help": "grid: alpha x lr0 heat maps (Fig. 8); curves: accuracy curves (Fig. 9)",
        "choices": MODES})
    model: str = dataclasses.field(default="mlp", metadata={
        "help": "network (homogeneous: bias-free ReLU)", "choices": models.MODEL_NAMES})
    widths: tuple[int, ...] = dataclasses.field(default=(300, 100), metadata={
        "help": "hidden widths of mlp, e.g. 300,100"})
    dataset: str = dataclasses.field(default="digits", metadata={
        "help": "dataset (its train split is trained on, its test split tested)",
        "choices": data.DATASETS})
    n_train: int | None = dataclasses.field(default=None, metadata={
        "help": "first N training samples (none: all)"})
    n_test: int | None = dataclasses.field(default=None, metadata={
        "help": "first N test samples (none: all)"})
    init: str = dataclasses.field(default="kaiming", metadata={
        "help": "initialisation scheme of theta0", "choices": tuple(models.INIT_SCHEMES)})
    alpha_min: float = dataclasses.field(default=0.01, metadata={"help": "smallest alpha (grid)"})
    alpha_max: float = dataclasses.field(default=100.0, metadata={"help": "largest alpha (grid)"})
    num_alphas: int = dataclasses.field(default=7, metadata={"help": "alphas on the log grid"})
    curve_alphas: tuple[float, ...] = dataclasses.field(default=(0.01, 1.0, 1000.0), metadata={
        "help": "alphas of --curves (Fig. 9), e.g. 0.01,1000"})
    lr0_min: float = dataclasses.field(default=0.003, metadata={"help": "smallest base lr0"})
    lr0_max: float = dataclasses.field(default=3.0, metadata={"help": "largest base lr0"})
    num_lr0: int = dataclasses.field(default=5, metadata={"help": "lr0 values on the log grid"})
    steps: int = dataclasses.field(default=500, metadata={"help": "full-batch steps per run"})
    log_every: int = dataclasses.field(default=50, metadata={"help": "steps between logs"})
    seeds: int = dataclasses.field(default=1, metadata={"help": "seeds (initialisations) per point"})
    optimizer: str = dataclasses.field(default="gd", metadata={
        "help": "gd (the paper: no momentum) or adam", "choices": training.OPTIMIZERS})
    labels: str = dataclasses.field(default="true", metadata={
        "help": "true labels, or random ones drawn once / every step", "choices": training.LABELS})
    sharpness: bool = dataclasses.field(default=True, metadata={
        "help": "log the top Hessian eigenvalue (warm-started Lanczos) at every log"})
    zone_samples: int | None = dataclasses.field(default=2000, metadata={
        "help": "training samples of the zone's ||G||_2, ||H-term||_2 at init (none: all)"})
    batch_size: int = dataclasses.field(default=64, metadata={
        "help": "runs vmapped together (memory bound)"})
    dtype: str = dataclasses.field(default="float32", metadata={
        "help": "floating-point type (float64 switches JAX to 64-bit)", "choices": gzone.DTYPES})
    chunk_size: int | None = dataclasses.field(default=None, metadata={
        "help": "samples per jit-compiled chunk (none: automatic)"})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ()
    STUDY: ClassVar[str] = NAME


def validate(config: TrainabilityConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_choice(config, "mode", MODES)
    base.check_training_model_data(config)
    base.check_choice(config, "init", models.INIT_SCHEMES)
    base.check_choice(config, "optimizer", training.OPTIMIZERS)
    base.check_choice(config, "labels", training.LABELS)
    gzone.check_dtype(config.dtype)
    base.check_positive(config, "alpha_min", "alpha_max", "lr0_min", "lr0_max")
    if config.curve_alphas or config.mode == "curves":
        base.check_alphas(config, "curve_alphas")
    base.check_range(config, "alpha_min", "alpha_max")
    base.check_range(config, "lr0_min", "lr0_max")
    base.check_at_least(config, "num_alphas", "num_lr0", "steps", "log_every", "seeds",
                        "batch_size", "n_train", "n_test", "zone_samples", "chunk_size")
    if config.log_every > config.steps:
        raise ConfigError("log_every", f"{{name}}={config.log_every} exceeds {{other}}="
                                       f"{config.steps}", other="steps")


def make_config(preset: str = "default", *, validate_config: bool = True,
                **overrides: Any) -> TrainabilityConfig:
    """The config of a named preset plus field overrides (None values ignored), validated
    unless ``validate_config`` is False."""
    return base.preset_config(TrainabilityConfig, PRESETS, preset, overrides,
                              validate if validate_config else None)


# ----------------------------------------------------------------------------- the grid


def alphas(config: TrainabilityConfig) -> list[float]:
    """The α values: the log grid (``grid``) or ``curve_alphas`` (``curves``)."""
    if config.mode == "curves":
        return [float(a) for a in config.curve_alphas]
    return np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()


def lr0s(config: TrainabilityConfig) -> list[float]:
    """The η0 log grid."""
    return np.geomspace(config.lr0_min, config.lr0_max, config.num_lr0).tolist()


def points(config: TrainabilityConfig) -> list[tuple[float, float, int]]:
    """Every (α, η0, seed) of the study, α slowest."""
    return [(a, r, s) for a in alphas(config) for r in lr0s(config) for s in range(config.seeds)]


def initial_params(setup: Setup, config: TrainabilityConfig, seed: int) -> Any:
    """θ0 of ``seed`` (:func:`gzone.experiments.base.training_params`)."""
    return base.training_params(setup, config.init, seed)


def load_setup(config: TrainabilityConfig, data_dir: str | None) -> tuple[Setup, jax.Array, jax.Array]:
    """The model on the training data (``n_train`` samples), and the test data (``n_test``)."""
    return base.load_train_test(config, data_dir)


def zone_norms(setup: Setup, params: Any, *, num_samples: int | None, chunk_size: int | None,
               num_iters: int = 30) -> dict[str, float]:
    """‖G‖₂, ‖H-term‖₂ and ‖H‖₂ at ``params`` on the first ``num_samples`` training samples
    (largest-magnitude Ritz values, Lanczos), and whether ‖G‖₂ > ‖H-term‖₂ (the zone, Sec. 4)."""
    n = len(setup.x) if num_samples is None else min(num_samples, len(setup.x))
    batches = curvature.prepare_batches(setup.model.apply, params, setup.x[:n], setup.y[:n],
                                        chunk_size)
    dim = setup.num_params
    out = {}
    for term, name in (("gterm", "gterm_norm"), ("hterm", "hterm_norm"), ("hessian", "hessian_norm")):
        op = curvature.operator(term, setup.model.apply, params, batches)
        res = lanczos.eigsh(op, dim, 1, key=jax.random.key(0), num_iters=min(num_iters, dim),
                            which="LM")
        out[name] = abs(float(res.eigenvalues[0]))
    out["in_zone"] = bool(out["gterm_norm"] > out["hterm_norm"])
    return out


SHARPNESS_FIELDS = ("sharpness", "sharpness_residual", "sharpness_matvecs")


def _value(row: dict[str, np.ndarray], field: str, j: int, sharpness: bool) -> float | None:
    """Entry ``j`` of a logged row; None (not measured, so not flagged as non-finite) for the
    sharpness fields of a study run without sharpness."""
    return None if not sharpness and field in SHARPNESS_FIELDS else float(row[field][j])


def _run_record(num_classes: int, alpha: float, lr0: float, seed: int, lr: float,
                history: dict[str, np.ndarray], diverged_at: int) -> Record:
    """The ``run`` record of one finished point from its (NaN-padded) history row. Outcome:
    ``diverged``; else ``zero-logits`` (over :data:`ZERO_LOGIT_MARK` zero-logit samples at the
    end); else ``trained`` when the best train accuracy exceeds twice chance (2/K), else
    ``untrained``."""
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
    return {"alpha": alpha, "lr0": lr0, "seed": seed, "lr": lr,
            "diverged_at": None if diverged_at < 0 else int(diverged_at),
            "last_step": int(h["step"][-1]), "max_train_accuracy": best("train_accuracy"),
            "max_test_accuracy": best("test_accuracy"),
            "final_train_accuracy": float(h["train_accuracy"][-1]),
            "final_test_accuracy": float(h["test_accuracy"][-1]),
            "max_parameter_norm": best("parameter_norm"), "final_zero_logit_samples": final_zero,
            "initial_sharpness": sharp0 if np.isfinite(sharp0) else None,
            "lr_sharpness": lr * abs(sharp0) if np.isfinite(sharp0) else None, "outcome": outcome}


def records_dir(out_dir: str | Path, process_index: int, process_count: int) -> Path:
    """Where a process writes: ``out_dir`` itself, or ``out_dir/process-<i>-of-<n>``."""
    out = Path(out_dir)
    return out if process_count == 1 else out / f"process-{process_index}-of-{process_count}"


def run(
    config: TrainabilityConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None, process_index: int | None = None,
    process_count: int | None = None, devices: Any = None,
) -> list[Record]:
    """Run (or resume) the study in ``out_dir``; all records of this process's directory.
    ``process_index`` / ``process_count`` (default: ``jax.process_index()`` /
    ``jax.process_count()``) pick the slice of the grid this process runs; ``devices`` (default:
    the local ones) shard each batch of runs."""
    validate(config)
    setup, x_test, y_test = load_setup(config, data_dir)
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    mine = sharding.process_points(len(points(config)), index, count)
    out = records_dir(out_dir, index, count)
    existing = base.open_results(config, out)
    degree = setup.degree
    all_points = points(config)

    # the zone at initialisation, once per (α, seed), by the process that holds point 0
    zone_done = {(r["alpha"], r["seed"]) for r in existing if r["kind"] == "zone"}
    if index == 0:
        for alpha in alphas(config):
            for seed in range(config.seeds):
                if (alpha, seed) in zone_done:
                    continue
                theta = models.scale(initial_params(setup, config, seed), alpha)
                norms = zone_norms(setup, theta, num_samples=config.zone_samples,
                                   chunk_size=config.chunk_size)
                results.append_records(out, [base.tag(NAME, "zone", {
                    "alpha": alpha, "seed": seed, **norms})])

    finished = {results.point_key(r, POINT_FIELDS) for r in existing if r["kind"] == "run"}
    logged = {(*results.point_key(r, POINT_FIELDS), r["step"])
              for r in existing if r["kind"] == "log"}
    todo = [i for i in mine if all_points[i] not in finished]
    num_logs = len({*range(0, config.steps, config.log_every), config.steps})
    ticker = base.Ticker(progress, len(todo) * num_logs)
    fields = dataclasses.asdict(config)
    batches = [todo[lo:lo + config.batch_size] for lo in range(0, len(todo), config.batch_size)]
    names = {f"points-{b[0]:06d}" for b in batches}
    for stale in (out / "checkpoints").glob("points-*"):  # of batches recorded since
        if stale.name not in names:
            shutil.rmtree(stale, ignore_errors=True)
    thetas = {seed: initial_params(setup, config, seed) for seed in range(config.seeds)}
    for indices in batches:
        batch = [all_points[i] for i in indices]
        lrs = [training.effective_lr(lr0, alpha, degree) for alpha, lr0, _ in batch]
        params = jax.tree_util.tree_map(
            lambda *a: jnp.stack(a), *[models.scale(thetas[s], a) for a, _, s in batch])

        def on_log(step, row, ok, batch=batch, lrs=lrs):
            new = [base.tag(NAME, "log", {**fields, "alpha": a, "lr0": r, "seed": s, "lr": lr,
                                          **{f: _value(row, f, j, config.sharpness)
                                             for f in training.HISTORY_FIELDS},
                                          "step": int(step)})
                   for j, ((a, r, s), lr) in enumerate(zip(batch, lrs))
                   if ok[j] and (a, r, s, int(step)) not in logged]
            if new:
                results.append_records(out, new)
            ticker.advance(int(np.sum(ok)))

        checkpoint = out / "checkpoints" / f"points-{indices[0]:06d}"
        grid = training.train_grid(
            setup.model.apply, params, setup.x, setup.y, lr=lrs, steps=config.steps,
            log_every=config.log_every, x_test=x_test, y_test=y_test, optimizer=config.optimizer,
            labels=config.labels, sharpness=config.sharpness,
            key=base.stream_key(0, base.TRAINING_LABELS_STREAM), chunk_size=config.chunk_size,
            devices=devices, checkpoint_dir=checkpoint, on_log=on_log)
        results.append_records(out, [
            base.tag(NAME, "run", _run_record(setup.num_classes, a, r, s, lr, {
                f: grid.history[f][j] for f in training.HISTORY_FIELDS}, int(grid.diverged_at[j])))
            for j, ((a, r, s), lr) in enumerate(zip(batch, lrs))])
        shutil.rmtree(checkpoint, ignore_errors=True)  # its runs are recorded
    ticker.close()
    return base.load(out)


def load(out_dir: str | Path) -> list[Record]:
    """All records of ``out_dir`` and of its ``process-*`` directories (a multi-process run)."""
    out = Path(out_dir)
    found = base.load(out)
    for sub in sorted(out.glob("process-*-of-*")):
        found += base.load(sub)
    return found


# ----------------------------------------------------------------------------- summaries


def run_table(records: list[Record]) -> dict[str, np.ndarray]:
    """The ``run`` records as arrays over (α, η0), averaged over seeds: ``alpha`` (A,),
    ``lr0`` (R,), and (A, R) maps of each numeric field of :data:`RUN_FIELDS` (mean over seeds;
    NaN where nothing was recorded), and the fractions of seeds whose outcome is ``zero_logits``,
    ``diverged`` and ``trained``."""
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


def zone_alphas(records: list[Record]) -> dict[float, bool]:
    """α -> whether ‖G‖₂ > ‖H-term‖₂ at initialisation for the majority of seeds."""
    votes: dict[float, list[bool]] = {}
    for r in records:
        if r.get("kind") == "zone":
            votes.setdefault(r["alpha"], []).append(bool(r["in_zone"]))
    return {a: sum(v) > len(v) / 2 for a, v in sorted(votes.items())}


def curves(records: list[Record], alpha: float, field: str) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """η0 -> (steps, mean over seeds of ``field``) of the ``log`` records at ``alpha``."""
    rows: dict[float, dict[int, list[float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r["alpha"] == alpha and r[field] is not None:
            rows.setdefault(r["lr0"], {}).setdefault(r["step"], []).append(r[field])
    return {lr0: (np.asarray(sorted(by_step)), np.asarray([np.mean(by_step[s]) for s in sorted(by_step)]))
            for lr0, by_step in sorted(rows.items())}


def summarize(records: list[Record]) -> dict[str, Any]:
    """Headline numbers: per α the best (over η0) maximum train and test accuracy, the largest
    η0 whose runs (most seeds) are ``trained`` (the staircase of Fig. 8 left), the zone's α, and
    the outcome counts."""
    table = run_table(records)
    zone = zone_alphas(records)
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
    out["zone_alphas"] = [a for a, inside in zone.items() if inside]
    return out
