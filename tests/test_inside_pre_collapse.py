"""ICML Appendix D / Fig. 10 (gzone.experiments.pre_collapse): the last uncertain sample and the
input-layer top eigenvector; refusals before anything is computed or written."""

import pytest
from inside_cases import check_fields, runner, tiny_config

from gzone.experiments import base, inside, pre_collapse


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner(tmp_path_factory)


def test_fig10_last_uncertain_sample_dominates(run):
    _, _, records = run("fig10")
    check_fields("fig10", records)
    s = pre_collapse.summarize(records)
    assert s["alpha_share_0.9"] is not None
    assert s["last_uncertain_sample_stays_top"]  # its entropy stays highest through the collapse
    pre = [e for e in s["eigvecs"] if e["top_share"] >= 0.9]
    assert pre, s["eigvecs"]
    for e in pre:  # the first-layer top eigenvector is that sample's image
        assert e["best_sample"] == e["top_sample"] == s["last_uncertain_sample"]
        assert e["top_sample_cosine"] > 0.9 > e["median_cosine"]
    assert {e["method"] for e in s["eigvecs"]} == {"lanczos"}


def test_too_large_dim_is_refused_before_anything_is_written(tmp_path):
    """d > P of the curvature points used to be found after the entropy records were written."""
    out = tmp_path / "run"
    with pytest.raises(base.ConfigError, match="subspace dimension dim=100000000 exceeds"):
        inside.run_study(tiny_config("fig10", curvature_points=1, dim=10**8), out)
    assert not out.exists()
    records = inside.run_study(tiny_config("fig10", curvature_points=1), out)
    assert [r["alpha"] for r in records if r["kind"] == "curvature"] == [1.0]


def test_convolutional_input_layer_is_refused_before_anything_is_written(data_dir, tmp_path):
    """LeNet-5's input layer conv0 has no (pixels, hidden) kernel to show: refused in one line
    that names the fix; the corrected model then runs in the same directory."""
    out = tmp_path / "run"
    lenet5 = tiny_config("fig10", model="lenet5", dataset="fashion_mnist")
    with pytest.raises(base.ConfigError) as info:
        inside.run_study(lenet5, out, data_dir=str(data_dir))
    message = str(info.value)
    assert "\n" not in message and "needs a dense input layer" in message
    assert "lenet5's input layer conv0 is a convolution: use model lenet300 or mlp" in message
    assert not out.exists()
    lenet300 = tiny_config("fig10", model="lenet300", dataset="fashion_mnist", n_samples=50,
                           lanczos_iters=5, num_points=11)
    records = inside.run_study(lenet300, out, data_dir=str(data_dir))
    assert {r["heatmap_shape"] == [28, 28] for r in records if r["kind"] == "eigvec"} == {True}
