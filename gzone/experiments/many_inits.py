"""ICML Fig. 6: statistics of many Kaiming initialisations on one balanced batch.

``jax.vmap`` over init keys and bases, chunked over seeds: mean softmax entropy, gradient norm,
positive curvature of the projected Hessian and G-term (d = 50), initial loss and ‖Q̂ − Q‖; their
Spearman rank correlations. Seed s is drawn from ``jax.random.key(s)`` split into θ0 and R, as
:func:`gzone.experiments.base.seed_state` does.

Records (kind ``init``, one per initialisation): ``RECORD_FIELDS``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, metrics, models, objective, results, subspace
from gzone.experiments import base
from gzone.experiments.base import (
    ModelDataConfig,
    Progress,
    Record,
    Setup,
    load_data,
    make_setup,
)
from gzone.jacobian import sample_chunk_size

NAME = "fig6"
FIG6_FIELDS = ("mean_entropy", "gradient_norm", "hessian_positive_curvature",
               "gterm_positive_curvature", "loss", "q_gap")
RECORD_FIELDS: dict[str, tuple[str, ...]] = {"init": ("seed", *FIG6_FIELDS)}
FIG6_PAIRS = (("mean_entropy", "hessian_positive_curvature"), ("mean_entropy", "gradient_norm"),
              ("mean_entropy", "loss"), ("hessian_positive_curvature", "loss"),
              ("hessian_positive_curvature", "gradient_norm"), ("mean_entropy",
                                                                "gterm_positive_curvature"),
              ("q_gap", "gradient_norm"))


@dataclasses.dataclass(frozen=True)
class Fig6Config(ModelDataConfig):
    """Fig. 6: statistics of many Kaiming initialisations on one balanced batch."""

    widths: tuple[int, ...] = (64, 64, 64)
    n_samples: int = dataclasses.field(default=300, metadata={
        "help": "samples of the balanced batch"})
    dim: int = 50
    n_inits: int = 64
    seeds_per_chunk: int = 16
    basis: str = dataclasses.field(default="orthonormal", metadata={
        "help": "random subspace basis", "choices": subspace.BASIS_KINDS})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("n_inits",)
    STUDY: ClassVar[str] = NAME


def validate(config: Fig6Config) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_model_data(config)
    base.check_at_least(config, "n_inits", "seeds_per_chunk", "dim")
    base.check_choice(config, "basis", subspace.BASIS_KINDS)


def init_state_fn(setup: Setup, config: Fig6Config) -> Callable[[jax.Array], tuple[Any, jax.Array]]:
    """key -> (θ0, R): Kaiming parameters and a (P, d) basis, keys split as in ``seed_state``."""
    shapes = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                config.init, setup.dtype))

    def state(key):
        key_init, key_basis = jax.random.split(key)
        params = models.init_from_shapes(shapes, key_init, config.init, setup.dtype)
        basis = subspace.random_basis(key_basis, setup.num_params, config.dim, config.basis,
                                      setup.dtype)
        return params, basis

    return state


def _chunk_sums(apply_fn, input_layer, params, columns, x, y, w) -> tuple[jax.Array, ...]:
    """One chunk's weighted sums: projected G-term and H-term (d, d), loss, gradient (P,) — the
    chunk body of ``curvature.projected`` (T = 1) — plus Σ w·entropy and Σ w·p (K,)."""
    out = curvature.projected_chunk(apply_fn, params, columns, x, y, w, jnp.asarray(1.0, x.dtype),
                                    input_layer)
    probs = objective.probs(apply_fn(params, x))
    return (*out, jnp.sum(w * metrics.softmax_entropy(probs)), w @ probs)


def _finalize(sums: tuple[jax.Array, ...], prior: jax.Array) -> dict[str, jax.Array]:
    """Per-seed statistics from the chunk sums: positive curvature (Eq. 2) of the symmetrised
    projected Hessian and G-term, gradient norm, loss, mean entropy and ‖Q̂ − Q‖ (Eq. 9)."""
    g, h, loss, grad, entropy, q_hat = sums
    g, h = (g + g.T) / 2, (h + h.T) / 2

    def pc(matrix):
        return metrics.positive_curvature(metrics.eigenvalues(matrix))

    return {"mean_entropy": entropy, "gradient_norm": jnp.linalg.norm(grad), "loss": loss,
            "hessian_positive_curvature": pc(g + h), "gterm_positive_curvature": pc(g),
            "q_gap": jnp.linalg.norm(q_hat - prior)}


def _statistics(setup: Setup, config: Fig6Config, batched: bool) -> Callable[..., dict]:
    seed_state = init_state_fn(setup, config)
    shapes = jax.eval_shape(seed_state, jax.random.key(0))[0]
    input_layer = curvature.resolve_input_layer(setup.model.apply, shapes, setup.x[:1])

    def state(key):  # (θ0, R laid out for the chunk body, once per seed)
        params, basis = seed_state(key)
        return params, curvature.basis_columns(params, basis, input_layer)

    chunk = int(min(config.chunk_size or len(setup.x), len(setup.x)))
    body = functools.partial(_chunk_sums, setup.model.apply, input_layer)
    if batched:
        make_state = jax.jit(lambda keys: jax.lax.map(state, keys))
        chunk_fn = jax.jit(jax.vmap(body, in_axes=(0, 0, None, None, None)))
        finalize = jax.jit(jax.vmap(_finalize, in_axes=(0, None)))
    else:
        make_state, chunk_fn, finalize = jax.jit(state), jax.jit(body), jax.jit(_finalize)

    def run(keys, x, y):
        params, columns = make_state(keys)
        xs, ys, ws = curvature.padded_chunks(x, y, chunk)
        sums = None
        for batch in zip(xs, ys, ws):  # Python loop over sample chunks, one compiled chunk body
            out = chunk_fn(params, columns, *batch)
            sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
        prior = jnp.mean(jax.nn.one_hot(y, setup.num_classes, dtype=x.dtype), axis=0)
        return finalize(sums, prior)

    return run


def batched_statistics(setup: Setup, config: Fig6Config) -> Callable[..., dict]:
    """(keys (S,), x, y) -> dict of (S,) arrays: ``jax.vmap`` over the seeds' (θ0, R) of one jitted
    chunk body, looped over chunks of ``config.chunk_size`` samples in Python.

    The states are drawn with ``lax.map`` (vmapping threefry over keys made XLA's CPU compile
    ~5x slower). Chunks are looped in Python rather than scanned: on CPU convolutions inside an
    XLA loop body ran ~8x slower (LeNet-5), and unrolling many chunks compiles slowly."""
    return _statistics(setup, config, batched=True)


def looped_statistics(setup: Setup, config: Fig6Config) -> Callable[..., dict]:
    """(key, x, y) -> dict of scalars for one seed: the same computation without ``vmap`` (the
    Python-loop-over-seeds baseline of ``benchmarks/bench_inside.py``)."""
    return _statistics(setup, config, batched=False)


def seed_keys(first: int, count: int) -> jax.Array:
    """Keys ``jax.random.key(s)`` for s = first .. first + count − 1."""
    return jax.vmap(jax.random.key)(jnp.arange(first, first + count))


def fig6_chunk_size(setup: Setup, config: Fig6Config) -> int:
    """Samples per chunk so that a vmapped chunk of seeds fits the default memory budget."""
    params = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                dtype=setup.dtype))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    tangents = config.dim * config.seeds_per_chunk
    return sample_chunk_size(setup.model.apply, zeros, setup.x, tangents, config.chunk_size)


def run(
    config: Fig6Config, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 6, vmapped over ``seeds_per_chunk`` seeds at a time, resumable per chunk."""
    validate(config)
    ds = load_data(config.dataset, config.split, config.n_samples, data_dir=data_dir, balanced=True)
    setup = make_setup(config, ds)
    base.check_dim(setup, config.dim, min_classes=True)
    existing = base.open_results(config, out_dir)
    config = dataclasses.replace(config, chunk_size=fig6_chunk_size(setup, config))
    batched = batched_statistics(setup, config)
    done = {r["seed"] for r in existing if r["kind"] == "init"}
    starts = [s for s in range(0, config.n_inits, config.seeds_per_chunk)
              if any(t not in done for t in range(s, min(s + config.seeds_per_chunk, config.n_inits)))]
    for start in base.iterate(starts, progress):
        # always a full chunk of seeds (one compiled shape); seeds past n_inits are dropped
        out = jax.device_get(batched(seed_keys(start, config.seeds_per_chunk), setup.x, setup.y))
        records = [
            base.tag(NAME, "init", {"seed": start + i, "n_samples": len(setup.x),
                                    "dim": config.dim, **{f: float(out[f][i]) for f in FIG6_FIELDS}})
            for i in range(config.seeds_per_chunk)
            if start + i not in done and start + i < config.n_inits
        ]
        results.append_records(out_dir, records)
    return base.load(out_dir)


def columns(records: list[Record]) -> dict[str, np.ndarray]:
    """{field: (n_inits,) array} of the ``init`` records (None -> NaN), for ``FIG6_FIELDS``."""
    inits = [r for r in records if r.get("kind") == "init"]
    return {f: np.array([np.nan if r[f] is None else r[f] for r in inits], float) for f in FIG6_FIELDS}


def summarize(records: list[Record]) -> dict[str, Any]:
    """Spearman rank correlations between the per-initialisation statistics."""
    inits = [r for r in records if r.get("kind") == "init"]
    col = columns(records)
    return {"inits": len(inits),
            **{f"spearman_{a}_vs_{b}": base.spearman(col[a], col[b]) for a, b in FIG6_PAIRS}}
