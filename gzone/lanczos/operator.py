"""The operator layer of :mod:`gzone.lanczos`: a symmetric operator as a matvec
``matvec(v, *params)`` or an :class:`Operator` binding one to its operands (matfree style: one
compiled program per matvec *function*, new operand values compile nothing), the dtype an entry
point computes in, products with one vector or a block of vectors, and probe vectors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Matvec = Callable[..., Array]  # matvec(v, *params) -> A v

DRIVERS = ("auto", "host", "fori")
PROBES = ("rademacher", "gaussian")
#: the precision of every matrix product of this package (and of the matvecs it calls): full
#: float32 on every backend (:mod:`gzone.precision`)
PRECISION = "highest"


@jax.tree_util.register_pytree_node_class
class Operator:
    """A matvec bound to its operands: ``op(v) = matvec(v, *operands)``.

    Every function of this module unpacks it, so the compiled programs are keyed on ``matvec``
    alone and one compilation serves operators with new operand *values* (another α, T or seed).
    A pytree (``matvec`` static, ``operands`` leaves), so it can also be passed through ``jax.jit``.
    """

    def __init__(self, matvec: Matvec, operands: tuple = ()) -> None:
        self.matvec = matvec
        self.operands = tuple(operands)

    def __call__(self, v: Array) -> Array:
        return self.matvec(v, *self.operands)

    def tree_flatten(self) -> tuple[tuple, Matvec]:
        return self.operands, self.matvec

    @classmethod
    def tree_unflatten(cls, matvec: Matvec, operands: tuple) -> Operator:
        return cls(matvec, operands)

    def __repr__(self) -> str:
        name = getattr(self.matvec, "__name__", type(self.matvec).__name__)
        return f"Operator({name}, {len(self.operands)} operands)"


def unpack(matvec: Matvec | Operator, params: tuple = ()) -> tuple[Matvec, tuple]:
    """(function, operands): an :class:`Operator`'s matvec and operands followed by ``params``,
    or a plain matvec with ``params`` unchanged."""
    if isinstance(matvec, Operator):
        return matvec.matvec, (*matvec.operands, *params)
    return matvec, tuple(params)


def operator_dtype(matvec: Matvec | Operator, dim: int, *params: Any) -> jnp.dtype:
    """The dtype of ``matvec(v, *params)`` for a float32 ``v`` of length ``dim``, by
    ``jax.eval_shape`` (nothing is computed): float64 for an operator built on float64 arrays."""
    fn, params = unpack(matvec, params)
    out = jax.eval_shape(lambda v, *p: fn(v, *p), jax.ShapeDtypeStruct((dim,), jnp.float32), *params)
    dtype = jnp.dtype(out.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"the operator returns {dtype} vectors; a floating dtype is needed")
    return dtype


def working_dtype(
    matvec: Matvec | Operator, dim: int, params: tuple, dtype: Any = None, v0: Array | None = None
) -> jnp.dtype:
    """The dtype an entry point computes in: ``dtype`` when given (honoured as given, also when
    lower than the operator's), else ``v0``'s dtype, else the operator's output dtype."""
    if dtype is not None:
        return check_dtype(dtype, "dtype")
    if v0 is not None and jnp.issubdtype(jnp.result_type(v0), jnp.floating):
        return check_dtype(jnp.result_type(v0), "v0 dtype")
    return check_dtype(operator_dtype(matvec, dim, *params), "the operator's dtype")


def check_dtype(dtype: Any, what: str) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{what} must be a floating dtype, got {dtype}")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:  # float64 while 64-bit mode is off
        raise ValueError(
            f"{what}={dtype} needs 64-bit mode, which is off: call "
            "jax.config.update('jax_enable_x64', True) at start-up (or set JAX_ENABLE_X64=1)"
        )
    return dtype


def check_precision(precision: str) -> str:
    """``precision`` if JAX knows it as a matmul precision (``"highest"``, ``"default"``,
    ``"tensorfloat32"`` ...), else a ValueError naming the choices."""
    choices = ("highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default",
               "bfloat16", "fastest")
    if precision not in choices:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(choices)}")
    return precision


def resolve_driver(driver: str) -> str:
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose one of {', '.join(DRIVERS)}")
    if driver == "auto":
        return "host" if jax.default_backend() == "cpu" else "fori"
    return driver


def check_positive(name: str, value: Any) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is a positive integer."""
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def apply_block(
    matvec: Matvec | Operator, vectors: Array, *params: Any, batch_size: int | None = None
) -> Array:
    """Rows of ``A Vᵀ`` for a (n, dim) block V via ``jax.vmap(matvec)``, in chunks of batch_size
    (``batch_size=1``: one product at a time by the program :func:`apply` compiles, so a block
    costs no compilation of its own)."""
    matvec, params = unpack(matvec, params)
    n = vectors.shape[0]
    if batch_size == 1:
        return jnp.stack([_apply_one(matvec, v, *params) for v in vectors])
    if batch_size is None or batch_size >= n:
        return _apply_chunk(matvec, vectors, *params)
    batch_size = check_positive("batch_size", batch_size)
    padded = jnp.pad(vectors, ((0, -n % batch_size), (0, 0)))  # one compiled shape for all chunks
    chunks = [
        _apply_chunk(matvec, padded[i : i + batch_size], *params)
        for i in range(0, padded.shape[0], batch_size)
    ]
    return jnp.concatenate(chunks)[:n]


@partial(jax.jit, static_argnums=0)
def _apply_chunk(matvec: Matvec, vectors: Array, *params: Any) -> Array:
    with jax.default_matmul_precision(PRECISION):
        return jax.vmap(lambda v: matvec(v, *params))(vectors)


@partial(jax.jit, static_argnums=0)
def _apply_one(matvec: Matvec, v: Array, *params: Any) -> Array:
    with jax.default_matmul_precision(PRECISION):
        return matvec(v, *params)


def apply(matvec: Matvec | Operator, v: Array, *params: Any) -> Array:
    """A v: one jit-compiled product per (matvec function, shapes), shared by every estimator."""
    matvec, params = unpack(matvec, params)
    return _apply_one(matvec, v, *params)



@partial(jax.jit, static_argnums=(2, 3))
def _probe32(key: Array, i: int, dim: int, kind: str) -> Array:
    key = jax.random.fold_in(key, i)
    if kind == "rademacher":  # jax.random.rademacher draws in float64 in 64-bit mode (other
        # signs): a float32 probability gives the same signs in both modes
        return jnp.where(jax.random.bernoulli(key, jnp.float32(0.5), (dim,)), 1.0, -1.0).astype(jnp.float32)
    return jax.random.normal(key, (dim,), jnp.float32)


def probe_vector(key: Array, i: int, dim: int, dtype: Any, kind: str = "rademacher") -> Array:
    """Probe vector number i (Rademacher ±1 or standard Gaussian), drawn from ``fold_in(key, i)``
    in float32 and cast to ``dtype``: the same numbers in every dtype, and one compilation per
    (dim, kind) whatever the number of probes or the dtype."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")
    return _probe32(key, i, dim, kind).astype(dtype)
