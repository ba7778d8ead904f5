"""Fort & Scherlis studies (gzone.experiments.fort): records against direct float64 computations
(jax.hessian of the full-batch loss, explicit projections), resume, refusal, figures, script."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.stats
from jax.flatten_util import ravel_pytree

from gzone import directions, hypersurface, results, subspace, training
from gzone.experiments import (
    base,
    fort,
    hypersurface_training,
    init_selection,
    radial_loss,
    radius_drift,
)
from gzone.objective import cross_entropy
from gzone.plots import fort as figures

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import hyperplanes as script  # noqa: E402  (scripts/hyperplanes.py)

SMALL = fort.make_config("tiny", widths=(8,), n_samples=60, num_radii=3, dims=(3, 5), dim=5,
                         num_directions=30, probes=8, sphere_points=6, sphere_probes=4,
                         architectures=("mlp:6:relu", "mlp:6:tanh:nobias"), dtype="float64")


def study_group(study: str) -> pytest.MarkDecorator:
    return pytest.mark.xdist_group(f"fort-{study}")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Each small study, run once on first use: study -> (out, records)."""
    done: dict[str, tuple[Path, list]] = {}

    def get(study: str):
        if study not in done:
            out = tmp_path_factory.mktemp(study)
            done[study] = (out, fort.run(dataclasses.replace(SMALL, study=study), out))
        return done[study]

    return get


def _direct(config: fort.FortConfig, seed: int, dim: int, basis: str | None = None):
    """θ0, the metric, M R, the flat loss function and its explicit Hessian builder."""
    setup = fort.setup_for(config, None)
    params, m, plane = fort.seed_state(setup, config, seed, dim, basis)
    flat0, unravel = ravel_pytree(params)

    def loss(theta):
        return cross_entropy(setup.model.apply(unravel(theta), setup.x), setup.y)

    return setup, flat0, m, plane, loss


@study_group("radius")
def test_radius_records_equal_explicit_projected_hessians(studies):
    _, records = studies("radius")
    planes = [r for r in records if r["kind"] == "plane"]
    assert len(planes) == SMALL.num_radii * SMALL.seeds * len(SMALL.dims)
    setup, flat0, m, plane, loss = _direct(SMALL, 0, max(SMALL.dims))
    for r in planes:
        theta = r["radius_factor"] * flat0
        h = jax.hessian(loss)(theta)
        hd = (plane.T @ h @ plane)[: r["dim"], : r["dim"]]
        eigs = np.linalg.eigvalsh(np.asarray(hd))
        assert r["radius"] == pytest.approx(float(jnp.linalg.norm(theta)), rel=1e-12)
        assert r["local_convexity"] == pytest.approx(np.mean(eigs > 0))
        assert r["positive_curvature"] == pytest.approx(eigs.sum() / np.sqrt((eigs**2).sum()), rel=1e-8)
        assert r["loss"] == pytest.approx(float(loss(theta)), rel=1e-10)


def test_metric_and_xavier_radius_follow_the_initialisation_shells():
    setup, flat0, m, plane, _ = _direct(SMALL, 0, 3)
    params = fort.seed_state(setup, SMALL, 0, 3)[0]
    assert float(jnp.sqrt(jnp.mean(m**2))) == pytest.approx(1.0, rel=1e-10)
    np.testing.assert_allclose(plane, m[:, None] * base.seed_state(
        setup, 0, dim=3, basis=SMALL.basis, init="xavier")[1], rtol=1e-12)
    kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
               if path[-1].key == "kernel"]
    biases = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
              if path[-1].key == "bias"]
    assert biases and all(float(jnp.abs(b).max()) == 0 for b in biases)  # biases start at 0
    # each kernel on its own shell: ‖W‖ ≈ σ √n with σ² = 2 / (fan_in + fan_out) (Xavier)
    for w in kernels:
        sigma = math.sqrt(2 / sum(w.shape))
        assert float(jnp.linalg.norm(w)) == pytest.approx(sigma * math.sqrt(w.size), rel=0.1)


@study_group("directions")
def test_directions_records_equal_direct_measurements(studies):
    _, records = studies("directions")
    points = [r for r in records if r["kind"] == "directions"]
    assert len(points) == SMALL.num_radii * SMALL.seeds
    setup, flat0, m, plane, loss = _direct(SMALL, 0, max(SMALL.dims), "orthonormal")
    size = setup.num_params
    vs = directions.unit_directions(base.stream_key(0, fort.DIRECTIONS_STREAM), SMALL.num_directions,
                                    size, jnp.float64)
    for r in points:
        a = m[:, None] * jax.hessian(loss)(r["radius_factor"] * flat0) * m[None, :]
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


