"""Tiny-configuration tests of gzone.experiments.inside (ICML paper Sec. 4, App. D) and its CLI.

Each study runs once (module-scoped fixtures, digits, small MLPs, d = 10) and the tests check the
*direction* of its headline relation, the record fields, resumption and the CLI's error exits.
"""

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gzone import models, results
from gzone.experiments import inside

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "inside_zone.py"

TINY = {
    "fig3": {"widths": (16, 16), "n_samples": 100, "dim": 10, "seeds": 1, "num_points": 3,
             "alpha_min": 0.1, "alpha_max": 5.0},
    "fig4-right": {"widths": (16, 16), "n_sets": 6, "num_points": 21},
    "fig5-left": {"widths": (16, 16), "n_samples": 100, "inits": 2,
                  "datasets": ("digits", "gaussian")},
    "fig5-right": {"subset_size": 100, "n_priors": 30},
    "fig6": {"widths": (16, 16, 16), "n_samples": 100, "dim": 10, "n_inits": 20,
             "seeds_per_chunk": 16},
    "fig10": {"widths": (32, 16), "n_samples": 100, "dim": 10, "num_points": 61,
              "curvature_points": 0, "lanczos_iters": 15, "share_levels": (0.9,)},
}


def _config(study, **extra):
    return inside.make_config(study, "default", **{**TINY[study], **extra})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs each tiny study once per module; returns (config, out_dir, records)."""
    cache = {}

    def get(study):
        if study not in cache:
            config = _config(study)
            out = tmp_path_factory.mktemp(study.replace("-", "_"))
            cache[study] = (config, out, inside.run_study(config, out))
        return cache[study]

    return get


def _check_fields(study, records):
    for record in records:
        assert record["study"] == study and "flags" in record
        missing = set(inside.RECORD_FIELDS[study][record["kind"]]) - set(record)
        assert not missing, (record["kind"], missing)


# ----------------------------------------------------------------------------- building blocks


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
    logits, jr = inside.logit_tangents(model.apply, params, basis, x, chunk_size=3)
    np.testing.assert_allclose(jr, jac @ basis, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(logits, model.apply(params, x), rtol=1e-12)
    means = inside.class_mean_logit_gradients(model.apply, params, x, chunk_size=4)
    np.testing.assert_allclose(means, jac.mean(axis=0), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- Fig. 3


def test_fig3_direction_and_eq8_band(run):
    _, _, records = run("fig3")
    _check_fields("fig3", records)
    points = sorted(records, key=lambda r: r["alpha"])
    true = [r["gterm_positive_curvature"] for r in points]
    entropy = [r["mean_entropy"] for r in points]
    assert entropy[0] > entropy[-1]  # lower alpha -> higher entropy ...
    assert true[0] > true[-1]  # ... -> higher positive curvature of the G-term
    s = inside.summarize_fig3(records)
    assert s["defined_points"] >= 3
    assert s["mean_abs_gap"] < 1.0  # Eq. (8) tracks the true curvature (bound sqrt(d) = 3.2)
    assert s["max_rel_diff_sigma_each_vs_unit"] < 1e-4  # sigmas at each alpha == at alpha = 1
    for r in points:
        if r["gterm_positive_curvature"] is not None:
            assert 1 - 1e-4 <= r["gterm_positive_curvature"] <= np.sqrt(r["dim"]) + 1e-4


def test_fig3_resume_does_not_duplicate(run):
    config, out, records = run("fig3")
    again = inside.run_study(config, out)
    assert len(again) == len(records)
    keys = [(r["seed"], r["alpha"]) for r in again]
    assert len(keys) == len(set(keys))


def test_results_directory_refuses_other_config(run):
    _, out, _ = run("fig3")
    other = inside.make_config("fig3", "default", **{**TINY["fig3"], "dim": 12})
    with pytest.raises(results.ConfigMismatchError):
        inside.run_study(other, out)


# ----------------------------------------------------------------------------- Fig. 4 right


def test_fig4_gamma_decreases_with_entropy(run):
    _, _, records = run("fig4-right")
    _check_fields("fig4-right", records)
    s = inside.summarize_fig4_right(records)
    assert s["spearman_max"] < -0.9  # every curve: Gamma_p^-2 falls as entropy rises
    assert s["batch_spearman"] < -0.9
    assert s["batch_gamma_inv2_at_max_entropy"] == pytest.approx(1 / 9, rel=1e-3)  # uniform p


# ----------------------------------------------------------------------------- Fig. 5


def test_fig5_left_positive_cosine(run):
    _, _, records = run("fig5-left")
    _check_fields("fig5-left", records)
    pairs = [r for r in records if r["kind"] == "pair"]
    assert len(pairs) == TINY["fig5-left"]["inits"]
    assert all(r["cosine"] > 0.1 for r in pairs)  # balanced digits vs Gaussian noise align


def test_fig5_left_skips_absent_optional_dataset(tmp_path):
    config = _config("fig5-left", inits=1, datasets=("digits", "svhn", "gaussian"))
    records = inside.run_study(config, tmp_path / "out", data_dir=str(tmp_path / "no-data"))
    skipped = [r for r in records if r["kind"] == "skipped"]
    assert [r["dataset"] for r in skipped] == ["svhn"]
    assert {r["dataset_b"] for r in records if r["kind"] == "pair"} == {"gaussian"}


def test_fig5_right_gradient_norm_grows_with_prior_gap(run):
    _, _, records = run("fig5-right")
    _check_fields("fig5-right", records)
    s = inside.summarize_fig5_right(records)
    assert s["priors"] == TINY["fig5-right"]["n_priors"]
    assert s["spearman"] > 0.5
    assert s["fitted_slope"] > 0
    cal = next(r for r in records if r["kind"] == "calibration")
    assert cal["slope_exact"] == pytest.approx(np.sqrt(cal["num_params"] * cal["sigma_c2"]))
    assert cal["slope_paper"] == pytest.approx(cal["num_params"] * cal["sigma_c2"])


# ----------------------------------------------------------------------------- Fig. 6


def test_fig6_directions(run):
    _, _, records = run("fig6")
    _check_fields("fig6", records)
    s = inside.summarize_fig6(records)
    assert s["inits"] == TINY["fig6"]["n_inits"]
    assert s["spearman_mean_entropy_vs_hessian_positive_curvature"] > 0
    assert s["spearman_mean_entropy_vs_gradient_norm"] < 0
    assert s["spearman_mean_entropy_vs_loss"] < 0


def test_fig6_chunks_and_resume(run):
    """20 inits in chunks of 16: the second chunk's seeds past 20 are dropped; a rerun adds none."""
    config, out, records = run("fig6")
    assert sorted(r["seed"] for r in records) == list(range(20))
    again = inside.run_study(config, out)
    assert again == records


