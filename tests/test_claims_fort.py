"""The Fort & Scherlis claims (issue 19): every check on constructed summaries (or records whose
summary is known) in both directions — a case that reproduces, cases that must not, and
inconclusive where it applies. No JAX compilation: milliseconds each."""

import math

import numpy as np
import pytest

from gzone import studies
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import field_help
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import (
    architectures,
    directions,
    hypersurface_training,
    init_selection,
    loss_radius,
    radius,
    radius_drift,
    stokes,
)

X = [0.1, 0.22, 0.46, 1.0, 2.2, 4.6, 10.0]  # radius factors; the zone around 1-2.2
EIGEN = {10: [0.5, 0.51, 0.6, 0.85, 0.8, 0.6, 0.52],  # excess over 1/2 peaks at r_X, falls with d
         50: [0.5, 0.5, 0.55, 0.7, 0.68, 0.55, 0.51],
         100: [0.5, 0.5, 0.52, 0.62, 0.6, 0.53, 0.5]}
RATIO = {10: [0.1, 0.2, 0.8, 2.0, 1.8, 0.6, 0.2],  # Tr H/||H|| peaks above 1 there, grows with d
         50: [0.1, 0.2, 1.0, 2.8, 2.5, 0.9, 0.3],
         100: [0.1, 0.2, 1.1, 3.0, 2.7, 1.0, 0.3]}


def plane_rows(eigen=EIGEN, ratio=RATIO, x=X, seeds=3, **extra):
    """:func:`gzone.studies.fort._common.plane_rows`-shaped rows."""
    return [{**extra, "radius_factor": c, "radius": 16.0 * c, "dim": d, "seeds": seeds,
             "positive_eigenvalues": eigen[d][i], "trace_over_frobenius": ratio[d][i]}
            for i, c in enumerate(x) for d in eigen]


def shifted(curves, by):
    """Each curve moved ``by`` radii up the grid (its first value repeated)."""
    return {d: [v[0]] * by + v[:len(v) - by] for d, v in curves.items()}


# ----------------------------------------------------------------------------- shared helpers


def test_band_finds_the_peak_and_where_the_excess_is_at_least_half_of_it():
    band = claims.find_band(X, [0.0, 0.1, 0.3, 1.0, 0.6, 0.4, 0.1])
    assert band.summary() == {"peak": 1.0, "peak_at": 1.0, "band": [1.0, 2.2], "ends": [0.0, 0.1]}
    assert band.interior and band.closed and band.contains(1.5) and not band.contains(4.6)
    assert claims.band_verdict(band) == REPRODUCED
    assert claims.find_band(X[:2], [0.1, 0.2]) is None
    assert claims.find_band(X, [0.1, None, 0.3, 1.0, 0.6, 0.4, 0.1]) is None


@pytest.mark.parametrize("curve, minimum, noise, verdict", [
    ([0.0, 0.1, 0.3, 1.0, 0.6, 0.4, 0.1], 0.0, 0.0, REPRODUCED),
    ([0.0, 0.1, 0.3, 1.0, 0.6, 0.4, 0.1], 1.0, 0.0, NOT_REPRODUCED),   # peak not above the minimum
    ([0.0, 0.1, 0.3, 0.5, 0.6, 0.8, 1.0], 0.0, 0.0, NOT_REPRODUCED),   # grows to the grid's end
    ([0.0] * 7, 0.0, 0.0, NOT_REPRODUCED),                             # no excess at all
    ([0.0, 0.1, 0.3, 1.0, 0.6, 0.6, 0.6], 0.0, 0.0, INCONCLUSIVE),     # band runs past the end
    ([0.0, 0.1, 0.3, 1.0, 0.6, 0.4, 0.1], 0.0, 1.5, INCONCLUSIVE),     # within the noise
])
def test_band_verdict(curve, minimum, noise, verdict):
    assert claims.band_verdict(claims.find_band(X, curve), minimum=minimum, noise=noise) == verdict


