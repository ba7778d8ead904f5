"""Training restricted to random low-dimensional hyperplanes and hyperspheres (Fort & Scherlis,
Sec. 2.1, Fig. 2), with a sparse basis R that is never a dense P x d matrix.

* :class:`SparseBasis` — R in COO form (``rows``, ``cols``, ``values``; P and d static), drawn by
  :func:`sparse_basis` from the distribution of :func:`gzone.subspace.sparse_basis` (density
  1/√P, random signs, unit columns). Entries are stored sorted by row: R θ̂ and Rᵀ v are a gather
  and a ``jax.ops.segment_sum`` (measured on CPU at P = 266,610, d = 10,000: 21 / 15 ms, faster
  than column order and 5-7x faster than ``jax.experimental.sparse.BCOO``). The random number of
  non-zeros is padded with zero entries to :func:`nnz_capacity` (P, d), so all draws at one
  (P, d) share array shapes: the trainer compiles once per d, not once per (d, seed). A dense
  (P, d) array (e.g. :func:`gzone.subspace.orthonormal_basis`) is accepted wherever a basis is
  (:func:`apply_basis`).
* The diagonal metric M of Sec. 2.1 (each weight matrix on its own initialisation shell, Sec.
  2.2) is :func:`gzone.subspace.layer_metric`.
* :func:`hyperplane_point`, :func:`hypersphere_point` — the surfaces, scaled to radius factor s.
* :func:`train_hypersurface` — Adam on θ̂ ∈ R^d for a grid of radii, one vmapped program.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gzone import objective, subspace

SURFACES = ("hyperplane", "hypersphere")
HISTORY_FIELDS = ("epoch", "loss", "train_accuracy", "test_accuracy", "radius")
#: samples per chunk of the full-training-set (and test-set) evaluations at each log
EVAL_CHUNK = 1024
_IN_BOUNDS = jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS  # indices are checked on construction


@functools.partial(jax.tree_util.register_dataclass, data_fields=["rows", "cols", "values"],
                   meta_fields=["num_params", "dim"])
@dataclasses.dataclass(frozen=True)
class SparseBasis:
    """R (P, d) in COO form, entries sorted by row: R[rows[i], cols[i]] = values[i], summed over
    i. P and d are static pytree metadata, so a basis is an ordinary (jit / vmap) argument; the
    number of stored entries is an array shape. :func:`sparse_basis` pads it to
    :func:`nnz_capacity` with zero-valued entries, which add exactly 0 to R θ̂ and Rᵀ v for finite
    θ̂ and v."""

    rows: jax.Array  # (nnz,) int32, in [0, P)
    cols: jax.Array  # (nnz,) int32, in [0, d)
    values: jax.Array  # (nnz,) float
    num_params: int
    dim: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_params, self.dim)

    @property
    def nnz(self) -> int:
        """The stored entries with a non-zero value (the basis's own entries, padding excluded;
        a host round trip)."""
        return int(np.count_nonzero(np.asarray(self.values)))


Basis = SparseBasis | jax.Array


def _check_float_dtype(dtype: Any) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(f"dtype={dtype} needs 64-bit mode, which is off: call "
                         "gzone.enable_float64() first (or set JAX_ENABLE_X64=1)")
    return dtype


#: :func:`nnz_capacity` is exceeded by a draw of :func:`sparse_basis` with at most this probability
OVERFLOW_PROBABILITY = 1e-12


def nnz_capacity(num_params: int, dim: int) -> int:
    """The padded number of entries of :func:`sparse_basis` (P, d): a function of (P, d) only.

    The draw's count is Σ_j max(k_j, 1) ≤ X + d with X = Σ_j k_j ~ Binomial(P d, q), q = 1/√P
    (Fort & Scherlis Sec. 2.1), mean μ = d √P. Bernstein's inequality with Var X ≤ μ gives
    Pr(X ≥ μ + t) ≤ exp(−t² / (2(μ + t/3))) = δ for t = L/3 + √(L²/9 + 2 L μ), L = ln(1/δ),
    δ = :data:`OVERFLOW_PROBABILITY`; the capacity is ⌈μ + t⌉ + d, capped at the hard bound P d.
    Its overhead over μ is 11% at P = 266,610, d = 10 and 0.5% at d = 10,000."""
    subspace._check_dims(num_params, dim)
    mean = dim * math.sqrt(num_params)
    log = -math.log(OVERFLOW_PROBABILITY)
    margin = log / 3 + math.sqrt(log**2 / 9 + 2 * log * mean)
    return min(num_params * dim, math.ceil(mean + margin) + dim)


def _pad(num_params: int, dim: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
         capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries and ``capacity − nnz`` padding entries of value 0, sorted by row (then column).
    Padding i sits at row ⌊i P / pad⌋, column i mod d: spread out, so no row or column gathers
    them all (one hot spot of a GPU scatter-add). A clear error, never a dropped entry, if nnz
    exceeds ``capacity``."""
    pad = capacity - rows.size
    if pad < 0:
        raise ValueError(f"the sparse basis drew {rows.size} non-zeros, more than its capacity "
                         f"{capacity} (probability < {OVERFLOW_PROBABILITY:g}); draw it with "
                         "another key")
    index = np.arange(pad)
    rows = np.concatenate([rows, index * num_params // max(pad, 1)])
    cols = np.concatenate([cols, index % dim])
    values = np.concatenate([values, np.zeros(pad, values.dtype)])
    order = np.lexsort((cols, rows))  # row-major: the faster layout for R θ̂ (module docstring)
    return rows[order], cols[order], values[order]


def sparse_basis(key: jax.Array, num_params: int, dim: int,
                 dtype: Any = jnp.float32) -> SparseBasis:
    """Sparse ±1/√k basis (Fort & Scherlis Sec. 2.1): the distribution of
    :func:`gzone.subspace.sparse_basis` drawn column by column — k_j ~ Binomial(P, 1/√P) non-zeros
    (an empty column gets one) at k_j distinct uniformly random rows, random signs, value
    ±1/√k_j (unit columns) — so memory is O(nnz), never O(P d). NumPy draws, seeded from ``key``.

    The stored arrays have :func:`nnz_capacity` (P, d) entries whatever the key: the draw's
    entries and zero-valued padding entries (spread over rows and columns), which change no
    product. One compiled program thus serves every seed at a given (P, d); different d still
    compile separately (θ̂ ∈ R^d and the capacity are shapes)."""
    subspace._check_dims(num_params, dim)
    dtype = _check_float_dtype(dtype)
    rng = np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)))
    counts = np.maximum(rng.binomial(num_params, 1.0 / math.sqrt(num_params), size=dim), 1)
    rows = np.concatenate([rng.choice(num_params, k, replace=False) for k in counts])
    cols = np.repeat(np.arange(dim), counts)
    signs = np.where(rng.integers(0, 2, size=rows.size) == 1, 1.0, -1.0)
    values = signs / np.sqrt(np.repeat(counts, counts).astype(np.float64))
    rows, cols, values = _pad(num_params, dim, rows, cols, values, nnz_capacity(num_params, dim))
    return SparseBasis(jnp.asarray(rows.astype(np.int32)), jnp.asarray(cols.astype(np.int32)),
                       jnp.asarray(values.astype(dtype)), int(num_params), int(dim))


