"""Networks beyond the papers' homogeneous ones (issue 22, ICML Sec. 6): MLPs and LeNet-5-style
CNNs with biases, other activations and a normalisation layer after every hidden linear layer,
and a small residual CNN. Plain ``flax.linen`` modules, measured through the model adapters
(:func:`gzone.adapters.linen`: BatchNorm on held statistics, ``"eval"`` or ``"batch"``).

Normalisation (``norm``): ``"none"``; ``"batch"`` (``nn.BatchNorm``; in ``__call__`` it uses
the running statistics unless ``train=True``, and the adapters hold either the running or the
full batch's statistics); ``"layer"`` (``nn.LayerNorm``, per sample: nothing held). None of these
networks is homogeneous (``homogeneity_degree`` None): with a normalisation layer the layer
before it is *scale-invariant* instead — the output does not change when its kernel and bias are
scaled together (up to the normalisation's ε), so weight scaling moves such a network along the
α axis of the ICML paper only through its other layers (:func:`scale_invariant_layers` names
them; BatchNorm with batch statistics also removes the bias of the layer before it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gzone.models import FEATURES_COLLECTION, avg_pool_2x2

NORMS = ("none", "batch", "layer")
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh,
}


def check_choices(norm: str, activation: str) -> None:
    """ValueError naming the choices for an unknown ``norm`` or ``activation``."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


class Norm(nn.Module):
    """The normalisation layer of ``kind`` (identity for ``"none"``)."""

    kind: str
    train: bool = False

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        if self.kind == "batch":
            return nn.BatchNorm(use_running_average=not self.train, name="bn")(h)
        if self.kind == "layer":
            return nn.LayerNorm(name="ln")(h)
        return h


class NormMLP(nn.Module):
    """Dense layers of ``widths`` (the last is the output), each hidden one followed by ``norm``
    and ``activation``."""

    widths: Sequence[int]
    activation: str = "relu"
    use_bias: bool = True
    norm: str = "none"
    homogeneity_degree = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choices(self.norm, self.activation)
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.widths):
            if i == len(self.widths) - 1:
                self.sow(FEATURES_COLLECTION, "penultimate", h)
            h = nn.Dense(width, use_bias=self.use_bias, name=f"dense{i}")(h)
            if i < len(self.widths) - 1:
                h = act(Norm(self.norm, train, name=f"norm{i}")(h))
        return h


class NormLeNet5(nn.Module):
    """LeNet-5 (conv 6@5x5, pool, conv 16@5x5, pool, dense 120, 84, classes; average pooling as
    :class:`gzone.models.LeNet5`) with ``norm`` after every hidden layer."""

    num_classes: int = 10
    activation: str = "relu"
    use_bias: bool = True
    norm: str = "none"
    homogeneity_degree = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choices(self.norm, self.activation)
        act = ACTIVATIONS[self.activation]
        h = x
        for i, channels in enumerate((6, 16)):
            h = nn.Conv(channels, (5, 5), padding="VALID", use_bias=self.use_bias, name=f"conv{i}")(h)
            h = avg_pool_2x2(act(Norm(self.norm, train, name=f"norm_conv{i}")(h)))
        h = h.reshape(h.shape[0], -1)
        for i, width in enumerate((120, 84)):
            h = nn.Dense(width, use_bias=self.use_bias, name=f"dense{i}")(h)
            h = act(Norm(self.norm, train, name=f"norm_dense{i}")(h))
        self.sow(FEATURES_COLLECTION, "penultimate", h)
        return nn.Dense(self.num_classes, use_bias=self.use_bias, name="dense2")(h)


class ResidualBlock(nn.Module):
    """h + conv(act(norm(conv(act(norm(h)))))) (pre-activation, He et al. 2016), ``channels``
    kept."""

    channels: int
    activation: str = "relu"
    norm: str = "none"
    use_bias: bool = True

    @nn.compact
    def __call__(self, h: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        r = act(Norm(self.norm, train, name="norm0")(h))
        r = nn.Conv(self.channels, (3, 3), use_bias=self.use_bias, name="conv0")(r)
        r = act(Norm(self.norm, train, name="norm1")(r))
        r = nn.Conv(self.channels, (3, 3), use_bias=self.use_bias, name="conv1")(r)
        return h + r


class ResidualCNN(nn.Module):
    """A small residual CNN: a 3x3 stem of ``channels``, ``blocks`` residual blocks (the second
    half after a 2x2 average pooling), the final norm and activation, global average pooling and
    a dense classifier."""

    num_classes: int = 10
    channels: int = 16
    blocks: int = 2
    activation: str = "relu"
    norm: str = "none"
    use_bias: bool = True
    homogeneity_degree = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choices(self.norm, self.activation)
        h = nn.Conv(self.channels, (3, 3), use_bias=self.use_bias, name="stem")(x)
        for i in range(self.blocks):
            if i == self.blocks // 2 and i > 0:
                h = avg_pool_2x2(h)
            h = ResidualBlock(self.channels, self.activation, self.norm, self.use_bias,
                              name=f"block{i}")(h, train)
        h = ACTIVATIONS[self.activation](Norm(self.norm, train, name="norm_out")(h))
        h = h.mean(axis=(1, 2))
        self.sow(FEATURES_COLLECTION, "penultimate", h)
        return nn.Dense(self.num_classes, use_bias=self.use_bias, name="dense")(h)


def scale_invariant_layers(module: nn.Module) -> tuple[str, ...]:
    """The layers of ``module`` whose parameters (kernel and bias, scaled together) the output
    does not depend on the scale of: those followed by a normalisation layer — every hidden layer
    of :class:`NormMLP` / :class:`NormLeNet5` with a norm; in :class:`ResidualCNN` only the
    branches' first convolutions (the skip paths add unnormalised activations)."""
    if getattr(module, "norm", "none") == "none":
        return ()
    if isinstance(module, NormMLP):
        return tuple(f"dense{i}" for i in range(len(module.widths) - 1))
    if isinstance(module, NormLeNet5):
        return ("conv0", "conv1", "dense0", "dense1")
    if isinstance(module, ResidualCNN):
        return tuple(f"block{i}/conv0" for i in range(module.blocks))
    raise ValueError(f"no scale-invariance rule for {type(module).__name__}")
