"""The Fort & Scherlis studies (gzone.studies.fort): records against direct float64 computations
(jax.hessian of the full-batch loss, explicit projections) on small float64 runs of each study,
resume after an interruption, one-line refusals; the summaries on constructed records."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.flatten_util import ravel_pytree

from gzone import directions, engine, hypersurface, results, studies, subspace, training
from gzone.engine.setup import seed_state, stream_key
from gzone.objective import cross_entropy
from gzone.studies.fort import _common as fort
from gzone.studies.fort import (
    hypersurface_training,
    init_selection,
    loss_radius,
    radius_drift,
    stokes,
)

#: small float64 versions of the tiny presets, for exact comparisons with jax.hessian
SMALL = {
    "radius": {"widths": (8,), "dims": (3, 5)},
    "directions": {"widths": (8,), "dims": (3, 5), "num_directions": 30, "probes": 8},
    "loss-radius": {"widths": (8,), "dim": 5, "probes": 8},
    "stokes": {"widths": (8,), "sphere_points": 6, "sphere_probes": 4},
    "architectures": {"dim": 5, "architectures": ("mlp:6:relu", "mlp:6:tanh:nobias")},
    "init-selection": {"widths": (8,), "dim": 5},
    "radius-drift": {"widths": (8,)},
    "hypersurface-training": {"widths": (8,)},
}


def small(topic: str, **changes):
    """(study, config) of the small float64 version of ``fort/<topic>``."""
    study = studies.get(f"fort/{topic}")
    radii = {"num_radii": 3} if "num_radii" in study.presets["tiny"] else {}
    return study, engine.make_config(study, "tiny", n_samples=60, dtype="float64", **radii,
                                     **{**SMALL[topic], **changes})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each small study, run once on first use: topic -> (config, out, records)."""
    done: dict[str, tuple] = {}

    def get(topic: str):
        if topic not in done:
            study, config = small(topic)
            out = tmp_path_factory.mktemp(topic)
            done[topic] = (config, out, engine.run(study, config, out))
        return done[topic]

    return get


def _direct(config, seed: int, dim: int, basis: str | None = None):
    """θ0, the metric, M R and the flat loss function (its Hessian: :func:`_hessian`)."""
    setup = fort.setup_for(config, None)
    params, m, plane = fort.seed_state(setup, config, seed, dim, basis)
    flat0, unravel = ravel_pytree(params)

    def loss(theta):
        return cross_entropy(setup.model.apply(unravel(theta), setup.x), setup.y)

    return setup, flat0, m, plane, loss


def _hessian(loss):
    """The dense Hessian of ``loss`` (jax.hessian), compiled once per loss function."""
    if loss not in _HESSIANS:
        _HESSIANS[loss] = jax.jit(jax.hessian(loss))
    return _HESSIANS[loss]


_HESSIANS: dict = {}


def test_radius_records_equal_explicit_projected_hessians(runs):
    config, _, records = runs("radius")
    planes = [r for r in records if r["kind"] == "plane"]
    assert len(planes) == config.num_radii * config.seeds * len(config.dims)
    setup, flat0, m, plane, loss = _direct(config, 0, max(config.dims))
    for r in planes:
        theta = r["radius_factor"] * flat0
        h = _hessian(loss)(theta)
        hd = (plane.T @ h @ plane)[: r["dim"], : r["dim"]]
        eigs = np.linalg.eigvalsh(np.asarray(hd))
        assert r["radius"] == pytest.approx(float(jnp.linalg.norm(theta)), rel=1e-12)
        assert r["local_convexity"] == pytest.approx(np.mean(eigs > 0))
        assert r["positive_curvature"] == pytest.approx(eigs.sum() / np.sqrt((eigs**2).sum()), rel=1e-8)
        assert r["loss"] == pytest.approx(float(loss(theta)), rel=1e-10)


def test_metric_and_xavier_radius_follow_the_initialisation_shells():
    _, config = small("radius")
    setup, flat0, m, plane, _ = _direct(config, 0, 3)
    params = fort.seed_state(setup, config, 0, 3)[0]
    assert float(jnp.sqrt(jnp.mean(m**2))) == pytest.approx(1.0, rel=1e-10)
    np.testing.assert_allclose(plane, m[:, None] * seed_state(
        setup, 0, dim=3, basis=config.basis, init="xavier")[1], rtol=1e-12)
    kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
               if path[-1].key == "kernel"]
    biases = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
              if path[-1].key == "bias"]
    assert biases and all(float(jnp.abs(b).max()) == 0 for b in biases)  # biases start at 0
    # each kernel on its own shell: ‖W‖ ≈ σ √n with σ² = 2 / (fan_in + fan_out) (Xavier)
    for w in kernels:
        sigma = math.sqrt(2 / sum(w.shape))
        assert float(jnp.linalg.norm(w)) == pytest.approx(sigma * math.sqrt(w.size), rel=0.1)