def to_dense(basis: SparseBasis) -> jax.Array:
    """R as a dense (P, d) array (tests and small P only)."""
    dense = jnp.zeros(basis.shape, basis.values.dtype)
    return dense.at[basis.rows, basis.cols].add(basis.values)


def _take(v: jax.Array, indices: jax.Array) -> jax.Array:
    """v[indices] for non-negative in-range indices: a bare ``lax.gather``. (``v[indices]`` and
    ``.at[].get`` first wrap negative indices, a select over all nnz indices that reverse mode
    materialises: the backward of :func:`project` took 59 instead of 17 ms at nnz = 5 M.)"""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0,),
                                          start_index_map=(0,))
    return jax.lax.gather(v, indices[:, None], dims, (1,), mode=_IN_BOUNDS)


def project(basis: SparseBasis, theta_hat: jax.Array) -> jax.Array:
    """R θ̂ (P,) in θ̂'s dtype: gather θ̂[cols], scale, ``segment_sum`` over rows. Linear, so its
    derivatives are exact; its transpose (the reverse-mode rule) is :func:`project_transpose`."""
    values = basis.values.astype(theta_hat.dtype)
    return jax.ops.segment_sum(values * _take(theta_hat, basis.cols), basis.rows, basis.num_params,
                               mode=_IN_BOUNDS)


def project_transpose(basis: SparseBasis, v: jax.Array) -> jax.Array:
    """Rᵀ v (d,) in v's dtype: gather v[rows], scale, ``segment_sum`` over columns."""
    values = basis.values.astype(v.dtype)
    return jax.ops.segment_sum(values * _take(v, basis.rows), basis.cols, basis.dim,
                               mode=_IN_BOUNDS)


