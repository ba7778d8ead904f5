"""Your model in gzone: a Flax ``linen`` or ``nnx`` module, or a plain function, as a :class:`Model`.

Every engine of gzone takes ``apply(params, x) -> logits``, pure and jit-able, with ``params`` the
differentiable pytree: the coordinates of every Hessian and the only thing training updates. A
:class:`Model` is that pair plus ``state``, the fixed non-differentiable collections (BatchNorm
statistics and the like), closed over by ``apply`` and never differentiated or updated.

* :func:`linen` — any ``flax.linen`` module and its variables: ``params`` is the ``"params"``
  collection, the other collections are state.
* :func:`nnx` — a ``flax.nnx`` module, through ``nnx.split``/``nnx.merge``: ``nnx.Param`` is
  differentiable, everything else is state.
* :func:`function` — a plain ``apply_fn(params, x)`` (Equinox: ``params, static =
  eqx.partition(model, eqx.is_inexact_array)`` and ``function(lambda p, x:
  jax.vmap(eqx.combine(p, static))(x), params)``).

BatchNorm (``batch_norm``): ``"eval"`` normalises with the running statistics held in the state;
``"batch"`` with the statistics of the whole data, computed once by :meth:`Model.bind` — layer by
layer in the order the model calls them, each over every sample (chunked, so exact whatever the
chunk size) — and then held fixed: the loss is that of the network with those statistics frozen,
so its Hessian does not differentiate through them. Dropout is switched off (the layers are named
in :attr:`Model.notes`); other randomness is refused with a message that names the layer. A
determinism check (two evaluations agree) runs once per model (:meth:`Model.check`), as
curvlinops does.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

BATCH_NORM_MODES = ("eval", "batch")
#: samples per chunk of the batch statistics' passes when none is given
STATS_CHUNK = 1024


class ModelError(ValueError):
    """A model, or the data passed with it, that gzone cannot use as given (the message names the
    fix)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """``apply(params, x) -> logits`` (pure, jit-able; ``state`` closed over), the differentiable
    ``params``, the fixed ``state`` and a ``name``. Hashed by identity, so an engine compiles its
    programs once per model and reuses them for every new parameter value (α, training)."""

    fn: Callable[[Any, Any, jax.Array], jax.Array]
    params: Any
    state: Any = None
    name: str = "model"
    #: "eval", "batch" or None (no BatchNorm layer)
    batch_norm: str | None = None
    #: what the adapter changed or fixed, e.g. "dropout switched off: Dropout_0"
    notes: tuple[str, ...] = ()
    #: computes the batch statistics (``batch_norm="batch"``): (model, x, chunk_size) -> state
    binder: Callable[[Model, jax.Array, int], Any] | None = None
    #: number of samples the batch statistics were computed over (None: not bound)
    bound_samples: int | None = None
    #: (model, x) -> (kind, layer name) of the BatchNorm/Dropout layers the adapter holds fixed
    layers: Callable[[Model, jax.Array], list[tuple[str, str]]] | None = None
    #: gzone's projected pass may take no input-layer shortcut on a foreign model
    input_layer = None

    @functools.cached_property
    def compiled(self) -> Callable[[Any, jax.Array], jax.Array]:
        """``jax.jit(apply)``, compiled once per model and input shape (checks and summaries)."""
        return jax.jit(self.apply)

    def apply(self, params: Any, x: jax.Array) -> jax.Array:
        """The logits (N, K) of ``x`` at ``params``, with ``state`` held fixed."""
        if self.needs_data:
            raise ModelError(f"{self.name} uses batch statistics (batch_norm='batch'): call "
                             "model.bind(x) first, which computes them once over the data x")
        return self.fn(params, self.state, x)

    @property
    def needs_data(self) -> bool:
        """Batch statistics are asked for and not yet computed."""
        return self.batch_norm == "batch" and self.bound_samples is None

    def bind(self, x: jax.Array, chunk_size: int | None = None) -> Model:
        """This model with its batch statistics computed over all of ``x`` and held fixed (itself
        when it has no batch statistics to compute)."""
        if self.batch_norm != "batch" or self.binder is None:
            return self
        state = self.binder(self, jnp.asarray(x), int(chunk_size or STATS_CHUNK))
        note = (f"batch_norm='batch': statistics of all {len(x)} samples, computed once and held "
                "fixed (not differentiated)")
        return dataclasses.replace(self, state=state, bound_samples=int(len(x)),
                                   notes=(*self.notes, note))

    def describe(self, x: jax.Array | None = None) -> dict[str, Any]:
        """What records say about the model: name, parameter count, BatchNorm mode and notes
        (with a sample ``x``: also the Dropout layers switched off)."""
        notes = list(self.notes)
        if x is not None and self.layers is not None:
            dropout = [name for kind, name in self.layers(self, jnp.asarray(x)[:1])
                       if kind == "dropout"]
            if dropout:
                notes.append("dropout switched off: " + ", ".join(dropout))
        return {"model": self.name, "num_params": num_params(self.params),
                "batch_norm": self.batch_norm, "batch_stats_samples": self.bound_samples,
                "adapter_notes": notes}

    def check(self, x: jax.Array, y: jax.Array | None = None) -> int:
        """One-line errors for what gzone cannot use — a tuple output, logits that are not
        (N, K) floats with K ≥ 2, one-hot or out-of-range labels, two evaluations that disagree —
        on the first (up to 8) samples of ``x``; the number of classes K."""
        check_labels(y)
        sample = jnp.asarray(x)[:8]
        random = [name for kind, name in (self.layers(self, sample) if self.layers else [])
                  if kind == "random"]
        if random:
            raise ModelError(f"{self.name} draws random numbers at {', '.join(random)} outside a "
                             "Dropout layer; gzone needs a deterministic model: switch that "
                             "randomness off")
        # two eager evaluations: randomness drawn on the host (numpy) shows as a difference
        first, second = self.apply(self.params, sample), self.apply(self.params, sample)
        if isinstance(first, (tuple, list)):
            raise ModelError(f"{self.name} returns a {type(first).__name__} of {len(first)}, "
                             "not one array of logits: wrap it so that it returns the logits "
                             "only, e.g. adapters.function(lambda p, x: f(p, x)[0], params)")
        first = jnp.asarray(first)
        if first.ndim != 2 or first.shape[0] != sample.shape[0] or first.shape[1] < 2:
            raise ModelError(f"{self.name} returns shape {tuple(first.shape)} for "
                             f"{sample.shape[0]} samples; gzone needs logits of shape (N, K) "
                             "with K >= 2 classes (flatten or slice the output)")
        if not jnp.issubdtype(first.dtype, jnp.floating):
            raise ModelError(f"{self.name} returns {first.dtype} logits; they must be floats")
        if not bool(jnp.array_equal(first, jnp.asarray(second), equal_nan=True)):
            raise ModelError(f"{self.name} is not deterministic: two evaluations at the same "
                             "parameters differ; switch off its randomness (dropout, noise) "
                             "before diagnosing it")
        classes = int(first.shape[1])
        if y is not None and int(jnp.max(jnp.asarray(y))) >= classes:
            raise ModelError(f"labels go up to {int(jnp.max(jnp.asarray(y)))} but {self.name} "
                             f"has {classes} classes; pass labels in 0..{classes - 1}")
        return classes


