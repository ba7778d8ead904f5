"""Fort & Scherlis (AAAI 2019) in full: one config, :class:`FortConfig`, and its studies.

Points are *radii*: r = ‖θ‖ over all parameters, swept as factors c of the Xavier radius
r_X = ‖θ0‖ of each seed's Xavier draw (θ = c·θ0: every weight matrix on its own initialisation
shell scaled by c, zero biases staying zero — the paper's per-layer metric, Sec. 2.1–2.2). Every
record carries ``radius`` (r), ``radius_factor`` (c) and ``xavier_radius`` (r_X). On a random
d-plane the coordinates θ̂ enter as θ = θ0 + M R θ̂ with M the per-layer metric
(:func:`gzone.subspace.layer_metric`, RMS 1) when ``metric`` is on, so the plane Hessian is
RᵀMHMR.

Studies (``study``):

* ``radius`` (Fig. 3a, 3b; :mod:`gzone.experiments.radius_sweep`): per (radius, seed, d) the
  fraction of positive eigenvalues of the plane Hessian and Tr H_d/‖H_d‖_F (radius × d sweep).
* ``directions`` (Sec. 2.4; :mod:`gzone.experiments.radius_sweep`): per (radius, seed) the
  fraction of random directions with vᵀ(MHM)v > 0 next to the fraction of positive eigenvalues,
  and the exact relations of :mod:`gzone.directions` — mean, variance, positive fraction and the
  plane ratio ρ_d — predicted from full-space Hutchinson estimates of Tr and ‖·‖_F² and measured.
* ``architectures`` (Fig. 4; :mod:`gzone.experiments.radius_sweep`): Tr H_d/‖H_d‖_F and the
  positive-eigenvalue fraction against radius for each entry of ``architectures`` × ``datasets``.
* ``loss-radius`` (Fig. 5; :mod:`gzone.experiments.radial_loss`): the mean loss at random points
  of radius r (flat, then a power law with exponent ≈ L) with Tr H and ‖H‖ (full space and plane).
* ``stokes`` (Eq. 4; :mod:`gzone.experiments.radial_loss`): the mean Laplacian over spheres of
  radius ρ (Hutchinson) against d²⟨ℓ⟩/dρ² + (D − 1)/ρ · d⟨ℓ⟩/dρ (finite differences).
* ``hypersurface-training`` (Fig. 2; :mod:`gzone.experiments.hypersurface_training`): minibatch
  Adam on θ̂ only, on random hyperplanes and hyperspheres through each radius, for a grid of d;
  accuracy against radius per d, and the intrinsic dimension against the radius.
* ``init-selection`` (Fig. 6; :mod:`gzone.experiments.init_selection`): ``inits`` Xavier draws,
  each measured on a random d-plane and trained in full space with Adam; steps to a target test
  accuracy against each measure (Spearman, Mann–Whitney U of top vs bottom quantile).
* ``radius-drift`` (observation 8; :mod:`gzone.experiments.radius_drift`): full-space Adam from
  radii well inside and outside the Xavier radius; ‖θ_t‖ against the step.

Records are written point by point into ``<out>/results.jsonl`` (one directory per study and
configuration; another configuration is refused) and a rerun resumes without repeating a point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import gzone
from gzone import curvature, data, models, subspace
from gzone.experiments import base
from gzone.experiments.base import ConfigError, Progress, Record, Setup

NAME = "fort"
STUDIES = ("radius", "directions", "architectures", "loss-radius", "stokes",
           "hypersurface-training", "init-selection", "radius-drift")
DIRECTIONS_STREAM = 6  # random unit directions of the directions study
HUTCHINSON_STREAM = 7  # Hutchinson probes (directions, loss-radius, stokes)
SPHERE_STREAM = 8  # the stokes study's points on the sphere

#: ``default``: digits, MLP 64-300-100-10 with biases, Xavier; each study minutes on 2 CPU cores.
#: Training studies use full-batch Adam (the paper: minibatch Adam, 10 epochs) on ``n_samples``.
#: ``mnist`` / ``cifar10``: the paper's data (first 10,000 / the shared 3,805 training images),
#: widths and depths of their Fig. 4. ``tiny``: the tests and the notebook.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"widths": (32, 16), "n_samples": 200, "seeds": 1, "num_radii": 5, "dims": (5, 10),
             "dim": 10, "num_directions": 40, "probes": 10, "sphere_points": 8,
             "sphere_probes": 2, "architectures": ("mlp:16:relu", "mlp:16:tanh"), "n_test": 100,
             "train_steps": 40, "train_log_every": 10, "train_lr": 0.01, "inits": 6,
             "target_accuracy": 0.5, "drift_factors": (0.3, 3.0), "batch_size": 8,
             "hs_dims": (5, 20), "hs_radii": (0.3, 1.0, 3.0), "hs_epochs": 2, "hs_batch": 50},
    "mnist": {"model": "mlp", "widths": (200, 200), "dataset": "mnist", "n_samples": 10000,
              "dims": (10, 20, 50, 100, 200), "architectures": (
                  "mlp:200:relu", "mlp:200,200:relu", "mlp:200,200,200:relu", "mlp:50,50:relu",
                  "mlp:1000,1000:relu", "mlp:200,200:tanh", "mlp:200,200:relu:nobias",
                  "lenet5")},
    "cifar10": {"model": "mlp", "widths": (200, 200), "dataset": "cifar10", "n_samples": 3000,
                "dims": (10, 20, 50, 100, 200), "architectures": (
                    "mlp:200,200:relu", "mlp:200,200,200:relu", "mlp:200,200:tanh",
                    "mlp:200,200:relu:nobias", "lenet5")},
}


@dataclasses.dataclass(frozen=True)
class FortConfig:
    """Fort & Scherlis: curvature on random hyperplanes across configuration-space radii."""

    study: str = dataclasses.field(default="radius", metadata={
        "help": "radius (Fig. 3), directions (Sec. 2.4), architectures (Fig. 4), loss-radius "
                "(Fig. 5), stokes (Eq. 4)", "choices": STUDIES})
    model: str = dataclasses.field(default="mlp", metadata={
        "help": "network", "choices": models.MODEL_NAMES})
    widths: tuple[int, ...] = dataclasses.field(default=(300, 100), metadata={
        "help": "hidden widths of mlp, e.g. 300,100"})
    activation: str = dataclasses.field(default="relu", metadata={
        "help": "hidden activation", "choices": tuple(models.ACTIVATIONS)})
    use_bias: bool = dataclasses.field(default=True, metadata={
        "help": "biases (initialised at 0, as the paper's networks); off: gzone's homogeneous nets"})
    dataset: str = dataclasses.field(default="digits", metadata={
        "help": "dataset (training split)", "choices": data.DATASETS})
    n_samples: int | None = dataclasses.field(default=1000, metadata={
        "help": "first N training samples the loss is measured on (none: all)"})
    init: str = dataclasses.field(default="xavier", metadata={
        "help": "initialisation of theta0 (the paper: xavier)", "choices": tuple(models.INIT_SCHEMES)})
    seeds: int = dataclasses.field(default=3, metadata={"help": "seeds (theta0 and basis) per radius"})
    radius_min: float = dataclasses.field(default=0.1, metadata={
        "help": "smallest radius, as a factor of the Xavier radius"})
    radius_max: float = dataclasses.field(default=10.0, metadata={
        "help": "largest radius, as a factor of the Xavier radius"})
    num_radii: int = dataclasses.field(default=13, metadata={"help": "radii (geometric grid)"})
    dims: tuple[int, ...] = dataclasses.field(default=(5, 10, 20, 50, 100), metadata={
        "help": "hyperplane dimensions d of the radius and directions studies"})
    dim: int = dataclasses.field(default=50, metadata={
        "help": "hyperplane dimension d of the architectures and loss-radius studies"})
    basis: str = dataclasses.field(default="sparse", metadata={
        "help": "random basis (the paper: sparse; directions always uses orthonormal, for which "
                "the plane moments are exact)", "choices": subspace.BASIS_KINDS})
    metric: bool = dataclasses.field(default=True, metadata={
        "help": "per-layer metric M on the hyperplane (theta = theta0 + M R theta_hat)"})
    num_directions: int = dataclasses.field(default=200, metadata={
        "help": "directions: random unit directions v per point (v^T H v each)"})
    probes: int = dataclasses.field(default=50, metadata={
        "help": "Hutchinson probes for the full-space Tr H and ||H||_F^2 per point"})
    sphere_points: int = dataclasses.field(default=32, metadata={
        "help": "stokes: random points on each sphere (the same directions at every radius)"})
    sphere_probes: int = dataclasses.field(default=4, metadata={
        "help": "stokes: Hutchinson probes of the Laplacian at each point"})
    architectures: tuple[str, ...] = dataclasses.field(default=(
        "mlp:100:relu", "mlp:300,100:relu", "mlp:100,100,100:relu", "mlp:300,100:tanh",
        "mlp:300,100:relu:nobias"), metadata={
        "help": "architectures: model[:widths[:activation[:nobias]]], e.g. mlp:300,100:tanh, lenet5"})
    datasets: tuple[str, ...] = dataclasses.field(default=("digits",), metadata={
        "help": "architectures: datasets, e.g. mnist,cifar10"})
    n_test: int | None = dataclasses.field(default=None, metadata={
        "help": "init-selection, radius-drift: first N test samples (none: all)"})
    train_lr: float = dataclasses.field(default=1e-3, metadata={
        "help": "init-selection, radius-drift: Adam learning rate (full batch)"})
    train_steps: int = dataclasses.field(default=300, metadata={
        "help": "init-selection, radius-drift: full-space Adam steps per run"})
    train_log_every: int = dataclasses.field(default=2, metadata={
        "help": "init-selection, radius-drift: steps between logs (the resolution of steps-to-target)"})
    inits: int = dataclasses.field(default=32, metadata={
        "help": "init-selection: Xavier initialisations measured and trained"})
    target_accuracy: float = dataclasses.field(default=0.9, metadata={
        "help": "init-selection: the test accuracy whose first logged step is 'steps to target'"})
    select_quantile: float = dataclasses.field(default=0.25, metadata={
        "help": "init-selection: top and bottom quantile compared (Mann-Whitney U)"})
    drift_factors: tuple[float, ...] = dataclasses.field(default=(0.1, 0.3, 1.0, 3.0, 10.0), metadata={
        "help": "radius-drift: starting radii as factors of the Xavier radius"})
    hs_surfaces: tuple[str, ...] = dataclasses.field(default=("hyperplane", "hypersphere"), metadata={
        "help": "hypersurface-training: surfaces (hyperplane, hypersphere)"})
    hs_dims: tuple[int, ...] = dataclasses.field(default=(10, 30, 100, 300, 1000), metadata={
        "help": "hypersurface-training: dimensions d of the random surfaces"})
    hs_radii: tuple[float, ...] = dataclasses.field(default=(0.1, 0.3, 1.0, 3.0, 10.0), metadata={
        "help": "hypersurface-training: radius factors (1 = Xavier: the full-space baseline)"})
    hs_lr: float = dataclasses.field(default=0.01, metadata={
        "help": "hypersurface-training: Adam learning rate on theta_hat (minibatches)"})
    hs_epochs: int = dataclasses.field(default=10, metadata={
        "help": "hypersurface-training: epochs (the paper: 10)"})
    hs_batch: int = dataclasses.field(default=100, metadata={
        "help": "hypersurface-training: minibatch size"})
    hs_fraction: float = dataclasses.field(default=0.9, metadata={
        "help": "hypersurface-training: intrinsic dimension = smallest d reaching this fraction "
                "of the full-space test accuracy at the Xavier radius"})
    batch_size: int = dataclasses.field(default=16, metadata={
        "help": "init-selection, radius-drift: runs vmapped together (memory bound)"})
    dtype: str = dataclasses.field(default="float32", metadata={
        "help": "floating-point type (float64 switches JAX to 64-bit)", "choices": gzone.DTYPES})
    chunk_size: int | None = dataclasses.field(default=None, metadata={
        "help": "samples per jit-compiled chunk (none: automatic)"})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("seeds",)
    STUDY: ClassVar[str] = NAME


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One entry of ``architectures``: model, hidden widths, activation, biases."""

    model: str
    widths: tuple[int, ...]
    activation: str
    use_bias: bool

    @property
    def label(self) -> str:
        if self.model != "mlp":
            return self.model
        name = f"{self.model} {'-'.join(map(str, self.widths))} {self.activation}"
        return name if self.use_bias else name + " no bias"


