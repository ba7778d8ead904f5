"""ICML Fig. 5 right (gzone.experiments.gradient_prior): gradient norm vs ‖Q̂ − Q‖ and Eq. (9)."""

import numpy as np
import pytest
from inside_cases import TINY, check_fields, runner

from gzone.experiments import gradient_prior


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner(tmp_path_factory)


def test_fig5_right_gradient_norm_grows_with_prior_gap(run):
    _, _, records = run("fig5-right")
    check_fields("fig5-right", records)
    s = gradient_prior.summarize(records)
    assert s["priors"] == TINY["fig5-right"]["n_priors"]
    assert s["spearman"] > 0.5
    assert s["fitted_slope"] > 0
    cal = next(r for r in records if r["kind"] == "calibration")
    assert cal["slope_exact"] == pytest.approx(np.sqrt(cal["num_params"] * cal["sigma_c2"]))
    assert cal["slope_paper"] == pytest.approx(cal["num_params"] * cal["sigma_c2"])
