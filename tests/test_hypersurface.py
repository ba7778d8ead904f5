"""Training on random hyperplanes and hyperspheres with a sparse basis (Fort & Scherlis Sec. 2.1-2.2).

Every check is against a direct computation: the dense R, jax.grad of the full-space loss, a
hand-written Adam, empirical stds of models.init draws. float64 is available (tests/conftest.py
turns jax_enable_x64 on); float32 cases pass float32 arrays explicitly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gzone import hypersurface as hs
from gzone import models, objective, subspace

F32, F64 = jnp.float32, jnp.float64


def _problem(dtype=F64, n=24, activation="relu"):
    """A tiny MLP with biases (4 -> 5 -> 3, P = 43), Xavier θ0, and n Gaussian samples."""
    model = models.make_model("mlp", 3, widths=(5,), activation=activation, use_bias=True)
    keys = jax.random.split(jax.random.key(0), 3)
    params = models.init(model, keys[0], (4,), scheme="xavier", dtype=dtype)
    x = jax.random.normal(keys[1], (n, 4), dtype)
    y = jax.random.randint(keys[2], (n,), 0, 3)
    return model, params, x, y


def _full_loss(model, params, x, y, temperature):
    unravel = ravel_pytree(params)[1]
    return lambda theta: objective.cross_entropy(model.apply(unravel(theta), x), y, temperature)


# ----------------------------------------------------------------------------- sparse basis


def test_project_and_transpose_equal_the_dense_basis():
    basis = hs.sparse_basis(jax.random.key(1), 500, 7, F64)
    dense = np.asarray(hs.to_dense(basis))
    rng = np.random.default_rng(0)
    theta_hat, v = rng.normal(size=7), rng.normal(size=500)

    @jax.jit
    def sparse_side(basis, theta_hat, v):
        project = functools.partial(hs.project, basis)
        return {"project": project(theta_hat), "transpose": hs.project_transpose(basis, v),
                "apply": hs.apply_basis(basis, theta_hat), "apply_t": hs.apply_basis_transpose(basis, v),
                "vjp": jax.vjp(project, theta_hat)[1](v)[0],  # reverse mode: the cotangent through Rᵀ
                "jacfwd": jax.jacfwd(project)(theta_hat),  # forward mode: the Jacobian is R
                "grad": jax.grad(lambda t: jnp.sum(jnp.sin(project(t))))(theta_hat),
                "dense_apply": hs.apply_basis(jnp.asarray(dense), theta_hat),
                "dense_apply_t": hs.apply_basis_transpose(jnp.asarray(dense), v)}

    got = sparse_side(basis, jnp.asarray(theta_hat), jnp.asarray(v))
    expected = {"project": dense @ theta_hat, "transpose": dense.T @ v, "apply": dense @ theta_hat,
                "apply_t": dense.T @ v, "vjp": dense.T @ v, "jacfwd": dense,
                "grad": dense.T @ np.cos(dense @ theta_hat), "dense_apply": dense @ theta_hat,
                "dense_apply_t": dense.T @ v}
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-15, err_msg=name)
    assert np.count_nonzero(dense) == basis.nnz  # to_dense placed every entry once
    assert basis.rows.size == hs.nnz_capacity(500, 7) > basis.nnz  # padded with zero entries
    # θ̂'s (and v's) dtype is kept, whatever the basis's
    got32 = sparse_side(basis, jnp.asarray(theta_hat, F32), jnp.asarray(v, F32))
    assert {a.dtype for a in jax.tree_util.tree_leaves(got32)} == {jnp.dtype(F32)}
    np.testing.assert_allclose(got32["project"], dense @ theta_hat, rtol=1e-5, atol=1e-6)


def test_sparse_basis_has_the_distribution_of_subspace_sparse_basis():
    p, d = 10_000, 400
    basis = hs.sparse_basis(jax.random.key(4), p, d, F64)
    rows, cols, values = (np.asarray(a) for a in (basis.rows, basis.cols, basis.values))
    assert basis.shape == (p, d) and rows.dtype == cols.dtype == np.int32 and values.dtype == np.float64
    assert rows.size == hs.nnz_capacity(p, d) > basis.nnz  # padded with zero-valued entries ...
    assert np.all(np.diff(rows) >= 0) and rows.min() >= 0 and rows.max() < p
    assert cols.min() >= 0 and cols.max() < d
    pad = values == 0  # ... spread over rows and columns (no scatter-add hot spot)
    assert np.bincount(rows[pad]).max() <= 1 and np.ptp(np.bincount(cols[pad], minlength=d)) <= 1
    rows, cols, values = rows[~pad], cols[~pad], values[~pad]
    np.testing.assert_allclose(np.sqrt(np.bincount(cols, values**2, minlength=d)), 1.0, rtol=1e-12)
    assert len(np.unique(rows.astype(np.int64) * d + cols)) == len(rows)  # no duplicate entries
    assert np.all(np.diff(rows) >= 0) and rows.min() >= 0 and rows.max() < p
    counts = np.bincount(cols, minlength=d)
    q = 1 / np.sqrt(p)  # Binomial(P, 1/√P) non-zeros per column
    se = np.sqrt(p * q * (1 - q) / d)
    assert abs(counts.mean() - p * q) < 5 * se, (counts.mean(), p * q, se)
    assert abs(counts.std() / np.sqrt(p * q * (1 - q)) - 1) < 0.2
    positive = np.mean(values > 0)
    assert abs(positive - 0.5) < 5 * 0.5 / np.sqrt(len(values)), positive
    per_block = np.bincount(rows // (p // 10), minlength=10)  # rows uniform over [0, P)
    assert np.all(np.abs(per_block - len(rows) / 10) < 5 * np.sqrt(len(rows) / 10)), per_block
    # the same key gives the same basis, another key another
    again = hs.sparse_basis(jax.random.key(4), p, d, F64)
    assert np.array_equal(again.rows[~pad], rows) and np.array_equal(again.values[~pad], values)
    assert not np.array_equal(hs.sparse_basis(jax.random.key(5), p, d, F64).rows[:50], rows[:50])
    # P = 4: a column is empty with probability 1/16, ~25 of these 400 would be; each gets one entry
    for k in range(100):
        small = hs.sparse_basis(jax.random.key(100 + k), 4, 4, F64)
        norms = np.bincount(np.asarray(small.cols), np.asarray(small.values) ** 2, minlength=4)
        np.testing.assert_allclose(norms, 1.0, rtol=1e-12)


def test_sparse_basis_builds_lenet300_size_without_a_dense_array():
    p, d = 266_610, 10_000
    basis = hs.sparse_basis(jax.random.key(7), p, d)
    nnz, capacity = basis.nnz, hs.nnz_capacity(p, d)
    q = 1 / np.sqrt(p)
    assert abs(nnz - d * p * q) < 5 * np.sqrt(d * p * q * (1 - q)), nnz
    assert nnz < capacity < 1.01 * d * p * q  # the padding costs under 1% here
    leaves = jax.tree_util.tree_leaves(basis)  # P and d are static metadata, not leaves
    assert [leaf.shape for leaf in leaves] == [(capacity,)] * 3
    assert sum(leaf.nbytes for leaf in leaves) == 12 * capacity  # int32, int32, float32: ~62 MB, not 10 GB
    norms = jax.ops.segment_sum(basis.values**2, basis.cols, d)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_nnz_capacity_bounds_every_draw_and_overflow_raises_instead_of_dropping(monkeypatch):
    # the hard bound P d where the margin would pass it, the Bernstein bound otherwise
    assert hs.nnz_capacity(4, 4) == 16 and hs.nnz_capacity(500, 7) < 500 * 7
    p, d = 10_000, 50  # Binomial(P d, 1/√P) + d: the capacity is ≥ 7 standard deviations above
    assert hs.nnz_capacity(p, d) >= d * np.sqrt(p) + 7 * np.sqrt(d * np.sqrt(p)) + d
    draws = [hs.sparse_basis(jax.random.key(k), p, d) for k in range(20)]
    assert {b.rows.size for b in draws} == {hs.nnz_capacity(p, d)} and len({b.nnz for b in draws}) > 1
    monkeypatch.setattr(hs, "nnz_capacity", lambda num_params, dim: 10)
    with pytest.raises(ValueError, match="more than its capacity 10"):
        hs.sparse_basis(jax.random.key(0), p, d)


def test_sparse_basis_rejects_bad_dimensions_and_float64_without_x64():
    for dim in (0, 11):
        with pytest.raises(ValueError, match="dim"):
            hs.sparse_basis(jax.random.key(0), 10, dim)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="64-bit"):
            hs.sparse_basis(jax.random.key(0), 10, 2, F64)


# ----------------------------------------------------------------------------- the metric


@pytest.mark.parametrize("scheme", ["xavier", "kaiming"])
def test_init_std_matches_models_init_draws(scheme):
    cases = [(models.make_model("mlp", 10, widths=(40, 30), use_bias=True), (20,)),
             (models.make_model("lenet5"), (16, 16, 1))]  # conv kernels: the receptive field counts
    for model, shape in cases:
        draws = [models.init(model, jax.random.key(k), shape, scheme=scheme) for k in range(20)]
        for path, _ in jax.tree_util.tree_flatten_with_path(draws[0])[0]:
            if path[-1].key != "kernel":
                continue
            leaves = [np.asarray(_get(d, path)) for d in draws]
            empirical = np.std(np.stack(leaves))
            assert abs(models.init_std(leaves[0].shape, scheme) / empirical - 1) < 0.05, (path, scheme)


def _get(tree, path):
    for entry in path:
        tree = tree[entry.key]
    return tree


def test_layer_metric_is_rms_one_with_biases_on_their_layers_value():
    model = models.make_model("mlp", 10, widths=(40, 30), use_bias=True)
    params = models.init(model, jax.random.key(0), (20,), scheme="xavier")
    metric = subspace.layer_metric(jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params), "xavier")
    assert metric.shape == (ravel_pytree(params)[0].size,) and metric.dtype == F64
    np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(metric) ** 2)), 1.0, rtol=1e-12)
    tree = ravel_pytree(params)[1](metric)["params"]
    stds = {name: models.init_std(layer["kernel"].shape, "xavier") for name, layer in params["params"].items()}
    norm = tree["dense0"]["kernel"].ravel()[0] / stds["dense0"]
    for name, layer in tree.items():
        np.testing.assert_allclose(layer["kernel"], stds[name] * norm, rtol=1e-12)
        np.testing.assert_allclose(layer["bias"], stds[name] * norm, rtol=1e-12)
    assert len({float(layer["kernel"].ravel()[0]) for layer in tree.values()}) == 3  # per-layer shape
    assert subspace.layer_metric(params).dtype == F32
    with pytest.raises(ValueError, match="scheme"):
        subspace.layer_metric(params, "orthogonal")
    with pytest.raises(ValueError, match="metric"):
        subspace.layer_metric({"params": {"norm": {"scale": jnp.ones(3)}}})


# ----------------------------------------------------------------------------- surfaces


def test_hypersphere_stays_on_its_sphere_and_hyperplane_starts_at_scaled_origin():
    _, params, _, _ = _problem(F32)
    origin = ravel_pytree(params)[0]
    metric = subspace.layer_metric(params)
    basis = hs.sparse_basis(jax.random.key(1), origin.size, 6, F32)
    radius = float(jnp.linalg.norm(origin.astype(F64)))
    sphere, plane = jax.jit(hs.hypersphere_point), jax.jit(hs.hyperplane_point)
    rng = np.random.default_rng(1)
    zero = jnp.zeros(6, F32)
    for scale in (0.1, 1.0, 30.0):
        for size in (1e-3, 1.0, 1e2):
            theta_hat = jnp.asarray(size * rng.normal(size=6), F32)
            point = sphere(origin, basis, metric, theta_hat, scale)
            assert point.dtype == F32
            np.testing.assert_allclose(np.linalg.norm(np.asarray(point, np.float64)), scale * radius, rtol=1e-6)
        np.testing.assert_array_equal(plane(origin, basis, metric, zero, scale), scale * np.asarray(origin))
        np.testing.assert_allclose(sphere(origin, basis, metric, zero, scale), scale * np.asarray(origin),
                                   rtol=1e-6)
    o64, m64, t64 = (np.asarray(a, np.float64) for a in (origin, metric, np.arange(6.0) - 2))
    d64 = np.asarray(hs.to_dense(basis), np.float64)
    np.testing.assert_allclose(plane(o64, basis, m64, t64, 2.5), 2.5 * (o64 + m64 * (d64 @ t64)), rtol=1e-12)


# ----------------------------------------------------------------------------- training


def _adam(theta, grads_at, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
    """Adam as in Kingma & Ba (optax.adam's defaults), by hand."""
    m = v = jnp.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grads_at(theta)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        theta = theta - lr * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps)
    return theta


