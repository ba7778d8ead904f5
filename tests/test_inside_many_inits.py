"""ICML Fig. 6 (gzone.experiments.many_inits): statistics of many initialisations, vmapped in
chunks of seeds, and resumption."""

import pytest
from inside_cases import TINY, check_fields, runner

from gzone.experiments import inside, many_inits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner(tmp_path_factory)


def test_fig6_directions(run):
    _, _, records = run("fig6")
    check_fields("fig6", records)
    s = many_inits.summarize(records)
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