def test_directions_records_equal_direct_measurements(runs):
    config, _, records = runs("directions")
    points = [r for r in records if r["kind"] == "directions"]
    assert len(points) == config.num_radii * config.seeds
    setup, flat0, m, plane, loss = _direct(config, 0, max(config.dims), "orthonormal")
    size = setup.num_params
    vs = directions.unit_directions(stream_key(0, "directions"), config.num_directions, size,
                                    jnp.float64)
    for r in points:
        a = m[:, None] * _hessian(loss)(r["radius_factor"] * flat0) * m[None, :]
        kappa = np.asarray(((vs @ a) * vs).sum(axis=1))
        assert r["positive_directions"] == pytest.approx(np.mean(kappa > 0))
        assert r["direction_mean"] == pytest.approx(kappa.mean(), rel=1e-8)
        exact_trace = float(jnp.trace(a))
        assert abs(r["trace"] - exact_trace) <= 5 * r["trace_stderr"] + 1e-9 * abs(exact_trace)
        assert r["predicted_direction_mean"] == pytest.approx(r["trace"] / size, rel=1e-12)
        moments = directions.direction_moments(r["trace"], r["frobenius_sq"], size)
        assert r["predicted_direction_variance"] == pytest.approx(moments.variance, rel=1e-12)
    for r in (p for p in records if p["kind"] == "plane"):
        assert r["basis"] == "orthonormal"
        assert r["predicted_positive_curvature"] is not None


def test_loss_radius_records_and_summary(runs):
    config, _, records = runs("loss-radius")
    losses = [r for r in records if r["kind"] == "loss"]
    setup, flat0, m, _, loss = _direct(config, 0, config.dim)
    for r in losses:
        assert r["weight_layers"] == 2
        assert r["loss"] == pytest.approx(float(loss(r["radius_factor"] * flat0)), rel=1e-10)
        assert r["log_classes"] == pytest.approx(math.log(10))
    summary = loss_radius.loss_radius_summary(records)
    assert [row["radius_factor"] for row in summary["rows"]] == sorted({r["radius_factor"] for r in losses})
    assert summary["xavier_radius"] == pytest.approx(float(jnp.linalg.norm(flat0)), rel=1e-12)


def test_stokes_records_are_points_on_their_spheres_with_hutchinson_laplacians(runs):
    config, _, records = runs("stokes")
    spheres = [r for r in records if r["kind"] == "sphere"]
    assert len(spheres) == config.num_radii * config.sphere_points
    setup, flat0, m, _, loss = _direct(config, 0, 1, "orthonormal")
    units = stokes.sphere_units(config.sphere_points, setup.num_params, jnp.float64)
    np.testing.assert_allclose(units[1], -units[0])  # antithetic pairs
    for r in spheres:
        theta = r["rho"] * m * units[r["point"]]
        assert r["radius"] == pytest.approx(float(jnp.linalg.norm(theta)), rel=1e-12)
        assert float(jnp.linalg.norm(theta / m)) == pytest.approx(r["rho"], rel=1e-12)
        assert r["loss"] == pytest.approx(float(loss(theta)), rel=1e-10)
        a = np.asarray(m[:, None] * _hessian(loss)(theta) * m[None, :])
        exact = float(np.trace(a))
        # the Rademacher estimator's exact standard error: √(2 Σ_{i≠j} A_ij² / probes)
        se = math.sqrt(2 * ((a**2).sum() - (np.diag(a) ** 2).sum()) / r["probes"])
        assert abs(r["laplacian"] - exact) <= 6 * se + 1e-8 * abs(exact)
    rows = stokes.stokes_summary(records)
    assert rows[0]["stokes_laplacian"] is None and rows[1]["stokes_laplacian"] is not None


def test_architectures_sweep_every_network(runs):
    config, _, records = runs("architectures")
    labels = {r["label"] for r in records}
    assert labels == {"mlp 6 relu", "mlp 6 tanh no bias"}
    assert {r["dim"] for r in records} == {config.dim}
    assert len(records) == 2 * config.num_radii * config.seeds