def num_params(params: Any) -> int:
    """The number of differentiable parameters."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def check_labels(y: jax.Array | None) -> None:
    """Integer class indices of shape (N,), or a one-line error (one-hot labels name the fix)."""
    if y is None:
        return
    y = jnp.asarray(y)
    if y.ndim == 2:
        raise ModelError(f"labels have shape {tuple(y.shape)}: they look one-hot; gzone needs "
                         "integer class indices of shape (N,), e.g. y.argmax(-1)")
    if y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ModelError(f"labels must be integer class indices of shape (N,), got {y.dtype} of "
                         f"shape {tuple(y.shape)}")
    if y.size and int(jnp.min(y)) < 0:
        raise ModelError("labels must be >= 0 (class indices)")


def check_temperature(temperature: Any) -> float:
    """A finite T > 0, or a one-line error."""
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ModelError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def _check_mode(batch_norm: str) -> None:
    if batch_norm not in BATCH_NORM_MODES:
        raise ModelError(f"batch_norm must be one of {', '.join(BATCH_NORM_MODES)}, "
                         f"got {batch_norm!r}")


# ----------------------------------------------------------------------------- plain functions


def function(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any, *,
             name: str | None = None) -> Model:
    """A plain ``apply_fn(params, x) -> logits`` (pure, no state)."""
    if not callable(apply_fn):
        raise ModelError(f"apply_fn must be callable, got {type(apply_fn).__name__}")

    def fn(params: Any, state: Any, x: jax.Array) -> jax.Array:
        return apply_fn(params, x)

    return Model(fn, params, None, name or getattr(apply_fn, "__name__", "function"))


# ----------------------------------------------------------------------------- flax.linen


def _path(module: Any) -> tuple[str, ...]:
    return tuple(module.scope.path) if module.scope is not None else ()


def _held_batch_norm(module: Any, h: jax.Array) -> jax.Array:
    """A linen BatchNorm applied with the statistics its ``batch_stats`` hold (whatever its
    ``use_running_average`` says): (h − mean)/√(var + ε), then its scale and bias."""
    axes = _feature_axes(module, h.ndim)
    shape = [h.shape[a] if a in axes else 1 for a in range(h.ndim)]
    mean = jnp.reshape(module.get_variable("batch_stats", "mean"), shape)
    var = jnp.reshape(module.get_variable("batch_stats", "var"), shape)
    out = (h - mean) * jax.lax.rsqrt(var + module.epsilon)
    if module.use_scale:
        out = out * jnp.reshape(module.get_variable("params", "scale"), shape)
    if module.use_bias:
        out = out + jnp.reshape(module.get_variable("params", "bias"), shape)
    return out


def _linen_interceptor(force: dict[str, Any] | None = None, seen: list | None = None):
    """An interceptor that runs every BatchNorm on its held statistics (:func:`_held_batch_norm`)
    and every Dropout as the identity (deterministic); ``force`` maps a BatchNorm's path to a
    function ``(module, h) -> output`` run instead, ``seen`` collects (kind, path) of the layers."""
    import flax.linen as nn

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__" and isinstance(module, nn.BatchNorm):
            if seen is not None:
                seen.append(("batch_norm", _path(module)))
            if force is not None and _path(module) in force:
                return force[_path(module)](module, args[0])
            return _held_batch_norm(module, args[0])
        if context.method_name == "__call__" and isinstance(module, nn.Dropout):
            if seen is not None:
                seen.append(("dropout", _path(module)))
            return args[0]
        return next_fun(*args, **kwargs)

    return intercept


def _linen_apply(module: Any, call_kwargs: dict[str, Any], params: Any, state: Any, x: jax.Array,
                 interceptor: Any) -> jax.Array:
    import flax.errors
    import flax.linen as nn

    try:
        with nn.intercept_methods(interceptor):
            return module.apply({"params": params, **(state or {})}, x, **call_kwargs)
    except flax.errors.InvalidRngError as error:
        raise ModelError(f"{type(module).__name__} draws random numbers outside a Dropout layer "
                         f"({str(error).splitlines()[0]}); gzone needs a deterministic model: "
                         "switch that randomness off (e.g. a train=False argument through "
                         "call_kwargs)") from None


def linen(module: Any, variables: Any, *, batch_norm: str = "eval",
          call_kwargs: dict[str, Any] | None = None, name: str | None = None) -> Model:
    """A ``flax.linen`` module and its ``variables`` (from ``module.init``) as a :class:`Model`:
    ``params`` is the ``"params"`` collection, the others (``batch_stats`` ...) are state.
    ``call_kwargs`` are passed to every call (e.g. ``{"train": False}``). BatchNorm layers run on
    held statistics (``batch_norm``: the running ones, or after :meth:`Model.bind` those of the
    data), Dropout layers deterministically, whatever ``call_kwargs`` say."""
    import flax

    _check_mode(batch_norm)
    variables = flax.core.unfreeze(variables) if hasattr(flax.core, "unfreeze") else dict(variables)
    if "params" not in variables:
        raise ModelError("variables has no 'params' collection; pass what module.init returns")
    variables = dict(variables)
    params = variables.pop("params")
    state = {k: v for k, v in variables.items() if k not in ("intermediates",)}
    kwargs = dict(call_kwargs or {})
    interceptor = _linen_interceptor()

    def fn(params: Any, state: Any, x: jax.Array) -> jax.Array:
        return _linen_apply(module, kwargs, params, state, x, interceptor)

    has_bn = "batch_stats" in state
    moment_sum = jax.jit(functools.partial(_moment_sum, module, kwargs), static_argnums=(0, 1))
    return Model(fn, params, state, name or type(module).__name__,
                 batch_norm=batch_norm if has_bn else None,
                 layers=lambda m, x: [(kind, "/".join(path)) for kind, path in
                                      _linen_calls(module, kwargs, m.params, m.state, x)],
                 binder=(lambda m, x, c: _linen_batch_stats(module, kwargs, m, x, c, moment_sum))
                 if has_bn else None)


def _linen_calls(module: Any, kwargs: dict[str, Any], params: Any, state: Any,
                 x: jax.Array) -> list[tuple[str, tuple[str, ...]]]:
    """(kind, path) of the BatchNorm and Dropout layers in the order the model calls them."""
    seen: list = []
    jax.eval_shape(lambda p, s, xx: _linen_apply(module, kwargs, p, s, xx,
                                                 _linen_interceptor(seen=seen)), params, state, x)
    return list(dict.fromkeys(seen))


def _feature_axes(module: Any, ndim: int) -> tuple[int, ...]:
    axes = module.axis if isinstance(module.axis, (tuple, list)) else (module.axis,)
    return tuple(sorted(a % ndim for a in axes))


def _set(tree: dict, path: tuple[str, ...], leaf: str, value: Any) -> None:
    node = tree
    for part in path:
        node = node[part]
    node[leaf] = value


def _linen_batch_stats(module: Any, kwargs: dict[str, Any], model: Model, x: jax.Array,
                       chunk: int, moment_sum: Callable) -> Any:
    """The ``batch_stats`` of all of ``x``: for each BatchNorm in call order, the mean and then
    the (biased) variance of its input over every sample and every non-feature axis, the
    earlier layers already on their full-data statistics; chunked (the padding masked out, so
    the same statistics whatever the chunk size, up to rounding)."""
    state = jax.tree_util.tree_map(lambda a: a, model.state)  # a copy to fill in
    layers = [p for kind, p in _linen_calls(module, kwargs, model.params, state, x[:1])
              if kind == "batch_norm"]
    n = x.shape[0]
    size = min(chunk, n)
    pad = -n % size
    xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(-1, size, *x.shape[1:])
    mask = (jnp.arange(n + pad) < n).reshape(-1, size)
    for path in layers:
        mean = None
        for moment in ("mean", "var"):
            parts = [moment_sum(path, moment, model.params, state, xc, mc, mean)
                     for xc, mc in zip(xs, mask)]
            total = sum(p[0] for p in parts[1:]) + parts[0][0]
            count = sum(p[1] for p in parts[1:]) + parts[0][1]
            if moment == "mean":
                mean = total / count
            _set(state["batch_stats"], path, moment, total / count)
    return state


def _moment_sum(module: Any, kwargs: dict[str, Any], path: tuple[str, ...], moment: str,
                params: Any, state: Any, xc: jax.Array, mc: jax.Array,
                mean: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(Σ, count) over the real samples ``mc`` of chunk ``xc`` and every non-feature axis of the
    input of the BatchNorm at ``path``: of the input (``moment="mean"``) or of its squared
    deviation from ``mean`` (``"var"``); every BatchNorm on its held statistics."""
    captured: list = []

    def capture(bn, h):
        axes = _feature_axes(bn, h.ndim)
        reduce = tuple(a for a in range(h.ndim) if a not in axes)
        w = mc.reshape((-1,) + (1,) * (h.ndim - 1)).astype(h.dtype)
        per_sample = h.size // (h.shape[0] * int(np.prod([h.shape[a] for a in axes])))
        if moment == "var":
            shape = [h.shape[a] if a in axes else 1 for a in range(h.ndim)]
            h = jnp.square(h - jnp.reshape(mean, shape))
        out = _held_batch_norm(bn, h)
        captured.append((jnp.sum(h * w, axis=reduce), jnp.sum(w) * per_sample))
        return out

    _linen_apply(module, kwargs, params, state, xc, _linen_interceptor(force={path: capture}))
    return captured[0]


