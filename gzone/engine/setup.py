"""What every study sets up before it measures: a model, its data and its random keys.

* :class:`Setup`: a model and one dataset (and, for a training study, the test split), loaded once
  and checked by running the model on one sample (shapes only).
* :func:`load_data` (first N samples, or a balanced subset), :func:`make_setup`,
  :func:`load_train_test`.
* Keys: θ0 and a random basis R of seed s come from ``split(key(s))`` (:func:`seed_state`); every
  other random draw of a study comes from :func:`stream_key` with one of the named streams of
  :data:`STREAMS` (one registry, so two studies can never share a stream by accident).
* :func:`check_dim`: a subspace fits the model (d ≤ P).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from gzone import data, models, subspace
from gzone.engine.config import ConfigError, parse_dataset

#: Named random streams: ``stream_key(seed, STREAMS[name])``. θ0 and R use ``split(key(seed))``.
STREAMS = {
    "full-space": 2,  # full-space Hutchinson / Lanczos / SLQ probes of the zone sweeps
    "eigvec": 3,  # pre-collapse: Lanczos start vector of the first-layer top eigenvector
    "curvature-basis": 4,  # pre-collapse: basis of its projected-curvature points
    "training-labels": 5,  # trainability: random labels (drawn once, or per step)
    "directions": 6,  # Fort & Scherlis: random unit directions
    "hutchinson": 7,  # Fort & Scherlis: Hutchinson probes (directions, loss-radius, stokes)
    "sphere": 8,  # Fort & Scherlis: the stokes study's points on the sphere
    "hypersurface-basis": 9,  # Fort & Scherlis: the bases of hypersurface training
    "hypersurface-batches": 10,  # Fort & Scherlis: its minibatch permutations
    "init-scale": 11,  # beyond: the scale alpha of each initialisation of the init-quality study
}


def stream_key(seed: int, stream: str) -> jax.Array:
    """The key of one named random stream of ``seed``: ``fold_in(key(seed), STREAMS[stream])``."""
    return jax.random.fold_in(jax.random.key(seed), STREAMS[stream])


@dataclasses.dataclass(frozen=True)
class Setup:
    """A model and one dataset, loaded once (a training study also holds the test split)."""

    model: Any
    x: jax.Array
    y: jax.Array
    num_classes: int
    num_params: int
    dtype: Any
    name: str
    x_test: jax.Array | None = None
    y_test: jax.Array | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def degree(self) -> int | None:
        """The homogeneity degree L of the model (None: not homogeneous)."""
        return self.model.homogeneity_degree


def load_data(spec: str, split: str, n: int | None, *, data_dir: str | None,
              balanced: bool = False, seed: int = 0, shape: tuple[int, ...] | None = None,
              num_classes: int = 10) -> data.Dataset:
    """A dataset by spec (``name`` or ``name:split``): the first ``n`` samples, or (``balanced``)
    ``n // K`` per class drawn with ``seed`` and capped by the smallest class. ``gaussian`` takes
    ``shape`` and is balanced by construction."""
    name, spec_split = parse_dataset(spec)
    split = spec_split or split
    if name == "gaussian":
        if shape is None:
            raise ValueError("the gaussian dataset needs an image shape: list a real dataset first")
        return data.load_dataset("gaussian", split, n=n or 1000, seed=seed, shape=tuple(shape),
                                 num_classes=num_classes)
    if not balanced:
        return data.load_dataset(name, split, n=n, data_dir=data_dir)
    full = data.load_dataset(name, split, data_dir=data_dir)
    indices = data.class_indices(full.y, full.num_classes)
    per_class = min(min(len(i) for i in indices), (n or len(full)) // full.num_classes)
    if per_class < 1:
        raise ValueError(f"{spec} has a class with no samples; cannot draw a balanced subset")
    return data.balanced_subset(full, per_class, seed=seed, indices=indices)


def make_setup(config: Any, ds: data.Dataset) -> Setup:
    """The model of ``config`` (``model``, ``widths``, ``dtype``; ``activation`` and ``use_bias``
    where the config has them) for ``ds``, checked by running it on one sample under
    ``jax.eval_shape`` (shapes only: LeNet-5 on 8x8 digits fails here, before anything runs)."""
    model = models.make_model(config.model, ds.num_classes, widths=config.widths,
                              activation=getattr(config, "activation", "relu"),
                              use_bias=getattr(config, "use_bias", False))
    dtype = jnp.dtype(config.dtype)
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0), ds.x.shape[1:], dtype=dtype))
    x = jnp.asarray(ds.x, dtype)
    logits = jax.eval_shape(model.apply, shapes, x[:1])
    if logits.shape != (1, ds.num_classes):
        raise ValueError(f"{config.model} gives logits of shape {logits.shape[1:]} for "
                         f"{ds.num_classes} classes")
    return Setup(model, x, jnp.asarray(ds.y, jnp.int32), ds.num_classes,
                 models.num_params(shapes), dtype, ds.name)


def load_train_test(config: Any, data_dir: str | None, *, n_train: int | None = None,
                    homogeneous: bool = True) -> Setup:
    """The model of ``config`` on the first ``n_train`` (default ``config.n_train``) training
    samples, with the first ``config.n_test`` test samples; with ``homogeneous`` the model must
    be homogeneous (the α-scaling of Sec. 5 rests on it)."""
    n = config.n_train if n_train is None else n_train
    train = load_data(config.dataset, "train", n, data_dir=data_dir)
    test = load_data(config.dataset, "test", config.n_test, data_dir=data_dir)
    setup = make_setup(config, train)
    if homogeneous and setup.degree is None:
        raise ConfigError("model", f"{config.model} is not homogeneous: the study needs one "
                                   f"(bias-free ReLU) {{name}}")
    return dataclasses.replace(setup, x_test=jnp.asarray(test.x, setup.dtype),
                               y_test=jnp.asarray(test.y, jnp.int32))


def init_params(setup: Setup, init: str, key: jax.Array) -> Any:
    """Parameters θ0 of scheme ``init`` (kaiming, xavier, authors ...) for ``key``."""
    return models.init(setup.model, key, setup.input_shape, init, setup.dtype)


def seed_params(setup: Setup, init: str, seed: int) -> Any:
    """θ0 of ``seed``: the first key of ``split(key(seed))``, as :func:`seed_state` draws it."""
    return init_params(setup, init, jax.random.split(jax.random.key(seed))[0])


def seed_state(setup: Setup, seed: int, *, dim: int, basis: str, init: str) -> tuple[Any, jax.Array]:
    """θ0 and a (P, ``dim``) random basis of kind ``basis`` for one seed, from the two keys of
    ``jax.random.split(jax.random.key(seed))`` (θ0 from the first, R from the second)."""
    key_init, key_basis = jax.random.split(jax.random.key(seed))
    params = init_params(setup, init, key_init)
    return params, subspace.random_basis(key_basis, setup.num_params, dim, basis, setup.dtype)


def check_dim(setup: Setup, dim: int, *, name: str = "dim", min_classes: bool = False) -> None:
    """The subspace dimension fits the model (d ≤ P) and, with ``min_classes`` (the random model
    of Sec. 4), is at least the number of classes K."""
    if dim > setup.num_params:
        raise ConfigError(name, f"subspace dimension {{name}}={dim} exceeds the model's "
                                f"P={setup.num_params} parameters; choose a smaller {{name}}")
    if min_classes and dim < setup.num_classes:
        raise ConfigError(name, f"the random model needs d >= K={setup.num_classes}; "
                                f"got {{name}}={dim}")
