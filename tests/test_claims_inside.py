"""The Section 4 and App. D claims (ICML Fig. 3, 4, 5, 6, 10) on constructed records where the
answer is known, each check in both directions (and inconclusive where it applies); the shared
helpers of :mod:`gzone.studies.icml._common.inside`; the Eq. (8) overlay of the dimension sweep
and the signed Fig. 10 image."""

import math

import matplotlib
import numpy as np
import pytest

from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.studies.icml import (
    dim_sweep,
    gamma_entropy,
    gradient_cosines,
    gradient_prior,
    gterm_prediction,
    many_inits,
    pre_collapse,
)
from gzone.studies.icml._common import inside

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# ----------------------------------------------------------------------------- helpers


def test_bootstrap_rank_correlation_and_mean_intervals():
    x = np.arange(20.0)
    found = inside.rank_correlation(x, x**3)
    assert found["rho"] == pytest.approx(1.0) and found["p_value"] < 1e-10
    assert found["interval"] == pytest.approx([1.0, 1.0])
    assert inside.rank_correlation([1.0, 2.0], [2.0, 1.0])["interval"] is None
    assert inside.rank_correlation(x, np.ones(20))["interval"] is None  # a constant side
    noise = np.random.default_rng(0).normal(size=(2, 30))
    lo, hi = inside.rank_correlation(*noise)["interval"]
    assert lo < 0 < hi  # unrelated columns: the interval straddles 0
    lo, hi = inside.mean_interval([0.8, 0.82, 0.79, None])
    assert lo < 0.8033 < hi and hi - lo < 0.1
    assert inside.mean_interval([0.8]) is None
    assert [inside.against(i, 0.7) for i in ([0.75, 0.8], [0.5, 0.6], [0.6, 0.8], None)] == \
        ["inside", "outside", "straddles", "missing"]
    assert inside.relative_gap(2.0, 2.5) == pytest.approx(0.25)
    assert inside.relative_gap(None, 1.0) is None and inside.relative_gap(0.0, 1.0) is None