@study_group("loss-radius")
def test_loss_radius_records_and_summary(studies):
    _, records = studies("loss-radius")
    losses = [r for r in records if r["kind"] == "loss"]
    setup, flat0, m, _, loss = _direct(SMALL, 0, SMALL.dim)
    for r in losses:
        assert r["weight_layers"] == 2
        assert r["loss"] == pytest.approx(float(loss(r["radius_factor"] * flat0)), rel=1e-10)
        assert r["log_classes"] == pytest.approx(math.log(10))
    summary = radial_loss.loss_radius_summary(records)
    assert [row["radius_factor"] for row in summary["rows"]] == sorted({r["radius_factor"] for r in losses})
    assert summary["xavier_radius"] == pytest.approx(float(jnp.linalg.norm(flat0)), rel=1e-12)


@study_group("stokes")
def test_stokes_records_are_points_on_their_spheres_with_hutchinson_laplacians(studies):
    _, records = studies("stokes")
    spheres = [r for r in records if r["kind"] == "sphere"]
    assert len(spheres) == SMALL.num_radii * SMALL.sphere_points
    setup, flat0, m, _, loss = _direct(SMALL, 0, 1)
    units = radial_loss.sphere_units(SMALL.sphere_points, setup.num_params, jnp.float64)
    np.testing.assert_allclose(units[1], -units[0])  # antithetic pairs
    for r in spheres:
        theta = r["rho"] * m * units[r["point"]]
        assert r["radius"] == pytest.approx(float(jnp.linalg.norm(theta)), rel=1e-12)
        assert float(jnp.linalg.norm(theta / m)) == pytest.approx(r["rho"], rel=1e-12)
        assert r["loss"] == pytest.approx(float(loss(theta)), rel=1e-10)
        a = np.asarray(m[:, None] * jax.hessian(loss)(theta) * m[None, :])
        exact = float(np.trace(a))
        # the Rademacher estimator's exact standard error: √(2 Σ_{i≠j} A_ij² / probes)
        se = math.sqrt(2 * ((a**2).sum() - (np.diag(a) ** 2).sum()) / r["probes"])
        assert abs(r["laplacian"] - exact) <= 6 * se + 1e-8 * abs(exact)
    rows = radial_loss.stokes_summary(records)
    assert rows[0]["stokes_laplacian"] is None and rows[1]["stokes_laplacian"] is not None


@study_group("architectures")
def test_architectures_sweep_every_network(studies):
    _, records = studies("architectures")
    labels = {r["label"] for r in records}
    assert labels == {"mlp 6 relu", "mlp 6 tanh no bias"}
    assert {r["dim"] for r in records} == {SMALL.dim}
    assert len(records) == 2 * SMALL.num_radii * SMALL.seeds


@study_group("init-selection")
def test_init_selection_records_equal_direct_measurements_and_training(studies):
    _, records = studies("init-selection")
    inits = {r["seed"]: r for r in records if r["kind"] == "init"}
    trained = {r["seed"]: r for r in records if r["kind"] == "trained"}
    assert sorted(inits) == sorted(trained) == list(range(SMALL.inits))
    setup, flat0, m, plane, loss = _direct(SMALL, 1, SMALL.dim)
    _, x_test, y_test = init_selection.load_train_test(SMALL, None)
    eigs = np.linalg.eigvalsh(np.asarray(plane.T @ jax.hessian(loss)(flat0) @ plane))
    assert inits[1]["local_convexity"] == pytest.approx(np.mean(eigs > 0))
    assert inits[1]["positive_curvature"] == pytest.approx(eigs.sum() / np.sqrt((eigs**2).sum()), rel=1e-8)
    params = fort.seed_state(setup, SMALL, 1, 1)[0]
    assert inits[1]["initial_test_loss"] == pytest.approx(
        float(cross_entropy(setup.model.apply(params, x_test), y_test)), rel=1e-10)
    direct = training.train(setup.model.apply, params, setup.x, setup.y, lr=SMALL.train_lr,
                            steps=SMALL.train_steps, log_every=SMALL.train_log_every, x_test=x_test,
                            y_test=y_test, optimizer="adam", sharpness=False)
    assert trained[1]["steps_to_target"] == init_selection.steps_to_target(direct.history,
                                                                           SMALL.target_accuracy)
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