def parse_architecture(spec: str) -> Architecture:
    """``model[:widths[:activation[:nobias]]]``: ``mlp:300,100:tanh``, ``mlp:200:relu:nobias``,
    ``lenet5`` (bias-free), ``lenet300``."""
    parts = spec.split(":")
    model = parts[0]
    if model not in models.MODEL_NAMES:
        raise ConfigError("architectures", f"unknown model {model!r} in {spec!r}; choose from "
                                           f"{', '.join(models.MODEL_NAMES)}")
    try:
        widths = tuple(int(w) for w in parts[1].split(",")) if len(parts) > 1 and parts[1] else (300, 100)
    except ValueError:
        raise ConfigError("architectures", f"bad widths in {spec!r}: write e.g. mlp:300,100") from None
    activation = parts[2] if len(parts) > 2 else "relu"
    if activation not in models.ACTIVATIONS:
        raise ConfigError("architectures", f"unknown activation {activation!r} in {spec!r}; "
                                           f"choose from {', '.join(models.ACTIVATIONS)}")
    if len(parts) > 3 and parts[3] != "nobias" or len(parts) > 4:
        raise ConfigError("architectures", f"bad entry {spec!r}: write model[:widths[:activation[:nobias]]]")
    if any(w < 1 for w in widths):
        raise ConfigError("architectures", f"widths must be >= 1 in {spec!r}")
    return Architecture(model, widths, activation, model != "lenet5" and len(parts) < 4)


