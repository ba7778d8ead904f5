"""ICML App. E (Fig. 11, 12 left) and Sec. 5: training from outside the zone, explained.

One config, :class:`OutsideConfig`, five studies (``study``):

* ``uso`` (Fig. 11 left, :mod:`gzone.experiments.uso`): the uniform-softmax-output model
  (``train(..., uso=True)``) next to α-scaled networks (α < 1) trained at η0·α^(2−L); their
  parameter norms rescaled by 1/α follow the USO path while the softmax stays uniform
  (max |p − 1/K| ≤ ``uniform_tol``) and leave it afterwards.
* ``uso-retrain`` (Fig. 11 right, :mod:`gzone.experiments.uso`): along the USO path,
  cos(θ_t, θ0), cos(θ_t, −g_t), and the training error that ordinary GD reaches in
  ``retrain_steps`` steps from the rescaled point ‖θ0‖·θ_t/‖θ_t‖.
* ``probe`` (Fig. 12 left, :mod:`gzone.experiments.lazy`): linear probes on the penultimate
  features of networks trained at each α, and of randomly initialised unscaled ones.
* ``lazy`` (:mod:`gzone.experiments.lazy`): for α ≫ 1, train/test accuracy, the relative distance
  travelled ‖θ_t − θ0‖/‖θ0‖, and the network against its linearisation around θ0 trained the same
  way (test accuracy, agreement of test predictions, relative logit difference).
* ``random-labels`` (Sec. 5, Fig. 12 right): zero-logit samples against the step for true labels,
  random labels drawn once, and random labels redrawn every step — three runs of the
  trainability study (:mod:`gzone.experiments.trainability`) in ``<out>/labels-<kind>``.

Every study writes records as it computes them into ``<out>/results.jsonl`` (one directory per
study and configuration; another configuration is refused), checkpoints its training runs under
``<out>/checkpoints`` and resumes after an interruption without losing or repeating a finished
point. θ0 of seed s is the trainability study's (:func:`initial_params`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import gzone
from gzone import data, models, probes, results, training
from gzone.experiments import base
from gzone.experiments.base import ConfigError, Progress, Record, Setup

NAME = "outside"
STUDIES = ("uso", "uso-retrain", "probe", "lazy", "random-labels")

#: Named settings. ``default``: the embedded digits MLP 64-300-100-10, each study a few minutes on
#: 2 CPU cores; ``fashion-cpu``: LeNet-300-100 on 2,000 Fashion-MNIST images (CPU, longer);
#: ``lenet300-fashion``: the paper's setting (full Fashion-MNIST, η0 = 0.0002 for Fig. 11,
#: 20,000 steps: GPU work); ``tiny``: the tests and the notebook.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "steps": 40, "log_every": 10,
             "uso_alphas": (0.01, 0.1), "uso_lr0": 0.05, "retrain_points": 3, "retrain_steps": 20,
             "probe_alphas": (1.0, 100.0), "probe_seeds": 2, "lazy_alphas": (1.0, 100.0),
             "labels_alphas": (1.0,), "batch_size": 4},
    "fashion-cpu": {"model": "lenet300", "dataset": "fashion_mnist", "n_train": 2000,
                    "n_test": 1000, "steps": 2000, "log_every": 50, "uso_lr0": 0.02,
                    "retrain_steps": 1000},
    "lenet300-fashion": {"model": "lenet300", "dataset": "fashion_mnist", "n_train": None,
                         "n_test": None, "steps": 20000, "log_every": 100, "uso_lr0": 0.0002,
                         "uso_alphas": (0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
                         "retrain_points": 11, "retrain_steps": 5000,
                         "probe_alphas": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                         "lazy_alphas": (1.0, 10.0, 100.0, 1000.0),
                         "labels_alphas": (1.0, 10.0), "batch_size": 8},
}


@dataclasses.dataclass(frozen=True)
class OutsideConfig:
    """App. E / Sec. 5: the USO model, linear probes, the lazy regime and random labels."""

    study: str = dataclasses.field(default="uso", metadata={
        "help": "uso (Fig. 11 left), uso-retrain (Fig. 11 right), probe (Fig. 12 left), lazy, "
                "random-labels (Fig. 12 right)", "choices": STUDIES})
    model: str = dataclasses.field(default="mlp", metadata={
        "help": "network (homogeneous: bias-free ReLU)", "choices": models.MODEL_NAMES})
    widths: tuple[int, ...] = dataclasses.field(default=(300, 100), metadata={
        "help": "hidden widths of mlp, e.g. 300,100"})
    dataset: str = dataclasses.field(default="digits", metadata={
        "help": "dataset (train split trained on, test split held out)", "choices": data.DATASETS})
    n_train: int | None = dataclasses.field(default=None, metadata={
        "help": "first N training samples (none: all)"})
    n_test: int | None = dataclasses.field(default=None, metadata={
        "help": "first N test samples (none: all)"})
    init: str = dataclasses.field(default="kaiming", metadata={
        "help": "initialisation scheme of theta0", "choices": tuple(models.INIT_SCHEMES)})
    steps: int = dataclasses.field(default=1000, metadata={
        "help": "full-batch GD steps of every trained network (and of the USO path)"})
    log_every: int = dataclasses.field(default=25, metadata={"help": "steps between logs"})
    seeds: int = dataclasses.field(default=1, metadata={
        "help": "seeds (initialisations) of uso, uso-retrain, lazy and random-labels"})
    lr0: float = dataclasses.field(default=0.1, metadata={
        "help": "base lr0 of probe, lazy and random-labels (lr = lr0 * alpha^(2-L))"})
    uso_lr0: float = dataclasses.field(default=0.003, metadata={
        "help": "base lr0 of the USO model and the alpha < 1 networks (the paper: 0.0002)"})
    uso_alphas: tuple[float, ...] = dataclasses.field(default=(0.003, 0.01, 0.03, 0.1), metadata={
        "help": "alphas < 1 set beside the USO model (uso)"})
    uniform_tol: float = dataclasses.field(default=1e-3, metadata={
        "help": "the softmax counts as uniform while max |p - 1/K| <= this"})
    retrain_points: int = dataclasses.field(default=11, metadata={
        "help": "USO steps (0 .. steps, evenly spaced) retrained from (uso-retrain)"})
    retrain_steps: int = dataclasses.field(default=500, metadata={
        "help": "GD steps of each retraining from the rescaled USO point"})
    retrain_lr0: float = dataclasses.field(default=0.1, metadata={
        "help": "learning rate of the retraining (alpha = 1)"})
    probe_alphas: tuple[float, ...] = dataclasses.field(
        default=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), metadata={
            "help": "alphas whose trained features are probed (probe)"})
    probe_seeds: int = dataclasses.field(default=3, metadata={
        "help": "seeds of the probe study (the paper: 3, min/max bands)"})
    probe_c: float = dataclasses.field(default=probes.DEFAULT_C, metadata={
        "help": "inverse L2 strength C of the logistic-regression probe (standardised features)"})
    lazy_alphas: tuple[float, ...] = dataclasses.field(default=(1.0, 10.0, 100.0), metadata={
        "help": "alphas of the lazy study (1: the reference)"})
    labels_alphas: tuple[float, ...] = dataclasses.field(default=(1.0, 10.0), metadata={
        "help": "alphas of the random-labels study"})
    batch_size: int = dataclasses.field(default=16, metadata={
        "help": "runs vmapped together (memory bound)"})
    dtype: str = dataclasses.field(default="float32", metadata={
        "help": "floating-point type (float64 switches JAX to 64-bit)", "choices": gzone.DTYPES})
    chunk_size: int | None = dataclasses.field(default=None, metadata={
        "help": "samples per jit-compiled chunk (none: automatic)"})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ()
    STUDY: ClassVar[str] = NAME


def validate(config: OutsideConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_choice(config, "study", STUDIES)
    base.check_training_model_data(config)
    base.check_choice(config, "init", models.INIT_SCHEMES)
    gzone.check_dtype(config.dtype)
    base.check_positive(config, "lr0", "uso_lr0", "retrain_lr0", "uniform_tol", "probe_c")
    if config.uniform_tol >= 1:
        raise ConfigError("uniform_tol", f"{{name}} must be < 1, got {config.uniform_tol!r}")
    base.check_alphas(config, "uso_alphas", below_one=True)
    for name in ("probe_alphas", "lazy_alphas", "labels_alphas"):
        base.check_alphas(config, name)
    base.check_at_least(config, "steps", "log_every", "seeds", "retrain_steps", "probe_seeds",
                        "batch_size", "n_train", "n_test", "chunk_size")
    base.check_at_least(config, "retrain_points", minimum=2)
    if config.log_every > config.steps:
        raise ConfigError("log_every", f"{{name}}={config.log_every} exceeds {{other}}="
                                       f"{config.steps}", other="steps")


def make_config(preset: str = "default", *, validate_config: bool = True,
                **overrides: Any) -> OutsideConfig:
    """The config of a named preset plus field overrides (None values ignored), validated
    unless ``validate_config`` is False."""
    return base.preset_config(OutsideConfig, PRESETS, preset, overrides,
                              validate if validate_config else None)


# ----------------------------------------------------------------------------- shared pieces


def load_setup(config: OutsideConfig, data_dir: str | None) -> tuple[Setup, jax.Array, jax.Array]:
    """The model on the training data and the test data (:func:`base.load_train_test`)."""
    return base.load_train_test(config, data_dir)


def initial_params(setup: Setup, config: OutsideConfig, seed: int) -> Any:
    """θ0 of ``seed``, the trainability study's (:func:`base.training_params`)."""
    return base.training_params(setup, config.init, seed)


