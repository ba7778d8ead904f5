"""Outside the zone, explained (ICML App. E, Fig. 11, 12 left): the USO update and its identity
with small-α training (Eq. 3), penultimate features, the linearised model, linear probes, and the
studies icml/uso, icml/uso-retrain, icml/probe, icml/lazy against direct computations (their
tiny runs are the suite's shared ones), resume mid-run, one-line refusals."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_curvature import tiny_problem

from gzone import curvature, engine, jacobian, models, objective, probes, studies, training
from gzone.engine.setup import seed_params
from gzone.studies.icml import probe as probe_study
from gzone.studies.icml import uso, uso_retrain


def _flat(tree):
    return ravel_pytree(tree)[0]


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# ----------------------------------------------------------------------------- the USO update


def test_uso_update_is_eq3_with_a_uniform_softmax():
    # (1/N) Σ_μ Σ_k (1/K − 1{y=k}) ∂z_k/∂θ / T from an explicit Jacobian; and at a uniform
    # softmax (all logits zero: a zero last layer) the cross-entropy gradient is exactly that
    model, params, x, y = tiny_problem("mlp", n=9)
    flat, unravel = ravel_pytree(params)
    jac = jax.jacrev(lambda t: model.apply(unravel(t), x))(flat)  # (N, K, P)
    k = jac.shape[1]
    coeff = 1.0 / k - jax.nn.one_hot(y, k, dtype=flat.dtype)
    batches = curvature.prepare_batches(model.apply, params, x, y, chunk_size=4)
    for temperature in (1.0, 2.5):
        want = jnp.einsum("nk,nkp->p", coeff, jac) / len(x) / temperature
        got = _flat(training.update_direction(model.apply, params, batches, temperature, uso=True))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    zeroed = jax.tree_util.tree_map(jnp.array, params)
    zeroed["params"]["dense2"]["kernel"] = jnp.zeros_like(zeroed["params"]["dense2"]["kernel"])
    ce = _flat(training.update_direction(model.apply, zeroed, batches))
    np.testing.assert_allclose(_flat(training.update_direction(model.apply, zeroed, batches, uso=True)),
                               ce, rtol=1e-12, atol=1e-15)
    z = model.apply(params, x)
    np.testing.assert_allclose(objective.uniform_softmax_objective(z, y),
                               jnp.mean(jnp.sum(coeff * z, -1)), rtol=1e-12)


def test_small_alpha_network_follows_the_uso_path_while_its_softmax_is_uniform():
    # App. E / Eq. (3): α·θ0 trained by GD at effective_lr(lr0, α, L) is α times the USO model
    # trained from θ0 at lr0 — to 1e-6 relative while max |p − 1/K| stays below 1e-6 — and
    # leaves that path once the softmax is no longer uniform
    model, params, x, y = tiny_problem("mlp", n=11)
    alpha, lr0 = 1e-3, 0.1
    lr = training.effective_lr(lr0, alpha, model.homogeneity_degree)
    kw = {"log_every": 2, "sharpness": False}
    for steps, uniform in ((20, True), (30, False)):
        path = training.train(model.apply, params, x, y, lr=lr0, steps=steps, uso=True, **kw)
        net = training.train(model.apply, models.scale(params, alpha), x, y, lr=lr, steps=steps, **kw)
        gap = _rel(_flat(net.params) / alpha, _flat(path.params))
        deviation = net.history["uniform_deviation"].max()
        if uniform:
            assert deviation < 1e-6 and gap < 1e-6, (deviation, gap)
            np.testing.assert_allclose(net.history["parameter_norm"] / alpha,
                                       path.history["parameter_norm"], rtol=1e-6)
            np.testing.assert_allclose(net.history["cos_param_init"],
                                       path.history["cos_param_init"], rtol=1e-6)
        else:
            assert deviation > 0.1 and gap > 0.1, (deviation, gap)
    # the USO model itself never sees its softmax: its updates ignore the predictions
    assert path.history["uniform_deviation"][-1] > 0.1


def test_logged_uniform_deviation_and_distance_equal_direct_computations():
    model, params, x, y = tiny_problem("mlp", n=11)
    res = training.train(model.apply, params, x, y, lr=0.2, steps=6, log_every=3, sharpness=False,
                         chunk_size=4)
    p = jax.nn.softmax(model.apply(res.params, x))
    assert res.history["uniform_deviation"][-1] == pytest.approx(
        float(jnp.abs(p - 0.25).max()), rel=1e-12)
    assert res.history["distance_from_init"][-1] == pytest.approx(
        float(jnp.linalg.norm(_flat(res.params) - _flat(params))), rel=1e-12)
    assert res.history["distance_from_init"][0] == 0.0


# ----------------------------------------------------------------------------- features, linearisation


@pytest.mark.parametrize("kind", ["mlp", "lenet5"])
def test_penultimate_features_are_the_last_layers_input(kind):
    if kind == "mlp":
        model, params, x, _ = tiny_problem("mlp", n=9)
        w = params["params"]
        hand = jax.nn.relu(jax.nn.relu(x.reshape(9, -1) @ w["dense0"]["kernel"]) @ w["dense1"]["kernel"])
        last = w["dense2"]["kernel"]
    else:
        model = models.make_model("lenet5", 10)
        params = models.init(model, jax.random.key(0), (32, 32, 3), dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(1), (5, 32, 32, 3), jnp.float64)
        hand, last = None, params["params"]["dense2"]["kernel"]
    h = models.penultimate_features(model, params, x, chunk_size=4)  # two chunks, one padded
    assert h.shape == (len(x), last.shape[0]) and h.dtype == x.dtype
    np.testing.assert_allclose(h @ last, model.apply(params, x), rtol=1e-12, atol=1e-14)
    if hand is not None:
        np.testing.assert_allclose(h, hand, rtol=1e-12)
    assert set(models.init(model, jax.random.key(0), x.shape[1:])) == {"params"}  # nothing sown


def test_linearized_model_is_the_first_order_taylor_model_and_trains_as_one():
    model, params, x, y = tiny_problem("mlp", n=7)
    flat0, unravel = ravel_pytree(params)
    jac = jax.jacfwd(lambda t: model.apply(unravel(t), x))(flat0)  # (N, K, P)
    lin = jacobian.linearized(model.apply)
    assert jacobian.linearized(model.apply) is lin  # one function per model: jit caches reused
    delta = 0.1 * jax.random.normal(jax.random.key(3), flat0.shape, flat0.dtype)
    variables = {"theta": unravel(flat0 + delta), "anchor": params}
    want = model.apply(params, x) + jnp.einsum("nkp,p->nk", jac, delta)
    np.testing.assert_allclose(lin(variables, x), want, rtol=1e-12, atol=1e-14)
    # one hand-written GD step of the linear model: θ − η Jᵀ(softmax(z_lin) − onehot)/N
    start = jacobian.linearization_point(params)
    z = model.apply(params, x)
    grad = jnp.einsum("nkp,nk->p", jac, jax.nn.softmax(z) - jax.nn.one_hot(y, 4, dtype=z.dtype)) / 7
    res = training.train(lin, start, x, y, lr=0.5, steps=1, log_every=1, sharpness=False)
    np.testing.assert_allclose(_flat(res.params["theta"]), flat0 - 0.5 * grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(_flat(res.params["anchor"]), flat0)  # never trained


def test_probe_separates_separable_data_and_is_scale_blind():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3))
    x, x_test = rng.normal(size=(300, 6)), rng.normal(size=(200, 6))
    y, y_test = np.argmax(x @ w, 1), np.argmax(x_test @ w, 1)
    fit = probes.linear_probe(x, y, x_test, y_test, c=1e4)
    assert fit["train_accuracy"] == 1.0 and fit["test_accuracy"] > 0.95 and fit["converged"]
    scaled = probes.linear_probe(1e6 * x, y, 1e6 * x_test, y_test, c=1e4)  # standardised first
    assert scaled["test_accuracy"] == fit["test_accuracy"]
    noise = probes.linear_probe(x, rng.integers(0, 3, 300), x_test, rng.integers(0, 3, 200))
    assert noise["test_accuracy"] < 0.5  # chance is 1/3
    for bad, message in ((dict(train_features=np.full((4, 2), np.nan)), "non-finite"),
                         (dict(train_labels=np.zeros(300)), "single class"),
                         (dict(c=0.0), "c must be a finite number > 0")):
        kw = {"train_features": x, "train_labels": y, "test_features": x_test,
              "test_labels": y_test, **bad}
        c = kw.pop("c", 1.0)
        with pytest.raises(ValueError, match=message):
            probes.linear_probe(**kw, c=c)


# ----------------------------------------------------------------------------- the studies


def test_uso_study_records_the_path_and_where_each_network_leaves_it(tiny):
    run = tiny("icml/uso")
    records = run.records
    runs = [r for r in records if r["kind"] == "run"]
    assert {(r["run"], r["alpha"]) for r in runs} == {("uso", 1.0), ("scaled", 0.01), ("scaled", 0.1)}
    logs = [r for r in records if r["kind"] == "log"]
    keys = [(r["run"], r["alpha"], r["seed"], r["step"]) for r in logs]
    assert len(keys) == len(set(keys)) == 3 * 5  # 3 runs x steps 0, 10, ..., 40
    curves = uso.paths(records)
    steps, path = curves[("uso", 1.0)]
    for alpha in (0.01, 0.1):
        s, rescaled = curves[("scaled", alpha)]
        assert rescaled[0] == pytest.approx(path[0], rel=1e-6)  # ‖α θ0‖/α = ‖θ0‖
        dev = {r["step"]: r["uniform_deviation"] for r in logs if r["alpha"] == alpha}
        uniform = [t for t in s if max(d for u, d in dev.items() if u <= t) <= 1e-4]
        if alpha == 0.01:  # uniform to 1e-4 for most of the run (α = 0.1 is not, from the start)
            assert len(uniform) >= 3
        for t in uniform:  # on the USO path while the softmax is uniform (to 1e-4; float32)
            assert rescaled[list(s).index(t)] == pytest.approx(path[list(steps).index(t)], rel=1e-4)
    # the larger α leaves uniformity first; and its record says when, from the logged deviation
    by_alpha = {r["alpha"]: r for r in runs}
    assert by_alpha[0.1]["left_uniform_at"] is not None
    dev = {r["step"]: r["uniform_deviation"] for r in logs if r["alpha"] == 0.1}
    assert by_alpha[0.1]["left_uniform_at"] == min(t for t, d in dev.items() if d > run.config.uniform_tol)
    gone = uso.departures(records, rel_tol=1e-3)
    assert gone[(0.1, 0)] is not None and gone[(0.1, 0)] >= by_alpha[0.1]["left_uniform_at"]
    rows = run.study.summarize(records)
    assert {(row["alpha"], row["left_uniform_at"]) for row in rows} == {
        (r["alpha"], r["left_uniform_at"]) for r in runs if r["run"] == "scaled"}


def test_uso_retrain_records_geometry_and_retraining_from_rescaled_points(tiny):
    run = tiny("icml/uso-retrain")
    config = run.config
    rows = sorted((r for r in run.records if r["kind"] == "retrain"), key=lambda r: r["uso_step"])
    assert [r["uso_step"] for r in rows] == [0, 20, 40] and rows[0]["uso_horizon"] == 40
    setup = run.study.prepare(config, None)
    theta0 = seed_params(setup, config.init, 0)
    assert rows[0]["cos_param_init"] == pytest.approx(1.0, abs=1e-6)
    assert rows[0]["parameter_norm"] == pytest.approx(float(jnp.linalg.norm(_flat(theta0))), rel=1e-6)
    assert rows[-1]["cos_param_init"] < rows[0]["cos_param_init"]  # the path rotates
    # retraining from t = 0 is ordinary GD from θ0 itself
    direct = training.train(setup.model.apply, theta0, setup.x, setup.y, lr=config.retrain_lr0,
                            steps=config.retrain_steps, log_every=2, x_test=setup.x_test,
                            y_test=setup.y_test, sharpness=False)
    assert rows[0]["train_error"] == pytest.approx(1 - direct.history["train_accuracy"][-1], abs=1e-6)
    # the USO point at t: direct USO training, then its geometry from first principles
    path = training.train(setup.model.apply, theta0, setup.x, setup.y, lr=config.uso_lr0,
                          steps=20, log_every=20, uso=True, sharpness=False)
    flat = _flat(path.params)
    assert rows[1]["parameter_norm"] == pytest.approx(float(jnp.linalg.norm(flat)), rel=1e-5)
    g = _flat(jax.grad(lambda p: jnp.mean(jnp.sum(
        (1 / 10 - jax.nn.one_hot(setup.y, 10)) * setup.model.apply(p, setup.x), -1)))(path.params))
    assert rows[1]["cos_param_neg_gradient"] == pytest.approx(
        float(flat @ -g / jnp.linalg.norm(flat) / jnp.linalg.norm(g)), abs=1e-5)


def test_uso_horizon_stops_at_the_last_finite_log(tmp_path):
    study = studies.get("icml/uso-retrain")
    config = dataclasses.replace(engine.make_config(study, "tiny"), steps=80, uso_lr0=0.1,
                                 log_every=5, retrain_points=3, retrain_steps=4)
    records = engine.run(study, config, tmp_path)
    rows = [r for r in records if r["kind"] == "retrain"]
    horizon = rows[0]["uso_horizon"]
    assert 0 < horizon < 80  # the path blows up in finite time; points stay before it
    assert sorted(r["uso_step"] for r in rows) == uso_retrain.retrain_steps_of(config, horizon)
    assert not any(r["flags"] for r in rows)


def test_probe_study_matches_a_direct_probe(tiny):
    run = tiny("icml/probe")
    probes_ = [r for r in run.records if r["kind"] == "probe"]
    assert {(r["features"], r["alpha"], r["seed"]) for r in probes_} == {
        ("random", 1.0, 0), ("random", 1.0, 1),
        *{("trained", a, s) for a in (1.0, 100.0) for s in (0, 1)}}
    setup = run.study.prepare(run.config, None)
    theta = seed_params(setup, run.config.init, 1)
    direct = probes.linear_probe(models.penultimate_features(setup.model, theta, setup.x), setup.y,
                                 models.penultimate_features(setup.model, theta, setup.x_test),
                                 setup.y_test)
    rand = next(r for r in probes_ if r["features"] == "random" and r["seed"] == 1)
    assert rand["probe_test_accuracy"] == pytest.approx(direct["test_accuracy"])
    table = probe_study.probe_table(run.records)
    assert table["alpha"].tolist() == [1.0, 100.0]
    assert np.all(table["min"] <= table["mean"]) and np.all(table["mean"] <= table["max"])


def test_lazy_study_matches_direct_training_of_network_and_linearisation(tiny):
    run = tiny("icml/lazy")
    config = run.config
    rows = {r["alpha"]: r for r in run.records if r["kind"] == "lazy"}
    assert set(rows) == {1.0, 100.0}
    setup = run.study.prepare(config, None)
    theta = models.scale(seed_params(setup, config.init, 0), 100.0)
    lr = training.effective_lr(config.lr0, 100.0, setup.degree)
    kw = {"lr": lr, "steps": config.steps, "log_every": config.log_every, "x_test": setup.x_test,
          "y_test": setup.y_test, "sharpness": False}
    net = training.train(setup.model.apply, theta, setup.x, setup.y, **kw)
    lin = training.train(jacobian.linearized(setup.model.apply), jacobian.linearization_point(theta),
                         setup.x, setup.y, **kw)
    row = rows[100.0]
    assert row["test_accuracy"] == pytest.approx(net.history["test_accuracy"][-1], abs=1e-6)
    assert row["linear_test_accuracy"] == pytest.approx(lin.history["test_accuracy"][-1], abs=1e-6)
    assert row["relative_distance"] == pytest.approx(
        _rel(_flat(net.params), _flat(theta)), rel=1e-4)
    z = setup.model.apply(net.params, setup.x_test)
    z_lin = jacobian.linearized(setup.model.apply)(lin.params, setup.x_test)
    assert row["test_agreement"] == pytest.approx(float(jnp.mean(z.argmax(1) == z_lin.argmax(1))))
    assert row["logit_relative_difference"] == pytest.approx(_rel(z_lin, z), rel=1e-3)
    lin_logs = [r for r in run.records if r["kind"] == "log" and r["model"] == "linearized"]
    assert lin_logs and "parameter_norm" not in lin_logs[0]  # it would count the anchor
    assert [r["alpha"] for r in run.study.summarize(run.records)] == [1.0, 100.0]


@pytest.mark.parametrize("name, cut", [("icml/uso", 3), ("icml/uso-retrain", 5)])
def test_interrupted_studies_resume_without_losing_or_duplicating(name, cut, tiny, tmp_path):
    class Interrupt(Exception):
        pass

    def progress(items, total):
        for i, item in enumerate(items):
            if i == cut:
                raise Interrupt
            yield item

    run = tiny(name)
    with pytest.raises(Interrupt):
        engine.run(run.study, run.config, tmp_path, progress=progress)
    assert list((tmp_path / "checkpoints").glob("*"))  # a run in progress
    resumed = engine.run(run.study, run.config, tmp_path)

    def key(r):
        return tuple(r.get(k) for k in ("kind", "run", "alpha", "seed", "step", "uso_step"))

    assert sorted(map(key, resumed)) == sorted(map(key, run.records))
    assert len(set(map(key, resumed))) == len(resumed)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("name, overrides, message", [
    ("icml/uso", {"uso_alphas": (0.1, 2.0)}, "uso_alphas are the small-norm networks: every alpha must be < 1"),
    ("icml/probe", {"probe_alphas": ()}, "probe_alphas is empty"),
    ("icml/lazy", {"lazy_alphas": (0.0,)}, "lazy_alphas must hold finite numbers > 0"),
    ("icml/uso-retrain", {"retrain_points": 1}, "retrain_points must be at least 2"),
    ("icml/uso", {"uniform_tol": 1.5}, "uniform_tol must be < 1"),
    ("icml/lazy", {"lr0": -1.0}, "lr0 must be a finite number > 0"),
    ("icml/probe", {"log_every": 50}, "log_every=50 exceeds steps=40"),
    ("icml/uso", {"dataset": "svhn2"}, "unknown dataset 'svhn2'"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(name, overrides, message, tmp_path):
    study = studies.get(name)
    with pytest.raises(ValueError, match=message) as info:
        engine.run(study, dataclasses.replace(engine.make_config(study, "tiny"), **overrides),
                   tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_the_uso_figure_draws_the_path_on_top_marks_its_overflow_and_names_eta0():
    import matplotlib.pyplot as plt

    logs = [{"kind": "log", "run": run, "alpha": a, "seed": 0, "step": t,
             "parameter_norm": a * (1.0 + t)}
            for run, a in (("uso", 1.0), ("scaled", 0.1)) for t in range(0, 40, 10)]
    runs = [{"kind": "run", "run": "uso", "alpha": 1.0, "seed": 0, "lr": 0.003, "diverged_at": 35,
             "left_uniform_at": None},
            {"kind": "run", "run": "scaled", "alpha": 0.1, "seed": 0, "lr": 0.03,
             "diverged_at": None, "left_uniform_at": 20}]
    fig = uso.figure(logs + runs, title="t")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["USO model"].get_zorder() > lines[r"$\alpha$ = 0.1"].get_zorder()
    cross = lines["USO model overflows at step 35 (last finite log)"]
    assert list(cross.get_xdata()) == [30] and cross.get_marker() == "x"
    assert r"$\eta_0$ = 0.003" in fig._suptitle.get_text()
    plt.close(fig)