def validate(config: FortConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_choice(config, "study", STUDIES)
    base.check_model_data(config)
    base.check_choice(config, "activation", models.ACTIVATIONS)
    base.check_choice(config, "basis", subspace.BASIS_KINDS)
    if config.model == "lenet5" and config.use_bias:
        raise ConfigError("use_bias", "lenet5 is bias-free here: set {name} off (--no-use-bias)")
    base.check_positive(config, "radius_min", "radius_max")
    base.check_range(config, "radius_min", "radius_max")
    base.check_at_least(config, "seeds", "dim", "num_directions", "sphere_points", "sphere_probes")
    base.check_at_least(config, "probes", minimum=2)
    base.check_at_least(config, "num_radii", minimum=3)
    if not config.dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in config.dims):
        raise ConfigError("dims", f"{{name}} must be integers >= 1, got {config.dims!r}")
    base.check_positive(config, "train_lr", "target_accuracy", "select_quantile")
    base.check_at_least(config, "train_steps", "train_log_every", "batch_size", "n_test")
    base.check_at_least(config, "inits", minimum=4)
    base.check_alphas(config, "drift_factors")
    base.check_alphas(config, "hs_radii")
    base.check_positive(config, "hs_lr", "hs_fraction")
    base.check_at_least(config, "hs_epochs", "hs_batch")
    if not config.hs_surfaces or any(s not in ("hyperplane", "hypersphere") for s in config.hs_surfaces):
        raise ConfigError("hs_surfaces", f"{{name}} must name hyperplane and/or hypersphere, got "
                                         f"{config.hs_surfaces!r}")
    if not config.hs_dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                 for d in config.hs_dims):
        raise ConfigError("hs_dims", f"{{name}} must be integers >= 1, got {config.hs_dims!r}")
    if 1.0 not in config.hs_radii:
        raise ConfigError("hs_radii", "{name} must include 1 (the Xavier radius: the full-space "
                                      "baseline of the intrinsic dimension)")
    if config.target_accuracy > 1:
        raise ConfigError("target_accuracy", f"{{name}} must be at most 1, got {config.target_accuracy!r}")
    if config.select_quantile > 0.5:
        raise ConfigError("select_quantile", f"{{name}} must be at most 0.5, got {config.select_quantile!r}")
    if config.train_log_every > config.train_steps:
        raise ConfigError("train_log_every", f"{{name}}={config.train_log_every} exceeds {{other}}="
                                             f"{config.train_steps}", other="train_steps")
    if not config.architectures:
        raise ConfigError("architectures", "{name} is empty: name at least one")
    for spec in config.architectures:
        parse_architecture(spec)
    for name in config.datasets:
        if base.parse_dataset(name)[0] not in data.DATASETS:
            raise ConfigError("datasets", f"unknown dataset {name!r}; choose from {', '.join(data.DATASETS)}")


