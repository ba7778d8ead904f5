"""beyond/logit-normalization: the LogitNorm wrapper against Wei et al.'s loss written out, the
α-invariance of a homogeneous network's normalised loss (value, gradient, Hessian and its G-term
/ H-term, positive curvature, GD trajectories) against dense float64 references, the study's
tiny run (records, summary, claims, figure, resume, refusals) and its claim checks."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_RUN
from jax.flatten_util import ravel_pytree

from gzone import curvature, engine, metrics, models, objective, studies, subspace, training
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import ConfigError
from gzone.studies.beyond import logit_normalization as ln

STUDY = ln.STUDY
TAU = 0.3


def problem(n: int = 9):
    """A bias-free ReLU MLP 6-5-4 (L = 3) on n random 3x2 inputs, float64."""
    keys = jax.random.split(jax.random.key(1), 4)
    model = models.MLP(widths=(6, 5, 4))
    params = models.init(model, keys[0], (3, 2, 1), dtype=jnp.float64)
    x = jax.random.normal(keys[1], (n, 3, 2, 1), jnp.float64)
    y = jax.random.randint(keys[2], (n,), 0, 4)
    return model, params, x, y


def wei_loss(logits, y, tau, eps):
    """Wei et al.'s LogitNorm loss, written out: −log softmax(z / (τ(‖z‖ + ε)))_y, mean."""
    scaled = logits / (tau * (jnp.linalg.norm(logits, axis=-1, keepdims=True) + eps))
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(scaled), y[:, None], -1))


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_RUN)
def dense(model, params, x, y, tau, eps):
    """(loss, ∇, H, G-term, H-term) of Wei et al.'s loss at flat θ from their definitions: H by
    jax.hessian; G-term Jᵀ M J with J the Jacobian of the scaled logits u = z/(τ(‖z‖ + ε)) and
    M = diag p − ppᵀ; H-term Σ_k (p − y)_k ∇²u_k (Eq. 4 with u as the output)."""
    flat, unravel = ravel_pytree(params)

    def loss(t):
        return wei_loss(model.apply(unravel(t), x), y, tau, eps)

    def scaled(t):
        z = model.apply(unravel(t), x)
        return z / (tau * (jnp.linalg.norm(z, axis=-1, keepdims=True) + eps))

    u, jac = scaled(flat), jax.jacrev(scaled)(flat)
    n = len(x)
    gterm = jnp.einsum("nkp,nkl,nlq->pq", jac, objective.logit_hessian(u), jac) / n
    hterm = jnp.einsum("nk,nkpq->pq", objective.logit_gradient(u, y), jax.hessian(scaled)(flat)) / n
    return loss(flat), jax.grad(loss)(flat), jax.hessian(loss)(flat), gterm, hterm


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_RUN)
def ce_hessian(model, params, x, y):
    """The dense Hessian of plain cross-entropy (T = 1) at flat θ."""
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda t: objective.cross_entropy(model.apply(unravel(t), x), y))(flat)


def pc(matrix) -> float:
    return float(metrics.positive_curvature(metrics.eigenvalues(matrix)))


# ----------------------------------------------------------------------------- the wrapper


def test_unit_logits_and_the_wrapper_give_wei_et_als_loss():
    model, params, x, y = problem()
    z = model.apply(params, x)

    @jax.jit
    def both(z, eps):
        unit = objective.unit_logits(z, eps)
        return (objective.cross_entropy(unit, y, TAU), wei_loss(z, y, TAU, eps),
                jnp.linalg.norm(unit, axis=-1))

    for eps in (0.0, 1e-7, 0.5):
        got, want, norms = both(z, eps)
        np.testing.assert_allclose(got, want, rtol=1e-13)
        size = jnp.linalg.norm(z, axis=-1)
        np.testing.assert_allclose(norms, size / (size + eps), rtol=1e-13)
    wrapped = objective.LogitNormalized(model.apply, 1e-7)
    np.testing.assert_array_equal(wrapped(params, x), objective.unit_logits(z, 1e-7))
    # accuracy is the model's: the argmax is unchanged
    assert (jnp.argmax(wrapped(params, x), -1) == jnp.argmax(z, -1)).all()
    # zero logits (a dead network) stay zero, with finite first and second derivatives
    zero = jnp.zeros((2, 4))
    assert (objective.unit_logits(zero) == 0).all()
    hess = jax.jit(jax.hessian(
        lambda v: objective.cross_entropy(objective.unit_logits(v), y[:2], TAU)))(zero)
    assert np.isfinite(np.asarray(hess)).all()
    # hashable and equal by (apply, eps): one compiled program per model and eps
    a, b = objective.LogitNormalized(model.apply, 0.0), objective.LogitNormalized(model.apply, 0.0)
    assert a == b and hash(a) == hash(b) and a != objective.LogitNormalized(model.apply, 1e-7)