def test_adam_steps_equal_hand_written_updates_with_the_explicit_gradient():
    """Two full-batch epochs = two Adam steps on θ̂ with ∂L/∂θ̂ written out: s Rᵀ M ∇θL on the
    hyperplane, Rᵀ M (s r0/‖u‖)(I − û ûᵀ) ∇θL on the sphere; ∇θL by jax.grad in full space."""
    model, params, x, y = _problem(F64)
    origin = ravel_pytree(params)[0]
    metric = subspace.layer_metric(params)
    loss = _full_loss(model, params, x, y, 1.7)
    lr, scale = 0.03, 1.3
    cases = (("hyperplane", hs.sparse_basis(jax.random.key(3), origin.size, 5, F64)),
             ("hypersphere", subspace.orthonormal_basis(jax.random.key(4), origin.size, 5, F64)))
    for surface, basis in cases:
        dense = hs.to_dense(basis) if isinstance(basis, hs.SparseBasis) else basis

        @jax.jit
        def reference(dense, surface=surface):
            def point(theta_hat):
                u = origin + metric * (dense @ theta_hat)
                return scale * (u if surface == "hyperplane" else jnp.linalg.norm(origin) * u / jnp.linalg.norm(u))

            def grad_hat(theta_hat):
                u = origin + metric * (dense @ theta_hat)
                g = jax.grad(loss)(point(theta_hat))
                if surface == "hyperplane":
                    return scale * dense.T @ (metric * g)
                unit = u / jnp.linalg.norm(u)
                factor = scale * jnp.linalg.norm(origin) / jnp.linalg.norm(u)
                return dense.T @ (metric * factor * (g - unit * (unit @ g)))

            theta_hat = _adam(jnp.zeros(5, F64), grad_hat, lr, 2)
            end = point(theta_hat)
            return theta_hat, loss(scale * origin), loss(end), jnp.linalg.norm(end)

        result = hs.train_hypersurface(model.apply, params, basis, x, y, surface=surface,
                                       scales=jnp.array([scale]), lr=lr, epochs=2, batch_size=len(x),
                                       key=jax.random.key(5), temperature=1.7)
        theta_hat, loss0, loss2, radius2 = reference(dense)
        np.testing.assert_allclose(result.theta_hat[0], theta_hat, rtol=1e-10)
        assert result.theta_hat.dtype == F64
        np.testing.assert_allclose(result.history["loss"][0, [0, -1]], [loss0, loss2], rtol=1e-10)
        np.testing.assert_allclose(result.history["radius"][0, -1], radius2, rtol=1e-12)
        assert list(result.history["epoch"][0]) == [0, 1, 2] and list(result.diverged_at) == [-1]


