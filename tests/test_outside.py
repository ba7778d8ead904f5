"""Outside the zone, explained (ICML App. E, Fig. 11, 12 left; Sec. 5 random labels): the USO
update and its identity with small-α training (Eq. 3), penultimate features, the linearised
model, linear probes, the five studies of gzone.experiments.outside (records against direct
computations, resume, refusal), their figures and script."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_curvature import tiny_problem

from gzone import curvature, jacobian, models, objective, probes, results, training
from gzone.experiments import lazy, outside, uso
from gzone.plots import outside as figures

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import outside_zone as script  # noqa: E402  (scripts/outside_zone.py)

TINY = outside.make_config("tiny")


def study_group(study: str) -> pytest.MarkDecorator:
    """The tests of one tiny study share a worker, so its run (the ``studies`` fixture) is computed
    once per suite; the five studies spread over the workers."""
    return pytest.mark.xdist_group(f"outside-{study}")


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


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Each tiny study, run once on first use: study -> (out, records)."""
    done: dict[str, tuple[Path, list]] = {}

    def get(study: str):
        if study not in done:
            out = tmp_path_factory.mktemp(study)
            done[study] = (out, outside.run(dataclasses.replace(TINY, study=study), out))
        return done[study]

    return get


@study_group("uso")
def test_uso_study_records_the_path_and_where_each_network_leaves_it(studies):
    out, records = studies("uso")
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
    assert by_alpha[0.1]["left_uniform_at"] == min(t for t, d in dev.items() if d > TINY.uniform_tol)
    gone = uso.departures(records, rel_tol=1e-3)
    assert gone[(0.1, 0)] is not None and gone[(0.1, 0)] >= by_alpha[0.1]["left_uniform_at"]
    assert not list((out / "checkpoints").glob("*"))


@study_group("uso-retrain")
def test_uso_retrain_records_geometry_and_retraining_from_rescaled_points(studies):
    out, records = studies("uso-retrain")
    rows = sorted((r for r in records if r["kind"] == "retrain"), key=lambda r: r["uso_step"])
    assert [r["uso_step"] for r in rows] == [0, 20, 40] and rows[0]["uso_horizon"] == 40
    config = TINY
    setup, x_test, y_test = outside.load_setup(config, None)
    theta0 = outside.initial_params(setup, config, 0)
    assert rows[0]["cos_param_init"] == pytest.approx(1.0, abs=1e-6)
    assert rows[0]["parameter_norm"] == pytest.approx(float(jnp.linalg.norm(_flat(theta0))), rel=1e-6)
    assert rows[-1]["cos_param_init"] < rows[0]["cos_param_init"]  # the path rotates
    # retraining from t = 0 is ordinary GD from θ0 itself
    direct = training.train(setup.model.apply, theta0, setup.x, setup.y, lr=config.retrain_lr0,
                            steps=config.retrain_steps, log_every=2, x_test=x_test, y_test=y_test,
                            sharpness=False)
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
    assert not (out / "checkpoints" / "uso-path-seed-0.npz").exists()


def test_uso_horizon_stops_at_the_last_finite_log(tmp_path):
    config = dataclasses.replace(TINY, steps=80, uso_lr0=0.1, log_every=5, retrain_points=3,
                                 retrain_steps=4)
    records = outside.run(dataclasses.replace(config, study="uso-retrain"), tmp_path)
    rows = [r for r in records if r["kind"] == "retrain"]
    horizon = rows[0]["uso_horizon"]
    assert 0 < horizon < 80  # the path blows up in finite time; points stay before it
    assert sorted(r["uso_step"] for r in rows) == uso.retrain_steps_of(config, horizon)
    assert not any(r["flags"] for r in rows)


@study_group("probe")
def test_probe_study_matches_a_direct_probe(studies):
    _, records = studies("probe")
    probes_ = [r for r in records if r["kind"] == "probe"]
    assert {(r["features"], r["alpha"], r["seed"]) for r in probes_} == {
        ("random", 1.0, 0), ("random", 1.0, 1),
        *{("trained", a, s) for a in (1.0, 100.0) for s in (0, 1)}}
    setup, x_test, y_test = outside.load_setup(TINY, None)
    theta = outside.initial_params(setup, TINY, 1)
    direct = probes.linear_probe(models.penultimate_features(setup.model, theta, setup.x), setup.y,
                                 models.penultimate_features(setup.model, theta, x_test), y_test)
    rand = next(r for r in probes_ if r["features"] == "random" and r["seed"] == 1)
    assert rand["probe_test_accuracy"] == pytest.approx(direct["test_accuracy"])
    table = lazy.probe_table(records)
    assert table["alpha"].tolist() == [1.0, 100.0]
    assert np.all(table["min"] <= table["mean"]) and np.all(table["mean"] <= table["max"])