def test_init_selection_records_equal_direct_measurements_and_training(runs):
    config, _, records = runs("init-selection")
    inits = {r["seed"]: r for r in records if r["kind"] == "init"}
    trained = {r["seed"]: r for r in records if r["kind"] == "trained"}
    assert sorted(inits) == sorted(trained) == list(range(config.inits))
    setup, flat0, m, plane, loss = _direct(config, 1, config.dim)
    test = fort.load_train_test(config, None)
    x_test, y_test = test.x_test, test.y_test
    eigs = np.linalg.eigvalsh(np.asarray(plane.T @ _hessian(loss)(flat0) @ plane))
    assert inits[1]["local_convexity"] == pytest.approx(np.mean(eigs > 0))
    assert inits[1]["positive_curvature"] == pytest.approx(eigs.sum() / np.sqrt((eigs**2).sum()), rel=1e-8)
    params = fort.seed_state(setup, config, 1, 1)[0]
    assert inits[1]["initial_test_loss"] == pytest.approx(
        float(cross_entropy(setup.model.apply(params, x_test), y_test)), rel=1e-10)
    direct = training.train(setup.model.apply, params, setup.x, setup.y, lr=config.train_lr,
                            steps=config.train_steps, log_every=config.train_log_every,
                            x_test=x_test, y_test=y_test, optimizer="adam", sharpness=False)
    assert trained[1]["steps_to_target"] == init_selection.steps_to_target(direct.history,
                                                                           config.target_accuracy)
    assert trained[1]["final_test_accuracy"] == pytest.approx(direct.history["test_accuracy"][-1])


def test_selection_summary_ranks_and_tests_as_scipy_does():
    rng = np.random.default_rng(0)
    convexity = rng.uniform(0.5, 0.7, 12)
    steps = (1000 - 1000 * convexity).round()  # perfectly anti-ordered: convex draws train faster
    records = [{"kind": "init", "seed": i, "local_convexity": float(c), "positive_curvature": None,
                "initial_test_loss": float(-c)} for i, c in enumerate(convexity)]
    records += [{"kind": "trained", "seed": i, "steps_to_target": int(t), "budget": 1000}
                for i, t in enumerate(steps)]
    records[-1]["steps_to_target"] = None  # never reached: ranks last (budget + 1)
    summary = init_selection.selection_summary(records, quantile=0.25)
    stats = summary["measures"]["local_convexity"]
    steps_used = np.where(np.arange(12) == 11, 1001, steps)
    assert stats["spearman"] == pytest.approx(scipy.stats.spearmanr(convexity, steps_used)[0])
    order = np.argsort(convexity)
    expected = scipy.stats.mannwhitneyu(steps_used[order][-3:], steps_used[order][:3], alternative="less")
    assert stats["p_value"] == pytest.approx(expected.pvalue)
    assert "positive_curvature" not in summary["measures"]  # no values: not tested
    assert summary["measures"]["initial_test_loss"]["spearman"] == pytest.approx(-stats["spearman"])


def test_radius_drift_records_equal_direct_training(runs):
    config, _, records = runs("radius-drift")
    setup = fort.load_train_test(config, None)
    params = engine.setup.seed_params(setup, config.init, 0)
    first = config.drift_factors[0]
    run = next(r for r in records if r["kind"] == "run" and r["radius_factor"] == first)
    direct = training.train(setup.model.apply, fort.scaled(params, first), setup.x, setup.y,
                            lr=config.train_lr, steps=config.train_steps,
                            log_every=config.train_log_every, x_test=setup.x_test,
                            y_test=setup.y_test, optimizer="adam", sharpness=False)
    assert run["radius"] == pytest.approx(direct.history["parameter_norm"][0], rel=1e-10)
    assert run["final_radius"] == pytest.approx(direct.history["parameter_norm"][-1], rel=1e-8)
    curves = radius_drift.drift_curves(records)
    assert set(curves) == {(c, 0) for c in config.drift_factors}
    steps, norms = curves[(first, 0)]
    np.testing.assert_allclose(norms, direct.history["parameter_norm"], rtol=1e-8)