def _grid_problem():
    """The float32 problem of the grid and divergence tests (one compiled program for both)."""
    model, params, x, y = _problem(F32, n=30)
    basis = hs.sparse_basis(jax.random.key(6), ravel_pytree(params)[0].size, 8, F32)
    kw = dict(surface="hypersphere", lr=0.05, epochs=3, batch_size=8, key=jax.random.key(7),
              x_test=x[:10], y_test=y[:10])
    return model, params, x, y, basis, kw


def test_vmapped_grid_equals_per_scale_runs_and_sphere_keeps_its_radius():
    model, params, x, y, basis, kw = _grid_problem()
    origin = ravel_pytree(params)[0]
    scales = jnp.array([0.5, 1.0, 2.0], F32)
    grid = hs.train_hypersurface(model.apply, params, basis, x, y, scales=scales, **kw)
    assert grid.theta_hat.shape == (3, 8) and grid.theta_hat.dtype == F32
    assert np.all(grid.diverged_at == -1) and np.all(np.abs(grid.theta_hat) > 0)
    assert np.all(grid.history["loss"][:, -1] < grid.history["loss"][:, 0])  # it trains
    for i in range(3):
        one = hs.train_hypersurface(model.apply, params, basis, x, y, scales=scales[i:i + 1], **kw)
        np.testing.assert_allclose(grid.theta_hat[i], one.theta_hat[0], rtol=1e-5, atol=1e-6)
        for field in hs.HISTORY_FIELDS:
            np.testing.assert_allclose(grid.history[field][i], one.history[field][0], rtol=1e-5)
    # on the sphere of radius s‖θ0‖ at every log, and at the final θ̂
    radius = float(jnp.linalg.norm(origin.astype(F64)))
    expected = np.asarray(scales, np.float64)[:, None] * radius * np.ones((1, 4))
    np.testing.assert_allclose(grid.history["radius"], expected, rtol=1e-6)
    metric = subspace.layer_metric(params)
    final = jax.jit(jax.vmap(hs.hypersphere_point, in_axes=(None, None, None, 0, 0)))(
        origin, basis, metric, grid.theta_hat, scales)
    np.testing.assert_allclose(jnp.linalg.norm(final.astype(F64), axis=1), expected[:, 0], rtol=1e-6)