# ----------------------------------------------------------------------------- flax.nnx


def _nnx_modules(module: Any) -> list[tuple[tuple, Any]]:
    from flax import nnx as fnnx

    walk = fnnx.iter_modules(module) if hasattr(fnnx, "iter_modules") else module.iter_modules()
    return [(tuple(path), sub) for path, sub in walk]


def _get(variable: Any) -> Any:
    """An nnx Variable's value (``get_value`` where this flax has it)."""
    return variable.get_value() if hasattr(variable, "get_value") else variable.value


def _put(variable: Any, value: Any) -> None:
    if hasattr(variable, "set_value"):
        variable.set_value(value)
    else:
        variable.value = value


def _nnx_eval(module: Any) -> None:
    """Every BatchNorm on its held statistics, every Dropout deterministic."""
    from flax import nnx as fnnx

    for _, sub in _nnx_modules(module):
        if isinstance(sub, fnnx.BatchNorm):
            sub.use_running_average = True
        if isinstance(sub, fnnx.Dropout):
            sub.deterministic = True


def _rng_counts(state: Any) -> dict[str, Any]:
    """The RNG stream counters of an nnx state: path -> count."""
    from flax import nnx as fnnx

    flat = fnnx.to_flat_state(state) if hasattr(fnnx, "to_flat_state") else state.flat_state()
    items = flat.items() if hasattr(flat, "items") else flat
    out = {}
    for path, var in items:
        kind = getattr(var, "type", type(var))
        if isinstance(kind, type) and issubclass(kind, fnnx.RngCount):
            out["/".join(map(str, path))] = np.asarray(_get(var) if hasattr(var, "type") else var)
    return out