def stack(trees: list[Any]) -> Any:
    """Pytrees stacked along a new leading axis (a grid of runs)."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def point(tree: Any, i: int) -> Any:
    """Point ``i`` of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def log_writer(out: Path, existing: list[Record], study: str, points: list[dict[str, Any]],
               fields: tuple[str, ...], ticker: base.Ticker | None = None):
    """An ``on_log`` for :func:`gzone.training.train_grid` that appends one ``log`` record per
    measured point of ``points`` (their identifying fields, e.g. α and seed) with ``fields`` of
    the row — skipping (point, step) pairs already in ``existing`` (a resumed batch)."""
    done = {(tuple(sorted((k, r.get(k)) for k in points[0])), r.get("step"))
            for r in existing if r.get("kind") == "log"} if points else set()

    def on_log(step: int, row: dict[str, np.ndarray], ok: np.ndarray) -> None:
        new = []
        for j, p in enumerate(points):
            key = (tuple(sorted(p.items())), int(step))
            if ok[j] and key not in done:
                new.append(base.tag(study, "log", {**p, "step": int(step),
                                                   **{f: float(row[f][j]) for f in fields
                                                      if f != "step"}}))
                done.add(key)
        if new:
            results.append_records(out, new)
        if ticker is not None:
            ticker.advance(int(np.sum(ok)))

    return on_log