def test_engine_curvature_of_the_wrapper_equals_the_dense_definitions():
    """curvature.projected on the wrapper at T = τ (the input-layer pass the study uses) against Rᵀ(·)R of the dense H, G-term, H-term of Wei et al.'s loss."""
    model, params, x, y = problem()
    loss, grad, hess, gterm, hterm = dense(model, params, x, y, TAU, 1e-7)
    np.testing.assert_allclose(gterm + hterm, hess, rtol=1e-9, atol=1e-12)  # Eq. 4
    basis = subspace.random_basis(jax.random.key(2), models.num_params(params), 7, "orthonormal",
                                  jnp.float64)
    wrapped = objective.LogitNormalized(model.apply, 1e-7)
    # the input-layer pass, as the study runs it (through the wrapper, named explicitly)
    got = curvature.projected(wrapped, params, basis, x, y, TAU, input_layer="dense0")
    for name, want in (("hessian", hess), ("gterm", gterm), ("hterm", hterm)):
        np.testing.assert_allclose(getattr(got, name), basis.T @ want @ basis, rtol=1e-9,
                                   atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got.loss, loss, rtol=1e-12)
    np.testing.assert_allclose(got.gradient_norm, jnp.linalg.norm(grad), rtol=1e-10)


def test_the_normalised_loss_is_alpha_invariant_and_its_curvature_scales_as_alpha_minus_2():
    """ε = 0, L = 3: ℓ(αθ) = ℓ(θ), ∇ℓ(αθ) = ∇ℓ(θ)/α, H, G-term, H-term (αθ) = (·)(θ)/α², so
    positive curvature is the same at every α; Euler: θ·∇ℓ = 0 and Hθ = −∇ℓ. Plain CE's PC(H)
    does change with α (the contrast)."""
    model, params, x, y = problem()
    flat = ravel_pytree(params)[0]
    base = dense(model, params, x, y, TAU, 0.0)
    np.testing.assert_allclose(jnp.dot(flat, base[1]), 0, atol=1e-13)
    np.testing.assert_allclose(base[2] @ flat, -base[1], rtol=1e-9, atol=1e-12)
    for alpha in (0.05, 7.0):
        loss, grad, hess, gterm, hterm = dense(model, models.scale(params, alpha), x, y, TAU, 0.0)
        np.testing.assert_allclose(loss, base[0], rtol=1e-12)
        np.testing.assert_allclose(grad * alpha, base[1], rtol=1e-9, atol=1e-13)
        for got, want in ((hess, base[2]), (gterm, base[3]), (hterm, base[4])):
            np.testing.assert_allclose(got * alpha**2, want, rtol=1e-8, atol=1e-12)
        for got, want in ((hess, base[2]), (gterm, base[3]), (hterm, base[4])):
            assert pc(got) == pytest.approx(pc(want), abs=1e-9)
    ce = [pc(ce_hessian(model, models.scale(params, a), x, y)) for a in (0.05, 1.0, 7.0)]
    assert max(ce) - min(ce) > 0.1


def test_gd_at_lr0_alpha_squared_follows_alpha_scaled_copies():
    """Full-batch GD on the wrapper at η = η0·α² from α·θ0: θ_t(α) = α·θ_t(1), the same losses
    and accuracies at every log (ε = 0, float64); at the CE rule η0·α^(2−L) it does not."""
    model, params, x, y = problem(n=16)
    alphas = (1.0, 0.2, 5.0)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                     *[models.scale(params, a) for a in alphas] * 2)
    lrs = [ln.lr_of({"lr0": 0.5, "alpha": a, "loss_kind": "logitnorm"}, 3) for a in alphas] + \
          [ln.lr_of({"lr0": 0.5, "alpha": a, "loss_kind": "ce"}, 3) for a in alphas]
    assert lrs[:3] == pytest.approx([0.5 * a**2 for a in alphas])
    result = training.train_grid(objective.LogitNormalized(model.apply, 0.0), stacked, x, y,
                                 lr=lrs, temperature=TAU, steps=6, log_every=2, sharpness=False)
    final = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], result.params))[0]
    for j, alpha in enumerate(alphas):
        theta = ravel_pytree(jax.tree_util.tree_map(lambda a, j=j: a[j], result.params))[0]
        np.testing.assert_allclose(theta, alpha * final, rtol=1e-9, atol=1e-12)
        for f in ("loss", "train_accuracy", "cos_param_init"):
            np.testing.assert_allclose(result.history[f][j], result.history[f][0], rtol=1e-9)
    wrong = ravel_pytree(jax.tree_util.tree_map(lambda a: a[4], result.params))[0]
    assert not np.allclose(wrong, 0.2 * final, rtol=1e-3)
    assert result.history["loss"][0][-1] < result.history["loss"][0][0]  # it trains


# ----------------------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def run(tmp_path_factory, request):
    """The tiny preset: the suite's shared run once the study is registered, else its own."""
    if STUDY.name in studies.STUDIES:
        done = request.getfixturevalue("tiny")(STUDY.name)
        return done.config, done.out, done.records
    out = tmp_path_factory.mktemp("logit-norm") / "tiny"
    config = engine.make_config(STUDY, "tiny")
    return config, out, engine.run(STUDY, config, out)


