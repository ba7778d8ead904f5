"""beyond/adam: Adam's preconditioned sharpness (gzone.training.sharpness) against a hand-written
Adam and the dense D^{-1/2} H D^{-1/2} in float64 (both Lanczos drivers; the plain sharpness
unchanged by the option; NaN at step 0; only with Adam), its checkpoint/resume; the study's tiny
run (records, rows per optimizer and alpha, claims, figure, resume, refusals), its learning-rate
rule and its claim rules."""

from __future__ import annotations

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gzone import curvature, engine, models, objective, studies, training
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import ConfigError
from gzone.studies.beyond import adam
from gzone.studies.icml._common import grid

STUDY = adam.STUDY
MODEL = models.make_model("mlp", 3, widths=(5,))
X = jax.random.normal(jax.random.key(0), (20, 4), jnp.float64)
Y = jnp.arange(20) % 3
#: relative agreement with the dense eigenvalue: Lanczos run to (near) the full Krylov space
RTOL = {jnp.float64: 1e-8, jnp.float32: 1e-4}


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
    return flat, jnp.sqrt(v / (1 - b2 ** steps)) + eps


def _hessian_at(unravel):
    return jax.jit(jax.hessian(lambda p: objective.cross_entropy(MODEL.apply(unravel(p), X), Y)))


def test_preconditioned_sharpness_is_the_dense_top_eigenvalue():
    """After k = 1, 2 Adam steps of train_grid: λ_max(D^{-1/2} H D^{-1/2}) from jax.hessian and a
    hand-written Adam, to 1e-8; NaN at step 0; the plain sharpness bit-identical with and without
    the option."""
    theta0 = models.init(MODEL, jax.random.key(1), (4,), dtype=jnp.float64)
    params = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), theta0)
    lrs = [0.01, 0.003]
    kw = {"lr": lrs, "steps": 2, "log_every": 1, "optimizer": "adam", "sharpness": True,
          "sharpness_iters": 40, "sharpness_tol": 1e-12, "driver": "scan"}
    res = training.train_grid(MODEL.apply, params, X, Y, preconditioned_sharpness=True, **kw)
    plain = training.train_grid(MODEL.apply, params, X, Y, **kw)
    np.testing.assert_array_equal(res.history["sharpness"], plain.history["sharpness"])
    assert set(plain.history) == set(training.HISTORY_FIELDS)
    assert set(res.history) == set(training.HISTORY_FIELDS + training.PRECONDITIONED_FIELDS)
    assert np.all(np.isnan(res.history["preconditioned_sharpness"][:, 0]))  # no v̂ at step 0
    hessian_at = _hessian_at(ravel_pytree(theta0)[1])
    for j, scale in enumerate((1.0, 2.0)):
        for steps in (1, 2):
            start = jax.tree_util.tree_map(lambda a, c=scale: c * a, theta0)
            flat, d = _adam_by_hand(start, lrs[j], steps)
            s = 1 / jnp.sqrt(d)
            want = float(jnp.linalg.eigvalsh(s[:, None] * hessian_at(flat) * s[None, :])[-1])
            plain_top = float(jnp.linalg.eigvalsh(hessian_at(flat))[-1])
            assert want > 0 and abs(want - plain_top) > 0.1 * want  # the preconditioner matters
            np.testing.assert_allclose(res.history["preconditioned_sharpness"][j, steps], want,
                                       rtol=RTOL[jnp.float64])


