"""Adam's preconditioned sharpness (gzone.training.sharpness) against a hand-written Adam and a
dense D^{-1/2} H D^{-1/2} in float64, and the beyond/adam study's learning rates and claim rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gzone import models, objective, studies, training
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.studies.icml._common import grid

MODEL = models.make_model("mlp", 3, widths=(5,))
X = jax.random.normal(jax.random.key(0), (20, 4), jnp.float64)
Y = jnp.arange(20) % 3


def _adam_by_hand(theta, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
    """θ_t and Adam's d_t = √v̂_t + ε after ``steps`` full-batch steps (Kingma & Ba, Alg. 1)."""
    flat, unravel = ravel_pytree(theta)
    grad = jax.grad(lambda p: objective.cross_entropy(MODEL.apply(unravel(p), X), Y))
    m, v = jnp.zeros_like(flat), jnp.zeros_like(flat)
    for t in range(1, steps + 1):
        g = grad(flat)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        flat = flat - lr * mhat / (jnp.sqrt(vhat) + eps)
    return flat, unravel, jnp.sqrt(v / (1 - b2 ** steps)) + eps


def test_preconditioned_sharpness_is_the_dense_top_eigenvalue():
    theta0 = models.init(MODEL, jax.random.key(1), (4,), dtype=jnp.float64)
    params = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), theta0)
    lrs = [0.01, 0.003]
    res = training.train_grid(MODEL.apply, params, X, Y, lr=lrs, steps=2, log_every=1,
                              optimizer="adam", sharpness=True, sharpness_iters=40,
                              preconditioned_sharpness=True)
    plain = training.train_grid(MODEL.apply, params, X, Y, lr=lrs, steps=2, log_every=1,
                                optimizer="adam", sharpness=True, sharpness_iters=40)
    np.testing.assert_array_equal(res.history["sharpness"], plain.history["sharpness"])
    assert "preconditioned_sharpness" not in plain.history
    assert np.all(np.isnan(res.history["preconditioned_sharpness"][:, 0]))  # no moment at step 0
    unravel = ravel_pytree(theta0)[1]
    hessian_at = jax.jit(jax.hessian(lambda p: objective.cross_entropy(MODEL.apply(unravel(p), X), Y)))
    for j, scale in enumerate((1.0, 2.0)):
        for steps in (1, 2):
            start = jax.tree_util.tree_map(lambda a, c=scale: c * a, theta0)
            flat, _, d = _adam_by_hand(start, lrs[j], steps)
            hessian = hessian_at(flat)
            s = 1 / jnp.sqrt(d)
            want = float(jnp.max(jnp.linalg.eigvalsh(s[:, None] * hessian * s[None, :])))
            np.testing.assert_allclose(res.history["preconditioned_sharpness"][j, steps], want,
                                       rtol=1e-8)


def test_preconditioned_sharpness_needs_adam():
    params = jax.tree_util.tree_map(lambda a: a[None], models.init(MODEL, jax.random.key(1), (4,)))
    with pytest.raises(ValueError, match="needs optimizer='adam'"):
        training.train_grid(MODEL.apply, params, X, Y, lr=[0.1], steps=2, log_every=1,
                            preconditioned_sharpness=True, sharpness=False)


def test_adams_learning_rate_follows_alpha():
    study = studies.get("beyond/adam")
    config = study.config(**study.presets["tiny"])
    point = {"alpha": 10.0, "lr0": 0.01, "optimizer": "adam"}
    assert grid.run_lr(config, point, 3) == pytest.approx(0.1)
    assert grid.run_lr(config, {**point, "optimizer": "gd"}, 3) == pytest.approx(0.001)
    paper = study.config(**{**study.presets["tiny"], "adam_lr": "paper"})
    assert grid.run_lr(paper, point, 3) == pytest.approx(0.001)


def _row(optimizer, alpha, zone, trained):
    return {"optimizer": optimizer, "alpha": alpha, "zone": zone, "trained": trained,
            "best_train": 0.5, "eos_ratio": 1.0}


def test_the_claim_rules():
    checks = {c.id: c.check for c in studies.get("beyond/adam").claims}
    check = checks["adam-trains-outside-zone"]
    rows = [_row("gd", 0.01, False, 0), _row("adam", 0.01, False, 1),
            _row("gd", 1.0, True, 2), _row("adam", 1.0, True, 2)]
    assert check(rows).verdict == REPRODUCED
    rows[1]["trained"] = 0
    assert check(rows).verdict == NOT_REPRODUCED
    rows[0]["trained"] = 1
    assert check(rows).verdict == INCONCLUSIVE  # GD trains everywhere outside the zone
    assert checks["adam-edge-of-stability"](rows).verdict == REPRODUCED