def test_tiny_run_records_rows_claims_and_figure(run, tmp_path):
    import matplotlib.pyplot as plt

    config, out, records = run
    curv = [r for r in records if r["kind"] == "curvature"]
    runs = [r for r in records if r["kind"] == "run"]
    assert len(curv) == 3 * 3 and len(runs) == 3 * 2 * 3
    assert {(r["loss_kind"], r["tau"]) for r in runs} == {("ce", None), ("logitnorm", 0.04),
                                                          ("logitnorm", 1.0)}
    for r in runs:
        want = training.effective_lr(r["lr0"], r["alpha"], 3 if r["loss_kind"] == "ce" else 0)
        assert r["lr"] == pytest.approx(want) and r["temperature"] == (r["tau"] or 1.0)
    logs = [r for r in records if r["kind"] == "log"]
    assert len(logs) == len(runs) * 3 and all("loss_kind" in r and "tau" in r for r in logs)
    # the math, in the float32 records: LogitNorm's curvature at init is the same at every alpha
    for tau in config.taus:
        same = [r for r in curv if r["tau"] == tau]
        for name in ("pc_hessian", "pc_gterm", "pc_hterm", "loss"):
            values = [r[name] for r in same]
            assert max(values) - min(values) < 1e-3 * max(1.0, abs(values[0])), (tau, name)
    rows = STUDY.summarize(records)
    assert [(r["loss_kind"], r["tau"]) for r in rows][::3] == [("ce", None), ("logitnorm", 0.04),
                                                               ("logitnorm", 1.0)]
    assert all(r["runs"] == 2 and sum(r[o] for o in ("diverged", "zero-logits", "trained",
                                                     "untrained")) == 2 for r in rows)
    claims = {c["claim"]: c for c in engine.claims.evaluate(STUDY, records, "tiny")}
    assert set(claims) == {"pc-alpha-invariant", "trains-where-ce-fails",
                           "trainability-alpha-invariant"}
    assert claims["pc-alpha-invariant"]["verdict"] == REPRODUCED
    figures = STUDY.figure(records, title="tiny", path_stem=tmp_path / "fig")
    assert (tmp_path / "fig.png").exists() and (tmp_path / "fig-heatmaps.pdf").exists()
    for fig in figures:
        plt.close(fig)


def test_resume_computes_nothing_and_bad_configs_name_their_field(run, tmp_path):
    import shutil

    config, out, records = run
    shutil.copytree(out, tmp_path / "copy")

    def measure(ctx, chunk):
        raise AssertionError(f"measured {chunk} again")

    again = engine.run(dataclasses.replace(STUDY, measure=measure), config, tmp_path / "copy")
    assert len(again) == len(records)
    for field, value in (("taus", ()), ("taus", (0.1, 0.1)), ("eps", -1.0), ("optimizer", "adam"),
                         ("zone_dim", 0)):
        with pytest.raises(ConfigError) as info:
            engine.check(STUDY, dataclasses.replace(config, **{field: value}))
        assert info.value.name == field


# ----------------------------------------------------------------------------- claim checks


def _rows(ce_pc, ln_pc, ce_trains, ln_trains, ln_best=(0.9, 0.9, 0.9)):
    alphas = (0.1, 1.0, 10.0)
    out = [{"loss_kind": "ce", "tau": None, "alpha": a, "pc_hessian": p, "trains": t,
            "best_train": 0.5, "eps_over_logit_norm": None}
           for a, p, t in zip(alphas, ce_pc, ce_trains)]
    return out + [{"loss_kind": "logitnorm", "tau": 0.04, "alpha": a, "pc_hessian": p, "trains": t,
                   "best_train": b, "eps_over_logit_norm": 1e-6}
                  for a, p, t, b in zip(alphas, ln_pc, ln_trains, ln_best)]


def test_claim_checks_give_every_verdict():
    yes, no = (True, True, True), (False, True, False)
    assert ln.check_pc_invariant(_rows((0.1, 0.9, 0.2), (0.5, 0.5, 0.5), yes, yes)).verdict == REPRODUCED
    assert ln.check_pc_invariant(_rows((0.1, 0.9, 0.2), (0.5, 0.6, 0.5), yes, yes)).verdict == NOT_REPRODUCED
    assert ln.check_pc_invariant(_rows((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), yes, yes)).verdict == INCONCLUSIVE
    pcs = ((0.1, 0.9, 0.2), (0.5, 0.5, 0.5))
    assert ln.check_trains_where_ce_fails(_rows(*pcs, no, yes)).verdict == REPRODUCED
    assert ln.check_trains_where_ce_fails(_rows(*pcs, no, no)).verdict == NOT_REPRODUCED
    assert ln.check_trains_where_ce_fails(_rows(*pcs, yes, yes)).verdict == INCONCLUSIVE
    finding = ln.check_trains_where_ce_fails(_rows(*pcs, no, yes))
    assert finding.measured["logitnorm_tau0.04_gained_alphas"] == [0.1, 10.0]
    assert ln.check_trainability_invariant(_rows(*pcs, no, yes)).verdict == REPRODUCED
    assert ln.check_trainability_invariant(
        _rows(*pcs, no, yes, ln_best=(0.5, 0.9, 0.9))).verdict == NOT_REPRODUCED
