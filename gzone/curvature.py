"""Loss Hessian H and its Gauss–Newton terms, matrix-free and projected onto subspaces.

ICML paper, Eq. (4): for the full-batch loss (1/N) Σ_μ ℓ(f(θ, x_μ), y_μ),

    H = G-term + H-term,   G-term = (1/N) Σ_μ J_μᵀ M_μ J_μ,   H-term = (1/N) Σ_μ Σ_k [∇_z ℓ_μ]_k ∇²z_μk

with J_μ = ∂z_μ/∂θ (K, P), M_μ = (diag p_μ − p_μ p_μᵀ)/T² and ∇_z ℓ_μ = (p_μ − y_μ)/T.

How each is computed (all jit-compiled, data passed as arguments, chunked over samples):

* G-term: logit tangents u = J v (forward mode), then M in the centred form
  Σ_k p_k (u_k − p·u)(v_k − p·v)/T² (see :func:`gzone.objective.centred_quadratic_form`).
* H-term: directly, as the Hessian of Σ_μ stop_gradient(∇_z ℓ_μ)·z_μ — not as H − G, which loses
  all accuracy in float32 once the two nearly cancel (LeNet-5 at α = 100: relative error 2.2 vs 2e-5).
* Projected d×d matrices (Fort & Scherlis: H_d = Rᵀ H R): one vmapped forward-over-reverse pass over
  R's columns gives both the H-term columns and the logit tangents J R; G_d follows from J R almost
  for free, and H_d = G_d + H-term_d.
* Input-layer pass (the default for gzone's models, which declare ``input_layer``): the first layer
  is linear in its weights W and its input x does not depend on θ, so its output along the subspace
  is out(W0) + Σ_i θ̂_i out(R_W,i). The d outputs out(R_W,i) = x·R_W,i come from one large GEMM (or
  convolution) per chunk, and the first layer's share of Rᵀ(H-term)R is the contraction
  ⟨x·R_W,i, ∂δ_j⟩ with the tangents of its output cotangent δ. The generic pass instead forms the
  weight gradient xᵀ∂δ_j (a 784×300 GEMM per column for LeNet-300-100) and projects it with Rᵀ;
  the shortcut removes it (issue #3 benchmark: 2.5 → 0.9·d·U at N = 10,000).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Var
from jax.flatten_util import ravel_pytree

from gzone import lanczos, objective, precision, subspace
from gzone.memory import (  # noqa: F401  (gzone.curvature's names since before gzone.memory)
    DEFAULT_MEMORY_BUDGET,
    DEVICE_MEMORY_SHARE,
    _activation_floats_per_sample,
    auto_chunk_size,
    device_memory_budget,
)

ApplyFn = Callable[[Any, jax.Array], jax.Array]

class ProjectedCurvature(NamedTuple):
    """Subspace-projected curvature RᵀXR (d, d) of the full-batch loss, plus loss and gradient."""

    hessian: jax.Array
    gterm: jax.Array
    hterm: jax.Array
    loss: jax.Array
    gradient_norm: jax.Array  # ‖∇_θ ℓ‖ in full parameter space


# ----------------------------------------------------------------------------- sample chunking


def params_dtype(params: Any) -> jnp.dtype:
    """The dtype of ``ravel_pytree(params)`` (their common type), without concatenating them."""
    return jnp.dtype(jnp.result_type(*[leaf.dtype for leaf in jax.tree_util.tree_leaves(params)]))


def num_params(params: Any) -> int:
    """P, the number of parameters, without concatenating them."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))



