"""The zone sweeps (ICML Fig. 1, 2, 4 left) on their shared tiny runs: the records, Eq. (5)'s
T = α^L invariance, the temperature sweep mirroring the α sweep point by point, nested
subspaces; and the zone on Fashion-MNIST (LeNet-300-100, the paper's setting at 1,000 images)."""

import numpy as np
import pytest

from gzone import engine, studies


def _by(records, term, x="alpha"):
    return {(r["seed"], round(float(np.log10(r[x])), 6)): r for r in records
            if r["kind"] == "subspace" and r["term"] == term}


def test_alpha_sweep_records(tiny):
    run = tiny("icml/alpha-sweep")
    config = run.config
    sub = [r for r in run.records if r["kind"] == "subspace"]
    assert len(sub) == config.num_points * config.seeds * 3
    required = {"alpha", "temperature", "seed", "term", "positive_curvature", "local_convexity",
                "spectral_norm", "top_eigenvalue", "eigenvalues", "dim", "n_samples", "model",
                "dataset", "dtype", "loss", "gradient_norm", "flags"}
    assert all(required <= set(r) for r in sub)
    assert {r["term"] for r in sub} == {"hessian", "gterm", "hterm"}
    assert all(len(r["eigenvalues"]) == config.dim and r["temperature"] == 1.0 for r in sub)
    # the zone: high positive curvature of H near alpha = 1, ~0 at both ends (Fig. 1 left)
    rows = {(row["alpha"], row["term"]): row for row in run.study.summarize(run.records)}
    alphas = sorted({a for a, _ in rows})
    middle = min(alphas, key=lambda a: abs(np.log(a)))
    assert rows[(middle, "hessian")]["positive_curvature"] > 1.0
    assert abs(rows[(alphas[0], "hessian")]["positive_curvature"]) < 0.5


def test_t_equal_alpha_to_the_l_makes_curvature_constant(tiny):
    """Eq. (5): with T = α^L, H(αθ, T) = α⁻² H(θ, 1) — positive curvature the same at every α
    (float32 rounding), spectral norms exactly ∝ α⁻²."""
    run = tiny("icml/alpha-temperature")
    for r in run.records:  # T = alpha^L with L = 3 for the tiny MLP
        assert r["temperature"] == pytest.approx(r["alpha"] ** 3)
    for seed in range(run.config.seeds):
        h = sorted((r for r in run.records if r["term"] == "hessian" and r["seed"] == seed),
                   key=lambda r: r["alpha"])
        pc = [r["positive_curvature"] for r in h]
        assert max(pc) - min(pc) < 1e-3 * max(abs(v) for v in pc)
        norms = np.array([r["spectral_norm"] * r["alpha"] ** 2 for r in h])
        np.testing.assert_allclose(norms, norms[0], rtol=1e-3)


def test_the_temperature_sweep_mirrors_the_alpha_sweep(tiny):
    """H(θ, T) = α² H(αθ, 1) with α = T^(−1/L): the default T grid is the image of the α grid,
    and every point repeats the positive curvature of its α twin (same seed, same basis)."""
    alpha, temp = tiny("icml/alpha-sweep"), tiny("icml/temperature-sweep")
    for term in ("hessian", "gterm", "hterm"):
        by_alpha = _by(alpha.records, term)
        by_t = {(s, round(-k / 3, 6)): r for (s, k), r in _by(temp.records, term, "temperature").items()}
        assert by_alpha.keys() == by_t.keys()
        for key, r in by_alpha.items():
            a, b = r["positive_curvature"], by_t[key]["positive_curvature"]
            if a is not None and b is not None:
                assert a == pytest.approx(b, abs=2e-3), (term, key)


def test_the_dim_sweep_projects_onto_nested_subspaces(tiny):
    run = tiny("icml/dim-sweep")
    assert sorted({r["dim"] for r in run.records}) == [2, 5, 10]
    for r in run.records:  # bounded by sqrt(d)
        if r.get("positive_curvature") is not None:
            assert abs(r["positive_curvature"]) <= np.sqrt(r["dim"]) + 1e-5
    rows = run.study.summarize(run.records)
    assert {row["dim"] for row in rows} == {2, 5, 10}


def test_zone_found_on_fashion_mnist(data_dir, tmp_path):
    """LeNet-300-100 on 200 Fashion-MNIST images, d = 50, one seed — high positive curvature near
    α = 1 that falls towards 0 far from it, and ‖G‖₂ > ‖H-term‖₂ only inside."""
    study = studies.get("icml/alpha-sweep")
    config = engine.make_config(study, "cpu", n_samples=200, seeds=1, alpha_min=0.03,
                                alpha_max=30.0, num_points=3)
    records = engine.run(study, config, tmp_path, data_dir=str(data_dir))
    rows = {(r["alpha"], r["term"]): r for r in study.summarize(records)}
    low, one, high = sorted({r["alpha"] for r in records})
    assert rows[(one, "hessian")]["pc_min"] > 3
    for alpha in (low, high):
        assert abs(rows[(alpha, "hessian")]["positive_curvature"]) < 0.5
    assert rows[(one, "gterm")]["spectral_norm"] > rows[(one, "hterm")]["spectral_norm"]
    for alpha in (low, high):
        assert rows[(alpha, "gterm")]["spectral_norm"] < rows[(alpha, "hterm")]["spectral_norm"]


def test_the_zone_figure_shades_the_zone_and_says_what_it_draws():
    """Shaded exactly where the median ||G||_2 > ||H-term||_2; legend entries for the seeds' band,
    the alpha = 1 marker and the zone; the norm axis stops 10 decades below its top."""
    import matplotlib.pyplot as plt

    from gzone import plots

    alphas, seeds = [0.01, 0.1, 1.0, 10.0, 100.0], (0, 1, 2)
    norms = {"gterm": [1e-30, 1e-3, 2.0, 1.0, 1e-9], "hterm": [1e-4, 1e-2, 0.5, 0.4, 3.0]}
    records = [{"alpha": a, "seed": s, "term": term, "positive_curvature": 1.0,
                "spectral_norm": norms.get(term, [3.0] * 5)[i]}
               for i, a in enumerate(alphas) for s in seeds for term in ("hessian", "gterm", "hterm")]
    fig = plots.zone_figure(records, "alpha")
    top, bottom = fig.axes
    spans = [p.get_x() for p in top.patches]
    assert spans == pytest.approx([np.sqrt(0.1 * 1.0), np.sqrt(1.0 * 10.0)])  # alpha = 1 and 10
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert "min-max over 3 seeds" in labels and any("= 1$" in t for t in labels)
    assert any("zone" in t for t in labels)
    assert bottom.get_ylim()[0] == pytest.approx(3.0 * 1e-10 / 2)
    plt.close(fig)