@study_group("radius-drift")
def test_radius_drift_records_equal_direct_training(studies):
    _, records = studies("radius-drift")
    setup = fort.setup_for(SMALL, None)
    _, x_test, y_test = init_selection.load_train_test(SMALL, None)
    params = fort.seed_state(setup, SMALL, 0, 1)[0]
    run = next(r for r in records if r["kind"] == "run" and r["radius_factor"] == SMALL.drift_factors[0])
    direct = training.train(setup.model.apply, fort.scaled(params, SMALL.drift_factors[0]), setup.x,
                            setup.y, lr=SMALL.train_lr, steps=SMALL.train_steps,
                            log_every=SMALL.train_log_every, x_test=x_test, y_test=y_test,
                            optimizer="adam", sharpness=False)
    assert run["radius"] == pytest.approx(direct.history["parameter_norm"][0], rel=1e-10)
    assert run["final_radius"] == pytest.approx(direct.history["parameter_norm"][-1], rel=1e-8)
    curves = radius_drift.drift_curves(records)
    assert set(curves) == {(c, 0) for c in SMALL.drift_factors}
    steps, norms = curves[(SMALL.drift_factors[0], 0)]
    np.testing.assert_allclose(norms, direct.history["parameter_norm"], rtol=1e-8)


@study_group("hypersurface-training")
def test_hypersurface_records_equal_a_direct_run_and_spheres_keep_their_radius(studies):
    _, records = studies("hypersurface-training")
    surf = [r for r in records if r["kind"] == "hypersurface"]
    setup = fort.setup_for(SMALL, None)
    assert len(surf) == (1 + len(SMALL.hs_surfaces) * len(SMALL.hs_dims)) * SMALL.seeds * len(SMALL.hs_radii)
    assert {r["dim"] for r in surf if r["surface"] == "full"} == {setup.num_params}
    for r in surf:
        if r["surface"] == "hypersphere" and r["final_radius"] is not None:
            assert r["final_radius"] == pytest.approx(r["radius"], rel=1e-10)
    _, x_test, y_test = init_selection.load_train_test(SMALL, None)
    params0 = fort.seed_state(setup, SMALL, 0, 1)[0]
    dim = min(SMALL.hs_dims)
    key = jax.random.fold_in(base.stream_key(0, hypersurface_training.BASIS_STREAM), dim)
    direct = hypersurface.train_hypersurface(
        setup.model.apply, params0, hypersurface.sparse_basis(key, setup.num_params, dim, setup.dtype),
        setup.x, setup.y, surface="hyperplane", scales=np.asarray(SMALL.hs_radii), lr=SMALL.hs_lr,
        epochs=SMALL.hs_epochs, batch_size=SMALL.hs_batch,
        key=base.stream_key(0, hypersurface_training.BATCH_STREAM),
        metric=subspace.layer_metric(params0, "xavier"), x_test=x_test, y_test=y_test)
    for j, factor in enumerate(SMALL.hs_radii):
        r = next(r for r in surf if (r["surface"], r["dim"], r["radius_factor"]) == ("hyperplane", dim, factor))
        assert r["final_test_accuracy"] == pytest.approx(float(direct.history["test_accuracy"][j][-1]))
        assert r["final_radius"] == pytest.approx(float(direct.history["radius"][j][-1]), rel=1e-10)
    v = jnp.arange(7.0)
    np.testing.assert_array_equal(hypersurface.apply_basis(hypersurface_training.identity_basis(7, v.dtype), v), v)


def test_intrinsic_dimension_is_the_smallest_d_reaching_the_baseline_fraction():
    def rec(surface, dim, factor, acc):
        return {"kind": "hypersurface", "surface": surface, "dim": dim, "radius_factor": factor,
                "final_test_accuracy": acc}
    records = [rec("full", 100, 1.0, 0.9), rec("full", 100, 3.0, 0.5),
               rec("hyperplane", 10, 1.0, 0.7), rec("hyperplane", 30, 1.0, 0.85),
               rec("hyperplane", 90, 1.0, 0.89), rec("hyperplane", 10, 3.0, 0.2),
               rec("hyperplane", 30, 3.0, 0.3), rec("hyperplane", 90, 3.0, 0.4)]
    out = hypersurface_training.intrinsic_dimension(records, 0.9)
    assert out == {"hyperplane": {1.0: 30, 3.0: None}}  # 0.9 x 0.9 = 0.81: d = 30 at Xavier


