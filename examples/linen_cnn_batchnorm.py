"""A small ResNet-style CNN with BatchNorm (flax.linen), for ``gzone diagnose``.

    gzone diagnose --model examples/linen_cnn_batchnorm.py:model --dataset fashion_mnist
"""

import flax.linen as nn
import jax

from gzone import adapters


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the identity (a 1x1 projection when the width changes)."""

    width: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(self.width, (3, 3))(x)))
        h = nn.BatchNorm(use_running_average=not train)(nn.Conv(self.width, (3, 3))(h))
        skip = x if x.shape[-1] == self.width else nn.Conv(self.width, (1, 1))(x)
        return nn.relu(h + skip)


class SmallResNet(nn.Module):
    widths: tuple = (8, 16)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        for width in self.widths:
            x = Block(width)(x, train)
            x = nn.avg_pool(x, (2, 2), (2, 2))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


def model(input_shape, num_classes, key, batch_norm="batch", widths=(8, 16)):
    """The CNN initialised by Flax (its own initialisers, BatchNorm statistics at 0 and 1), as a
    gzone Model whose BatchNorm layers use the statistics of the data it is diagnosed on."""
    net = SmallResNet(widths=tuple(widths), num_classes=num_classes)
    variables = net.init(key, jax.numpy.zeros((1, *input_shape)))
    return adapters.linen(net, variables, batch_norm=batch_norm, name="small ResNet (linen, BN)")
