"""Inside the zone (ICML Sec. 4, App. D): the G-term against Eq. (8), Γ_p against the entropy,
gradient cosines and Eq. (9), many initialisations, the pre-collapse regime — each study's tiny
run (shared with the contract test) checked against the paper's statements and direct
computations; their building blocks against explicit Jacobians; refusals before anything is
written."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gzone import engine, jacobian, models, studies
from gzone.engine.config import ConfigError
from gzone.engine.setup import load_data, make_setup
from gzone.studies.icml import (
    gamma_entropy,
    gradient_prior,
    gterm_prediction,
    many_inits,
    pre_collapse,
)


def tiny_config(name, **changes):
    study = studies.get(name)
    return study, dataclasses.replace(engine.make_config(study, "tiny"), **changes)


# ----------------------------------------------------------------------------- Fig. 3


def test_gterm_prediction_direction_and_eq8_band(tiny):
    run = tiny("icml/gterm-prediction")
    points = sorted((r for r in run.records if r["seed"] == 0), key=lambda r: r["alpha"])
    true = [r["gterm_positive_curvature"] for r in points]
    entropy = [r["mean_entropy"] for r in points]
    assert entropy[0] > entropy[-1]  # lower alpha -> higher entropy ...
    assert true[0] > true[-1]  # ... -> higher positive curvature of the G-term
    s = gterm_prediction.gaps(run.records)
    assert s["defined_points"] == len(run.records) == 2 * 5
    assert s["mean_abs_gap"] < 1.0  # Eq. (8) tracks the true curvature (bound sqrt(d) = 3.2)
    assert s["max_rel_diff_sigma_each_vs_unit"] < 1e-4  # sigmas at each alpha == at alpha = 1
    for r in run.records:
        if r["gterm_positive_curvature"] is not None:
            assert 1 - 1e-4 <= r["gterm_positive_curvature"] <= np.sqrt(r["dim"]) + 1e-4
    rows = run.study.summarize(run.records)
    assert [row["alpha"] for row in rows] == sorted({r["alpha"] for r in run.records})
    assert all(row["gap"] == pytest.approx(abs(row["gterm_pc"] - row["eq8_pc"])) for row in rows)


def test_dim_below_the_classes_or_above_p_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    for dim, message in ((10**8, r"subspace dimension dim=100000000 exceeds"),
                         (5, r"the random model needs d >= K=10; got dim=5")):
        study, config = tiny_config("icml/gterm-prediction", dim=dim)
        with pytest.raises(ConfigError, match=message):
            engine.run(study, config, out)
        assert not out.exists()


# ----------------------------------------------------------------------------- Fig. 4 right


def test_gamma_decreases_with_entropy_to_its_eq11_limits(tiny):
    run = tiny("icml/gamma-entropy")
    s = gamma_entropy.monotonicity(run.records)
    assert s["sets"] == 10
    assert s["spearman_max"] < -0.9  # every curve: Gamma_p^-2 falls as entropy rises
    assert s["batch_spearman"] < -0.9
    assert s["batch_gamma_inv2_at_max_entropy"] == pytest.approx(1 / 9, rel=1e-3)  # uniform p
    for r in run.records:  # Gamma_p in [1, sqrt(K - 1)]
        assert 1 - 1e-6 <= r["gamma_p"] <= 3 + 1e-6


# ----------------------------------------------------------------------------- Fig. 5


def test_gradient_cosines_are_positive_across_datasets(tiny):
    run = tiny("icml/gradient-cosines")
    pairs = [r for r in run.records if r["kind"] == "pair"]
    assert len(pairs) == run.config.inits
    assert all(r["cosine"] > 0.1 for r in pairs)  # balanced digits vs Gaussian noise align
    rows = run.study.summarize(run.records)
    assert rows[0]["pair"] == "digits vs gaussian" and rows[0]["inits"] == run.config.inits


def test_absent_optional_dataset_is_skipped_and_a_required_one_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)
    no_data = str(tmp_path / "no-data")
    study, config = tiny_config("icml/gradient-cosines", inits=1,
                                datasets=("digits", "svhn", "gaussian"))
    records = engine.run(study, config, tmp_path / "optional", data_dir=no_data)
    assert [r["dataset"] for r in records if r["kind"] == "skipped"] == ["svhn"]
    assert {r["dataset_b"] for r in records if r["kind"] == "pair"} == {"gaussian"}
    assert any(row.get("note") for row in study.summarize(records))
    required = dataclasses.replace(config, optional_datasets=())
    out = tmp_path / "required"
    with pytest.raises(FileNotFoundError, match="svhn"):
        engine.run(study, required, out, data_dir=no_data)
    assert not out.exists()


def test_gradient_norm_grows_with_the_prior_gap_as_eq9_says(tiny):
    run = tiny("icml/gradient-prior")
    s = gradient_prior.slopes(run.records)
    assert s["priors"] == run.config.n_priors
    assert s["spearman"] > 0.5 and s["fitted_slope"] > 0
    cal = next(r for r in run.records if r["kind"] == "calibration")
    assert cal["slope_exact"] == pytest.approx(np.sqrt(cal["num_params"] * cal["sigma_c2"]))
    assert cal["slope_paper"] == pytest.approx(cal["num_params"] * cal["sigma_c2"])
    assert sum(r["kind"] == "calibration" for r in run.records) == 1


# ----------------------------------------------------------------------------- Fig. 6


def test_many_inits_directions(tiny):
    run = tiny("icml/many-inits")
    s = many_inits.correlations(run.records)
    assert s["inits"] == run.config.n_inits
    assert s["spearman_mean_entropy_vs_hessian_positive_curvature"] > 0
    assert s["spearman_mean_entropy_vs_gradient_norm"] < 0
    assert s["spearman_mean_entropy_vs_loss"] < 0


def test_many_inits_chunks_drop_the_seeds_past_the_last(tiny, tmp_path):
    """10 inits in chunks of 8: the second chunk computes 8 seeds (one compiled shape) and keeps
    2; the statistics of a seed do not depend on its chunk."""
    study, config = tiny_config("icml/many-inits", n_inits=10)
    records = engine.run(study, config, tmp_path)
    assert sorted(r["seed"] for r in records) == list(range(10))
    shared = {r["seed"]: r for r in tiny("icml/many-inits").records}
    for r in records:
        for f in many_inits.FIELDS:
            assert r[f] == pytest.approx(shared[r["seed"]][f], rel=1e-5, abs=1e-7), f


# ----------------------------------------------------------------------------- Fig. 10


def test_the_last_uncertain_sample_owns_the_first_layer_eigenvector(tiny):
    run = tiny("icml/pre-collapse")
    s = pre_collapse.collapse_summary(run.records)
    assert s["alpha_share_0.9"] is not None
    assert s["last_uncertain_sample_stays_top"]  # its entropy stays highest through the collapse
    pre = [e for e in s["eigvecs"] if e["top_share"] >= 0.9]
    assert pre, s["eigvecs"]
    for e in pre:  # the first-layer top eigenvector is that sample's image
        assert e["best_sample"] == e["top_sample"] == s["last_uncertain_sample"]
        assert e["top_sample_cosine"] > 0.9 > e["median_cosine"]
    assert {e["method"] for e in s["eigvecs"]} == {"lanczos"}
    assert len([r for r in run.records if r["kind"] == "curvature"]) == 3


def test_too_large_dim_is_refused_before_anything_is_written(tmp_path):
    """d > P of the curvature points used to be found after the entropy records were written."""
    out = tmp_path / "run"
    study, config = tiny_config("icml/pre-collapse", curvature_points=1, dim=10**8)
    with pytest.raises(ConfigError, match="subspace dimension dim=100000000 exceeds"):
        engine.run(study, config, out)
    assert not out.exists()


def test_convolutional_input_layer_is_refused_before_anything_is_written(data_dir, tmp_path):
    """LeNet-5's input layer conv0 has no (pixels, hidden) kernel to show: refused in one line
    that names the fix; the corrected model then runs in the same directory."""
    out = tmp_path / "run"
    study, lenet5 = tiny_config("icml/pre-collapse", model="lenet5", dataset="fashion_mnist")
    with pytest.raises(ConfigError) as info:
        engine.run(study, lenet5, out, data_dir=str(data_dir))
    message = str(info.value)
    assert "\n" not in message and "needs a dense input layer" in message
    assert "lenet5's input layer conv0 is a convolution: use model lenet300 or mlp" in message
    assert not out.exists()
    lenet300 = dataclasses.replace(lenet5, model="lenet300", n_samples=50, lanczos_iters=5,
                                   num_points=11, curvature_points=0)
    records = engine.run(study, lenet300, out, data_dir=str(data_dir))
    assert {r["heatmap_shape"] == [28, 28] for r in records if r["kind"] == "eigvec"} == {True}


# ----------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("name,field,value,message", [
    ("icml/gterm-prediction", "dim", 0, "dim must be at least 1, got 0"),
    ("icml/gterm-prediction", "alpha_min", 0.0, "alpha_min must be a finite number > 0, got 0.0"),
    ("icml/gterm-prediction", "alpha_min", 20.0, "alpha_min exceeds alpha_max; swap them"),
    ("icml/many-inits", "basis", "dense", "unknown basis 'dense'; choose one of orthonormal, sparse"),
    ("icml/pre-collapse", "share_levels", (1.5,), "share_levels must lie in (0, 1]"),
    ("icml/gamma-entropy", "n_sets", 0, "n_sets must be at least 1, got 0"),
    ("icml/gradient-cosines", "datasets", ("digits",), "datasets must name at least two"),
])
def test_library_messages_name_fields_not_flags(name, field, value, message):
    study, config = tiny_config(name, **{field: value})
    with pytest.raises(ConfigError) as info:
        engine.check(study, config)
    assert str(info.value).startswith(message) and info.value.name == field
    assert "--" not in str(info.value)


def test_make_setup_runs_the_model_on_one_sample():
    digits = load_data("digits", "train", 20, data_dir=None)
    _, config = tiny_config("icml/gterm-prediction", model="lenet5")
    with pytest.raises(ValueError, match="16x16"):
        make_setup(config, digits)


def test_init_from_shapes_matches_models_init():
    model = models.make_model("mlp", 10, widths=(8, 4))
    key = jax.random.key(3)
    expected = models.init(model, key, (8, 8, 1), "kaiming", jnp.float32)
    shapes = jax.eval_shape(lambda: expected)
    got = models.init_from_shapes(shapes, key, "kaiming", jnp.float32)
    np.testing.assert_allclose(ravel_pytree(got)[0], ravel_pytree(expected)[0], rtol=1e-6)


def test_logit_tangents_and_class_means_match_jacobians():
    """J R from vmapped jvps and c_k = ∇θ mean logit equal the dense per-sample Jacobians."""
    model = models.make_model("mlp", 10, widths=(6,))
    params = models.init(model, jax.random.key(0), (2, 2, 1), "kaiming", jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 2, 2, 1), jnp.float64)
    flat, unravel = ravel_pytree(params)
    jac = jax.jacrev(lambda f: model.apply(unravel(f), x))(flat)  # (N, K, P)
    basis = jax.random.normal(jax.random.key(2), (flat.size, 3), jnp.float64)
    logits, jr = jacobian.logit_tangents(model.apply, params, basis, x, chunk_size=3)
    np.testing.assert_allclose(jr, jac @ basis, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(logits, model.apply(params, x), rtol=1e-12)
    means = jacobian.class_mean_logit_gradients(model.apply, params, x, chunk_size=4)
    np.testing.assert_allclose(means, jac.mean(axis=0), rtol=1e-10, atol=1e-12)