def test_hypersurface_records_equal_a_direct_run_and_spheres_keep_their_radius(runs):
    config, _, records = runs("hypersurface-training")
    surf = [r for r in records if r["kind"] == "hypersurface"]
    setup = fort.load_train_test(config, None)
    assert len(surf) == (1 + len(config.hs_surfaces) * len(config.hs_dims)) * config.seeds * len(config.hs_radii)
    assert {r["dim"] for r in surf if r["surface"] == "full"} == {setup.num_params}
    for r in surf:
        if r["surface"] == "hypersphere" and r["final_radius"] is not None:
            assert r["final_radius"] == pytest.approx(r["radius"], rel=1e-10)
    params0 = engine.setup.seed_params(setup, config.init, 0)
    dim = min(config.hs_dims)
    key = jax.random.fold_in(stream_key(0, "hypersurface-basis"), dim)
    direct = hypersurface.train_hypersurface(
        setup.model.apply, params0, hypersurface.sparse_basis(key, setup.num_params, dim, setup.dtype),
        setup.x, setup.y, surface="hyperplane", scales=np.asarray(config.hs_radii), lr=config.hs_lr,
        epochs=config.hs_epochs, batch_size=config.hs_batch,
        key=stream_key(0, "hypersurface-batches"),
        metric=subspace.layer_metric(params0, "xavier"), x_test=setup.x_test, y_test=setup.y_test)
    assert {r["hs_fraction"] for r in surf} == {config.hs_fraction}
    for j, factor in enumerate(config.hs_radii):
        r = next(r for r in surf if (r["surface"], r["dim"], r["radius_factor"]) == ("hyperplane", dim, factor))
        assert r["final_test_accuracy"] == pytest.approx(float(direct.history["test_accuracy"][j][-1]))
        assert r["final_radius"] == pytest.approx(float(direct.history["radius"][j][-1]), rel=1e-10)
    v = jnp.arange(7.0)
    np.testing.assert_array_equal(hypersurface.apply_basis(hypersurface_training.identity_basis(7, v.dtype), v), v)
    # obs. 1: the start and end fractions of positive eigenvalues are those of jax.hessian of
    # θ̂ ↦ L(s(θ0 + M R θ̂)) at θ̂ = 0 and at the trained θ̂
    assert dim <= config.hs_hessian_dim
    flat0, unravel = ravel_pytree(params0)
    basis = hypersurface.sparse_basis(key, setup.num_params, dim, setup.dtype)
    metric = subspace.layer_metric(params0, "xavier")

    def fraction(theta_hat, scale):
        def loss(th):
            point = hypersurface.hyperplane_point(flat0, basis, metric, th, scale)
            return cross_entropy(setup.model.apply(unravel(point), setup.x), setup.y)
        return float(np.mean(np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(theta_hat))) > 0))

    for j, factor in enumerate(config.hs_radii):
        r = next(r for r in surf if r["seed"] == 0
                 and (r["surface"], r["dim"], r["radius_factor"]) == ("hyperplane", dim, factor))
        assert r["positive_eigenvalues_start"] == pytest.approx(fraction(jnp.zeros(dim, setup.dtype), factor))
        assert r["positive_eigenvalues_end"] == pytest.approx(fraction(direct.theta_hat[j], factor))
    assert all(r["positive_eigenvalues_start"] is None for r in surf if r["surface"] != "hyperplane")


def test_hypersurface_seeds_at_one_d_share_one_compiled_program(tmp_path):
    """The bases are padded to ``nnz_capacity(P, d)``: the second seed's (surface, d) job compiles
    no new epoch or log program although its basis drew another number of non-zeros."""
    study, config = small("hypersurface-training", seeds=2, hs_surfaces=("hyperplane",),
                          hs_hessian_dim=0)
    setup = study.prepare(config, None)
    ctx = engine.Context(study, config, setup, tmp_path, [])
    jobs = [p for p in study.points(config, setup) if p["surface"] == "hyperplane"]
    assert [(p["dim"], p["seed"]) for p in jobs] == [(10, 0), (10, 1)]
    draws = [hypersurface.sparse_basis(jax.random.fold_in(stream_key(s, "hypersurface-basis"), 10),
                                       setup.num_params, 10, setup.dtype) for s in (0, 1)]
    assert draws[0].nnz != draws[1].nnz  # unpadded, their shapes would differ

    def programs():
        return hypersurface._epoch._cache_size(), hypersurface._log._cache_size()

    list(study.measure(ctx, jobs[:1]))
    first = programs()
    records = list(study.measure(ctx, jobs[1:]))
    assert programs() == first and len(records[0]) == len(config.hs_radii)