def _unpadded(basis):
    """``basis`` without its padding entries: the draw's own, random, number of entries."""
    real = np.asarray(basis.values) != 0
    return hs.SparseBasis(basis.rows[real], basis.cols[real], basis.values[real], *basis.shape)


def test_one_program_serves_every_seed_at_a_given_d_and_padding_changes_no_bit():
    """Two seeds (θ0 and basis) at one d: the second compiles no new epoch or log program, while
    the same bases unpadded (their random nnz as the array shape) do; results are bit-identical
    with and without padding. A new d is a new θ̂ shape and still compiles."""
    model, _, x, y = _problem(F32, n=16)
    kw = dict(surface="hypersphere", scales=jnp.array([0.5, 2.0], F32), lr=0.05, epochs=2,
              batch_size=8, key=jax.random.key(9), x_test=x[:6], y_test=y[:6])

    def run(seed, dim, pad=True):
        params = models.init(model, jax.random.key(seed), (4,), scheme="xavier", dtype=F32)
        basis = hs.sparse_basis(jax.random.key(50 + seed), ravel_pytree(params)[0].size, dim, F32)
        basis = basis if pad else _unpadded(basis)
        result = hs.train_hypersurface(model.apply, params, basis, x, y, **kw)
        return result, basis.nnz, (hs._epoch._cache_size(), hs._log._cache_size())

    padded = [run(seed, 6) for seed in (0, 1)]
    assert padded[0][1] != padded[1][1]  # the draws' nnz differ ...
    assert padded[1][2] == padded[0][2]  # ... yet the second seed compiled nothing
    unpadded = [run(seed, 6, pad=False) for seed in (0, 1)]
    assert unpadded[1][2] == tuple(n + 1 for n in unpadded[0][2])  # unpadded: one more each
    for (a, _, _), (b, _, _) in zip(padded, unpadded):
        np.testing.assert_array_equal(a.theta_hat, b.theta_hat)
        for field in hs.HISTORY_FIELDS:
            np.testing.assert_array_equal(a.history[field], b.history[field])
    assert run(0, 7)[2] == tuple(n + 1 for n in unpadded[1][2])  # d is a compile-time shape


