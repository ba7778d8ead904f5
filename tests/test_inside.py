"""The Section-4 registry (gzone.experiments.inside), its shared base and building blocks, and the
CLI's error exits. The studies themselves: tests/test_inside_<study module>.py.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inside_cases import tiny_config
from jax.flatten_util import ravel_pytree

from gzone import jacobian, models
from gzone.experiments import (
    base,
    gamma_entropy,
    gradient_cosines,
    gradient_prior,
    gterm_prediction,
    inside,
    many_inits,
    pre_collapse,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "inside_zone.py"
MODULES = {"fig3": gterm_prediction, "fig4-right": gamma_entropy, "fig5-left": gradient_cosines,
           "fig5-right": gradient_prior, "fig6": many_inits, "fig10": pre_collapse}


# ----------------------------------------------------------------------------- registry and base


def test_registry_maps_cli_names_to_study_modules():
    assert list(inside.STUDIES) == list(MODULES)
    for name, module in MODULES.items():
        entry = inside.STUDIES[name]
        assert entry.name == module.NAME == entry.config.STUDY == name
        assert entry.run is module.run and entry.summarize is module.summarize
        assert inside.RECORD_FIELDS[name] is module.RECORD_FIELDS
        assert inside.study_of(tiny_config(name)) == name
        assert base.identity(tiny_config(name))["study"] == name
    with pytest.raises(ValueError, match="unknown study 'fig7'; choose one of fig3, fig4-right"):
        inside.make_config("fig7")


def test_study_modules_do_not_import_matplotlib():
    code = ("import sys; from gzone.experiments import inside; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_config_error_names_the_parameter_and_renders_the_flag():
    error = base.ConfigError("dim", "{name} must be at least 1, got 0")
    assert isinstance(error, ValueError)
    assert str(error) == "dim must be at least 1, got 0"
    assert error.for_cli() == "--dim must be at least 1, got 0"
    assert error.render("-d") == "-d must be at least 1, got 0"
    swapped = base.ConfigError("alpha_min", "{name} exceeds {other}; swap them", other="alpha_max")
    assert str(swapped) == "alpha_min exceeds alpha_max; swap them"
    assert swapped.for_cli() == "--alpha-min exceeds --alpha-max; swap them"
    assert swapped.for_cli({"alpha_max": "--top"}) == "--alpha-min exceeds --top; swap them"
    again = pickle.loads(pickle.dumps(swapped))
    assert str(again) == str(swapped) and again.for_cli() == swapped.for_cli()


@pytest.mark.parametrize("study,field,value,message", [
    ("fig3", "dim", 0, "dim must be at least 1, got 0"),
    ("fig3", "alpha_min", 0.0, "alpha_min must be a finite number > 0, got 0.0"),
    ("fig3", "alpha_min", 20.0, "alpha_min exceeds alpha_max; swap them"),
    ("fig6", "basis", "dense", "unknown basis 'dense'; choose one of orthonormal, sparse"),
    ("fig10", "share_levels", (1.5,), "share_levels must lie in (0, 1]"),
    ("fig4-right", "n_sets", 0, "n_sets must be at least 1, got 0"),
])
def test_library_messages_name_parameters_not_flags(study, field, value, message):
    with pytest.raises(base.ConfigError) as info:
        tiny_config(study, **{field: value})
    assert str(info.value) == message and info.value.name == field
    assert "--" not in str(info.value)


def test_stream_keys_are_named_folds_of_the_seed():
    for stream in (base.FULL_SPACE_STREAM, base.EIGVEC_STREAM, base.CURVATURE_BASIS_STREAM):
        np.testing.assert_array_equal(
            jax.random.key_data(base.stream_key(7, stream)),
            jax.random.key_data(jax.random.fold_in(jax.random.key(7), stream)))
    assert len({base.FULL_SPACE_STREAM, base.EIGVEC_STREAM, base.CURVATURE_BASIS_STREAM}) == 3


def test_make_setup_runs_the_model_on_one_sample():
    digits = base.load_data("digits", "train", 20, data_dir=None)
    with pytest.raises(ValueError, match="16x16"):
        base.make_setup(tiny_config("fig3", model="lenet5"), digits)


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
    logits, jr = jacobian.logit_tangents(model.apply, params, basis, x, chunk_size=3)
    np.testing.assert_allclose(jr, jac @ basis, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(logits, model.apply(params, x), rtol=1e-12)
    means = jacobian.class_mean_logit_gradients(model.apply, params, x, chunk_size=4)
    np.testing.assert_allclose(means, jac.mean(axis=0), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- CLI


def test_cli_unknown_study_exits_2():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--study", "fig7"], check=False,
                          capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: unknown study")


def _inside_zone():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import inside_zone
    finally:
        sys.path.pop(0)
    return inside_zone


@pytest.mark.parametrize("argv", [
    ["--study", "fig3", "--alpha-min", "0"],
    ["--study", "fig4-right", "--alpha-max", "-1"],
    ["--study", "fig10", "--set", "eig_alphas=1,-2"],
    ["--study", "fig4-right", "--dim", "10"],
    ["--study", "fig6", "--set", "n_inits=zero"],
])
def test_cli_bad_input_exits_2(argv, capsys, tmp_path):
    inside_zone = _inside_zone()
    assert inside_zone.main([*argv, "--out", str(tmp_path / "out"), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["--study", "fig3", "--alpha-min", "0"], "error: --alpha-min must be a finite number > 0"),
    (["--study", "fig10", "--set", "eig_alphas=1,-2"], "error: eig_alphas must be finite numbers"),
    (["--study", "fig3", "--dim", "100000000"], "error: subspace dimension --dim=100000000 exceeds"),
])
def test_cli_renders_config_errors_with_its_own_spelling(argv, message, capsys, tmp_path):
    """Options the CLI has are named as options; other fields as typed after --set."""
    inside_zone = _inside_zone()
    assert inside_zone.main([*argv, "--out", str(tmp_path / "out"), "--no-plot"]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "out").exists()