def nnx(module: Any, *, batch_norm: str = "eval", name: str | None = None) -> Model:
    """A ``flax.nnx`` module as a :class:`Model` through ``nnx.split``/``nnx.merge``:
    ``nnx.Param`` variables are the differentiable ``params``, everything else (BatchNorm
    statistics, RNG streams ...) is state. The module itself is not changed; each call merges a
    copy in evaluation mode (BatchNorm on held statistics — the running ones, or after
    :meth:`Model.bind` those of the data — and Dropout deterministic). nnx keeps BatchNorm
    statistics in float32, so they are held at float32 precision even for a float64 model."""
    from flax import nnx as fnnx

    _check_mode(batch_norm)
    if not isinstance(module, fnnx.Module):
        raise ModelError(f"adapters.nnx takes a flax.nnx.Module, got {type(module).__name__}; "
                         "use adapters.linen for flax.linen modules")
    graphdef, params, state = fnnx.split(module, fnnx.Param, ...)

    def merged(params: Any, state: Any) -> Any:
        copy = fnnx.merge(graphdef, params, state)
        _nnx_eval(copy)
        return copy

    def fn(params: Any, state: Any, x: jax.Array) -> jax.Array:
        return merged(params, state)(x)

    def layers(model: Model, x: jax.Array) -> list[tuple[str, str]]:
        copy = merged(model.params, model.state)
        before = _rng_counts(fnnx.split(copy, fnnx.Param, ...)[2])
        copy(x)
        after = _rng_counts(fnnx.split(copy, fnnx.Param, ...)[2])
        found = [("random", path) for path in after
                 if path in before and not np.array_equal(before[path], after[path])]
        for path, sub in _nnx_modules(copy):
            kind = ("batch_norm" if isinstance(sub, fnnx.BatchNorm) else
                    "dropout" if isinstance(sub, fnnx.Dropout) else None)
            if kind:
                found.append((kind, "/".join(map(str, path))))
        return found

    has_bn = any(isinstance(sub, fnnx.BatchNorm) for _, sub in _nnx_modules(module))
    stats = jax.jit(functools.partial(_nnx_chunk_stats, merged), static_argnums=(0,))
    return Model(fn, params, state, name or type(module).__name__,
                 batch_norm=batch_norm if has_bn else None, layers=layers,
                 binder=(lambda m, x, c: _nnx_batch_stats(merged, stats, m, x, c))
                 if has_bn else None)