def make_config(preset: str = "default", *, validate_config: bool = True, **overrides: Any) -> FortConfig:
    """The config of a named preset plus field overrides (None values ignored)."""
    return base.preset_config(FortConfig, PRESETS, preset, overrides,
                              validate if validate_config else None)


# ----------------------------------------------------------------------------- shared pieces


def radius_factors(config: FortConfig) -> list[float]:
    """The radius grid as factors of the Xavier radius (geometric)."""
    return np.geomspace(config.radius_min, config.radius_max, config.num_radii).tolist()


def setup_for(config: FortConfig, data_dir: str | None) -> Setup:
    """The model of ``config`` on the first ``n_samples`` training samples."""
    ds = base.load_data(config.dataset, "train", config.n_samples, data_dir=data_dir)
    return base.make_setup(config, ds)


def weight_layers(setup: Setup) -> int:
    """L, the number of weight layers (dense and convolution kernels) of the model."""
    shapes = jax.eval_shape(lambda: base.init_params(setup, "xavier", jax.random.key(0)))
    return sum(1 for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]
               if path[-1].key == "kernel")


def seed_state(setup: Setup, config: FortConfig, seed: int, dim: int,
               basis: str | None = None) -> tuple[Any, jax.Array, jax.Array]:
    """θ0 (Xavier by default), the metric M (P,) (ones without ``metric``) and the plane basis
    M R (P, dim) of ``seed`` (θ0 and R from ``split(key(seed))``, as every gzone study)."""
    params, basis_ = base.seed_state(setup, seed, dim=dim, basis=basis or config.basis, init=config.init)
    m = (subspace.layer_metric(params, config.init) if config.metric
         else jnp.ones((setup.num_params,), setup.dtype))
    m = jnp.asarray(m, setup.dtype)
    return params, m, m[:, None] * basis_