def apply_basis(basis: Basis, theta_hat: jax.Array) -> jax.Array:
    """R θ̂ (P,) in θ̂'s dtype for a :class:`SparseBasis` or a dense (P, d) array."""
    if isinstance(basis, SparseBasis):
        return project(basis, theta_hat)
    return basis.astype(theta_hat.dtype) @ theta_hat


def apply_basis_transpose(basis: Basis, v: jax.Array) -> jax.Array:
    """Rᵀ v (d,) in v's dtype for a :class:`SparseBasis` or a dense (P, d) array."""
    if isinstance(basis, SparseBasis):
        return project_transpose(basis, v)
    return v @ basis.astype(v.dtype)


# ----------------------------------------------------------------------------- surfaces


def hyperplane_point(origin: jax.Array, basis: Basis, metric: jax.Array, theta_hat: jax.Array,
                     scale: float | jax.Array) -> jax.Array:
    """s·(θ0 + M R θ̂) (Sec. 2.1): the hyperplane through θ0 scaled by the radius factor s. The
    whole surface, directions included, is scaled, so each weight matrix stays on its own
    (scaled) initialisation shell (Sec. 2.2) and θ̂ = 0 is s·θ0."""
    return scale * (origin + metric * apply_basis(basis, theta_hat))


def hypersphere_point(origin: jax.Array, basis: Basis, metric: jax.Array, theta_hat: jax.Array,
                      scale: float | jax.Array) -> jax.Array:
    """s·‖θ0‖·u/‖u‖ with u = θ0 + M R θ̂ (Sec. 2.1, Fig. 2): the hyperplane projected radially onto
    the sphere of radius s·‖θ0‖ through s·θ0 (exactly on it for every θ̂). As for
    :func:`hyperplane_point`, the radius factor s scales the whole surface."""
    u = origin + metric * apply_basis(basis, theta_hat)
    return (scale * jnp.linalg.norm(origin) / jnp.linalg.norm(u)) * u


def surface_point(surface: str, origin: jax.Array, basis: Basis, metric: jax.Array,
                  theta_hat: jax.Array, scale: float | jax.Array) -> jax.Array:
    """The point θ̂ of ``surface`` (one of :data:`SURFACES`)."""
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}; choose one of {', '.join(SURFACES)}")
    fn = hyperplane_point if surface == "hyperplane" else hypersphere_point
    return fn(origin, basis, metric, theta_hat, scale)


def _safe_norm(v: jax.Array) -> jax.Array:
    """‖v‖ without overflowing the squares (radius 1e31 in float32 is finite)."""
    m = jnp.max(jnp.abs(v))
    return jnp.where(m > 0, m * jnp.linalg.norm(v / jnp.where(m > 0, m, 1)), 0)


# ----------------------------------------------------------------------------- training


class HypersurfaceResult(NamedTuple):
    """θ̂ (G, d) at the end (or at the last finite step of a diverged run); the history, each of
    :data:`HISTORY_FIELDS` a (G, logs) numpy array, NaN only where a run had already diverged (not
    measured) and in ``test_accuracy`` without a test set; ``diverged_at`` (G,): −1 if never, else
    the epoch (1-based; 0: already at θ̂ = 0) in which the loss or θ̂ stopped being finite — the
    logs at epochs ≥ it are NaN."""

    theta_hat: jax.Array
    history: dict[str, np.ndarray]
    diverged_at: np.ndarray


def _minibatch_loss(apply_fn, surface, params0, basis, metric, theta_hat, scale, x, y, t):
    origin, unravel = ravel_pytree(params0)
    point = surface_point(surface, origin, basis, metric, theta_hat, scale)
    return objective.cross_entropy(apply_fn(unravel(point), x), y, t)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _epoch(apply_fn, surface, batch_size, carry, epoch, key, params0, basis, metric, scales, lr,
           temperature, x, y):
    """One epoch of Adam on θ̂ for all G runs (vmapped): one shared permutation from
    ``fold_in(key, epoch)``, the last incomplete minibatch dropped, the steps in one ``scan``."""
    steps = x.shape[0] // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), x.shape[0])
    opt = optax.adam(lr)

    def one(theta_hat, state, flag, scale, xb, yb):
        loss, grad = jax.value_and_grad(_minibatch_loss, argnums=5)(
            apply_fn, surface, params0, basis, metric, theta_hat, scale, xb, yb, temperature)
        updates, new_state = opt.update(grad, state, theta_hat)
        new = optax.apply_updates(theta_hat, updates)
        bad = ~jnp.isfinite(loss) | ~jnp.all(jnp.isfinite(grad)) | ~jnp.all(jnp.isfinite(new))
        flag = jnp.where((flag < 0) & bad, epoch + 1, flag)
        keep = flag >= 0
        pick = functools.partial(jax.tree_util.tree_map, lambda old, nw: jnp.where(keep, old, nw))
        return pick(theta_hat, new), pick(state, new_state), flag

    def body(c, idx):
        return jax.vmap(one, in_axes=(0, 0, 0, 0, None, None))(*c, scales, x[idx], y[idx]), None

    return jax.lax.scan(body, carry, perm[: steps * batch_size].reshape(steps, batch_size))[0]


