"""What the App. E studies share (training runs that explain the outcomes outside the zone): the
config group of a training run, θ0 of a seed, stacking runs for a vmapped grid, the logged
fields, and two small drawing helpers."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import training
from gzone.engine import setup as engine_setup
from gzone.engine.config import (
    ConfigError,
    TrainTestConfig,
    check_at_least,
    check_train_test,
    field,
)
from gzone.studies.icml._common import LENET300_FASHION

#: the training metrics a run logs (no sharpness: not measured here)
LOG_FIELDS = tuple(f for f in training.HISTORY_FIELDS if not f.startswith("sharpness"))


@dataclasses.dataclass(frozen=True)
class RunConfig(TrainTestConfig):
    """Full-batch GD runs of α-scaled networks: their length, seeds and batching."""

    steps: int = field(1000, "full-batch GD steps of every trained network")
    log_every: int = field(25, "steps between logs")
    seeds: int = field(1, "seeds (initialisations)")
    batch_size: int | None = field(16, "runs vmapped together (none: as many as the device's memory holds)")


#: the presets every App. E study starts from: tiny (a 32-16 MLP on 200 digits, 40 steps), cpu
#: (LeNet-300-100 on 2,000 Fashion-MNIST images), paper (the full training set, 20,000 steps)
TINY = {"widths": (32, 16), "n_train": 200, "n_test": 100, "steps": 40, "log_every": 10,
        "batch_size": 4}
CPU = {**LENET300_FASHION, "n_train": 2000, "n_test": 1000, "steps": 2000, "log_every": 50}
PAPER = {**LENET300_FASHION, "n_train": None, "n_test": None, "steps": 20000, "log_every": 100,
         "batch_size": None}  # batches from the device's memory


def validate_runs(config: Any) -> None:
    """The checks every App. E study shares."""
    check_train_test(config)
    check_at_least(config, "steps", "log_every", "seeds", "batch_size")
    if config.log_every > config.steps:
        raise ConfigError("log_every", f"{{name}}={config.log_every} exceeds {{other}}="
                                       f"{config.steps}", other="steps")


def prepare(config: Any, data_dir: str | None) -> engine_setup.Setup:
    """The homogeneous model on the training data, with the test data."""
    return engine_setup.load_train_test(config, data_dir)


def thetas(ctx, seeds: int) -> dict[int, Any]:
    """θ0 of every seed (the training studies' θ0: :func:`gzone.engine.setup.seed_params`)."""
    return ctx.cached("thetas", lambda: {s: engine_setup.seed_params(ctx.setup, ctx.config.init, s)
                                         for s in range(seeds)})


def stack(trees: list[Any]) -> Any:
    """Pytrees stacked along a new leading axis (a grid of runs)."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def point(tree: Any, i: int) -> Any:
    """Point ``i`` of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def num_logs(steps: int, log_every: int) -> int:
    """Logs of a run of ``steps`` steps logged every ``log_every`` (step 0 and the end included)."""
    return len({*range(0, steps, log_every), steps})


def final(values: np.ndarray) -> float:
    """The last finite value (NaN if none)."""
    ok = np.isfinite(values)
    return float(values[ok][-1]) if ok.any() else float("nan")


def best(values: np.ndarray) -> float:
    """The largest finite value (NaN if none)."""
    ok = np.isfinite(values)
    return float(values[ok].max()) if ok.any() else float("nan")


def plain(value: float | None) -> float | None:
    """A number as a report shows it: a float, None when missing or not finite."""
    return float(value) if value is not None and np.isfinite(value) else None


def alpha_colors(alphas: list[float], name: str = "viridis") -> dict[float, tuple]:
    """One colour of a sequential colormap per α (ends trimmed)."""
    import matplotlib as mpl

    cmap = mpl.colormaps[name]
    spots = np.linspace(0.1, 0.85, len(alphas)) if len(alphas) > 1 else [0.5]
    return {a: cmap(s) for a, s in zip(alphas, spots)}


def empty(ax: Any, what: str) -> None:
    """Say on an empty panel that there are no records of ``what``."""
    ax.text(0.5, 0.5, f"no {what} records", transform=ax.transAxes, ha="center", va="center")