def num_logs(steps: int, log_every: int) -> int:
    """Logs of a run of ``steps`` steps logged every ``log_every`` (step 0 and the end included)."""
    return len({*range(0, steps, log_every), steps})


# ----------------------------------------------------------------------------- random labels


def labels_config(config: OutsideConfig, labels: str) -> Any:
    """The trainability config of one ``random-labels`` run: ``mode="curves"`` at
    ``labels_alphas``, the single base learning rate ``lr0``, ``labels`` as given, no sharpness."""
    from gzone.experiments import trainability

    return trainability.make_config(
        "default", mode="curves", model=config.model, widths=config.widths,
        dataset=config.dataset, n_train=config.n_train, n_test=config.n_test, init=config.init,
        curve_alphas=config.labels_alphas, lr0_min=config.lr0, lr0_max=config.lr0, num_lr0=1,
        steps=config.steps, log_every=config.log_every, seeds=config.seeds, labels=labels,
        sharpness=False, zone_samples=min(config.n_train or 1000, 1000),
        batch_size=config.batch_size, dtype=config.dtype, chunk_size=config.chunk_size)


def run_random_labels(config: OutsideConfig, out: Path, *, data_dir: str | None,
                      progress: Progress | None) -> list[Record]:
    """Sec. 5's random labels: the trainability study once per label kind, into
    ``<out>/labels-<kind>``; all their records."""
    from gzone.experiments import trainability

    found: list[Record] = []
    for labels in training.LABELS:
        found += trainability.run(labels_config(config, labels), out / f"labels-{labels}",
                                  data_dir=data_dir, progress=progress)
    return found


# ----------------------------------------------------------------------------- dispatch


def run(config: OutsideConfig, out_dir: str | Path, *, data_dir: str | None = None,
        progress: Progress | None = None) -> list[Record]:
    """Run (or resume) ``config.study`` in ``out_dir``; all its records (:func:`load`)."""
    validate(config)
    out = Path(out_dir)
    if config.study == "random-labels":
        load_setup(config, data_dir)  # refuse bad data before anything is written
        base.open_results(config, out)
        run_random_labels(config, out, data_dir=data_dir, progress=progress)
        return load(out)
    from gzone.experiments import lazy, uso

    setup, x_test, y_test = load_setup(config, data_dir)
    existing = base.open_results(config, out)
    runner = {"uso": uso.run_uso, "uso-retrain": uso.run_retrain, "probe": lazy.run_probe,
              "lazy": lazy.run_lazy}[config.study]
    runner(config, setup, x_test, y_test, out, existing, progress)
    return load(out)


def load(out_dir: str | Path) -> list[Record]:
    """All records of ``out_dir`` (and of its ``labels-*`` directories: ``random-labels``)."""
    out = Path(out_dir)
    found = base.load(out) if (out / results.RESULTS_FILE).exists() else []
    for sub in sorted(out.glob("labels-*")):
        found += base.load(sub)
    return found