def _chunks(x: Any, y: Any, size: int, dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(xs (C, c, ...), ys (C, c), real (C, c)): the samples in chunks, the last zero-padded (laid
    out once, on the host)."""
    x, y = np.asarray(x).astype(dtype, copy=False), np.asarray(y)
    n = x.shape[0]
    c = min(size, n)
    pad = -n % c
    xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    ys = np.concatenate([y, np.zeros((pad,), y.dtype)])
    real = np.arange(n + pad) < n
    return (jnp.asarray(xs.reshape(-1, c, *x.shape[1:])), jnp.asarray(ys.reshape(-1, c)),
            jnp.asarray(real.reshape(-1, c)))


def _sums(apply_fn, params, chunks, temperature):
    """(Σ −log p_y, number correct) over the real samples of ``chunks``."""
    def body(acc, chunk):
        xc, yc, real = chunk
        logp = objective.log_probs(apply_fn(params, xc), temperature)
        nll = -jnp.take_along_axis(logp, yc[:, None], axis=-1)[:, 0]
        correct = jnp.sum(real & (jnp.argmax(logp, -1) == yc), dtype=jnp.int32)
        return (acc[0] + jnp.sum(jnp.where(real, nll, 0)), acc[1] + correct), None

    zero = (jnp.zeros((), ravel_pytree(params)[0].dtype), jnp.zeros((), jnp.int32))
    return jax.lax.scan(body, zero, chunks)[0]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _log(apply_fn, surface, theta_hat, params0, basis, metric, scales, temperature, train, test):
    """Full-training-set loss and accuracy, test accuracy (NaN without a test set) and ‖θ‖ of every
    run (vmapped)."""
    origin, unravel = ravel_pytree(params0)
    dtype = origin.dtype

    def one(th, scale):
        point = surface_point(surface, origin, basis, metric, th, scale)
        params = unravel(point)
        total, correct = _sums(apply_fn, params, train, temperature)
        n = jnp.sum(train[2]).astype(dtype)
        if test is None:
            test_acc = jnp.array(jnp.nan, dtype)
        else:
            correct_test = _sums(apply_fn, params, test, temperature)[1]
            test_acc = correct_test.astype(dtype) / jnp.sum(test[2])
        return {"loss": total / n, "train_accuracy": correct.astype(dtype) / n,
                "test_accuracy": test_acc, "radius": _safe_norm(point)}

    return jax.vmap(one)(theta_hat, scales)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check(surface, params0, basis, metric, x, y, scales, lr, epochs, batch_size, log_every,
           temperature, x_test, y_test) -> None:
    """One-line errors naming the parameter and the fix."""
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}; choose one of {', '.join(SURFACES)}")
    for name, value in (("lr", lr), ("temperature", temperature)):
        if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    _positive_int("epochs", epochs)
    if log_every is not None:
        _positive_int("log_every", log_every)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; pass matching arrays")
    if (x_test is None) != (y_test is None) or (x_test is not None and len(x_test) != len(y_test)):
        raise ValueError("x_test and y_test must be given together (or neither), equally long")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or not 1 <= batch_size <= x.shape[0]:
        raise ValueError(f"batch_size must be an integer between 1 and the number of training "
                         f"samples N={x.shape[0]}, got {batch_size!r}")
    num = ravel_pytree(params0)[0].size
    if len(basis.shape) != 2 or basis.shape[0] != num:
        raise ValueError(f"basis has shape {tuple(basis.shape)} but params0 has P={num} "
                         f"parameters; build it with num_params={num}")
    if isinstance(basis, SparseBasis) and basis.rows.size:
        rows, cols = np.asarray(basis.rows), np.asarray(basis.cols)
        if rows.min() < 0 or rows.max() >= num or cols.min() < 0 or cols.max() >= basis.dim:
            raise ValueError("basis has indices out of range; build it with sparse_basis")
    if metric is not None and tuple(metric.shape) != (num,):
        raise ValueError(f"metric must have shape (P,)=({num},), got {tuple(metric.shape)}")
    s = np.asarray(scales, np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"scales must be a non-empty 1-D array of finite numbers > 0, "
                         f"got {scales!r}")


def train_hypersurface(
    apply_fn: Callable, params0: Any, basis: Basis, x: jax.Array, y: jax.Array, *,
    surface: str, scales: jax.Array, lr: float, epochs: int, batch_size: int, key: jax.Array,
    metric: jax.Array | None = None, x_test: jax.Array | None = None,
    y_test: jax.Array | None = None, log_every: int | None = None, temperature: float = 1.0,
) -> HypersurfaceResult:
    """Adam (``optax.adam(lr)``) on θ̂ ∈ R^d, from θ̂ = 0, on the point θ(θ̂) of ``surface``
    (:func:`surface_point`) for each radius factor s in ``scales`` (G,) — Fort & Scherlis Sec. 2.1,
    Fig. 2 — minimising the temperature cross-entropy on minibatches of ``batch_size`` (one
    permutation per epoch from ``fold_in(key, epoch)``, shared by the G runs; the last incomplete
    minibatch dropped). The G runs are one program vmapped over G; data, origin θ0 =
    ``ravel_pytree(params0)``, ``metric`` (default :func:`gzone.subspace.layer_metric` ``(params0, "xavier")``)
    and ``basis`` (:class:`SparseBasis` or dense (P, d)) are its arguments. Computation is in the
    parameters' dtype (data, metric, scales and θ̂ are cast to it; the basis follows θ̂).

    Logs at epoch 0 and every ``log_every`` epochs (default 1) and at the end: full-training-set
    loss and accuracy, test accuracy (NaN without a test set) and the radius ‖θ‖. A run whose
    minibatch loss, gradient or θ̂ becomes non-finite (or whose logged loss or radius is not
    finite) is frozen at its last finite θ̂ and flagged in ``diverged_at``
    (:class:`HypersurfaceResult`)."""
    _check(surface, params0, basis, metric, x, y, scales, lr, epochs, batch_size, log_every,
           temperature, x_test, y_test)
    dtype = ravel_pytree(params0)[0].dtype

    def host(a):  # cast on the host: no eager device programs to compile
        return jnp.asarray(np.asarray(a).astype(dtype, copy=False))

    params0 = jax.tree_util.tree_map(host, params0)
    metric = subspace.layer_metric(params0, "xavier") if metric is None else host(metric)
    scales = host(scales)
    num, dim = scales.shape[0], basis.shape[1]
    train = _chunks(x, y, EVAL_CHUNK, dtype)
    test = None if x_test is None else _chunks(x_test, y_test, EVAL_CHUNK, dtype)
    x, y = host(x), jnp.asarray(y)
    lr_, temp = host(lr), host(temperature)
    state = jax.eval_shape(optax.adam(1.0).init, jax.ShapeDtypeStruct((dim,), dtype))
    state = jax.tree_util.tree_map(lambda a: jnp.asarray(np.zeros((num, *a.shape), a.dtype)), state)
    carry = (jnp.asarray(np.zeros((num, dim), dtype)), state,
             jnp.asarray(np.full(num, -1, np.int32)))
    every = 1 if log_every is None else log_every
    log_epochs = sorted({*range(0, epochs, every), epochs})
    rows: list[dict[str, np.ndarray]] = []
    done = 0
    for target in log_epochs:
        flags = np.asarray(carry[2])
        if (flags >= 0).all():  # every run stopped: nothing left to train or measure
            rows.append({f: np.full(num, np.nan) for f in HISTORY_FIELDS[1:]})
            continue
        for e in range(done, target):
            carry = _epoch(apply_fn, surface, int(batch_size), carry, np.int32(e), key, params0,
                           basis, metric, scales, lr_, temp, x, y)
        done = target
        row = {f: np.asarray(v, np.float64) for f, v in
               _log(apply_fn, surface, carry[0], params0, basis, metric, scales, temp, train,
                    test).items()}
        flags = np.asarray(carry[2]).copy()
        late = (flags < 0) & ~(np.isfinite(row["loss"]) & np.isfinite(row["radius"]))
        flags[late] = target
        carry = (carry[0], carry[1], jnp.asarray(flags))
        rows.append({f: np.where(flags >= 0, np.nan, v) for f, v in row.items()})
    history = {f: np.stack([r[f] for r in rows], axis=1) for f in HISTORY_FIELDS[1:]}
    history["epoch"] = np.tile(np.asarray(log_epochs, np.int64), (num, 1))
    return HypersurfaceResult(carry[0], history, np.asarray(carry[2]).astype(np.int64))
