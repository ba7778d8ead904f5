"""Bias-free homogeneous Flax (linen) models of both papers, their initialisation and scaling.

A network f is *homogeneous of degree L* when f(αθ, x) = α^L f(θ, x) for every α > 0: bias-free
ReLU (or identity) networks with L weight layers and average pooling are (ICML paper, Sec. 2).
Every model here exposes that degree as ``model.homogeneity_degree`` (``None`` when the model is
not homogeneous: tanh activations or biases, the contrast cases of Fort & Scherlis).

Models are plain ``flax.linen`` modules, so ``model.apply(variables, x)`` is a pure function of
the variables ``{"params": ...}`` returned by :func:`init` and of an NHWC batch ``x``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Variables = dict[str, Any]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "identity": lambda h: h,
}
HOMOGENEOUS_ACTIVATIONS = ("relu", "identity")
#: the Flax collection the models ``sow`` their penultimate activations into (a no-op unless it is
#: made mutable: :func:`penultimate_features`)
FEATURES_COLLECTION = "features"

# Initialisers: zero-mean normal weights with std = sqrt(scale / fan); all are untruncated normals.
#: scheme -> (scale, fan mode) of ``jax.nn.initializers.variance_scaling(scale, mode, "normal")``
INIT_VARIANCES: dict[str, tuple[float, str]] = {
    # Kaiming/He normal, fan-in, gain sqrt(2): torch.nn.init.kaiming_normal_ defaults.
    "kaiming": (2.0, "fan_in"),
    # Xavier/Glorot normal, gain 1: torch.nn.init.xavier_normal_.
    "xavier": (1.0, "fan_avg"),
    # The authors' code (avysogorets/goldilocks-zone) from 2024-01-21 to its HEAD:
    # torch.nn.init.kaiming_normal_ — the same as "kaiming" (matched to 1e-15 on their weights).
    "authors": (2.0, "fan_in"),
    # Their first three commits only: torch.nn.init.xavier_normal_(w, gain=sqrt(2)).
    "authors-early": (2.0, "fan_avg"),
}
INIT_SCHEMES: dict[str, jax.nn.initializers.Initializer] = {
    name: jax.nn.initializers.variance_scaling(scale, mode, "normal")
    for name, (scale, mode) in INIT_VARIANCES.items()
}


def init_std(shape: Sequence[int], scheme: str) -> float:
    """The standard deviation ``scheme`` draws a kernel of ``shape`` with: sqrt(scale / fan), the
    fans as ``variance_scaling`` computes them (receptive field × in / out channels)."""
    if scheme not in INIT_VARIANCES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {sorted(INIT_VARIANCES)}")
    scale, mode = INIT_VARIANCES[scheme]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return math.sqrt(scale / fan)


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def avg_pool_2x2(h: jax.Array) -> jax.Array:
    """2x2 average pooling, stride 2, VALID, as reshape + mean (NHWC).

    Same function as ``nn.avg_pool(h, (2, 2), (2, 2))`` but its derivatives are much cheaper on CPU
    than those of ``reduce_window`` (PERFORMANCE-NOTES: 4x faster backward).
    """
    n, height, width, channels = h.shape
    h = h[:, : height // 2 * 2, : width // 2 * 2, :]
    return h.reshape(n, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


class MLP(nn.Module):
    """Fully-connected network; ``widths`` lists every dense layer's size, output included.

    ``MLP(widths=(300, 100, 10))`` is LeNet-300-100 for any input size. Inputs of any shape
    (N, ...) are flattened. Homogeneous of degree ``len(widths)`` when bias-free with ReLU or
    identity activations.
    """

    widths: Sequence[int]
    activation: str = "relu"
    use_bias: bool = False

    @property
    def homogeneity_degree(self) -> int | None:
        if self.use_bias or self.activation not in HOMOGENEOUS_ACTIVATIONS:
            return None
        return len(self.widths)

    @property
    def input_layer(self) -> str:
        """Name of the layer applied to the input (linear in its parameters; see
        :func:`gzone.curvature.projected`)."""
        return "dense0"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.widths):
            if i == len(self.widths) - 1:
                self.sow(FEATURES_COLLECTION, "penultimate", h)
            h = nn.Dense(width, use_bias=self.use_bias, name=f"dense{i}")(h)
            if i < len(self.widths) - 1:
                h = act(h)
        return h


def LeNet300100(num_classes: int = 10, activation: str = "relu", use_bias: bool = False) -> MLP:
    """LeNet-300-100: 784-300-100-10 (flattens NHWC input itself), ReLU, no biases (``use_bias``:
    with biases, Fort & Scherlis' networks); L = 3."""
    return MLP(widths=(300, 100, num_classes), activation=activation, use_bias=use_bias)


class LeNet5(nn.Module):
    """LeNet-5 as in the authors' code: conv 6@5x5 VALID, ReLU, 2x2 average pool, conv 16@5x5
    VALID, ReLU, 2x2 average pool, dense 120, ReLU, dense 84, ReLU, dense K; no biases; L = 5."""

    num_classes: int = 10
    activation: str = "relu"

    @property
    def homogeneity_degree(self) -> int | None:
        return 5 if self.activation in HOMOGENEOUS_ACTIVATIONS else None

    @property
    def input_layer(self) -> str:
        """Name of the layer applied to the input (see :func:`gzone.curvature.projected`)."""
        return "conv0"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        if min(x.shape[1:3]) < 16:
            raise ValueError(f"LeNet5 needs images of at least 16x16 pixels, got {x.shape[1:3]}")
        h = nn.Conv(6, (5, 5), padding="VALID", use_bias=False, name="conv0")(x)
        h = avg_pool_2x2(act(h))
        h = nn.Conv(16, (5, 5), padding="VALID", use_bias=False, name="conv1")(h)
        h = avg_pool_2x2(act(h))
        h = h.reshape(h.shape[0], -1)
        h = act(nn.Dense(120, use_bias=False, name="dense0")(h))
        h = act(nn.Dense(84, use_bias=False, name="dense1")(h))
        self.sow(FEATURES_COLLECTION, "penultimate", h)
        return nn.Dense(self.num_classes, use_bias=False, name="dense2")(h)


MODEL_NAMES = ("lenet300", "lenet5", "mlp")


def make_model(
    name: str,
    num_classes: int = 10,
    *,
    widths: Sequence[int] = (300, 100),
    activation: str = "relu",
    use_bias: bool = False,
) -> nn.Module:
    """Model by name: ``lenet300``, ``lenet5`` or ``mlp`` (hidden ``widths`` + a K-way output);
    ``activation`` (relu, tanh, identity) and, for the fully-connected ones, ``use_bias``.

    Cached: equal arguments return the same (immutable) module, so jit caches keyed on
    ``model.apply`` are reused across sweeps in one process instead of recompiling.
    """
    return _make_model(name, num_classes, tuple(widths), activation, use_bias)


def check_model_name(name: str) -> None:
    """Reject an unknown model name with a one-line message listing the known ones."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


@functools.cache
def _make_model(name: str, num_classes: int, widths: tuple, activation: str, use_bias: bool) -> nn.Module:
    if name == "lenet300":
        return LeNet300100(num_classes, activation, use_bias)
    if name == "lenet5":
        if use_bias:
            raise ValueError("lenet5 is bias-free here; use_bias applies to lenet300 and mlp")
        return LeNet5(num_classes, activation)
    if name == "mlp":
        return MLP(widths=(*widths, num_classes), activation=activation, use_bias=use_bias)
    check_model_name(name)
    raise AssertionError(f"model {name!r} is listed in MODEL_NAMES but not built here")


def init(
    model: nn.Module,
    key: jax.Array,
    input_shape: Sequence[int],
    scheme: str = "kaiming",
    dtype: Any = jnp.float32,
) -> Variables:
    """Initial variables ``{"params": ...}`` (and ``"batch_stats"`` for BatchNorm) for
    ``model.apply``; ``input_shape`` excludes the batch.

    Schemes (weights only; biases, if any, start at zero as in both papers, normalisation scales
    at one; other parameters are refused, :func:`init_from_shapes`):
    ``kaiming`` (He normal, fan-in, gain √2), ``xavier`` (Glorot normal), ``authors`` (what the
    ICML paper's code runs from 2024-01-21 to its HEAD: ``kaiming_normal_``, i.e. ``kaiming``) and
    ``authors-early`` (``xavier_normal_`` with gain √2, their first three commits only).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {sorted(INIT_SCHEMES)}")
    return _init(model, key, tuple(input_shape), scheme, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _init(model: nn.Module, key: jax.Array, input_shape: tuple, scheme: str, dtype: Any) -> Variables:
    shapes = jax.eval_shape(model.init, key, jnp.zeros((1, *input_shape), dtype))
    # the parameters and BatchNorm's statistics, not the sown features (FEATURES_COLLECTION)
    shapes = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
    return init_from_shapes(shapes, key, scheme, dtype)


#: how :func:`init_from_shapes` starts each non-kernel parameter, by its name: biases at zero
#: (both papers), normalisation scales at one (LayerNorm, BatchNorm: a zero scale would silence
#: the layer), BatchNorm's running statistics at mean 0, variance 1 (Flax's defaults)
NON_KERNEL_INIT = {"bias": 0.0, "scale": 1.0, "mean": 0.0, "var": 1.0}


def init_from_shapes(shapes: Any, key: jax.Array, scheme: str, dtype: Any) -> Variables:
    """Draw variables for a tree of shapes (from ``jax.eval_shape``): ``scheme``'s initialiser for
    every kernel (one key per leaf, ``split(key, leaves)``), the constants of
    :data:`NON_KERNEL_INIT` for biases, normalisation scales and BatchNorm statistics; any other
    parameter (an embedding, a learned temperature ...) is refused with a message that names it.
    Traceable, so it can be vmapped over keys without running Flax's own (discarded)
    initialisers."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    keys = jax.random.split(key, len(leaves))
    initializer = INIT_SCHEMES[scheme]
    new_leaves = []
    for k, (path, leaf) in zip(keys, leaves):
        name = getattr(path[-1], "key", str(path[-1]))
        if name == "kernel":
            new_leaves.append(initializer(k, leaf.shape, dtype))
        elif name in NON_KERNEL_INIT:
            new_leaves.append(jnp.full(leaf.shape, NON_KERNEL_INIT[name], dtype))
        else:
            where = "/".join(str(getattr(p, "key", p)) for p in path)
            raise ValueError(f"gzone.models.init cannot initialise the parameter {where!r} (it "
                             f"knows kernel, {', '.join(NON_KERNEL_INIT)}); initialise the model "
                             "with module.init and pass it through gzone.adapters.linen")
    return jax.tree_util.tree_unflatten(treedef, new_leaves)


def scale(variables: Variables, alpha: float) -> Variables:
    """α-scaled parameters αθ (ICML paper, Sec. 3); rejects α ≤ 0 and non-finite α."""
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite positive number, got {alpha!r}")
    alpha = float(alpha)  # a Python float keeps each leaf's dtype (a NumPy float64 would not)
    return jax.tree_util.tree_map(lambda leaf: alpha * leaf, variables)


@functools.partial(jax.jit, static_argnums=0)
def _features_chunk(model: nn.Module, variables: Variables, x: jax.Array) -> jax.Array:
    _, state = model.apply(variables, x, mutable=[FEATURES_COLLECTION])
    return state[FEATURES_COLLECTION]["penultimate"][0]


def penultimate_features(model: nn.Module, variables: Variables, x: jax.Array, *,
                         chunk_size: int = 2048) -> jax.Array:
    """The penultimate-layer activations h (N, width) of gzone's models — the input of the last
    dense layer, so that ``model.apply(variables, x) == h @ W_last`` — in chunks of
    ``chunk_size`` samples (the features the linear probes of ICML Fig. 12 left are trained on)."""
    if not hasattr(model, "input_layer"):
        raise ValueError(f"{type(model).__name__} does not expose penultimate features; use one of "
                         f"gzone's models ({', '.join(MODEL_NAMES)})")
    chunk_size = max(1, int(chunk_size))
    parts = []
    for lo in range(0, len(x), chunk_size):
        chunk = x[lo:lo + chunk_size]
        pad = chunk_size - len(chunk) if len(x) > chunk_size else 0
        padded = jnp.concatenate([chunk, jnp.zeros((pad, *chunk.shape[1:]), chunk.dtype)]) if pad else chunk
        parts.append(_features_chunk(model, variables, padded)[:len(chunk)])
    return jnp.concatenate(parts)


def num_params(variables: Variables) -> int:
    """Number of parameters P."""
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables))