def _nnx_chunk_stats(merged: Callable, path: tuple, params: Any, state: Any,
                     xc: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The (mean, biased variance) of the input of the nnx BatchNorm at ``path`` over the chunk
    ``xc`` (every non-feature axis), every BatchNorm on its held statistics. The layer is run as
    a subclass that records its input; nothing of the module is changed."""
    copy = merged(params, state)
    target = dict(_nnx_modules(copy))[path]
    captured: list = []
    base = type(target)

    class Recording(base):  # type: ignore[misc, valid-type]
        def __call__(self, h, *args, **kwargs):
            reduce = tuple(a for a in range(h.ndim) if a != self.axis % h.ndim)
            mean = jnp.mean(h, axis=reduce)
            shape = [h.shape[a] if a not in reduce else 1 for a in range(h.ndim)]
            captured.append((mean, jnp.mean(jnp.square(h - jnp.reshape(mean, shape)), axis=reduce)))
            return base.__call__(self, h, *args, **kwargs)

    target.__class__ = Recording
    copy(xc)
    return captured[0]


def _nnx_batch_stats(merged: Callable, stats: Callable, model: Model, x: jax.Array,
                     chunk: int) -> Any:
    """The state with every BatchNorm's statistics those of all of ``x``: per layer, the chunks'
    means and variances pooled exactly (Σ n_c (v_c + (m_c − m)²)/n), the layers in the module's
    order, swept again until nothing changes (a layer's input depends on the statistics of the
    layers before it, whatever order the module lists them in)."""
    from flax import nnx as fnnx

    state = model.state
    paths = [p for p, sub in _nnx_modules(merged(model.params, state))
             if isinstance(sub, fnnx.BatchNorm)]
    bounds = [(i, min(i + chunk, len(x))) for i in range(0, len(x), chunk)]
    for _ in range(len(paths) + 1):
        changed = False
        for path in paths:
            parts = [(b - a, *stats(path, model.params, state, x[a:b])) for a, b in bounds]
            n = sum(c for c, _, _ in parts)
            mean = sum(c * m for c, m, _ in parts) / n
            var = sum(c * (v + jnp.square(m - mean)) for c, m, v in parts) / n
            copy = merged(model.params, state)
            target = dict(_nnx_modules(copy))[path]
            mean, var = (jnp.asarray(mean, _get(target.mean).dtype),
                         jnp.asarray(var, _get(target.var).dtype))
            changed |= not (np.array_equal(_get(target.mean), mean)
                            and np.array_equal(_get(target.var), var))
            _put(target.mean, mean)
            _put(target.var, var)
            state = fnnx.split(copy, fnnx.Param, ...)[2]
        if not changed:
            break
    return state
