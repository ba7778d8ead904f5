"""ICML Fig. 6: statistics of many Kaiming initialisations on one balanced batch.

``jax.vmap`` over the initialisations' (θ0, R), ``seeds_per_chunk`` at a time: mean softmax
entropy, gradient norm, positive curvature of the projected Hessian and G-term (d = 50), initial
loss and ‖Q̂ − Q‖ (one ``init`` record each); the summary holds their Spearman rank correlations.
Seed s is drawn from ``jax.random.key(s)`` split into θ0 and R, as
:func:`gzone.engine.setup.seed_state` does.

    gzone run icml/many-inits
    gzone run icml/many-inits --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, metrics, models, objective, sharding, subspace
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ModelDataConfig,
    check_at_least,
    check_choice,
    check_model_data,
    field,
)
from gzone.engine.setup import Setup
from gzone.engine.study import batched
from gzone.engine.summary import as_rows, spearman
from gzone.jacobian import sample_chunk_size
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, inside

FIELDS = ("mean_entropy", "gradient_norm", "hessian_positive_curvature",
          "gterm_positive_curvature", "loss", "q_gap")
PAIRS = (("mean_entropy", "hessian_positive_curvature"), ("mean_entropy", "gradient_norm"),
         ("mean_entropy", "loss"), ("hessian_positive_curvature", "loss"),
         ("hessian_positive_curvature", "gradient_norm"),
         ("mean_entropy", "gterm_positive_curvature"), ("q_gap", "gradient_norm"))


@dataclasses.dataclass(frozen=True)
class Config(ModelDataConfig):
    """Statistics of many Kaiming initialisations on one balanced batch."""

    widths: tuple[int, ...] = field((64, 64, 64), "hidden widths of mlp, e.g. 300,100")
    n_samples: int = field(300, "samples of the balanced batch")
    dim: int = field(50, "subspace dimension d of the projected curvature")
    n_inits: int = field(64, "initialisations (seeds 0..N-1)")
    seeds_per_chunk: int = field(16, "initialisations vmapped together (memory bound)")
    basis: str = field("orthonormal", "random subspace basis", subspace.BASIS_KINDS)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (16, 16, 16), "n_samples": 100, "dim": 10, "n_inits": 24,
             "seeds_per_chunk": 8},
    "default": {},
    "cpu": {**LENET5_CIFAR10, "n_samples": 500, "dim": 50, "n_inits": 64, "seeds_per_chunk": 8},
    "paper": {**LENET5_CIFAR10, "n_samples": 3000, "dim": 50, "n_inits": 2000, "seeds_per_chunk": 8},
    "lenet5-cifar10": {**LENET5_CIFAR10, "n_samples": 3000, "dim": 50, "n_inits": 2000,
                       "seeds_per_chunk": 8},
    "lenet300-fashion": {**LENET300_FASHION, "n_samples": 3000, "dim": 50, "n_inits": 2000,
                         "seeds_per_chunk": 8},
}


def validate(config: Config) -> None:
    check_model_data(config)
    check_at_least(config, "n_inits", "seeds_per_chunk", "dim")
    check_choice(config, "basis", subspace.BASIS_KINDS)


def init_state_fn(setup: Setup, config: Config) -> Callable[[jax.Array], tuple[Any, jax.Array]]:
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


def _statistics(setup: Setup, config: Config, batched: bool) -> Callable[..., dict]:
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


def batched_statistics(setup: Setup, config: Config) -> Callable[..., dict]:
    """(keys (S,), x, y) -> dict of (S,) arrays: ``jax.vmap`` over the seeds' (θ0, R) of one jitted
    chunk body, looped over chunks of ``config.chunk_size`` samples in Python.

    The states are drawn with ``lax.map`` (vmapping threefry over keys made XLA's CPU compile
    ~5x slower). Chunks are looped in Python rather than scanned: on CPU convolutions inside an
    XLA loop body ran ~8x slower (LeNet-5), and unrolling many chunks compiles slowly."""
    return _statistics(setup, config, batched=True)


def looped_statistics(setup: Setup, config: Config) -> Callable[..., dict]:
    """(key, x, y) -> dict of scalars for one seed: the same computation without ``vmap`` (the
    Python-loop-over-seeds baseline of ``benchmarks/bench_inside.py``)."""
    return _statistics(setup, config, batched=False)


def seed_keys(first: int, count: int) -> jax.Array:
    """Keys ``jax.random.key(s)`` for s = first .. first + count − 1."""
    return jax.vmap(jax.random.key)(jnp.arange(first, first + count))


def chunk_size_for(setup: Setup, config: Config, devices: int = 1) -> int:
    """Samples per chunk so that the seeds one device vmaps (a chunk of seeds shared over
    ``devices``) fit the device's memory budget (:func:`gzone.curvature.device_memory_budget`)."""
    params = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                dtype=setup.dtype))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    tangents = config.dim * -(-config.seeds_per_chunk // devices)
    return sample_chunk_size(setup.model.apply, zeros, setup.x, tangents, config.chunk_size)


def prepare(config: Config, data_dir: str | None) -> Setup:
    ds = engine_setup.load_data(config.dataset, config.split, config.n_samples, data_dir=data_dir,
                                balanced=True)
    setup = engine_setup.make_setup(config, ds)
    engine_setup.check_dim(setup, config.dim, min_classes=True)
    return setup


def points(config: Config, setup: Setup) -> list[dict[str, Any]]:
    return [{"kind": "init", "seed": s} for s in range(config.n_inits)]


def measure(ctx, chunk):
    """One vmapped chunk: always a full chunk of seeds (one compiled shape), starting at a
    multiple of ``seeds_per_chunk``, sharded over the local devices (:class:`gzone.sharding.
    Placement`); seeds already recorded or past ``n_inits`` are dropped."""
    config, setup = ctx.config, ctx.setup
    place = ctx.cached("placement", lambda: sharding.Placement(ctx.devices))
    stats = ctx.cached("statistics", lambda: batched_statistics(setup, dataclasses.replace(
        config, chunk_size=chunk_size_for(setup, config, place.width))))
    per = config.seeds_per_chunk
    start = chunk[0]["seed"] // per * per
    wanted = {p["seed"] for p in chunk}
    keys = place.points(jax.random.key_data(seed_keys(start, per)))
    out = place.trim(stats(jax.random.wrap_key_data(keys), place.shared(setup.x),
                           place.shared(setup.y)), per)
    yield [{"kind": "init", "seed": start + i, "n_samples": len(setup.x), "dim": config.dim,
            **{f: float(out[f][i]) for f in FIELDS}} for i in range(per) if start + i in wanted]


def columns(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """{field: (n_inits,) array} of the ``init`` records (None -> NaN), for ``FIELDS``."""
    inits = [r for r in records if r.get("kind") == "init"]
    return {f: np.array([np.nan if r[f] is None else r[f] for r in inits], float) for f in FIELDS}


def correlations(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman rank correlations between the per-initialisation statistics, each with its
    p-value and bootstrap interval (:func:`.inside.rank_correlation`)."""
    col = columns(records)
    out: dict[str, Any] = {"inits": sum(r.get("kind") == "init" for r in records)}
    for a, b in PAIRS:
        found = inside.rank_correlation(col[a], col[b])
        out[f"spearman_{a}_vs_{b}"] = found["rho"]
        out[f"p_{a}_vs_{b}"] = found["p_value"]
        out[f"interval_{a}_vs_{b}"] = found["interval"]
    return out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return as_rows(correlations(records))


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Positive curvature, gradient norm and initial loss against the mean softmax entropy
    (colour: positive curvature of the Hessian); Spearman ρ in each title."""
    import matplotlib.pyplot as plt

    from gzone.plots import (
        ENTROPY_LABEL,
        GRADIENT_NORM_LABEL,
        PLANE_POSITIVE_CURVATURE_LABEL,
        finish,
    )

    col = columns(records)
    panels = (("hessian_positive_curvature", PLANE_POSITIVE_CURVATURE_LABEL),
              ("gradient_norm", GRADIENT_NORM_LABEL), ("loss", "initial loss"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (name, label) in zip(axes, panels):
        sc = ax.scatter(col["mean_entropy"], col[name], c=col["hessian_positive_curvature"], s=8,
                        cmap="viridis")
        ax.set_xlabel(ENTROPY_LABEL)
        ax.set_ylabel(label)
        ax.set_title(rf"Spearman $\rho$ = {spearman(col['mean_entropy'], col[name]):.2f}",
                     fontsize=9)
        ax.grid(alpha=0.3, lw=0.3)
    fig.colorbar(sc, ax=axes[-1], label=PLANE_POSITIVE_CURVATURE_LABEL)
    return finish(fig, title, path_stem)


#: the signs of Fig. 6 and Sec. 4: high positive curvature goes with low confidence (high mean
#: entropy), low-norm gradients ("high positive curvature is associated with low-norm
#: cross-entropy gradients ... as we verified in Figure 6") and low initial loss ("lower initial
#: losses correspond to higher average entropy ... and, hence, larger positive curvature")
FIG6_SIGNS = {("mean_entropy", "hessian_positive_curvature"): 1,
              ("mean_entropy", "gradient_norm"): -1, ("mean_entropy", "loss"): -1,
              ("hessian_positive_curvature", "gradient_norm"): -1,
              ("hessian_positive_curvature", "loss"): -1}


def check_signs(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 6: each Spearman correlation of ``FIG6_SIGNS`` has the paper's sign, its bootstrap
    interval (``inside.LEVEL``) excluding 0 on that side. Not reproduced when some interval
    lies entirely on the other side; inconclusive when some straddles 0 (or is missing)."""
    q = inside.quantities(rows)
    signs = ", ".join(f"{a} vs {b} {'>' if s > 0 else '<'} 0" for (a, b), s in FIG6_SIGNS.items())
    expected = (f"Spearman rho with the paper's sign, its {inside.LEVEL:.0%} bootstrap interval "
                f"excluding 0: {signs}")
    measured: dict[str, Any] = {"inits": q.get("inits")}
    sides = []
    for (a, b), sign in FIG6_SIGNS.items():
        interval = q.get(f"interval_{a}_vs_{b}")
        measured[f"{a}_vs_{b}"] = {"rho": q.get(f"spearman_{a}_vs_{b}"),
                                   "p_value": q.get(f"p_{a}_vs_{b}"), "interval": interval}
        flipped = None if interval is None else sorted(sign * v for v in interval)
        sides.append(inside.against(flipped, 0.0))
    if "outside" in sides:
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(REPRODUCED if set(sides) == {"inside"} else INCONCLUSIVE, measured, expected)


STUDY = Study(
    name="icml/many-inits", paper=ICML, reproduces="Fig. 6",
    title="entropy, gradient norm, positive curvature and loss of many Kaiming initialisations",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, done={"init": ("seed",)},
    chunks=batched(lambda config: config.seeds_per_chunk,
                   group=lambda config, point: point["seed"] // config.seeds_per_chunk),
    growable=("n_inits",), legacy={"match": {"study": "fig6"}},
    claims=(Claim("signs", "Fig. 6; Sec. 4",
                  "Across Kaiming initializations, higher mean softmax entropy goes with higher "
                  "positive curvature, a smaller gradient norm and a lower initial loss, and "
                  "higher positive curvature with a smaller gradient norm and a lower loss.",
                  check_signs),),
    doc=__doc__)
