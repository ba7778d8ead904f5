"""Training engine (gzone.training) against hand-written updates and direct computations on a tiny
MLP in float64, and the paper's Eq. (3) scaling identity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_curvature import dense_terms, tiny_problem

from gzone import curvature, metrics, models, objective, training


@pytest.fixture(scope="module")
def problem():
    return tiny_problem("mlp", n=11)


def _loss(model, params, x, y, temperature=1.0):
    return objective.cross_entropy(model.apply(params, x), y, temperature)


@pytest.mark.parametrize("driver", ["scan", "host"])
def test_gd_steps_equal_hand_written_updates(problem, driver):
    model, params, x, y = problem
    lr, steps = 0.3, 3
    got = training.train(model.apply, params, x, y, lr=lr, steps=steps, log_every=steps,
                         sharpness=False, driver=driver)
    want = params
    for _ in range(steps):
        g = jax.grad(lambda p: _loss(model, p, x, y))(want)
        want = jax.tree_util.tree_map(lambda a, b: a - lr * b, want, g)
    np.testing.assert_allclose(ravel_pytree(got.params)[0], ravel_pytree(want)[0], rtol=1e-10, atol=1e-12)
    assert got.diverged_at is None and list(got.history["step"]) == [0, steps]


def test_adam_matches_optax_adam(problem):
    import optax

    model, params, x, y = problem
    got = training.train(model.apply, params, x, y, lr=0.01, steps=4, log_every=2,
                         optimizer="adam", sharpness=False, driver="scan")
    opt = optax.adam(0.01)
    state, want = opt.init(params), params
    for _ in range(4):
        g = jax.grad(lambda p: _loss(model, p, x, y))(want)
        updates, state = opt.update(g, state, want)
        want = optax.apply_updates(want, updates)
    np.testing.assert_allclose(ravel_pytree(got.params)[0], ravel_pytree(want)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.3, 4.0])
def test_eq3_scaled_training_is_alpha_times_unscaled(problem, alpha):
    # f(αθ) = α^L f(θ): at T = α^L with lr·α², training scale(θ0, α) is exactly α·(training θ0)
    model, params, x, y = problem
    degree = model.homogeneity_degree
    kw = {"steps": 5, "log_every": 5, "sharpness": False, "driver": "scan"}
    base = training.train(model.apply, params, x, y, lr=0.2, **kw)
    scaled = training.train(model.apply, models.scale(params, alpha), x, y, lr=0.2 * alpha**2,
                            temperature=alpha**degree, **kw)
    np.testing.assert_allclose(ravel_pytree(scaled.params)[0], alpha * ravel_pytree(base.params)[0],
                               rtol=1e-10, atol=1e-12 * alpha)
    np.testing.assert_allclose(scaled.history["loss"], base.history["loss"], rtol=1e-10)
    assert training.effective_lr(0.2, alpha, 2) == pytest.approx(0.2)
    assert training.effective_lr(0.2, alpha, degree) == pytest.approx(0.2 * alpha ** (2 - degree))


def test_logged_metrics_equal_direct_computations(problem):
    model, params, x, y = problem
    res = training.train(model.apply, params, x, y, lr=0.5, steps=4, log_every=2, x_test=x[:5],
                         y_test=y[:5], temperature=0.7, sharpness=True, sharpness_iters=200,
                         sharpness_tol=1e-10,
                         driver="scan")
    h = res.history
    assert set(training.HISTORY_FIELDS) <= set(h) and len({len(v) for v in h.values()}) == 1
    assert list(h["step"]) == [0, 2, 4]
    # replay the trajectory by hand and compare every metric at every logged step
    theta, theta0 = params, ravel_pytree(params)[0]
    for i in range(5):
        if i % 2 == 0:
            j = i // 2
            z = model.apply(theta, x)
            p = objective.probs(z, 0.7)
            g = ravel_pytree(jax.grad(lambda q: _loss(model, q, x, y, 0.7))(theta))[0]
            flat = ravel_pytree(theta)[0]
            hess = np.asarray(dense_terms(model, theta, x, y, 0.7)[0])
            lam = np.linalg.eigvalsh((hess + hess.T) / 2)
            direct = {
                "loss": _loss(model, theta, x, y, 0.7),
                "train_accuracy": np.mean(np.asarray(jnp.argmax(z, -1) == y)),
                "test_accuracy": np.mean(np.asarray(jnp.argmax(model.apply(theta, x[:5]), -1) == y[:5])),
                "gradient_norm": jnp.linalg.norm(g), "parameter_norm": jnp.linalg.norm(flat),
                "cos_param_neg_gradient": flat @ -g / (jnp.linalg.norm(flat) * jnp.linalg.norm(g)),
                "cos_param_init": flat @ theta0 / (jnp.linalg.norm(flat) * jnp.linalg.norm(theta0)),
                "zero_logit_samples": np.mean(np.asarray(jnp.all(z == 0, -1))),
                "zero_logit_entries": np.mean(np.asarray(z == 0)),
                "entropy": jnp.mean(metrics.softmax_entropy(p)),
                "sharpness": lam[np.argmax(np.abs(lam))],
            }
            for name, value in direct.items():
                np.testing.assert_allclose(h[name][j], float(value), rtol=1e-8, atol=1e-12, err_msg=name)
        g = jax.grad(lambda q: _loss(model, q, x, y, 0.7))(theta)
        theta = jax.tree_util.tree_map(lambda a, b: a - 0.5 * b, theta, g)


def test_zero_logits_are_counted():
    # a ReLU MLP whose last hidden layer is dead outputs exactly zero logits
    model, params, x, y = tiny_problem("mlp", n=11)
    dead = jax.tree_util.tree_map(lambda a: a, params)
    dead["params"]["dense2"]["kernel"] = -jnp.abs(dead["params"]["dense2"]["kernel"]) * 0
    res = training.train(model.apply, dead, x, y, lr=0.1, steps=1, log_every=1, sharpness=False)
    assert res.history["zero_logit_samples"][0] == pytest.approx(1.0, rel=1e-12)
    assert res.history["zero_logit_entries"][0] == pytest.approx(1.0, rel=1e-12)
    alive = training.train(model.apply, params, x, y, lr=0.1, steps=1, log_every=1, sharpness=False)
    assert alive.history["zero_logit_samples"][0] == 0.0


def test_divergence_is_flagged_and_never_written(problem):
    model, params, x, y = problem
    # (lr = 1e30 does not diverge: its first step kills every ReLU — zero logits, g = 0 — a
    # finite state the run is not stopped for; 1e100 overflows float64 within 10 steps)
    res = training.train(model.apply, models.scale(params, 30.0), x, y, lr=1e100, steps=40,
                         log_every=10, sharpness=False, driver="scan")
    assert res.diverged_at is not None and 0 < res.diverged_at <= 40
    for name, values in res.history.items():
        if name not in ("test_accuracy", "sharpness", "sharpness_residual", "sharpness_matvecs"):  # not measured
            assert np.all(np.isfinite(values)), name
    assert res.history["step"][-1] < res.diverged_at
    assert np.all(np.isfinite(ravel_pytree(res.params)[0]))  # the last finite parameters


def test_an_exact_minimum_is_not_a_divergence():
    # a confident network that classifies every sample with a float32 loss of exactly 0 has g = 0:
    # cos(θ, −g) is undefined (NaN, flagged in records) but the run is fine and goes on
    model, params, x, _ = tiny_problem("mlp", n=11, dtype=jnp.float32)
    y = jnp.argmax(model.apply(params, x), -1)  # its own predictions, at a huge margin below
    res = training.train(model.apply, models.scale(params, 1e3), x, y, lr=1e-6, steps=4,
                         log_every=2, sharpness=True)
    assert res.diverged_at is None and res.history["step"].tolist() == [0, 2, 4]
    assert np.all(res.history["loss"] == 0) and np.all(res.history["gradient_norm"] == 0)
    assert np.all(res.history["train_accuracy"] == 1.0)  # an exact count: not 1.0000001
    assert np.all(np.isnan(res.history["cos_param_neg_gradient"]))
    assert np.all(res.history["sharpness"] == 0)  # G-term and H-term vanish at one-hot softmax


def test_random_labels(problem):
    model, params, x, y = problem
    kw = {"lr": 0.1, "steps": 2, "log_every": 1, "sharpness": False, "key": jax.random.key(3)}
    fixed = training.train(model.apply, params, x, y, labels="random-fixed", **kw)
    again = training.train(model.apply, params, x, y, labels="random-fixed", **kw)
    per_step = training.train(model.apply, params, x, y, labels="random-per-step", **kw)
    true = training.train(model.apply, params, x, y, **kw)
    np.testing.assert_array_equal(fixed.history["loss"], again.history["loss"])
    assert fixed.history["loss"][0] != true.history["loss"][0]
    assert per_step.history["loss"][1] != fixed.history["loss"][1]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"lr": 0.0}, "lr must be"), ({"lr": -1.0}, "lr must be"), ({"steps": 0}, "steps must be"),
     ({"log_every": 5, "steps": 2}, "log_every=5 exceeds"), ({"optimizer": "sgdm"}, "unknown optimizer"),
     ({"labels": "shuffled"}, "unknown labels"), ({"labels": "random-fixed"}, "pass key")],
)
def test_bad_input_is_one_line_error(problem, kwargs, match):
    model, params, x, y = problem
    args = {"lr": 0.1, "steps": 2, "log_every": 1, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        training.train(model.apply, params, x, y, **args)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        training.effective_lr(0.1, 0.0, 3)


def test_new_learning_rate_compiles_nothing_and_float32_stays_float32(compilations):
    model, params, x, y = tiny_problem("mlp", dtype=jnp.float32, n=11)
    kw = {"steps": 4, "log_every": 2, "sharpness": True, "sharpness_iters": 10, "driver": "scan"}
    first = training.train(model.apply, params, x, y, lr=0.1, **kw)
    assert ravel_pytree(first.params)[0].dtype == jnp.float32
    with compilations() as compiled:
        training.train(model.apply, params, x, y, lr=0.37, **kw)  # the lr is optimizer state
    assert compiled == []


def test_sharpness_stops_at_its_tolerance_and_warm_starts_save_steps(problem):
    # every estimate stops once its Lanczos residual estimate is below tol·|λ|: it then equals the
    # dense eigvalsh to that accuracy, with a true residual to match; the warm estimates (from the
    # previous log's eigenvector) need fewer steps than the cold one at step 0
    model, params, x, y = problem
    tol = 1e-6
    res = training.train(model.apply, params, x, y, lr=0.2, steps=12, log_every=2, driver="scan",
                         sharpness_iters=200, sharpness_tol=tol)
    theta = params
    for i in range(13):
        if i % 2 == 0:
            hess = np.asarray(dense_terms(model, theta, x, y, 1.0)[0])
            lam = np.linalg.eigvalsh((hess + hess.T) / 2)
            top = lam[np.argmax(np.abs(lam))]
            np.testing.assert_allclose(res.history["sharpness"][i // 2], top, rtol=2 * tol)
            assert res.history["sharpness_residual"][i // 2] < 10 * tol * abs(top)
        g = jax.grad(lambda q: _loss(model, q, x, y))(theta)
        theta = jax.tree_util.tree_map(lambda a, b: a - 0.2 * b, theta, g)
    steps = res.history["sharpness_matvecs"]
    assert np.all(steps >= 2) and np.all(steps <= 201)
    assert steps[1:].mean() < steps[0]
    # the cap: with tol below rounding, the estimate runs all of its steps
    capped = training.sharpness_of(model.apply, params, curvature.prepare_batches(
        model.apply, params, x, y), num_iters=7, tol=1e-300)
    assert capped[3] == 8


@pytest.mark.parametrize("batch_size", [None, 3])
def test_grid_equals_single_runs_and_freezes_diverged_points(problem, batch_size):
    model, params, x, y = problem
    points = [(0.5, 0.3), (1.0, 0.3), (2.0, 0.05), (30.0, 1e200)]  # (alpha, lr); the last diverges
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                     *[models.scale(params, a) for a, _ in points])
    kw = {"steps": 6, "log_every": 2, "x_test": x[:4], "y_test": y[:4], "driver": "scan",
          "sharpness_iters": 200, "sharpness_tol": 1e-10}
    grid = training.train_grid(model.apply, stacked, x, y, lr=[lr for _, lr in points],
                               batch_size=batch_size, **kw)
    assert grid.history["loss"].shape == (4, 4)
    for i, (alpha, lr) in enumerate(points):
        single = training.train(model.apply, models.scale(params, alpha), x, y, lr=lr, **kw)
        n = len(single.history["step"])
        for f in training.HISTORY_FIELDS:
            np.testing.assert_allclose(grid.history[f][i, :n], single.history[f], rtol=1e-9,
                                       atol=1e-12, err_msg=f"{f} at point {i}")
        assert np.all(np.isnan(grid.history["loss"][i, n:]))  # after divergence: not measured
        np.testing.assert_allclose(ravel_pytree(jax.tree_util.tree_map(lambda a, i=i: a[i], grid.params))[0],
                                   ravel_pytree(single.params)[0], rtol=1e-10, atol=1e-12)
        assert grid.diverged_at[i] == (-1 if single.diverged_at is None else single.diverged_at)
    assert grid.diverged_at[-1] > 0 and (grid.diverged_at[:-1] == -1).all()


def test_auto_driver_loops_on_the_host_only_for_convolutions_on_cpu():
    mlp, mlp_params, x, _ = tiny_problem("mlp", n=3)
    cnn, cnn_params, xc, _ = tiny_problem("cnn", n=3)
    on_cpu = jax.default_backend() == "cpu"
    assert training.auto_driver(mlp.apply, mlp_params, x[:1]) == "scan"
    assert training.auto_driver(cnn.apply, cnn_params, xc[:1]) == ("host" if on_cpu else "scan")
    # a convolution inside a nested jaxpr (jit, vmap) is found too
    nested = jax.jit(lambda p, v: jax.vmap(lambda u: cnn.apply(p, u[None]))(v))
    assert training.auto_driver(nested, cnn_params, xc[:1]) == ("host" if on_cpu else "scan")


@pytest.mark.parametrize("dtype, rtol", [(jnp.float64, 1e-10), (jnp.float32, 1e-4)])
def test_batched_sharpness_equals_the_per_point_estimates(dtype, rtol):
    """One vmapped Lanczos over a batch (both drivers; a point stopped early is frozen while the
    others go on; an inactive point is not measured) gives each point the estimate of
    ``sharpness_of`` alone: the same steps, λ to ``rtol``, the true residual to 1e-6·|λ|."""
    from gzone.training.sharpness import grid_sharpness

    model, params, x, y = tiny_problem("mlp", n=11)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    alphas = (0.5, 1.0, 2.0, 3.0)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[models.scale(params, a) for a in alphas])
    batches = curvature.prepare_batches(model.apply, params, x.astype(dtype), y)
    size = curvature.num_params(params)
    warm = jnp.asarray([False, True, False, True])
    vectors = jax.random.normal(jax.random.key(1), (4, size), dtype)
    active = jnp.asarray([True, True, True, False])
    key = jax.random.key(3)
    temps = jnp.asarray([1.0, 1.0, 2.0, 1.0], dtype)
    for driver in ("scan", "host"):
        lam, residual, vector, matvecs = grid_sharpness(
            model.apply, stacked, batches, temps, vectors, warm, active, key, num_iters=40,
            tol=1e-3, driver=driver)
        assert vector.dtype == dtype and lam.dtype == dtype
        steps = []
        for i in range(3):
            point = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
            ref = training.sharpness_of(model.apply, point, batches, temps[i], num_iters=40, key=key,
                                        tol=1e-3, v0=vectors[i] if warm[i] else None)
            np.testing.assert_allclose(float(lam[i]), ref[0], rtol=rtol)
            assert abs(float(residual[i]) - ref[1]) <= 1e-6 * abs(ref[0]) + 10 * rtol * ref[1]
            assert int(matvecs[i]) == ref[3]
            steps.append(ref[3])
        assert len(set(steps)) > 1  # the points stop at different steps: the freezing is exercised


def test_chunked_gradients_are_exact_and_the_scan_bounds_memory():
    """The full-batch gradient accumulated chunk by chunk (a scan, or a loop) equals one autodiff
    pass over the whole batch; compiled, the scan over 4 chunks holds less than half the
    temporaries of the unchunked pass (XLA's own memory analysis of the programs)."""
    from gzone.training import step

    model, params, x, y = tiny_problem("mlp", n=40)
    whole = curvature.prepare_batches(model.apply, params, x, y, 40)
    chunked = curvature.prepare_batches(model.apply, params, x, y, 10)
    want = jax.value_and_grad(lambda p: step.full_batch_loss(model.apply, p, whole, 1.0))(params)
    for scan in (True, False):
        got = step.full_batch_value_and_grad(model.apply, params, chunked, 1.0, scan=scan)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
        np.testing.assert_allclose(ravel_pytree(got[1])[0], ravel_pytree(want[1])[0], rtol=1e-12,
                                   atol=1e-15)
    wide = models.MLP(widths=(256, 256))
    p32 = models.init(wide, jax.random.key(0), (32,), dtype=jnp.float32)
    xs, ys = jnp.zeros((4096, 32), jnp.float32), jnp.zeros((4096,), jnp.int32)

    def temporaries(chunk, scan):
        b = curvature.prepare_batches(wide.apply, p32, xs, ys, chunk)
        fn = jax.jit(lambda p, b: step.full_batch_value_and_grad(wide.apply, p, b, 1.0, scan=scan))
        return fn.lower(p32, b).compile().memory_analysis().temp_size_in_bytes

    unchunked, scanned = temporaries(4096, True), temporaries(1024, True)
    assert scanned < 0.5 * unchunked, (scanned, unchunked)


def test_memory_budgets_follow_the_device_and_size_the_batches():
    class Device:
        platform = "gpu"

        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    gib = 1024**3
    assert curvature.device_memory_budget(Device({"bytes_limit": 80 * gib, "bytes_in_use": 10 * gib})) \
        == int(curvature.DEVICE_MEMORY_SHARE * 70 * gib)
    assert curvature.device_memory_budget(Device({})) == curvature.DEFAULT_MEMORY_BUDGET
    assert curvature.device_memory_budget(jax.devices("cpu")[0]) == curvature.DEFAULT_MEMORY_BUDGET
    model, params, x, _ = tiny_problem("mlp", dtype=jnp.float32, n=40)
    from gzone.training.loop import grid_layout, point_bytes

    each = point_bytes(params, "adam", True, 20)
    assert each == curvature.num_params(params) * 4 * (4 + 2 + 23)
    kw = {"optimizer": "adam", "sharpness": True, "sharpness_iters": 20, "chunk_size": None}
    assert grid_layout(model.apply, params, x, 100, batch_size=None, budget=2 * 10 * each, **kw)[0] == 10
    assert grid_layout(model.apply, params, x, 100, batch_size=None, budget=2 * 10 * each,
                       devices=4, **kw)[0] == 40  # each device holds its share
    assert grid_layout(model.apply, params, x, 3, batch_size=None, budget=2 * 10 * each, **kw)[0] == 3
    assert grid_layout(model.apply, params, x, 100, batch_size=7, budget=64, **kw)[0] == 7
    small = grid_layout(model.apply, params, x, 100, batch_size=8, budget=2 * 10 * each,
                        **{**kw, "chunk_size": None})[1]
    assert 1 <= small < 40  # 8 vmapped runs of 40 samples do not fit that budget in one chunk


def test_a_log_reads_the_devices_once():
    """No implicit device-to-host transfer anywhere in a grid's training (JAX's transfer guard),
    and each further log adds exactly one explicit read (the sharpness of every run included)."""
    from unittest import mock

    model, params, x, y = tiny_problem("mlp", dtype=jnp.float32, n=11)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                     *[models.scale(params, a) for a in (0.5, 1.0, 2.0)])
    kw = {"lr": [0.1] * 3, "log_every": 2, "driver": "scan", "sharpness_iters": 20,
          "sharpness_tol": 1e-3}
    reads = {}
    for steps in (6, 12):
        training.train_grid(model.apply, stacked, x, y, steps=steps, **kw)  # compiled first
        calls = []
        real = jax.device_get

        def counting(tree, calls=calls, real=real):
            calls.append(1)
            return real(tree)

        with mock.patch.object(jax, "device_get", counting), \
                jax.transfer_guard_device_to_host("disallow"):
            grid = training.train_grid(model.apply, stacked, x, y, steps=steps, **kw)
        assert np.isfinite(grid.history["sharpness"]).all()
        reads[len(grid.history["step"][0])] = len(calls)
    (few, a), (many, b) = sorted(reads.items())
    assert b - a == many - few  # one read per log
