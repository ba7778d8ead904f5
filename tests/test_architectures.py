"""The networks beyond the papers (gzone.architectures): every variant runs and is initialised by
gzone; a layer followed by a normalisation is scale-invariant (output unchanged when its kernel
and bias are scaled) while the others are not; the adapters take them (BatchNorm held)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gzone import adapters, architectures, models

X_IMAGES = jax.random.normal(jax.random.key(0), (8, 16, 16, 1), jnp.float64)


def _variables(module, x, train=False):
    return models.init(module, jax.random.key(1), x.shape[1:], dtype=jnp.float64)


def _output(module, variables, x, norm):
    if norm == "batch":  # batch statistics, as in training
        return module.apply(variables, x, train=True, mutable=["batch_stats"])[0]
    return module.apply(variables, x)


def _scaled(variables, layer, factor):
    path = layer.split("/")

    def scale(tree, depth=0):
        if depth == len(path):
            return {k: v * factor for k, v in tree.items()}
        return {**tree, path[depth]: scale(tree[path[depth]], depth + 1)}

    return {**variables, "params": scale(variables["params"])}


MODULES = {
    "mlp": lambda norm, act: architectures.NormMLP(widths=(32, 16, 10), activation=act, norm=norm),
    "lenet5": lambda norm, act: architectures.NormLeNet5(activation=act, norm=norm),
    "resnet": lambda norm, act: architectures.ResidualCNN(channels=8, blocks=2, activation=act,
                                                         norm=norm),
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("norm", architectures.NORMS)
def test_normalised_layers_are_scale_invariant_and_the_others_are_not(name, norm):
    module = MODULES[name](norm, "gelu" if name == "mlp" else "relu")
    variables = _variables(module, X_IMAGES)
    base = _output(module, variables, X_IMAGES, norm)
    assert base.shape == (8, 10) and bool(jnp.all(jnp.isfinite(base)))
    invariant = architectures.scale_invariant_layers(module)
    assert (len(invariant) > 0) == (norm != "none")
    for layer in invariant:  # exact but for the normalisation's ε against small variances
        moved = _output(module, _scaled(variables, layer, 3.0), X_IMAGES, norm)
        np.testing.assert_allclose(moved, base, rtol=1e-2, atol=1e-3, err_msg=layer)
    last = {"mlp": "dense2", "lenet5": "dense2", "resnet": "dense"}[name]
    moved = _output(module, _scaled(variables, last, 3.0), X_IMAGES, norm)
    assert float(jnp.max(jnp.abs(moved - base))) > 0.1  # the output layer is not invariant


def test_bad_choices_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown norm 'group'; choose one of none, batch, layer"):
        _variables(architectures.NormMLP(widths=(4, 2), norm="group"), X_IMAGES)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        _variables(architectures.NormMLP(widths=(4, 2), activation="swish"), X_IMAGES)


@pytest.mark.parametrize("mode", adapters.BATCH_NORM_MODES)
def test_the_adapters_take_them_with_batchnorm_held(mode):
    module = architectures.ResidualCNN(channels=4, blocks=2, norm="batch")
    variables = _variables(module, X_IMAGES)
    model = adapters.linen(module, variables, batch_norm=mode).bind(X_IMAGES)
    logits = model.apply(model.params, X_IMAGES)
    assert logits.shape == (8, 10)
    if mode == "batch":  # held at the full batch's statistics: the training-mode output
        np.testing.assert_allclose(logits, _output(module, variables, X_IMAGES, "batch"),
                                   rtol=1e-6, atol=1e-8)