@study_group("lazy")
def test_lazy_study_matches_direct_training_of_network_and_linearisation(studies):
    _, records = studies("lazy")
    rows = {r["alpha"]: r for r in records if r["kind"] == "lazy"}
    assert set(rows) == {1.0, 100.0}
    setup, x_test, y_test = outside.load_setup(TINY, None)
    theta = models.scale(outside.initial_params(setup, TINY, 0), 100.0)
    lr = training.effective_lr(TINY.lr0, 100.0, setup.degree)
    kw = {"lr": lr, "steps": TINY.steps, "log_every": TINY.log_every, "x_test": x_test,
          "y_test": y_test, "sharpness": False}
    net = training.train(setup.model.apply, theta, setup.x, setup.y, **kw)
    lin = training.train(jacobian.linearized(setup.model.apply), jacobian.linearization_point(theta),
                         setup.x, setup.y, **kw)
    row = rows[100.0]
    assert row["test_accuracy"] == pytest.approx(net.history["test_accuracy"][-1], abs=1e-6)
    assert row["linear_test_accuracy"] == pytest.approx(lin.history["test_accuracy"][-1], abs=1e-6)
    assert row["relative_distance"] == pytest.approx(
        _rel(_flat(net.params), _flat(theta)), rel=1e-4)
    z = setup.model.apply(net.params, x_test)
    z_lin = jacobian.linearized(setup.model.apply)(lin.params, x_test)
    assert row["test_agreement"] == pytest.approx(float(jnp.mean(z.argmax(1) == z_lin.argmax(1))))
    assert row["logit_relative_difference"] == pytest.approx(_rel(z_lin, z), rel=1e-3)
    lin_logs = [r for r in records if r["kind"] == "log" and r["model"] == "linearized"]
    assert lin_logs and "parameter_norm" not in lin_logs[0]  # it would count the anchor


@study_group("random-labels")
def test_random_labels_study_runs_the_three_label_kinds(studies):
    out, records = studies("random-labels")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "labels-random-fixed", "labels-random-per-step", "labels-true"]
    assert {r["labels"] for r in records if r["kind"] == "log"} == set(training.LABELS)
    assert not any(r["flags"] for r in records)  # sharpness not measured: null, not flagged


@pytest.mark.parametrize("study, cut", [
    pytest.param("uso", 3, marks=study_group("uso")),
    pytest.param("uso-retrain", 5, marks=study_group("uso-retrain"))])
def test_interrupted_studies_resume_without_losing_or_duplicating(study, cut, studies, tmp_path):
    class Interrupt(Exception):
        pass

    def progress_until(n):
        def progress(items, total):
            for i, item in enumerate(items):
                if i == n:
                    raise Interrupt
                yield item
        return progress

    config = dataclasses.replace(TINY, study=study)
    with pytest.raises(Interrupt):
        outside.run(config, tmp_path / study, progress=progress_until(cut))
    assert list((tmp_path / study / "checkpoints").glob("*"))  # a run in progress
    resumed = outside.run(config, tmp_path / study)
    _, whole = studies(study)

    def key(r):
        return tuple(r.get(k) for k in ("kind", "run", "alpha", "seed", "step", "uso_step"))

    assert sorted(map(key, resumed)) == sorted(map(key, whole))
    assert len(set(map(key, resumed))) == len(resumed)


@pytest.mark.parametrize("overrides, message", [
    ({"study": "nope"}, "unknown study 'nope'"),
    ({"uso_alphas": (0.1, 2.0)}, "uso_alphas are the small-norm networks: every alpha must be < 1"),
    ({"probe_alphas": ()}, "probe_alphas is empty"),
    ({"lazy_alphas": (0.0,)}, "lazy_alphas must hold finite numbers > 0"),
    ({"retrain_points": 1}, "retrain_points must be at least 2"),
    ({"uniform_tol": 1.5}, "uniform_tol must be < 1"),
    ({"lr0": -1.0}, "lr0 must be a finite number > 0"),
    ({"log_every": 50}, "log_every=50 exceeds steps=40"),
    ({"dataset": "svhn2"}, "unknown dataset 'svhn2'"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message) as info:
        outside.run(dataclasses.replace(TINY, **overrides), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@study_group("uso")
def test_another_configuration_is_refused(studies):
    out, _ = studies("uso")
    with pytest.raises(results.ConfigMismatchError, match="uso_lr0"):
        outside.run(dataclasses.replace(TINY, uso_lr0=0.2), out)


@pytest.mark.parametrize("study", [pytest.param(s, marks=study_group(s)) for s in outside.STUDIES])
def test_figures_draw_records_and_empty_ones(study, studies, tmp_path):
    _, records = studies(study)
    for recs in (records, []):
        fig = figures.outside_figure(recs, study, title=study, path_stem=tmp_path / study)
        assert fig.axes
        if recs and study == "uso":
            assert len(fig.axes[0].lines) >= 3 and fig.axes[0].get_yscale() == "log"
        plt.close(fig)
    assert (tmp_path / f"{study}.png").exists()
    with pytest.raises(ValueError, match="unknown study"):
        figures.outside_figure([], "nope")


@study_group("lazy")
def test_script_summarises_draws_and_refuses_bad_flags(studies, capsys, tmp_path):
    out, _ = studies("lazy")
    assert script.main(["--preset", "tiny", "--study", "lazy", "--out", str(out),
                        "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "agreement" in text and (out / "lazy.png").exists()
    assert script.main(["--preset", "tiny", "--study", "uso", "--uso-alphas", "0.5,3",
                        "--out", str(tmp_path / "o"), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --uso-alphas are the small-norm networks") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
