"""A small MLP with LayerNorm (flax.nnx), for ``gzone diagnose``.

    gzone diagnose --model examples/nnx_mlp_layernorm.py:model --dataset fashion_mnist
"""

import math

import jax
from flax import nnx

from gzone import adapters


class MLP(nnx.Module):
    def __init__(self, inputs: int, width: int, num_classes: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(inputs, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.out = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x):
        h = self.norm(self.hidden(x.reshape(x.shape[0], -1)))
        return self.out(jax.nn.gelu(h))


def model(input_shape, num_classes, key, width=128):
    """The MLP with Flax's initialisers, as a gzone Model (nnx.Param: the coordinates)."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    net = MLP(math.prod(input_shape), width, num_classes, nnx.Rngs(seed))
    return adapters.nnx(net, name="MLP with LayerNorm (nnx)")