def test_tolerance_verdict_and_trends():
    assert claims.tolerance_verdict(2.95, 0.01, 3, 0.3) == REPRODUCED
    assert claims.tolerance_verdict(2.0, 0.1, 3, 0.3) == NOT_REPRODUCED
    assert claims.tolerance_verdict(2.75, 0.1, 3, 0.3) == INCONCLUSIVE  # the CI straddles 2.7
    assert claims.tolerance_verdict(None, 0.1, 3, 0.3) == INCONCLUSIVE
    assert claims.decreasing_pairs([3, 2, 1]) == 1.0 and claims.decreasing_pairs([1, 2, 3]) == 0.0
    assert math.isnan(claims.decreasing_pairs([1]))
    assert claims.worst([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.worst([INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED]) == NOT_REPRODUCED
    assert claims.worst([]) == INCONCLUSIVE
    assert claims.fraction_noise(100, 1) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- fort/radius (Fig. 3)


def test_eigenvalue_excess_holds_on_a_band_that_shrinks_with_d():
    found = radius.check_eigenvalue_excess(plane_rows())
    assert found.verdict == REPRODUCED
    assert found.measured["peak_excess"] == pytest.approx([0.35, 0.2, 0.12])
    assert found.measured["decreasing_pairs"] == 1.0
    assert found.measured["excess"]["10"]["band"] == [1.0, 2.2]


@pytest.mark.parametrize("eigen", [
    {10: EIGEN[100], 50: EIGEN[50], 100: EIGEN[10]},                 # the excess grows with d
    {d: [0.5] * 7 for d in EIGEN},                                   # no excess
    {d: sorted(v) for d, v in EIGEN.items()},                        # grows to the grid's end
])
def test_eigenvalue_excess_fails(eigen):
    assert radius.check_eigenvalue_excess(plane_rows(eigen=eigen)).verdict == NOT_REPRODUCED


def test_eigenvalue_excess_is_inconclusive_when_the_grid_or_the_noise_cannot_tell():
    open_end = {d: [*v[:-2], v[-4], v[-4]] for d, v in EIGEN.items()}  # still high at 10 r_X
    assert radius.check_eigenvalue_excess(plane_rows(eigen=open_end)).verdict == INCONCLUSIVE
    small = {**EIGEN, 100: [0.5, 0.5, 0.52, 0.58, 0.56, 0.52, 0.5]}  # excess 0.08
    assert radius.check_eigenvalue_excess(plane_rows(small)).verdict == REPRODUCED  # 3 seeds
    one_seed = radius.check_eigenvalue_excess(plane_rows(small, seeds=1))  # 0.08 < 2 x 0.05
    assert one_seed.verdict == INCONCLUSIVE
    missing = plane_rows()
    missing[3]["positive_eigenvalues"] = None
    assert radius.check_eigenvalue_excess(missing).verdict == INCONCLUSIVE
    assert radius.check_eigenvalue_excess([]).verdict == INCONCLUSIVE
    single = {10: EIGEN[10]}
    assert radius.check_eigenvalue_excess(plane_rows(single, {10: RATIO[10]})).verdict == INCONCLUSIVE


def test_trace_ratio_excess_holds_in_the_same_band_without_falling_with_d():
    found = radius.check_trace_ratio_excess(plane_rows())
    assert found.verdict == REPRODUCED
    assert found.measured["peak_trace_ratio"] == [2.0, 2.8, 3.0]


@pytest.mark.parametrize("ratio", [
    {10: RATIO[100], 50: RATIO[50], 100: RATIO[10]},                 # falls with d
    {d: [v / 4 for v in r] for d, r in RATIO.items()},               # peak below 1
    shifted(RATIO, 2),                   # peak at 4.6 r_X, outside the eigenvalue band [1, 2.2]
])
def test_trace_ratio_excess_fails(ratio):
    assert radius.check_trace_ratio_excess(plane_rows(ratio=ratio)).verdict == NOT_REPRODUCED


def test_trace_ratio_excess_is_inconclusive_when_its_band_runs_past_the_grid():
    open_end = {d: [*v[:5], 0.8 * v[3], 0.7 * v[3]] for d, v in RATIO.items()}
    assert radius.check_trace_ratio_excess(plane_rows(ratio=open_end)).verdict == INCONCLUSIVE
    rises_again = {d: [*v[:-1], v[3]] for d, v in RATIO.items()}  # a second rise at 10 r_X
    assert radius.check_trace_ratio_excess(plane_rows(ratio=rises_again)).verdict == INCONCLUSIVE


def test_xavier_in_the_zone():
    found = radius.check_xavier_in_zone(plane_rows())
    assert found.verdict == REPRODUCED and found.measured["xavier_radius"] == pytest.approx(16.0)
    moved = radius.check_xavier_in_zone(plane_rows(shifted(EIGEN, 2), shifted(RATIO, 2)))
    assert moved.verdict == NOT_REPRODUCED  # the zone at 4.6-10 r_X
    at_end = radius.check_xavier_in_zone(plane_rows({d: sorted(v) for d, v in EIGEN.items()}))
    assert at_end.verdict == INCONCLUSIVE  # peak at the grid's end: the band's level unknown
    flat = radius.check_xavier_in_zone(plane_rows(ratio={d: [0.5] * 7 for d in RATIO}))
    assert flat.verdict == NOT_REPRODUCED  # Tr H/||H|| never above 1: no zone


# ----------------------------------------------------------------------------- fort/directions


def direction_rows(positive=(0.6, 0.65, 0.8, 0.98, 0.97, 0.85, 0.7), z=(0.5, -1.0),
                   ratio=(0.5, 0.6, 1.5, 3.0, 2.8, 1.5, 1.0), stderr=0.2, size=10_000, **planes):
    """fort/directions summary rows: per radius the direction fractions, moment z-scores and the
    full-space Tr H/||H||; then orthonormal-plane rows."""
    rows = [{"radius_factor": c, "radius": 16.0 * c, "positive_directions": p,
             "predicted_positive_directions": p - 0.01, "mean_z": z[0], "variance_z": z[1],
             "full_positive_curvature": r, "full_positive_curvature_stderr": stderr,
             "num_params": size} for c, p, r in zip(X, positive, ratio)]
    return rows + plane_rows(**planes)


def test_directions_outnumber_eigenvalues_in_the_zone():
    found = directions.check_directions_outnumber(direction_rows())
    assert found.verdict == REPRODUCED
    assert found.measured["radius_factors"] == [1.0, 2.2]
    assert found.measured["positive_eigenvalues"] == [0.62, 0.6]


def test_directions_outnumber_eigenvalues_fails_and_is_inconclusive():
    few = direction_rows(positive=(0.6, 0.65, 0.8, 0.85, 0.97, 0.85, 0.7))  # 0.85 < 0.9 at r_X
    assert directions.check_directions_outnumber(few).verdict == NOT_REPRODUCED
    many = {**EIGEN, 100: [0.5, 0.5, 0.52, 0.8, 0.75, 0.53, 0.5]}  # excess 0.3: 0.48 < 2 x 0.3
    assert directions.check_directions_outnumber(direction_rows(eigen=many)).verdict == NOT_REPRODUCED
    none = {d: [0.5] * 7 for d in EIGEN}
    assert directions.check_directions_outnumber(direction_rows(eigen=none)).verdict == NOT_REPRODUCED
    small = {**EIGEN, 100: [0.5, 0.5, 0.52, 0.58, 0.56, 0.52, 0.5]}  # excess 0.08 < 2 x 0.5/10
    noisy = direction_rows(eigen=small, seeds=1)  # one seed: the eigenvalue excess is noise
    assert directions.check_directions_outnumber(noisy).verdict == INCONCLUSIVE
    no_planes = [r for r in direction_rows() if "dim" not in r]
    assert directions.check_directions_outnumber(no_planes).verdict == INCONCLUSIVE


def test_direction_moments_agree_within_three_standard_errors():
    assert directions.check_direction_moments(direction_rows()).verdict == REPRODUCED
    off = direction_rows()
    off[4]["variance_z"] = -4.0  # a wrong 2/(D+2) factor would be tens of standard errors away
    found = directions.check_direction_moments(off)
    assert found.verdict == NOT_REPRODUCED and found.measured["variance_z"][4] == -4.0
    missing = direction_rows()
    missing[0]["mean_z"] = None
    assert directions.check_direction_moments(missing).verdict == INCONCLUSIVE
    assert directions.check_direction_moments(plane_rows()).verdict == INCONCLUSIVE


def moment_record(mean=1.3, predicted=1.0, **kw):
    """A ``directions`` record: measured and predicted moments with known standard errors
    (mean: 0.3 measured, 0.4 predicted; variance: 9·sqrt(2/99) measured, 0 predicted)."""
    size = 1000
    return {"kind": "directions", "radius_factor": 1.0, "radius": 1.0, "num_params": size,
            "num_directions": 100, "direction_mean": mean, "predicted_direction_mean": predicted,
            "direction_variance": 9.0, "predicted_direction_variance": 9.0,
            "trace": 2.0, "trace_stderr": 0.4 * size, "frobenius_sq": 4.0,
            "frobenius_sq_stderr": 0.0, "full_positive_curvature": 1.0, **kw}


def test_moment_z_scores_combine_the_measured_and_predicted_errors_over_seeds():
    one = directions.moment_fields([moment_record()])
    assert one["mean_z"] == pytest.approx(0.3 / 0.5) and one["variance_z"] == 0.0
    two = directions.moment_fields([moment_record(), moment_record()])
    assert two["mean_z"] == pytest.approx(0.3 / (math.sqrt(2 * 0.25) / 2))
    assert two["full_positive_curvature"] == 1.0 and two["num_params"] == 1000
    # the delta-method error of Tr/sqrt(||.||^2) = 2/2: 1 x 0.4 x 1000 / 2 per seed
    assert two["full_positive_curvature_stderr"] == pytest.approx(200 * math.sqrt(2) / 2)
    corrupted = directions.moment_fields([moment_record(predicted=-10.0)])  # Tr H/D far off
    assert corrupted["mean_z"] > claims.AGREE_Z
    assert directions.moment_fields([{"kind": "directions"}])["mean_z"] is None


def test_trace_ratio_between_one_and_sqrt_d_in_the_zone():
    found = directions.check_trace_ratio_bounds(direction_rows())
    assert found.verdict == REPRODUCED and found.measured["trace_ratio"] == [3.0, 2.8]
    assert found.measured["max_ratio_over_sqrt_D"] == pytest.approx(0.03)
    low = directions.check_trace_ratio_bounds(direction_rows(ratio=(1, 1, 1, 0.5, 2.8, 1, 1)))
    assert low.verdict == NOT_REPRODUCED
    above_sqrt_d = direction_rows(size=4)  # sqrt(D) = 2 < 3
    assert directions.check_trace_ratio_bounds(above_sqrt_d).verdict == NOT_REPRODUCED
    straddle = direction_rows(ratio=(1, 1, 1, 1.1, 2.8, 1, 1))  # 1.1 +- 0.4
    assert directions.check_trace_ratio_bounds(straddle).verdict == INCONCLUSIVE
    no_error = direction_rows(stderr=None)
    assert directions.check_trace_ratio_bounds(no_error).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- fort/architectures


def architecture_rows(*nets):
    """Plane rows of several (label, eigen curve, ratio curve) networks at d = 50 on MNIST."""
    return [row for label, eigen, ratio in nets
            for row in plane_rows({50: eigen}, {50: ratio}, dataset="mnist", label=label)]


RELU = ("mlp 200-200 relu", EIGEN[50], RATIO[50])
TANH = ("mlp 200-200 tanh", [0.5, 0.52, 0.6, 0.65, 0.58, 0.52, 0.5], [0.1, 0.5, 1.2, 1.6, 1.0, 0.3, 0.1])


def test_every_architecture_has_a_zone():
    found = architectures.check_every_architecture(architecture_rows(RELU, TANH))
    assert found.verdict == REPRODUCED
    assert set(found.measured) == {"mlp 200-200 relu on mnist", "mlp 200-200 tanh on mnist"}
    assert found.measured["mlp 200-200 tanh on mnist"]["trace_ratio"]["peak"] == 1.6


def test_one_architecture_without_a_zone_fails_the_claim():
    weak = ("lenet5", EIGEN[50], [v / 4 for v in RATIO[50]])  # Tr H/||H|| never above 1
    found = architectures.check_every_architecture(architecture_rows(RELU, weak))
    assert found.verdict == NOT_REPRODUCED
    assert found.measured["lenet5 on mnist"]["verdict"] == NOT_REPRODUCED
    open_end = ("mlp 200 relu", EIGEN[50], [*RATIO[50][:-1], 2.8])
    assert architectures.check_every_architecture(
        architecture_rows(RELU, open_end)).verdict == INCONCLUSIVE
    assert architectures.check_every_architecture([]).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- fort/loss-radius


def loss_records(power=3, layers=3, trace_power=1, radii=None, seeds=2):
    """fort/loss-radius ``loss`` records on ``radii`` (default 1 to 100): the loss log K up to
    r = 10, then log K (r/10)^power; Tr H = r^trace_power."""
    radii = np.geomspace(1, 100, 11) if radii is None else radii
    log_k = math.log(10)
    return [{"kind": "loss", "radius_factor": r / 10, "radius": float(r), "seed": s,
             "loss": log_k * max(1.0, (r / 10) ** power), "trace": float(r) ** trace_power,
             "frobenius_norm": 1.0, "log_classes": log_k, "weight_layers": layers,
             "xavier_radius": 10.0} for r in radii for s in range(seeds)]


def test_loss_power_law_of_exponent_l_above_a_flat_part():
    rows = loss_radius.summarize(loss_records())
    assert claims.quantities(rows)["log_classes"] == pytest.approx(math.log(10))
    found = loss_radius.check_loss_power_law(rows)
    assert found.verdict == REPRODUCED
    assert found.measured["fitted_exponent"] == pytest.approx(3.0)
    assert found.measured["flat_radii"] == 6


def test_loss_power_law_fails_with_another_exponent_and_is_inconclusive_without_a_fit():
    wrong = loss_radius.check_loss_power_law(loss_radius.summarize(loss_records(power=2)))
    assert wrong.verdict == NOT_REPRODUCED and wrong.measured["fitted_exponent"] == pytest.approx(2)
    flat = loss_radius.check_loss_power_law(loss_radius.summarize(loss_records(power=0)))
    assert flat.verdict == NOT_REPRODUCED  # the loss never rises on the grid
    short = loss_records(radii=np.geomspace(1, 30, 8))  # 2 radii above 3 log K: no fit
    assert loss_radius.check_loss_power_law(loss_radius.summarize(short)).verdict == INCONCLUSIVE
    no_flat = loss_records(radii=np.geomspace(10, 1000, 9))  # the flat part is not on the grid
    assert loss_radius.check_loss_power_law(loss_radius.summarize(no_flat)).verdict == INCONCLUSIVE
    assert loss_radius.check_loss_power_law([]).verdict == INCONCLUSIVE


def test_laplacian_grows_as_r_to_the_l_minus_2():
    found = loss_radius.check_laplacian_growth(loss_radius.summarize(loss_records()))
    assert found.verdict == REPRODUCED
    assert found.measured["slope"] == pytest.approx(1.0) and found.measured["predicted_slope"] == 1
    steep = loss_radius.summarize(loss_records(trace_power=2))
    assert loss_radius.check_laplacian_growth(steep).verdict == NOT_REPRODUCED
    short = loss_radius.summarize(loss_records(radii=np.geomspace(1, 30, 8)))
    assert loss_radius.check_laplacian_growth(short).verdict == INCONCLUSIVE


def test_fig5b_axes_say_the_metric_weighted_quantities():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = loss_radius.figure(loss_records())
    ax_b = fig.axes[1]
    assert ax_b.get_legend_handles_labels()[1][:2] == [r"$\mathrm{Tr}(MHM)$", r"$\|MHM\|_F$"]
    assert "MHM" in ax_b.get_title() and "per-layer metric" in ax_b.get_ylabel()
    plt.close(fig)


# ----------------------------------------------------------------------------- fort/stokes (Eq. 4)


def sphere_records(scale=1.0, radial=True, size=1000, a=1e-3, points=4):
    """``sphere`` records of the mean loss a·rho^3 over spheres, whose Laplacian is exactly
    3a(D+1)·rho (Eq. 4), times ``scale``; without ``radial`` the (D-1)/rho term is left out."""
    out = []
    for c in np.geomspace(0.3, 3, 9):
        rho = 10 * c
        exact = 6 * a * rho + (3 * a * (size - 1) * rho if radial else 0.0)
        for i in range(points):
            out.append({"kind": "sphere", "radius_factor": float(c), "rho": rho, "radius": rho,
                        "point": i, "num_params": size, "loss": a * rho**3,
                        "laplacian": scale * exact * (1 + 0.02 * (-1) ** i)})
    return out


def test_stokes_holds_when_the_laplacian_is_the_radial_growth():
    rows = stokes.stokes_summary(sphere_records())
    assert rows[0]["stokes_discretisation"] is None and rows[2]["stokes_discretisation"] >= 0
    found = stokes.check_stokes(rows)
    assert found.verdict == REPRODUCED and found.measured["max_abs_z"] < 1
    assert len(found.measured["radius_factors"]) == 5  # the radii with a coarse-grid estimate


@pytest.mark.parametrize("kw", [{"scale": 2.0}, {"scale": 0.7}, {"radial": False}])
def test_stokes_fails_for_a_wrong_laplacian(kw):
    assert stokes.check_stokes(stokes.stokes_summary(sphere_records(**kw))).verdict == NOT_REPRODUCED


def test_stokes_is_inconclusive_on_a_short_grid():
    few = [r for r in sphere_records() if r["radius_factor"] < 1.0]  # 5 radii: 1 with an estimate
    assert stokes.check_stokes(stokes.stokes_summary(few)).verdict == INCONCLUSIVE
    assert stokes.check_stokes([]).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- fort/hypersurface-training


def hypersurface_records(accuracy, dims=(10, 100, 1000), radii=(0.1, 0.3, 1.0, 3.0, 10.0),
                         seeds=3, spread=0.01):
    """``hypersurface`` records: the full space (0.9 at every radius) and hyperplanes and
    hyperspheres of ``dims`` with ``accuracy(d, factor)``, seeds ±``spread`` apart."""
    out = []
    for s in range(seeds):
        jitter = spread * (s - (seeds - 1) / 2)
        for f in radii:
            out.append({"kind": "hypersurface", "surface": "full", "dim": 5000, "seed": s,
                        "radius_factor": f, "final_test_accuracy": 0.9 + jitter, "hs_fraction": 0.9})
            for surface in ("hyperplane", "hypersphere"):
                for d in dims:
                    out.append({"kind": "hypersurface", "surface": surface, "dim": d, "seed": s,
                                "radius_factor": f, "hs_fraction": 0.9,
                                "final_test_accuracy": accuracy(d, f) + jitter})
    return out


def zone_accuracy(d, f):
    """Best at the Xavier radius; larger d trains better (d = 1000 reaches 0.85 > 0.81)."""
    return 0.1 + {10: 0.05, 100: 0.4, 1000: 0.75}[d] * math.exp(-math.log(f) ** 2)


def test_hypersurface_training_is_best_near_the_zone():
    rows = hypersurface_training.summarize(hypersurface_records(zone_accuracy))
    assert rows[1]["seeds"] == 3 and rows[1]["std_at_xavier"] == pytest.approx(0.01)
    found = hypersurface_training.check_radius_dependence(rows)
    assert found.verdict == REPRODUCED
    plane = found.measured["hyperplane"]
    assert plane["best_radius_factor"] == {"100": 1.0, "1000": 1.0}  # d = 10 hardly varies
    assert plane["intrinsic_dimension"] == {"0.1": None, "0.3": None, "1": 1000, "3": None, "10": None}


def test_hypersurface_training_fails_far_from_the_zone_and_is_inconclusive_when_flat():
    def far(d, f):
        return 0.1 + {10: 0.05, 100: 0.4, 1000: 0.75}[d] * min(f, 10) / 10  # best at 10 r_X
    rows = hypersurface_training.summarize(hypersurface_records(far))
    assert hypersurface_training.check_radius_dependence(rows).verdict == NOT_REPRODUCED

    def flat(d, f):
        return 0.1 + 0.01 * f / 10
    rows = hypersurface_training.summarize(hypersurface_records(flat))
    assert hypersurface_training.check_radius_dependence(rows).verdict == INCONCLUSIVE

    def constant_intrinsic(d, f):
        return 0.85 if d == 1000 else zone_accuracy(d, f)  # d = 1000 reaches it everywhere
    rows = hypersurface_training.summarize(hypersurface_records(constant_intrinsic))
    assert hypersurface_training.check_radius_dependence(rows).verdict == NOT_REPRODUCED


def test_low_variance_across_hyperplanes_at_the_xavier_radius():
    rows = hypersurface_training.summarize(hypersurface_records(zone_accuracy))
    found = hypersurface_training.check_low_variance(rows)
    assert found.verdict == REPRODUCED and found.measured["trained_dims"] == ["100", "1000"]
    wide = hypersurface_training.summarize(hypersurface_records(zone_accuracy, spread=0.05))
    assert hypersurface_training.check_low_variance(wide).verdict == NOT_REPRODUCED
    one_seed = hypersurface_training.summarize(hypersurface_records(zone_accuracy, seeds=1))
    assert hypersurface_training.check_low_variance(one_seed).verdict == INCONCLUSIVE

    def untrained(d, f):
        return 0.1
    rows = hypersurface_training.summarize(hypersurface_records(untrained))
    assert hypersurface_training.check_low_variance(rows).verdict == INCONCLUSIVE


def fraction_records(start, end, radii=(0.1, 1.0, 3.0, 10.0), dims=(10, 30), seeds=3):
    """Hyperplane records whose plane Hessians have ``start(d, f, s)`` and ``end(d, f, s)``
    positive fractions (a hypersphere and a diverged run, which carry none, beside them)."""
    out = [{"kind": "hypersurface", "surface": "hypersphere", "dim": 10, "seed": 0,
            "radius_factor": 1.0, "positive_eigenvalues_start": None,
            "positive_eigenvalues_end": None}]
    for d in dims:
        for f in radii:
            for s in range(seeds):
                out.append({"kind": "hypersurface", "surface": "hyperplane", "dim": d, "seed": s,
                            "radius_factor": f, "positive_eigenvalues_start": start(d, f, s),
                            "positive_eigenvalues_end": end(d, f, s)})
    out[-1]["positive_eigenvalues_end"] = None  # diverged: not measured
    return out


def test_the_positive_fraction_rises_while_optimizing_within_hyperplanes():
    rises = fraction_records(lambda d, f, s: 0.6, lambda d, f, s: 0.7 + 0.1 * (f == 10.0))
    rows = hypersurface_training.summarize(rises)
    row = next(r for r in rows if r.get("plane_hessian_dim") == 30 and r.get("radius_factor") == 1.0)
    assert row == {"plane_hessian_dim": 30, "radius_factor": 1.0, "positive_eigenvalues_start": 0.6,
                   "positive_eigenvalues_end": pytest.approx(0.7), "runs": 3, "rises": 3}
    found = hypersurface_training.check_fraction_rises(rows)
    assert found.verdict == REPRODUCED
    assert (found.measured["rises"], found.measured["runs"]) == (12, 12)  # r = 0.1 and 10 r_X left out
    assert found.measured["start_end"]["d=10 r=10r_X"] == [0.6, pytest.approx(0.8)]
    # the other check ignores these rows
    assert hypersurface_training.check_low_variance(rows).verdict == INCONCLUSIVE


def test_the_positive_fraction_that_falls_or_stays_is_not_reproduced_and_a_mix_is_inconclusive():
    falls = fraction_records(lambda d, f, s: 0.7, lambda d, f, s: 0.7 - 0.1 * (s > 0))
    assert hypersurface_training.check_fraction_rises(
        hypersurface_training.summarize(falls)).verdict == NOT_REPRODUCED
    # rising only far from the zone does not count
    far = fraction_records(lambda d, f, s: 0.6, lambda d, f, s: 0.6 + 0.2 * (f in (0.1, 10.0)))
    assert hypersurface_training.check_fraction_rises(
        hypersurface_training.summarize(far)).verdict == NOT_REPRODUCED
    mix = fraction_records(lambda d, f, s: 0.6, lambda d, f, s: 0.6 + 0.1 * (s == 0) - 0.1 * (s == 1),
                           dims=(10,))
    assert hypersurface_training.check_fraction_rises(
        hypersurface_training.summarize(mix)).verdict == INCONCLUSIVE


def test_hs_epochs_help_says_the_value_and_that_the_paper_does_not_give_it():
    text = field_help(hypersurface_training.Config, "hs_epochs")
    assert "default 10" in text and "paper does not give" in text


# ----------------------------------------------------------------------------- fort/init-selection


def selection_rows(p=0.01, good=50.0, bad=100.0):
    return [{"measure": m, "draws": 32, "reached": 30, "median_steps": 80.0, "spearman": -0.4,
             "favourable_median_steps": good, "unfavourable_median_steps": bad, "p_value": p}
            for m in init_selection.MEASURES]


@pytest.mark.parametrize("measure", list(init_selection.MEASURES))
def test_selection_is_significantly_faster(measure):
    check = init_selection.selection_check(measure)
    found = check(selection_rows())
    assert found.verdict == REPRODUCED and found.measured["p_value"] == 0.01
    assert check(selection_rows(p=0.6, good=120.0)).verdict == NOT_REPRODUCED  # slower
    assert check(selection_rows(p=0.2, good=90.0)).verdict == INCONCLUSIVE  # faster, not significant
    assert check([{"draws": 3, "reached": None, "median_steps": None}]).verdict == INCONCLUSIVE
    assert check(selection_rows(p=None)).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- fort/radius-drift


def drift_rows(finals):
    """fort/radius-drift summary rows: start c·r_X, final radius finals[c]·r_X (r_X = 16)."""
    return [{"radius_factor": c, "radius": 16.0 * c, "final_radius": 16.0 * f,
             "xavier_radius": 16.0, "final_test_accuracy": 0.9, "final_train_accuracy": 1.0}
            for c, f in finals.items()]


def test_training_draws_the_radius_toward_the_zone_from_both_sides():
    found = radius_drift.check_drift(drift_rows({0.1: 0.9, 1.0: 1.2, 10.0: 2.0}))
    assert found.verdict == REPRODUCED
    assert found.measured["closed_fraction"]["0.1"] == pytest.approx(1 - math.log(1 / 0.9) / math.log(10))
    assert radius_drift.check_drift(drift_rows({0.1: 0.9, 10.0: 10.0})).verdict == NOT_REPRODUCED
    assert radius_drift.check_drift(drift_rows({0.3: 0.2, 3.0: 1.5})).verdict == NOT_REPRODUCED
    assert radius_drift.check_drift(drift_rows({0.1: 0.9, 0.3: 1.0})).verdict == INCONCLUSIVE
    diverged = drift_rows({0.1: 0.9, 10.0: 2.0})
    diverged[1]["final_radius"] = float("nan")
    assert radius_drift.check_drift(diverged).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- the declarations


def test_the_fort_studies_declare_their_claims():
    ids = {name: [c.id for c in studies.get(name).claims] for name in studies.STUDIES
           if name.startswith("fort/")}
    assert ids == {
        "fort/radius": ["eigenvalue-excess", "trace-ratio-excess", "xavier-in-zone"],
        "fort/directions": ["directions-outnumber-eigenvalues", "direction-moments",
                            "trace-ratio-bounds"],
        "fort/architectures": ["every-architecture"],
        "fort/loss-radius": ["loss-power-law", "laplacian-growth"],
        "fort/stokes": ["stokes"],
        "fort/hypersurface-training": ["radius-dependence", "low-variance", "fraction-rises"],
        "fort/init-selection": ["select-by-eigenvalues", "select-by-trace-ratio",
                                "select-by-initial-loss"],
        "fort/radius-drift": ["drift-toward-zone"]}


@pytest.mark.parametrize("claim", [(name, c) for name, s in studies.STUDIES.items()
                                   if name.startswith("fort/") for c in s.claims],
                         ids=lambda nc: f"{nc[0]}:{nc[1].id}")
def test_an_empty_summary_is_inconclusive(claim):
    _, c = claim
    found = c.check([])
    assert found.verdict == INCONCLUSIVE and found.expected