def _assert_nan_only_after_divergence(result):
    for i, at in enumerate(result.diverged_at):
        epochs = result.history["epoch"][i]
        stopped = epochs >= at if at >= 0 else np.zeros(epochs.shape, bool)
        for field in ("loss", "train_accuracy", "test_accuracy", "radius"):
            values = result.history[field][i]
            assert np.all(np.isfinite(values[~stopped])) and np.all(np.isnan(values[stopped])), (field, i, at)
    assert np.all(np.isfinite(np.asarray(result.theta_hat)))


def test_divergence_is_flagged_and_no_nan_is_stored_as_a_value():
    model, params, x, y, basis, kw = _grid_problem()
    # float32 logits overflow at radius factor 1e30: diverged at θ̂ = 0, frozen there; others go on
    grid = hs.train_hypersurface(model.apply, params, basis, x, y, scales=jnp.array([0.5, 1.0, 1e30], F32), **kw)
    assert list(grid.diverged_at) == [-1, -1, 0]
    np.testing.assert_array_equal(grid.theta_hat[2], 0.0)
    assert np.all(np.abs(grid.theta_hat[:2]) > 0)
    _assert_nan_only_after_divergence(grid)
    # lr = 1e30 on the hyperplane: the first step is finite (|θ̂| ~ 1e30), the logits after it are not
    kw.update(surface="hyperplane", lr=1e30)
    run = hs.train_hypersurface(model.apply, params, basis, x, y, scales=jnp.array([1.0], F32), **kw)
    assert list(run.diverged_at) == [1]
    assert np.max(np.abs(run.theta_hat)) > 1e29  # frozen at the last finite θ̂, after the first step
    _assert_nan_only_after_divergence(run)