def flat(params: Any) -> jax.Array:
    """The flat parameter vector (``ravel_pytree`` order)."""
    return jax.flatten_util.ravel_pytree(params)[0]


def scaled(params: Any, factor: float) -> Any:
    """c·θ: the point at ``factor`` times the radius of ``params``."""
    return jax.tree_util.tree_map(lambda leaf: leaf * factor, params)


def radius_fields(params0: Any, factor: float) -> dict[str, float]:
    """``radius``, ``radius_factor``, ``xavier_radius`` of c·θ0."""
    r0 = float(jnp.linalg.norm(flat(params0)))
    return {"radius": factor * r0, "radius_factor": factor, "xavier_radius": r0}


def batches_for(setup: Setup, config: FortConfig, params: Any, num_tangents: int) -> curvature.Batches:
    """The data laid out once for passes with ``num_tangents`` directions."""
    return curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                     config.chunk_size, num_tangents)


# ----------------------------------------------------------------------------- dispatch


def run(config: FortConfig, out_dir: str | Path, *, data_dir: str | None = None,
        progress: Progress | None = None) -> list[Record]:
    """Run (or resume) ``config.study`` in ``out_dir``; all its records."""
    validate(config)
    from gzone.experiments import (
        hypersurface_training,
        init_selection,
        radial_loss,
        radius_drift,
        radius_sweep,
    )

    runner = {"radius": radius_sweep.run_radius, "directions": radius_sweep.run_directions,
              "architectures": radius_sweep.run_architectures,
              "loss-radius": radial_loss.run_loss_radius, "stokes": radial_loss.run_stokes,
              "hypersurface-training": hypersurface_training.run_hypersurface_training,
              "init-selection": init_selection.run_init_selection,
              "radius-drift": radius_drift.run_radius_drift}
    runner[config.study](config, Path(out_dir), data_dir=data_dir, progress=progress)
    return base.load(out_dir)


def load(out_dir: str | Path) -> list[Record]:
    """All records of ``out_dir``."""
    return base.load(out_dir)
