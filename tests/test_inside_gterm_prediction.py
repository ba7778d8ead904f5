"""ICML Fig. 3 (gzone.experiments.gterm_prediction): true G-term curvature vs Eq. (8) across α,
resumption and the results directory's refusals, on a tiny configuration."""

import numpy as np
import pytest
from inside_cases import TINY, check_fields, runner, stop_before_first_point, tiny_config

from gzone import results
from gzone.experiments import base, gterm_prediction, inside


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner(tmp_path_factory)


def test_fig3_direction_and_eq8_band(run):
    _, _, records = run("fig3")
    check_fields("fig3", records)
    points = sorted(records, key=lambda r: r["alpha"])
    true = [r["gterm_positive_curvature"] for r in points]
    entropy = [r["mean_entropy"] for r in points]
    assert entropy[0] > entropy[-1]  # lower alpha -> higher entropy ...
    assert true[0] > true[-1]  # ... -> higher positive curvature of the G-term
    s = gterm_prediction.summarize(records)
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


def test_refused_run_leaves_nothing_behind(tmp_path):
    """d > P is refused before the directory is created; the corrected run then works there."""
    out = tmp_path / "run"
    with pytest.raises(base.ConfigError, match=r"subspace dimension dim=100000000 exceeds"):
        inside.run_study(tiny_config("fig3", dim=10**8), out)
    assert not out.exists()
    records = inside.run_study(tiny_config("fig3"), out)
    assert len(records) == TINY["fig3"]["seeds"] * TINY["fig3"]["num_points"]


def test_run_stopped_before_its_first_point_does_not_bind_the_directory(tmp_path):
    """A run interrupted before it recorded anything leaves only config.json; a different
    configuration in the same directory replaces it instead of being refused."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        inside.run_study(tiny_config("fig3", dim=12), out, progress=stop_before_first_point)
    assert (out / results.CONFIG_FILE).exists()
    assert results.load_records(out / results.RESULTS_FILE) == []
    records = inside.run_study(tiny_config("fig3"), out)
    assert {r["dim"] for r in records} == {TINY["fig3"]["dim"]}