@pytest.mark.parametrize("change, name", [
    ({"surface": "torus"}, "surface"), ({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"), ({"lr": float("nan")}, "lr"),
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 9}, "batch_size"),
    ({"scales": [1.0, -1.0]}, "scales"), ({"scales": [float("inf")]}, "scales"), ({"scales": []}, "scales"),
    ({"scales": [0.0]}, "scales"), ({"basis": "wrong rows"}, "basis"), ({"metric": jnp.ones(3)}, "metric"),
    ({"log_every": 0}, "log_every"), ({"temperature": 0.0}, "temperature"), ({"x_test": "given"}, "y_test"),
])
def test_bad_inputs_raise_value_errors_naming_the_parameter(change, name):
    model, params, x, y = _problem(F32, n=8)
    p = ravel_pytree(params)[0].size
    kw = dict(surface="hyperplane", scales=[1.0], lr=0.1, epochs=1, batch_size=4, key=jax.random.key(0))
    kw.update(change)
    basis = hs.sparse_basis(jax.random.key(1), p + (1 if kw.pop("basis", None) else 0), 3, F32)
    if kw.get("x_test") == "given":
        kw["x_test"] = x
    with pytest.raises(ValueError, match=name):
        hs.train_hypersurface(model.apply, params, basis, x, y, **kw)