def test_eq8_prediction_is_the_random_models_and_undefined_below_k():
    from gzone import random_model

    rng = np.random.default_rng(1)
    jr = rng.normal(size=(40, 3, 6))
    logits = rng.normal(size=(40, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    stats, eq8 = inside.eq8_prediction(probs, jr)
    want = random_model.expected_gterm_curvature(probs, stats.sigma_c2, stats.sigma_e2, 6)
    assert eq8["predicted_positive_curvature"] == pytest.approx(float(want))
    assert eq8["sigma_c2"] == pytest.approx(float(np.mean(jr.mean(0) ** 2)))
    assert 1 <= eq8["predicted_positive_curvature"] <= math.sqrt(6)
    assert inside.eq8_prediction(probs, jr[:, :, :2])[1]["predicted_positive_curvature"] is None


# ----------------------------------------------------------------------------- Fig. 3

ALPHAS = [0.01, 0.1, 1.0, 3.0, 10.0]
TRUE_PC = [4.4, 4.4, 3.9, 3.0, 1.5]


def fig3_records(ratio=1.1, seeds=3, alphas=ALPHAS, true=TRUE_PC, seed_ratio=None):
    """Point records whose Eq. (8) is ``ratio`` x the true curvature (one seed: ``seed_ratio``)."""
    out = []
    for a, t in zip(alphas, true):
        for s in range(seeds):
            r = seed_ratio if seed_ratio is not None and s == 0 else ratio
            r = r(a) if callable(r) else r
            out.append({"kind": "point", "seed": s, "alpha": a, "mean_entropy": 1.0,
                        "gterm_positive_curvature": t, "hessian_positive_curvature": t,
                        "predicted_positive_curvature": None if r is None else t * r})
    return out


def eq8_verdict(records):
    return gterm_prediction.check_eq8(gterm_prediction.summarize(records))


def test_eq8_claim_holds_where_eq8_follows_the_true_gterm():
    finding = eq8_verdict(fig3_records())
    assert finding.verdict == REPRODUCED
    assert finding.measured["max_rel_gap"] == pytest.approx(0.1)
    assert eq8_verdict(fig3_records(ratio=0.8)).verdict == REPRODUCED


@pytest.mark.parametrize("ratio", [1.3, 0.7, lambda a: 1.1 if a <= 1 else 1.9])
def test_eq8_claim_fails_where_eq8_misses_the_true_gterm(ratio):
    assert eq8_verdict(fig3_records(ratio=ratio)).verdict == NOT_REPRODUCED


def test_eq8_claim_is_inconclusive_with_few_alphas_or_one_seed_off():
    assert eq8_verdict(fig3_records(alphas=ALPHAS[:2], true=TRUE_PC[:2])).verdict == INCONCLUSIVE
    assert eq8_verdict(fig3_records(ratio=None)).verdict == INCONCLUSIVE
    assert eq8_verdict(fig3_records(seed_ratio=1.5)).verdict == INCONCLUSIVE  # medians agree


# ----------------------------------------------------------------------------- Fig. 4 left

DIMS = [2, 5, 10, 20, 50, 100]


def dim_records(pc=lambda d: 0.5 * math.sqrt(d) + 0.5, ratio=1.1, seeds=2, spread=0.01,
                eq8=True):
    """Subspace records of the three terms and ``eq8`` records (Eq. (8) = ratio x G's median;
    None for d < K = 10)."""
    out = []
    for d in DIMS:
        for s in range(seeds):
            for term in ("hessian", "gterm", "hterm"):
                value = pc(d) + (spread * s if term == "gterm" else 0.0)
                out.append({"kind": "subspace", "alpha": 1.0, "temperature": 1.0, "seed": s,
                            "dim": d, "term": term, "positive_curvature": value,
                            "spectral_norm": 1.0, "top_eigenvalue": 1.0})
            if eq8:
                out.append({"kind": "eq8", "alpha": 1.0, "temperature": 1.0, "seed": s, "dim": d,
                            "predicted_positive_curvature":
                            None if d < 10 else ratio * (pc(d) + spread / 2)})
    return out


def dim_verdict(records):
    return dim_sweep.check_dimension(dim_sweep.summarize(records))


def test_dimension_claim_holds_when_gterm_grows_as_eq8_below_sqrt_d():
    rows = dim_sweep.summarize(dim_records())
    gterm = {r["dim"]: r for r in rows if r["term"] == "gterm"}
    assert gterm[2]["eq8_pc"] is None and gterm[50]["eq8_pc"] == pytest.approx(
        1.1 * (0.5 * math.sqrt(50) + 0.505))
    assert all("eq8_pc" not in r for r in rows if r["term"] != "gterm")
    assert dim_sweep.check_dimension(rows).verdict == REPRODUCED


@pytest.mark.parametrize("change", [
    {"ratio": 1.4},                                           # Eq. (8) 40 % above
    {"pc": lambda d: 0.5 * math.sqrt(min(d, 20)) + 0.45 if d == 50 else 0.5 * math.sqrt(d) + 0.5},
    {"spread": 0.5},                                          # a seed above sqrt(2) at d = 2
])
def test_dimension_claim_fails_off_eq8_non_monotone_or_above_sqrt_d(change):
    assert dim_verdict(dim_records(**change)).verdict == NOT_REPRODUCED


def test_dimension_claim_is_inconclusive_without_eq8_records():
    """A run made before the ``eq8`` records (or with every d < K) cannot say."""
    assert dim_verdict(dim_records(eq8=False)).verdict == INCONCLUSIVE
    below_k = [r for r in dim_records() if r["dim"] < 20]
    assert dim_verdict(below_k).verdict == INCONCLUSIVE  # only d = 10 has Eq. (8)


def test_dimension_sweep_needs_its_eq8_records_and_draws_them():
    records = dim_records()
    config = dim_sweep.Config(dims=tuple(DIMS), seeds=2)
    keys = dim_sweep.finished(config, records)
    assert len(keys) == len(DIMS) * 2
    assert len(dim_sweep.finished(config, [r for r in records if r["kind"] != "eq8"])) == 0
    figures = dim_sweep.figure(records)
    line = next(li for li in figures[0].axes[0].lines if "Eq. (8)" in li.get_label())
    assert list(line.get_xdata()) == DIMS
    want = [np.nan if d < 10 else 1.1 * (0.5 * math.sqrt(d) + 0.505) for d in DIMS]
    np.testing.assert_allclose(line.get_ydata(), want)
    for fig in figures:
        plt.close(fig)


# ----------------------------------------------------------------------------- Fig. 4 right


def gamma_records(alpha_min=1e-2, alpha_max=1e2, sets=8, seed=0):
    """Set and batch records of Gaussian logit sets (K = 10) scaled over an α grid."""
    logits = np.random.default_rng(seed).normal(size=(sets, 10)).astype(np.float32)
    alphas = np.geomspace(alpha_min, alpha_max, 41).tolist()
    entropy, gamma, batch_entropy, batch_gamma = gamma_entropy.gamma_curves(logits, alphas)
    out = []
    for i, a in enumerate(alphas):
        for s in range(sets):
            g = float(gamma[i, s])
            out.append({"kind": "set", "set": s, "alpha": a, "entropy": float(entropy[i, s]),
                        "gamma_p": g if np.isfinite(g) else None,
                        "gamma_p_inv2": g**-2 if np.isfinite(g) else None})
        out.append({"kind": "batch", "set": -1, "alpha": a, "entropy": float(batch_entropy[i]),
                    "gamma_p": float(batch_gamma[i]), "gamma_p_inv2": float(batch_gamma[i]) ** -2})
    return out


def gamma_verdict(records):
    return gamma_entropy.check_gamma(gamma_entropy.summarize(records))


def test_gamma_claim_holds_on_real_softmax_outputs():
    finding = gamma_verdict(gamma_records())
    assert finding.verdict == REPRODUCED, finding.measured
    assert finding.measured["num_classes"] == 10 and finding.measured["collapsed_sets"] > 0


def _edit(records, where, **values):
    return [{**r, **values} if where(r) else r for r in records]


def test_gamma_claim_fails_outside_the_bounds_against_the_entropy_or_off_the_limits():
    records = gamma_records()
    top = max(r["alpha"] for r in records)
    above = _edit(records, lambda r: r["set"] == 0 and r["alpha"] == top, gamma_p=3.2)
    assert gamma_verdict(above).verdict == NOT_REPRODUCED  # Gamma_p > sqrt(K - 1)
    rising = [{**r, "gamma_p_inv2": 1.2 - r["gamma_p_inv2"]}
              if r["set"] == 1 and r["gamma_p_inv2"] is not None else r
              for r in records]  # one curve rises with the entropy
    assert gamma_verdict(rising).verdict == NOT_REPRODUCED
    bottom = min(r["alpha"] for r in records)
    uniform = _edit(records, lambda r: r["kind"] == "batch" and r["alpha"] == bottom,
                    gamma_p_inv2=0.2)  # not 1/(K - 1) at uniform p
    assert gamma_verdict(uniform).verdict == NOT_REPRODUCED
    collapsed = next(r["set"] for r in records if r["kind"] == "set" and r["alpha"] == top
                     and r["entropy"] < 1e-4 and r["gamma_p"] is not None)
    low_end = _edit(records, lambda r: r["set"] == collapsed and r["alpha"] == top,
                    gamma_p=2.0, gamma_p_inv2=0.25)  # ends below (K + 2) / (4 (K - 1)) = 1/3
    finding = gamma_verdict(low_end)
    assert finding.verdict == NOT_REPRODUCED and finding.measured["spearman_max"] <= -0.9


def test_gamma_claim_is_inconclusive_without_uniform_or_collapsed_ends():
    assert gamma_verdict(gamma_records(alpha_min=0.5)).verdict == INCONCLUSIVE  # K unreadable
    assert gamma_verdict(gamma_records(alpha_max=0.5)).verdict == INCONCLUSIVE  # no collapse


# ----------------------------------------------------------------------------- Fig. 5 left


def cosine_records(values, pair=("cifar10", "gaussian"), others=()):
    out = [{"kind": "pair", "seed": s, "dataset_a": pair[0], "dataset_b": pair[1], "cosine": v,
            "predicted_cosine": 0.9} for s, v in enumerate(values)]
    for s, v in enumerate(others):  # another pair, e.g. svhn vs gaussian
        out.append({"kind": "pair", "seed": s, "dataset_a": "svhn", "dataset_b": "gaussian",
                    "cosine": v, "predicted_cosine": 0.9})
    return out


def cosine_verdict(records):
    return gradient_cosines.check_cosine(gradient_cosines.summarize(records))


def test_cosine_claim_reads_the_paper_pair_and_its_interval():
    finding = cosine_verdict(cosine_records([0.80, 0.82, 0.79], others=[0.1, 0.2, 0.15]))
    assert finding.verdict == REPRODUCED and finding.measured["pairs"] == ["cifar10 vs gaussian"]
    assert cosine_verdict(cosine_records([0.40, 0.45, 0.50])).verdict == NOT_REPRODUCED
    assert cosine_verdict(cosine_records([0.60, 0.90, 0.75])).verdict == INCONCLUSIVE
    assert cosine_verdict(cosine_records([0.9])).verdict == INCONCLUSIVE  # one init
    digits = cosine_records([0.40, 0.45, 0.5], pair=("digits", "gaussian"))
    finding = cosine_verdict(digits)  # no CIFAR-10: each real dataset vs Gaussian
    assert finding.verdict == NOT_REPRODUCED and finding.measured["pairs"] == ["digits vs gaussian"]
    assert cosine_verdict(cosine_records([0.9, 0.9], pair=("digits", "svhn"))).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- Fig. 5 right

P, SIGMA_C2 = 60000, 2e-4
SLOPE = math.sqrt(P * SIGMA_C2)  # 3.46; the printed P sigma_c^2 = 12


def prior_records(slope=SLOPE, noise=0.03, priors=100, sigma_c2=SIGMA_C2,
                  stale_slopes=False, offset=0.0):
    """A calibration record (σ_c², P) and priors whose norms are slope x ‖Q̂ − Q‖ (+ noise)."""
    rng = np.random.default_rng(0)
    gap = rng.uniform(0.05, 0.6, priors)
    norm = offset + slope * gap * (1 + noise * rng.normal(size=priors))
    slopes = gradient_prior.predicted_slopes(P, SIGMA_C2 if stale_slopes else sigma_c2)
    cal = {"kind": "calibration", "num_params": P, "n_subset": 5000, "sigma_c2": sigma_c2,
           **slopes}
    return [cal] + [{"kind": "prior", "prior": i, "q_gap": g, "gradient_norm": n,
                     "predicted_norm_means": n} for i, (g, n) in enumerate(zip(gap, norm))]


def slope_verdict(records):
    return gradient_prior.check_slope(gradient_prior.summarize(records))


def test_slope_claim_holds_with_the_predicted_slope():
    finding = slope_verdict(prior_records())
    assert finding.verdict == REPRODUCED
    assert finding.measured["predicted_slope"] == pytest.approx(SLOPE)
    assert finding.measured["fitted_over_predicted"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("stale", [False, True])
def test_slope_claim_fails_with_a_corrupted_sigma_c2(stale):
    """σ_c² four times too large predicts twice the slope: the fitted slope no longer matches,
    whether the stored slopes were recomputed from the corrupted σ_c² or not."""
    records = prior_records(sigma_c2=4 * SIGMA_C2, stale_slopes=stale)
    finding = slope_verdict(records)
    assert finding.verdict == NOT_REPRODUCED
    assert finding.measured["fitted_over_predicted"] == pytest.approx(0.5, abs=0.02)
    assert gradient_prior.slopes(records)["slope_exact"] == pytest.approx(
        2 * SLOPE)  # the summary's slope comes from the record's sigma_c2


def test_slope_claim_fails_on_the_printed_slope_or_without_a_linear_trend():
    assert slope_verdict(prior_records(slope=P * SIGMA_C2)).verdict == NOT_REPRODUCED
    flat = prior_records(slope=0.0, offset=1.5, noise=0.0)
    for r in flat[1:]:
        r["gradient_norm"] = 1.5 + 0.3 * np.sin(17 * r["prior"])  # no trend in the gap
    assert slope_verdict(flat).verdict == NOT_REPRODUCED


def test_slope_claim_is_inconclusive_on_the_edge_or_with_few_priors():
    edge = prior_records(slope=1.25 * SLOPE, noise=0.15)
    finding = slope_verdict(edge)
    lo, hi = finding.measured["fitted_over_predicted_interval"]
    assert lo < 1.25 < hi and finding.verdict == INCONCLUSIVE
    assert slope_verdict(prior_records(priors=6)).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- Fig. 6


def init_records(n=64, loss_sign=-1.0, loss_coupling=1.0, seed=0):
    """Initialisations driven by one latent confidence u: entropy and positive curvature rise
    with u, gradient norm falls, the loss follows ``loss_sign`` x u (x ``loss_coupling``)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)

    def noisy(scale=0.3):
        return rng.normal(scale=scale, size=n)

    cols = {"mean_entropy": u + noisy(), "hessian_positive_curvature": u + noisy(),
            "gterm_positive_curvature": u + noisy(), "gradient_norm": -u + noisy(),
            "loss": loss_sign * loss_coupling * u + noisy(), "q_gap": -u + noisy()}
    return [{"kind": "init", "seed": i, **{k: float(v[i]) for k, v in cols.items()}}
            for i in range(n)]


def signs_verdict(records):
    return many_inits.check_signs(many_inits.summarize(records))


def test_signs_claim_holds_with_significant_correlations_of_the_papers_signs():
    finding = signs_verdict(init_records())
    assert finding.verdict == REPRODUCED
    entry = finding.measured["mean_entropy_vs_loss"]
    assert entry["rho"] < 0 and entry["p_value"] < 1e-6 and entry["interval"][1] < 0


def test_signs_claim_fails_on_a_significant_opposite_sign_and_is_inconclusive_on_noise():
    assert signs_verdict(init_records(loss_sign=1.0)).verdict == NOT_REPRODUCED
    finding = signs_verdict(init_records(loss_coupling=0.0))  # the loss unrelated
    assert finding.verdict == INCONCLUSIVE
    lo, hi = finding.measured["mean_entropy_vs_loss"]["interval"]
    assert lo < 0 < hi
    assert signs_verdict(init_records(n=2)).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- App. D, Fig. 10


def collapse_records(curvature, t_scale=1.0):
    """Entropy records on α ∈ [1, 100] where the top sample's share passes 0.9 at α ≈ 10 and its
    t = ``t_scale`` x 10^(−α/5), and curvature records {α: PC(G)}."""
    out = []
    for a in np.geomspace(1, 100, 81):
        share = 1 / (1 + (10 / a) ** 4 / 9)
        out.append({"kind": "entropy", "alpha": float(a), "mean_entropy": 1.0 / a,
                    "uncertain_samples": 1, "top_sample": 7, "top_share": share,
                    "top_t": t_scale * 10 ** (-a / 5), "tracked_samples": [7],
                    "tracked_entropies": [1.0 / a]})
    out += [{"kind": "curvature", "alpha": a, "dim": 20, "gterm_positive_curvature": v,
             "hessian_positive_curvature": v, "hterm_positive_curvature": 0.0}
            for a, v in curvature.items()]
    return out


def near_one_verdict(records):
    return pre_collapse.check_near_one(pre_collapse.summarize(records))


def test_near_one_claim_holds_in_the_window_and_fails_off_one():
    finding = near_one_verdict(collapse_records({1.0: 3.2, 5.0: 2.0, 15.0: 1.03, 40.0: 1.0}))
    assert finding.verdict == REPRODUCED and finding.measured["alphas_in_window"] == [15.0, 40.0]
    assert near_one_verdict(collapse_records({1.0: 3.2, 15.0: 1.4})).verdict == NOT_REPRODUCED


def test_near_one_claim_is_inconclusive_without_a_resolvable_point_in_the_window():
    assert near_one_verdict(collapse_records({1.0: 3.2, 5.0: 2.0})).verdict == INCONCLUSIVE
    gone = collapse_records({1.0: 3.2, 40.0: 1.0}, t_scale=1e-20)  # t < 1e-20 at alpha = 40
    assert near_one_verdict(gone).verdict == INCONCLUSIVE
    assert near_one_verdict(collapse_records({15.0: None})).verdict == INCONCLUSIVE


def test_fig10_image_is_signed_as_the_papers_unless_absolute_is_asked():
    signed = np.array([[-1.0, -2.0], [0.5, -0.5]])  # sums negative: shown with the other sign
    record = {"kind": "eigvec", "alpha": 12.0, "top_share": 0.95, "top_sample": 3,
              "top_sample_cosine": 0.99, "heatmap_shape": [2, 2],
              "heatmap_signed": signed.ravel().tolist(), "heatmap": np.abs(signed).ravel().tolist()}
    fig = pre_collapse.figure([record])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), -signed)
    assert fig.axes[0].images[0].get_clim() == (-2.0, 2.0)  # diverging colours around 0
    plt.close(fig)
    fig = pre_collapse.figure([record], absolute=True)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), np.abs(signed))
    plt.close(fig)