def test_intrinsic_dimension_is_the_smallest_d_reaching_the_baseline_fraction():
    def rec(surface, dim, factor, acc):
        return {"kind": "hypersurface", "surface": surface, "dim": dim, "radius_factor": factor,
                "final_test_accuracy": acc, "xavier_radius": 1.0, "radius": factor}
    records = [rec("full", 100, 1.0, 0.9), rec("full", 100, 3.0, 0.5),
               rec("hyperplane", 10, 1.0, 0.7), rec("hyperplane", 30, 1.0, 0.85),
               rec("hyperplane", 90, 1.0, 0.89), rec("hyperplane", 10, 3.0, 0.2),
               rec("hyperplane", 30, 3.0, 0.3), rec("hyperplane", 90, 3.0, 0.4)]
    out = hypersurface_training.intrinsic_dimension(records, 0.9)
    assert out == {"hyperplane": {1.0: 30, 3.0: None}}  # 0.9 x 0.9 = 0.81: d = 30 at Xavier
    # the fraction the records carry (the study's hs_fraction) is the one the summary,
    # the figure and its label use; without one (records of gzone 0.1), 0.9
    assert hypersurface_training.intrinsic_dimension(records) == out
    tagged = [{**r, "hs_fraction": 0.75} for r in records]  # 0.75 x 0.9 = 0.675: d = 10
    assert hypersurface_training.intrinsic_dimension(tagged) == {"hyperplane": {1.0: 10, 3.0: None}}
    rows = hypersurface_training.STUDY.summarize(tagged)
    assert rows[-1] == {"surface": "hyperplane", "dim": "intrinsic (75%)", "r=1r_X": 10, "r=3r_X": None}
    import matplotlib.pyplot as plt

    fig = hypersurface_training.STUDY.figure(tagged)
    assert fig.axes[-1].get_ylabel() == "intrinsic dimension (75%)"
    plt.close(fig)


@pytest.mark.parametrize("topic, cut", [("radius", 2), ("stokes", 7), ("architectures", 2),
                                        ("init-selection", 9)])
def test_interrupted_studies_resume_without_losing_or_duplicating(topic, cut, runs, tmp_path):
    class Interrupt(Exception):
        pass

    def progress(items, total):
        for i, item in enumerate(items):
            if i == cut:
                raise Interrupt
            yield item

    study, config = small(topic)
    with pytest.raises(Interrupt):
        engine.run(study, config, tmp_path, progress=progress)
    assert 0 < len(results.load_records(tmp_path / results.RESULTS_FILE))
    resumed = engine.run(study, config, tmp_path)
    _, _, whole = runs(topic)

    def key(r):
        return tuple(r.get(k) for k in ("kind", "label", "radius_factor", "seed", "dim", "point", "step"))

    assert sorted(map(key, resumed)) == sorted(map(key, whole))
    assert len(set(map(key, resumed))) == len(resumed)


@pytest.mark.parametrize("topic, overrides, message", [
    ("radius", {"radius_min": 20.0}, "radius_min exceeds radius_max"),
    ("radius", {"radius_min": 0.0}, "radius_min must be a finite number > 0"),
    ("loss-radius", {"num_radii": 2}, "num_radii must be at least 3"),
    ("radius", {"dims": (3, 10**6)}, "dims=1000000 exceeds the model's P="),
    ("directions", {"dims": ()}, "dims must be integers >= 1"),
    ("architectures", {"architectures": ("mlp:6:sigmoid",)}, "unknown activation 'sigmoid'"),
    ("architectures", {"architectures": ("vgg",)}, "unknown model 'vgg'"),
    ("architectures", {"architectures": ("mlp:a,b",)}, "bad widths"),
    ("architectures", {"datasets": ("svhn2",)}, "unknown dataset 'svhn2'"),
    ("stokes", {"model": "lenet5"}, "lenet5 is bias-free here"),
    ("radius", {"dataset": "svhn2"}, "unknown dataset 'svhn2'"),
    ("init-selection", {"inits": 3}, "inits must be at least 4"),
    ("hypersurface-training", {"hs_radii": (0.5, 2.0)}, "hs_radii must include 1"),
    ("hypersurface-training", {"hs_surfaces": ("torus",)}, "hs_surfaces must name hyperplane"),
    ("hypersurface-training", {"hs_dims": (5, 10**6)}, "hs_dims=1000000 exceeds"),
    ("hypersurface-training", {"hs_batch": 500}, "hs_batch=500 exceeds the 60 training"),
    ("hypersurface-training", {"hs_fraction": 1.5}, r"hs_fraction must lie in \(0, 1\], got 1.5"),
    ("hypersurface-training", {"hs_fraction": 0.0}, r"hs_fraction must lie in \(0, 1\], got 0.0"),
    ("init-selection", {"target_accuracy": 1.5}, "target_accuracy must be at most 1"),
    ("init-selection", {"select_quantile": 0.7}, "select_quantile must be at most 0.5"),
    ("radius-drift", {"drift_factors": (0.5, -1.0)}, "drift_factors must hold finite numbers > 0"),
    ("radius-drift", {"train_log_every": 50}, "train_log_every=50 exceeds train_steps=40"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(topic, overrides, message, tmp_path):
    study, config = small(topic)
    with pytest.raises(ValueError, match=message) as info:
        engine.run(study, dataclasses.replace(config, **overrides), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
