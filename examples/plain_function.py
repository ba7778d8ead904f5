"""A plain function with biases (no framework), for ``gzone diagnose``.

    gzone diagnose --model examples/plain_function.py:model --dataset fashion_mnist --alphas 0.5,2

Equinox works the same way: ``params, static = eqx.partition(net, eqx.is_inexact_array)`` and
``adapters.function(lambda p, x: jax.vmap(eqx.combine(p, static))(x), params)``.
"""

import math

import jax
import jax.numpy as jnp

from gzone import adapters


def apply(params, x):
    """tanh MLP: logits (N, K)."""
    h = x.reshape(x.shape[0], -1)
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


def model(input_shape, num_classes, key, widths=(64, 32)):
    """Xavier-normal weights, zero biases."""
    sizes = (math.prod(input_shape), *widths, num_classes)
    keys = jax.random.split(key, len(sizes) - 1)
    params = [{"w": jax.random.normal(k, (a, b)) * math.sqrt(2 / (a + b)), "b": jnp.zeros(b)}
              for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    return adapters.function(apply, params, name="tanh MLP (plain function)")