def check_chunk_size(chunk_size: int | None) -> None:
    """ValueError unless ``chunk_size`` is None (automatic) or a positive integer."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None (automatic), got {chunk_size!r}")


def padded_chunks(
    x: jax.Array, y: jax.Array | None, chunk_size: int
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """(xs, ys, ws): x (N, ...) and labels y (N,) (or None) padded to a multiple of ``chunk_size``
    and stacked as (C, B, ...), (C, B); weights ws = 1/N, 0 on the padding, so weighted sums over
    all chunks are exact full-batch means whatever the chunking."""
    check_chunk_size(chunk_size)
    n = len(x)
    chunk_size = min(chunk_size, n)
    pad = -n % chunk_size
    weights = jnp.concatenate([jnp.full((n,), 1.0 / n, x.dtype), jnp.zeros((pad,), x.dtype)])
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    if y is not None:
        y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(-1, chunk_size)
    return x.reshape(-1, chunk_size, *x.shape[1:]), y, weights.reshape(-1, chunk_size)


class Batches(NamedTuple):
    """The full batch laid out once: C equal chunks of B samples, x (C, B, ...), integer labels
    y (C, B) and weights w (C, B) = 1/N (0 on the last chunk's padding), so that weighted sums over
    the chunks are exact full-batch means. A pytree: pass it to jitted functions as an argument.
    Every chunked function of gzone (:func:`projected`, :func:`loss_and_gradient`, the operators,
    training) accepts one in place of ``x, y`` and then pads and stacks nothing per call."""

    x: jax.Array
    y: jax.Array
    w: jax.Array

    @property
    def chunk_size(self) -> int:
        return int(self.w.shape[1])


def prepare_batches(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    chunk_size: int | None = None,
    num_tangents: int = 1,
) -> Batches:
    """``x`` (cast to the parameters' dtype) and ``y`` as :class:`Batches`. ``chunk_size=None``:
    as many samples per chunk as fit the memory budget of a pass with ``num_tangents``
    directions (:func:`auto_chunk_size`; d for :func:`projected`, 1 for gradients and matvecs)."""
    check_chunk_size(chunk_size)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    if len(x) == 0:
        raise ValueError("x holds no samples")
    x = jnp.asarray(x, params_dtype(params))
    y = jnp.asarray(y, jnp.int32)
    if chunk_size is None:
        chunk_size = auto_chunk_size(apply_fn, params, x, num_tangents)
    return Batches(*padded_chunks(x, y, chunk_size))


def as_batches(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array | Batches,
    y: jax.Array | None,
    chunk_size: int | None = None,
    num_tangents: int = 1,
) -> Batches:
    """``x`` itself when it is :class:`Batches` (then ``y`` and ``chunk_size`` must be None),
    else :func:`prepare_batches` of ``(x, y)``."""
    if isinstance(x, Batches):
        if y is not None or chunk_size is not None:
            raise ValueError("pass either Batches (with y=None, chunk_size=None) or arrays x, y")
        return x
    if y is None:
        raise ValueError("labels y are needed with an array x (or pass Batches as x)")
    return prepare_batches(apply_fn, params, x, y, chunk_size, num_tangents)


# ----------------------------------------------------------------------------- building blocks


def _weighted_loss(apply_fn, params, x, y, w, temperature):
    return objective.cross_entropy(apply_fn(params, x), y, temperature, w)


def _hterm_gradient_and_logits(apply_fn, params, x, y, w, temperature):
    """(Jᵀc, z) with c = stop_gradient(w ∇_z ℓ): its θ-derivative of the first output is the
    H-term (Eq. 4) and, at θ, Jᵀc is the loss gradient."""
    logits, pullback = jax.vjp(lambda p: apply_fn(p, x), params)
    c = jax.lax.stop_gradient(objective.logit_gradient(logits, y, temperature) * w[:, None])
    return pullback(c)[0], logits


def _gterm_from_tangents(jr_dnk, probs_nk, w, temperature):
    """Σ_μ w_μ (J_μR)ᵀ M_μ (J_μR), (d, d), in the centred form (Eq. 4's G-term)."""
    centred = objective.centre(probs_nk, jr_dnk)
    return jnp.einsum("ank,bnk,nk->ab", centred, centred, probs_nk * w[:, None]) / temperature**2


LINEAR_LAYERS = (nn.Dense, nn.Conv)  # output linear in the layer's parameters, features last


def _without(tree: Any, layer: str) -> Any:
    return {**tree, "params": {k: v for k, v in tree["params"].items() if k != layer}}


@functools.partial(jax.jit, static_argnums=2)
def basis_columns(params: Any, basis: jax.Array, input_layer: str | None = None) -> Any:
    """R (P, d) as a pytree like ``params``, laid out for :func:`projected_chunk`.

    Every leaf is (d, *leaf.shape) — R's i-th column is ``tree_map(lambda r: r[i], columns)`` —
    except the input layer's leaves, which are (*leaf.shape[:-1], d, leaf.shape[-1]): d sits just
    before the output features, so the layer's d basis outputs come out of one GEMM/convolution as
    (..., d, features) without transposes. Done once per projection, not once per chunk.
    """
    leaves = subspace.basis_tree(params, basis)
    columns = jax.tree_util.tree_map(lambda r: jnp.moveaxis(r, -1, 0), leaves)
    if input_layer is not None:
        layer = jax.tree_util.tree_map(lambda r: jnp.moveaxis(r, -1, -2), leaves["params"][input_layer])
        columns = {**columns, "params": {**columns["params"], input_layer: layer}}
    return columns


def _generic_projected_chunk(apply_fn, params, columns, x, y, w, temperature):
    """Forward-over-reverse in parameter space: jvp of (Jᵀc, z) along each column of R, then Rᵀ·."""

    def column(r):
        return jax.jvp(
            lambda p: _hterm_gradient_and_logits(apply_fn, p, x, y, w, temperature), (params,), (r,))

    (grad, logits), (hterm_cols, jr) = jax.vmap(column, out_axes=((None, None), (0, 0)))(columns)
    return _columns_dot(columns, hterm_cols), jr, logits, ravel_pytree(grad)[0]


def _columns_dot(a: Any, b: Any) -> jax.Array | float:
    """AᵀB (d, d) for two pytrees of columns with leading axis d, leaf by leaf (no concatenation)."""
    products = [jnp.tensordot(u, v, axes=(tuple(range(1, u.ndim)),) * 2)
                for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]
    return sum(products) if products else 0.0


def _is_layer_call(context: nn.module.InterceptorContext, layer: str) -> bool:
    """Whether an intercepted call is the top-level layer ``layer`` being applied."""
    return context.module.path == (layer,) and context.method_name == "__call__"


def _layer_calls(apply_fn, params, x, layer) -> tuple[Any, list[tuple]]:
    """(logits, calls): run the model once, recording each call of ``layer`` as
    (unbound module clone, args, kwargs, output)."""
    calls = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if _is_layer_call(context, layer):
            calls.append((context.module.clone(parent=None), args, kwargs, out))
        return out

    with nn.intercept_methods(record):
        logits = apply_fn(params, x)
    return logits, calls


def _input_layer_projected_chunk(apply_fn, params, columns, x, y, w, temperature, input_layer):
    """Forward-over-reverse on (input-layer output a, other parameters θ'), with a = out(W0 + R_W θ̂).

    The input layer's output is linear in its parameters W and its input does not depend on θ, so
    θ̂ ↦ (a, θ') = (out(W0) + Σ_i θ̂_i out(R_W,i), θ'0 + R' θ̂) is affine and
    Rᵀ(H-term)R = Bᵀ ∇²_(a,θ') φ B with B's columns (out(R_W,i), R'_i) and φ = Σ_μ sg(c_μ)·z_μ.
    The d basis outputs out(R_W,i) are one large GEMM/convolution per chunk (the forward tangents
    the generic pass computes column by column), and the input layer's share of Rᵀ(H-term)R becomes
    a contraction ⟨out(R_W,i), ∂δ_j⟩ with the tangents of its output cotangent δ — instead of the
    weight gradient xᵀ∂δ_j per column and a projection with Rᵀ.
    """
    # one call of a Dense/Conv on the data: checked by resolve_input_layer
    [(layer, args, kwargs, out0)] = _layer_calls(apply_fn, params, x, input_layer)[1]
    layer_params, layer_columns = params["params"][input_layer], columns["params"][input_layer]
    basis_out = jax.vmap(lambda v: layer.apply({"params": v}, *args, **kwargs),
                         in_axes=-2, out_axes=-2)(layer_columns)  # (..., d, features)
    rest_params, rest_columns = _without(params, input_layer), _without(columns, input_layer)

    def trunk(a, rest):
        def replace(next_fun, args, kwargs, context):
            return a if _is_layer_call(context, input_layer) else next_fun(*args, **kwargs)

        with nn.intercept_methods(replace):
            return apply_fn({**rest, "params": {**rest["params"], input_layer: layer_params}}, x)

    def gradient_and_logits(a, rest):
        logits, pullback = jax.vjp(trunk, a, rest)
        c = jax.lax.stop_gradient(objective.logit_gradient(logits, y, temperature) * w[:, None])
        return pullback(c), logits

    ((delta, rest_grad), logits), ((delta_tangents, rest_tangents), jr) = jax.vmap(
        lambda b, r: jax.jvp(gradient_and_logits, (out0, rest_params), (b, r)),
        in_axes=(-2, 0), out_axes=((None, None), ((-2, 0), 0)), axis_size=basis_out.shape[-2],
    )(basis_out, rest_columns)
    outer = tuple(range(basis_out.ndim - 2)) + (basis_out.ndim - 1,)  # all axes but d
    hterm = (jnp.tensordot(basis_out, delta_tangents, axes=(outer, outer))
             + _columns_dot(rest_columns, rest_tangents))
    (layer_grad,) = jax.vjp(lambda v: layer.apply({"params": v}, *args, **kwargs), layer_params)[1](delta)
    grad = {**rest_grad, "params": {**rest_grad["params"], input_layer: layer_grad}}
    return hterm, jr, logits, ravel_pytree(grad)[0]


@functools.partial(jax.jit, static_argnums=(0, 7))
def projected_chunk(apply_fn, params, columns, x, y, w, temperature, input_layer=None):
    """One chunk's weighted sums (Rᵀ G R, Rᵀ H-term R, loss, ∇ℓ (P,)) from one vmapped
    forward-over-reverse pass over R's d columns; ``w`` are per-sample weights (1/N, 0 on padding).

    ``columns``: R as :func:`basis_columns` lays it out for the same ``input_layer``.
    ``input_layer`` (a name in ``params["params"]``, or None) selects the faster pass of
    :func:`_input_layer_projected_chunk`, exact when that layer is a Dense/Conv applied to the
    input; None runs the generic pass, valid for any ``apply_fn``.
    """
    with precision.strict():
        if input_layer is None:
            hterm, jr, logits, grad = _generic_projected_chunk(
                apply_fn, params, columns, x, y, w, temperature)
        else:
            hterm, jr, logits, grad = _input_layer_projected_chunk(
                apply_fn, params, columns, x, y, w, temperature, input_layer)
        gterm = _gterm_from_tangents(jr, objective.probs(logits, temperature), w, temperature)
        loss = objective.cross_entropy(logits, y, temperature, w)
    return gterm, hterm, loss, grad


def resolve_input_layer(
    apply_fn: ApplyFn, params: Any, x: jax.Array, input_layer: str | None = "auto"
) -> str | None:
    """The input layer whose shortcut :func:`projected` may take, or None for the generic pass.

    ``"auto"`` reads ``apply_fn.__self__.input_layer`` (gzone's models declare it; other
    functions get None). A layer name is checked: it must be a top-level entry of
    ``params["params"]``, a ``flax.linen`` Dense or Conv called exactly once, on an input that does
    not depend on the parameters (checked on the traced program, once per shapes).
    """
    if input_layer == "auto":
        input_layer = getattr(getattr(apply_fn, "__self__", None), "input_layer", None)
    if input_layer is None:
        return None
    layers = params.get("params", {}) if isinstance(params, Mapping) else {}
    if input_layer not in layers:
        raise ValueError(
            f"input_layer {input_layer!r} is not among the parameters' top-level layers "
            f"{sorted(layers)}; name one of them or pass input_layer=None")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    signature = tuple((tuple(leaf.shape), jnp.dtype(leaf.dtype)) for leaf in leaves)
    _check_input_layer(apply_fn, input_layer, treedef, signature, tuple(x.shape[1:]), jnp.dtype(x.dtype))
    return input_layer


@functools.lru_cache(maxsize=64)
def _check_input_layer(apply_fn, input_layer, treedef, signature, sample_shape, x_dtype) -> None:
    calls = []

    def layer_inputs(params, x):
        calls[:] = _layer_calls(apply_fn, params, x, input_layer)[1]
        return jax.tree_util.tree_leaves([(args, kwargs) for _, args, kwargs, _ in calls])

    params = jax.tree_util.tree_unflatten(
        treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in signature])
    closed = jax.make_jaxpr(layer_inputs)(params, jax.ShapeDtypeStruct((1, *sample_shape), x_dtype))
    for module, *_ in calls:
        if not isinstance(module, LINEAR_LAYERS):
            raise ValueError(
                f"input_layer {input_layer!r} is a {type(module).__name__}, not a Dense/Conv layer "
                "linear in its parameters; pass input_layer=None")
    if len(calls) != 1:
        raise ValueError(f"input_layer {input_layer!r} is called {len(calls)} times by the model, "
                         "expected once, on the input; pass input_layer=None")
    if any(_depends_on_inputs(closed.jaxpr, len(signature))):
        raise ValueError(f"input_layer {input_layer!r} is not the input layer: its input depends on "
                         "the parameters; name the layer applied to the data or pass input_layer=None")


def _depends_on_inputs(jaxpr, num_inputs: int) -> list[bool]:
    """For each output of ``jaxpr``: whether it depends on any of its first ``num_inputs`` inputs."""
    dependent = set(jaxpr.invars[:num_inputs])
    for eqn in jaxpr.eqns:
        if any(isinstance(v, Var) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return [isinstance(v, Var) and v in dependent for v in jaxpr.outvars]


def _symmetrised(a: jax.Array) -> jax.Array:
    return (a + a.T) / 2


def projected(
    apply_fn: ApplyFn,
    params: Any,
    basis: jax.Array,
    x: jax.Array | Batches,
    y: jax.Array | None = None,
    temperature: float | jax.Array = 1.0,
    *,
    chunk_size: int | None = None,
    input_layer: str | None = "auto",
) -> ProjectedCurvature:
    """Rᵀ H R, Rᵀ G R and Rᵀ H-term R (d, d) of the full-batch loss at ``params``.

    ``basis`` is (P, d), rows in the order of ``ravel_pytree(params)``; ``x`` (N, ...) and integer
    labels ``y`` (N,), or :class:`Batches` prepared once (``prepare_batches(..., num_tangents=d)``
    keeps a chunk within the memory budget of this pass). Samples are processed in chunks of
    ``chunk_size`` (default: as many as fit a 2 GiB budget), each one jit-compiled pass; results
    are exact sums, independent of the chunking. Vmappable over leading axes of ``params`` and
    ``basis`` (several seeds at once).

    ``input_layer``: with gzone's models (``"auto"``) the pass runs in subspace coordinates and
    replaces the input layer's per-column weight gradients by one GEMM/convolution of the input
    with R's input-layer rows (:func:`projected_chunk`); ``None`` forces the generic pass.
    """
    size = num_params(params)
    if basis.ndim != 2 or basis.shape[0] != size:
        raise ValueError(f"basis must have shape (P, d) with P={size} parameters, got {basis.shape}")
    if basis.shape[1] > size:
        raise ValueError(f"subspace dimension d={basis.shape[1]} exceeds P={size}")
    batches = as_batches(apply_fn, params, x, y, chunk_size, basis.shape[1])
    temperature = jnp.asarray(temperature, params_dtype(params))
    input_layer = resolve_input_layer(apply_fn, params, batches.x[0], input_layer)
    columns = basis_columns(params, basis, input_layer)
    gterm = hterm = loss = grad = 0.0
    for xc, yc, wc in zip(*batches):
        g, h, lo, gr = projected_chunk(apply_fn, params, columns, xc, yc, wc, temperature, input_layer)
        gterm, hterm, loss, grad = gterm + g, hterm + h, loss + lo, grad + gr
    gterm, hterm = _symmetrised(gterm), _symmetrised(hterm)
    return ProjectedCurvature(gterm + hterm, gterm, hterm, loss, jnp.linalg.norm(grad))


# ----------------------------------------------------------------------------- matrix-free operators


@functools.partial(jax.jit, static_argnums=0)
def hessian_vp_chunk(apply_fn, params, v, x, y, w, temperature):
    """One chunk's weighted H v (P,): jvp of the gradient (Eq. 4, both terms)."""
    unravel = ravel_pytree(params)[1]
    with precision.strict():
        grad_fn = jax.grad(lambda p: _weighted_loss(apply_fn, p, x, y, w, temperature))
        return ravel_pytree(jax.jvp(grad_fn, (params,), (unravel(v),))[1])[0]


@functools.partial(jax.jit, static_argnums=0)
def gterm_vp_chunk(apply_fn, params, v, x, y, w, temperature):
    """One chunk's weighted G v (P,): linearize → centred M → transpose (Eq. 4's G-term)."""
    unravel = ravel_pytree(params)[1]
    with precision.strict():
        logits, jvp_fn = jax.linearize(lambda p: apply_fn(p, x), params)
        u = jvp_fn(unravel(v))
        p = objective.probs(logits, temperature)
        mu = p * objective.centre(p, u) * w[:, None] / temperature**2
        (out,) = jax.linear_transpose(jvp_fn, params)(mu)
        return ravel_pytree(out)[0]


@functools.partial(jax.jit, static_argnums=0)
def hterm_vp_chunk(apply_fn, params, v, x, y, w, temperature):
    """One chunk's weighted H-term v (P,), directly: jvp of Jᵀ stop_gradient(w ∇_z ℓ) (Eq. 4)."""
    unravel = ravel_pytree(params)[1]
    with precision.strict():
        tangent = jax.jvp(
            lambda p: _hterm_gradient_and_logits(apply_fn, p, x, y, w, temperature)[0],
            (params,),
            (unravel(v),),
        )[1]
        return ravel_pytree(tangent)[0]


TERMS = ("hessian", "gterm", "hterm")
_CHUNK_PRODUCTS = {"hessian": hessian_vp_chunk, "gterm": gterm_vp_chunk, "hterm": hterm_vp_chunk}


def _check_term(term: str) -> None:
    if term not in _CHUNK_PRODUCTS:
        raise ValueError(f"unknown term {term!r}; choose one of {', '.join(TERMS)}")


@functools.cache
def matvec(term: str, apply_fn: ApplyFn) -> Callable[..., jax.Array]:
    """The one matvec of ``term`` (H, G-term or H-term, Eq. 4) for ``apply_fn``:
    ``matvec(v, params, batches, temperature) -> X v`` on flat parameter vectors (P,).

    Parameters, :class:`Batches` and T are arguments, so one compiled program serves every α, T,
    seed and dataset of the same shapes. It sums the per-chunk products over the C chunks (a
    Python loop, unrolled into one trace: no ``scan``, convolutions inside XLA loops are slow on
    CPU) and is jit-compiled; the same function object is returned for equal (term, apply_fn), so
    it is a cache hit for every jit that takes it as a static argument (Lanczos, Hutchinson). Bound
    methods such as ``model.apply`` are equal only for the *same* model object (see
    ``models.make_model``, which caches them). ``v`` is cast to the parameters' dtype.
    """
    _check_term(term)
    chunk_product = _CHUNK_PRODUCTS[term]

    def term_matvec(v: jax.Array, params: Any, batches: Batches, temperature: jax.Array) -> jax.Array:
        v = v.astype(params_dtype(params))
        return sum(chunk_product(apply_fn, params, v, x, y, w, temperature) for x, y, w in zip(*batches))

    term_matvec.__name__ = term_matvec.__qualname__ = f"{term}_matvec"
    return jax.jit(term_matvec)


@functools.cache
def block_matvec(term: str, apply_fn: ApplyFn, offset: int, size: int) -> Callable[..., jax.Array]:
    """``v1 ↦ [X (0 ⊕ v1 ⊕ 0)]₁``: the diagonal block of :func:`matvec` on the flat parameters
    ``offset … offset + size − 1`` (e.g. one layer's kernel, the ICML paper's H₁₁ of App. D).
    Same signature and caching as :func:`matvec`; one full product per call, restricted."""
    full = matvec(term, apply_fn)

    def block(v1: jax.Array, params: Any, batches: Batches, temperature: jax.Array) -> jax.Array:
        total = num_params(params)
        if offset < 0 or offset + size > total:
            raise ValueError(f"block {offset}..{offset + size} exceeds P={total}")
        v = jnp.zeros((total,), v1.dtype).at[offset: offset + size].set(v1)
        return full(v, params, batches, temperature)[offset: offset + size]

    block.__name__ = block.__qualname__ = f"{term}_block_matvec"
    return jax.jit(block)


def operator(
    term: str,
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array | Batches,
    y: jax.Array | None = None,
    temperature: float | jax.Array = 1.0,
    *,
    chunk_size: int | None = None,
) -> lanczos.Operator:
    """``v ↦ X v`` for ``term`` at ``params``: :func:`matvec` bound to its operands (parameters,
    :class:`Batches`, T) as a :class:`gzone.lanczos.Operator`. Callable on flat vectors; passed
    to :mod:`gzone.lanczos` / :mod:`gzone.hutchinson`, one compilation serves every α, T and seed.
    The data are padded and stacked here, once (or pass :class:`Batches`)."""
    _check_term(term)
    batches = as_batches(apply_fn, params, x, y, chunk_size)
    temperature = jnp.asarray(temperature, params_dtype(params))
    return lanczos.Operator(matvec(term, apply_fn), (params, batches, temperature))


def hessian_operator(apply_fn, params, x, y=None, temperature=1.0, *, chunk_size=None):
    """v ↦ H v on flat parameter vectors (jvp of the full-batch gradient); see :func:`operator`."""
    return operator("hessian", apply_fn, params, x, y, temperature, chunk_size=chunk_size)


def gterm_operator(apply_fn, params, x, y=None, temperature=1.0, *, chunk_size=None):
    """v ↦ G v = (1/N) Σ_μ J_μᵀ M_μ J_μ v (linearize → centred M → transpose; Eq. 4)."""
    return operator("gterm", apply_fn, params, x, y, temperature, chunk_size=chunk_size)


def hterm_operator(apply_fn, params, x, y=None, temperature=1.0, *, chunk_size=None):
    """v ↦ H-term v, computed directly (Eq. 4's second term), not as H v − G v."""
    return operator("hterm", apply_fn, params, x, y, temperature, chunk_size=chunk_size)


OPERATORS = {"hessian": hessian_operator, "gterm": gterm_operator, "hterm": hterm_operator}


# ----------------------------------------------------------------------------- loss and gradient


@functools.partial(jax.jit, static_argnums=0)
def _loss_and_flat_gradient(apply_fn, params, batches, temperature):
    def loss(p):
        return sum(_weighted_loss(apply_fn, p, x, y, w, temperature) for x, y, w in zip(*batches))

    value, grad = jax.value_and_grad(loss)(params)
    return value, ravel_pytree(grad)[0]


def loss_and_gradient(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array | Batches,
    y: jax.Array | None = None,
    temperature: float | jax.Array = 1.0,
    *,
    chunk_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Full-batch loss and flat gradient (P,): one jit-compiled ``value_and_grad`` of the chunk
    sums. Pass :class:`Batches` to pad and stack the data once for many calls (then a call costs
    what a lean jitted ``value_and_grad`` on the arrays does)."""
    batches = as_batches(apply_fn, params, x, y, chunk_size)
    temperature = jnp.asarray(temperature, params_dtype(params))
    return _loss_and_flat_gradient(apply_fn, params, batches, temperature)