def test_both_drivers_read_adams_state_and_stop_at_tol():
    """The batch function on an optax state after one Adam step from θ (v̂ = g², so D = |g| + ε):
    the host loop and the fused program give the dense λ_max(D^{-1/2} H D^{-1/2}) with a tight
    tol, within tol·λ with tol = 1e-3; a run not active, NaN."""
    from gzone.training import sharpness

    dtype = jnp.float64
    theta0 = models.init(MODEL, jax.random.key(1), (4,), dtype=dtype)
    params = jax.tree_util.tree_map(lambda a: jnp.stack([a, 3 * a]), theta0)
    x = X.astype(dtype)
    batches = curvature.prepare_batches(MODEL.apply, theta0, x, Y, None)
    opt = training.make_optimizer("adam")

    def one_step(p):
        g = jax.grad(lambda q: objective.cross_entropy(MODEL.apply(q, x), Y))(p)
        return opt.update(g, training.init_optimizer("adam", p, 0.01), p)[1]

    state = jax.vmap(one_step)(params)
    temps = jnp.ones(2, dtype)
    flat0, unravel = ravel_pytree(theta0)
    hessian_at = _hessian_at(unravel)
    grad_at = jax.grad(lambda p: objective.cross_entropy(MODEL.apply(unravel(p), X), Y))
    want = []
    for c in (1.0, 3.0):
        flat = c * flat0.astype(jnp.float64)
        s = 1 / jnp.sqrt(jnp.abs(grad_at(flat)) + 1e-8)
        want.append(float(jnp.linalg.eigvalsh(s[:, None] * hessian_at(flat) * s[None, :])[-1]))
    for driver, active in (("scan", [True, True]), ("host", [True, False])):
        got = sharpness.preconditioned_sharpness(
            MODEL.apply, params, batches, temps, state, jnp.asarray(active), jax.random.key(2),
            num_iters=40, tol=1e-12, driver=driver)
        assert got.dtype == dtype and np.isnan(got[1]) == (not active[1])
        np.testing.assert_allclose(np.asarray(got)[np.asarray(active)],
                                   np.asarray(want)[np.asarray(active)], rtol=RTOL[dtype])
    got = sharpness.preconditioned_sharpness(
        MODEL.apply, params, batches, temps, state, jnp.asarray([True, True]), jax.random.key(2),
        num_iters=40, tol=1e-3, driver="scan")
    assert np.all(np.abs(np.asarray(got) - want) <= 1e-3 * np.asarray(want))  # stopped at tol


def test_preconditioned_sharpness_needs_adam():
    params = jax.tree_util.tree_map(lambda a: a[None], models.init(MODEL, jax.random.key(1), (4,)))
    with pytest.raises(ValueError, match="needs optimizer='adam', got 'gd'"):
        training.train_grid(MODEL.apply, params, X, Y, lr=[0.1], steps=2, log_every=1,
                            preconditioned_sharpness=True, sharpness=False)


def test_a_run_with_preconditioned_sharpness_resumes_exactly(tmp_path):
    """train(preconditioned_sharpness=True) stopped at its step-4 log resumes from the step-2
    checkpoint to the uninterrupted history (the new field included); a checkpoint of the run
    without the field is another run's."""
    theta = models.init(MODEL, jax.random.key(1), (4,), dtype=jnp.float64)
    kw = {"lr": 0.01, "steps": 6, "log_every": 2, "optimizer": "adam", "sharpness": False,
          "sharpness_iters": 30, "preconditioned_sharpness": True}
    whole = training.train(MODEL.apply, theta, X, Y, **kw)

    class Stop(Exception):
        pass

    def stop_at_4(step, row):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        training.train(MODEL.apply, theta, X, Y, checkpoint_dir=tmp_path, on_log=stop_at_4, **kw)
    seen = []
    resumed = training.train(MODEL.apply, theta, X, Y, checkpoint_dir=tmp_path,
                             on_log=lambda step, row: seen.append(step), **kw)
    assert seen == [4, 6]
    assert np.isnan(whole.history["preconditioned_sharpness"][0])
    assert np.all(np.isfinite(whole.history["preconditioned_sharpness"][1:]))
    for f in training.HISTORY_FIELDS + training.PRECONDITIONED_FIELDS:
        np.testing.assert_allclose(resumed.history[f], whole.history[f], rtol=1e-10, err_msg=f)
    with pytest.raises(ValueError, match=r"differs in preconditioned_sharpness"):
        training.train(MODEL.apply, theta, X, Y, checkpoint_dir=tmp_path,
                       **{**kw, "preconditioned_sharpness": False})


# ----------------------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def run(tmp_path_factory, request):
    """The tiny preset: the suite's shared run once the study is registered, else its own."""
    if STUDY.name in studies.STUDIES:
        done = request.getfixturevalue("tiny")(STUDY.name)
        return done.config, done.out, done.records
    out = tmp_path_factory.mktemp("adam") / "tiny"
    config = engine.make_config(STUDY, "tiny")
    return config, out, engine.run(STUDY, config, out)