# ----------------------------------------------------------------------------- Fig. 10


def test_fig10_last_uncertain_sample_dominates(run):
    _, _, records = run("fig10")
    _check_fields("fig10", records)
    s = inside.summarize_fig10(records)
    assert s["alpha_share_0.9"] is not None
    assert s["last_uncertain_sample_stays_top"]  # its entropy stays highest through the collapse
    pre = [e for e in s["eigvecs"] if e["top_share"] >= 0.9]
    assert pre, s["eigvecs"]
    for e in pre:  # the first-layer top eigenvector is that sample's image
        assert e["best_sample"] == e["top_sample"] == s["last_uncertain_sample"]
        assert e["top_sample_cosine"] > 0.9 > e["median_cosine"]


# ----------------------------------------------------------------------------- CLI


def test_cli_unknown_study_exits_2():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--study", "fig7"], check=False,
                          capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: unknown study")


@pytest.mark.parametrize("argv", [
    ["--study", "fig3", "--alpha-min", "0"],
    ["--study", "fig4-right", "--alpha-max", "-1"],
    ["--study", "fig10", "--set", "eig_alphas=1,-2"],
    ["--study", "fig4-right", "--dim", "10"],
    ["--study", "fig6", "--set", "n_inits=zero"],
])
def test_cli_bad_input_exits_2(argv, capsys, tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import inside_zone
    finally:
        sys.path.pop(0)
    assert inside_zone.main([*argv, "--out", str(tmp_path / "out"), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