@pytest.mark.parametrize("study, cut", [
    pytest.param("radius", 2, marks=study_group("radius")),
    pytest.param("stokes", 7, marks=study_group("stokes")),
    pytest.param("architectures", 2, marks=study_group("architectures")),
    pytest.param("init-selection", 9, marks=study_group("init-selection"))])
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

    config = dataclasses.replace(SMALL, study=study)
    with pytest.raises(Interrupt):
        fort.run(config, tmp_path / study, progress=progress_until(cut))
    assert 0 < len(results.load_records(tmp_path / study / results.RESULTS_FILE))
    resumed = fort.run(config, tmp_path / study)
    _, whole = studies(study)

    def key(r):
        return tuple(r.get(k) for k in ("kind", "label", "radius_factor", "seed", "dim", "point", "step"))

    assert sorted(map(key, resumed)) == sorted(map(key, whole))
    assert len(set(map(key, resumed))) == len(resumed)


@pytest.mark.parametrize("overrides, message", [
    ({"study": "nope"}, "unknown study 'nope'"),
    ({"radius_min": 20.0}, "radius_min exceeds radius_max"),
    ({"radius_min": 0.0}, "radius_min must be a finite number > 0"),
    ({"num_radii": 2}, "num_radii must be at least 3"),
    ({"dims": (3, 10**6)}, "dims=1000000 exceeds the model's P="),
    ({"dims": ()}, "dims must be integers >= 1"),
    ({"architectures": ("mlp:6:sigmoid",)}, "unknown activation 'sigmoid'"),
    ({"architectures": ("vgg",)}, "unknown model 'vgg'"),
    ({"architectures": ("mlp:a,b",)}, "bad widths"),
    ({"datasets": ("svhn2",)}, "unknown dataset 'svhn2'"),
    ({"model": "lenet5"}, "lenet5 is bias-free here"),
    ({"dataset": "svhn2"}, "unknown dataset 'svhn2'"),
    ({"inits": 3}, "inits must be at least 4"),
    ({"hs_radii": (0.5, 2.0)}, "hs_radii must include 1"),
    ({"hs_surfaces": ("torus",)}, "hs_surfaces must name hyperplane and/or hypersphere"),
    ({"hs_dims": (5, 10**6), "study": "hypersurface-training"}, "hs_dims=1000000 exceeds"),
    ({"hs_batch": 500, "study": "hypersurface-training"}, "hs_batch=500 exceeds the 60 training"),
    ({"target_accuracy": 1.5}, "target_accuracy must be at most 1"),
    ({"select_quantile": 0.7}, "select_quantile must be at most 0.5"),
    ({"drift_factors": (0.5, -1.0)}, "drift_factors must hold finite numbers > 0"),
    ({"train_log_every": 50}, "train_log_every=50 exceeds train_steps=40"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message) as info:
        fort.run(dataclasses.replace(SMALL, **overrides), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@study_group("radius")
def test_another_configuration_is_refused(studies):
    out, _ = studies("radius")
    with pytest.raises(results.ConfigMismatchError, match="radius_max"):
        fort.run(dataclasses.replace(SMALL, study="radius", radius_max=5.0), out)


@pytest.mark.parametrize("study", [pytest.param(s, marks=study_group(s)) for s in fort.STUDIES])
def test_figures_draw_records_and_empty_ones(study, studies, tmp_path):
    _, records = studies(study)
    for recs in (records, []):
        fig = figures.fort_figure(recs, study, title=study, path_stem=tmp_path / study)
        assert fig.axes
        if recs and study != "init-selection":  # there every draw is at the Xavier radius
            assert any(line.get_label() == "Xavier radius" for ax in fig.axes for line in ax.lines)
        plt.close(fig)
    assert (tmp_path / f"{study}.png").exists()
    with pytest.raises(ValueError, match="unknown study"):
        figures.fort_figure([], "nope")


@study_group("directions")
def test_script_summarises_draws_and_refuses_bad_flags(studies, capsys, tmp_path):
    out, _ = studies("directions")
    argv = ["--preset", "tiny", "--study", "directions", "--out", str(out), "--plot-only"]
    for field in ("widths", "n_samples", "num_radii", "dims", "dim", "num_directions", "probes",
                  "sphere_points", "sphere_probes", "dtype"):
        value = getattr(SMALL, field)
        argv += [base.cli_flag(field), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    assert script.main(argv) == 0
    text = capsys.readouterr().out
    assert "pos. directions" in text and (out / "directions.png").exists()
    assert script.main(["--preset", "tiny", "--radius-min", "-1", "--out", str(tmp_path / "o"),
                        "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --radius-min must be a finite number > 0") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