def test_tiny_run_records_rows_claims_and_figure(run, tmp_path):
    import matplotlib.pyplot as plt

    config, out, records = run
    alphas, lr0s = adam.alphas(config), grid.lr0_grid(config)
    zone = [r for r in records if r["kind"] == "zone"]
    runs = [r for r in records if r["kind"] == "run"]
    assert len(zone) == len(alphas) * config.seeds
    assert sorted((r["optimizer"], r["alpha"], r["lr0"]) for r in runs) == sorted(
        (o, a, r) for o in config.optimizers for a in alphas for r in lr0s)
    degree = STUDY.prepare(config, None).degree
    for r in runs:  # GD at the paper's eta0*alpha^(2-L), Adam at eta0*alpha
        want = r["lr0"] * r["alpha"] ** (1 if r["optimizer"] == "adam" else 2 - degree)
        assert r["lr"] == pytest.approx(want)
        assert ("max_preconditioned_sharpness" in r) == (r["optimizer"] == "adam")
    logs = [r for r in records if r["kind"] == "log"]
    for r in logs:
        value = r["preconditioned_sharpness"]
        if r["optimizer"] == "gd" or r["step"] == 0:
            assert value is None  # not measured (GD) / undefined before Adam's first step
        else:
            assert np.isfinite(value) and value > 0
    rows = STUDY.summarize(records)
    assert [(r["optimizer"], r["alpha"]) for r in rows] == [
        (o, a) for o in sorted(config.optimizers) for a in alphas]
    assert all(sum(r[o] for o in grid.OUTCOMES) == len(lr0s) * config.seeds for r in rows)
    assert all((r["eos_ratio"] is None) == (r["optimizer"] == "gd" or not r["trained"])
               for r in rows)
    claims = {c["claim"]: c for c in engine.claims.evaluate(STUDY, records, "tiny")}
    assert set(claims) == {"adam-trains-outside-zone", "adam-edge-of-stability"}
    figures = STUDY.figure(records, title="tiny", path_stem=tmp_path / "fig")
    for stem in ("fig", "fig-gd", "fig-adam"):
        assert (tmp_path / f"{stem}.png").exists() and (tmp_path / f"{stem}.pdf").exists()
    for fig in figures:
        plt.close(fig)


def test_resume_computes_nothing_and_bad_configs_name_their_field(run, tmp_path):
    config, out, records = run
    shutil.copytree(out, tmp_path / "copy")

    def measure(ctx, chunk):
        raise AssertionError(f"measured {chunk} again")

    again = engine.run(dataclasses.replace(STUDY, measure=measure), config, tmp_path / "copy")
    assert len(again) == len(records)
    for field, value in (("optimizers", ()), ("optimizers", ("adam", "adam")),
                         ("optimizers", ("sgd",)), ("adam_lr", "sqrt"), ("alpha_min", -1.0),
                         ("lr0_max", 0.0)):
        with pytest.raises(ConfigError) as info:
            engine.check(STUDY, dataclasses.replace(config, **{field: value}))
        assert info.value.name == field, (field, value)


def test_adams_learning_rate_follows_alpha():
    config = STUDY.config(**STUDY.presets["tiny"])
    point = {"alpha": 10.0, "lr0": 0.01, "optimizer": "adam"}
    assert grid.run_lr(config, point, 3) == pytest.approx(0.1)
    assert grid.run_lr(config, {**point, "optimizer": "gd"}, 3) == pytest.approx(0.001)
    paper = STUDY.config(**{**STUDY.presets["tiny"], "adam_lr": "paper"})
    assert grid.run_lr(paper, point, 3) == pytest.approx(0.001)


# ----------------------------------------------------------------------------- claim checks


def _row(optimizer, alpha, zone, trained, eos=1.0):
    return {"optimizer": optimizer, "alpha": alpha, "zone": zone, "trained": trained,
            "best_train": 0.5, "eos_ratio": eos}


def test_the_claim_rules():
    check = adam.check_adam_outside_zone
    rows = [_row("gd", 0.01, False, 0), _row("adam", 0.01, False, 1),
            _row("gd", 1.0, True, 2), _row("adam", 1.0, True, 2)]
    finding = check(rows)
    assert finding.verdict == REPRODUCED and finding.measured["adam_only"] == [0.01]
    rows[1]["trained"] = 0
    assert check(rows).verdict == NOT_REPRODUCED
    rows[0]["trained"] = 1
    assert check(rows).verdict == INCONCLUSIVE  # GD trains everywhere outside the zone
    assert check([r for r in rows if r["optimizer"] == "gd"]).verdict == INCONCLUSIVE  # no Adam
    assert check([r for r in rows if r["zone"]]).verdict == INCONCLUSIVE  # nothing outside
    eos = adam.check_edge_of_stability
    assert eos(rows).verdict == REPRODUCED
    assert eos([{**r, "eos_ratio": 0.3} for r in rows]).verdict == NOT_REPRODUCED
    assert eos([{**r, "eos_ratio": None} for r in rows]).verdict == INCONCLUSIVE
