"""ICML Fig. 4 right (gzone.experiments.gamma_entropy): Γ_p^-2 falls as the softmax entropy rises."""

import pytest
from inside_cases import check_fields, runner

from gzone.experiments import gamma_entropy


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner(tmp_path_factory)


def test_fig4_gamma_decreases_with_entropy(run):
    _, _, records = run("fig4-right")
    check_fields("fig4-right", records)
    s = gamma_entropy.summarize(records)
    assert s["spearman_max"] < -0.9  # every curve: Gamma_p^-2 falls as entropy rises
    assert s["batch_spearman"] < -0.9
    assert s["batch_gamma_inv2_at_max_entropy"] == pytest.approx(1 / 9, rel=1e-3)  # uniform p
