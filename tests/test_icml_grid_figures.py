"""The figures of the Sec. 5 training grid (gzone.studies.icml._common.grid_figures) on
hand-built records: no training."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from gzone.studies.icml._common import grid as trainability
from gzone.studies.icml._common import grid_figures as training

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
LR0S = (0.01, 0.1, 1.0)
STEPS = (0, 50, 100)


def _log(alpha, lr0, seed, step, *, mode="grid", labels="true"):
    acc = min(1.0, 0.1 + 0.3 * step / 50 * lr0 ** 0.1)
    rec = {f: 0.5 for f in ("lr", "loss", "train_accuracy", "test_accuracy", "sharpness")}
    rec.update(kind="log", study="icml/trainability", alpha=alpha, lr0=lr0, seed=seed, step=step,
               lr=lr0 * alpha, mode=mode, labels=labels, train_accuracy=acc,
               test_accuracy=0.8 * acc, zero_logit_samples=min(1.0, step / 100 * alpha / 100))
    return rec


def _run(alpha, lr0, seed, outcome="trained", **fields):
    rec = {"kind": "run", "study": "icml/trainability", "alpha": alpha, "lr0": lr0, "seed": seed,
           "lr": lr0 * alpha, "diverged_at": None, "last_step": 100, "max_train_accuracy": 0.9,
           "max_test_accuracy": 0.8, "final_train_accuracy": 0.9, "final_test_accuracy": 0.8,
           "max_parameter_norm": 1.0 + alpha, "final_zero_logit_samples": 0.0,
           "initial_sharpness": alpha, "lr_sharpness": lr0 * alpha, "outcome": outcome}
    rec.update(fields)
    return rec


def _zone(alpha, seed, in_zone):
    return {"kind": "zone", "study": "icml/trainability", "alpha": alpha, "seed": seed,
            "gterm_norm": 2.0 if in_zone else 1.0, "hterm_norm": 1.5, "hessian_norm": 3.0,
            "in_zone": in_zone}


def grid_records(alphas=ALPHAS, lr0s=LR0S, seeds=2, zone=True, mode="grid", labels=("true",)):
    recs = []
    for a in alphas:
        for r in lr0s:
            for s in range(seeds):
                for lab in labels:
                    recs += [_log(a, r, s, t, mode=mode, labels=lab) for t in STEPS]
                outcome = ("diverged" if (a, r) == (0.01, 1.0) else
                           "zero-logits" if a == 100.0 else "trained")
                recs.append(_run(a, r, s, outcome,
                                 max_parameter_norm=None if outcome == "diverged" else 1.0 + a))
        if zone:
            recs += [_zone(a, s, 0.1 <= a <= 10) for s in range(seeds)]
    return recs


def _gids(fig, gid):
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_fig8_three_heat_maps_with_colour_bars_and_saves(tmp_path):
    fig = training.fig8_figure(grid_records(), title="Fig. 8", path_stem=tmp_path / "fig8")
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == 6  # three panels, three colour bars
    assert (tmp_path / "fig8.png").stat().st_size > 0 and (tmp_path / "fig8.pdf").stat().st_size > 0
    panels = fig.axes[:3]
    for ax in panels:
        assert r"$\alpha$" in ax.get_xlabel() and r"$\eta_0$" in ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1", "1", "10", "100"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0.01", "0.1", "1"]
    # heat maps are (lr0, alpha): rows lr0, columns alpha
    assert panels[0].images[0].get_array().shape == (len(LR0S), len(ALPHAS))
    assert isinstance(panels[1].images[0].norm, matplotlib.colors.LogNorm)
    assert isinstance(panels[2].images[0].norm, matplotlib.colors.LogNorm)


def test_fig8_strip_covers_exactly_the_zone_alphas():
    recs = grid_records()
    inside = [a for a, z in trainability.zone_alphas(recs).items() if z]
    assert inside == [0.1, 1.0, 10.0]
    fig = training.fig8_figure(recs)
    for ax in fig.axes[:3]:
        strips = [p for p in ax.patches if p.get_gid() == training.STRIP_GID]
        assert len(strips) == 1  # adjacent columns: one rectangle
        assert strips[0].alphas == inside
        assert strips[0].get_x() == pytest.approx(0.5) and strips[0].get_width() == 3
        assert strips[0].get_height() == len(LR0S)
    # two separate runs of in-zone columns: two rectangles per panel
    recs = [r for r in recs if r["kind"] != "zone"]
    recs += [_zone(a, 0, a in (0.01, 1.0, 10.0)) for a in ALPHAS]
    strips = [p for p in training.fig8_figure(recs).axes[0].patches
              if p.get_gid() == training.STRIP_GID]
    assert sorted(a for p in strips for a in p.alphas) == [0.01, 1.0, 10.0]


def test_fig8_marks_zero_logits_divergence_and_inadmissible_cells():
    fig = training.fig8_figure(grid_records())
    middle, right = fig.axes[1], fig.axes[2]
    zero = [p for p in middle.patches if p.get_gid() == training.ZERO_LOGITS_GID]
    assert sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in zero) == [(4, j) for j in range(3)]
    diverged = [p for p in middle.patches if p.get_gid() == training.DIVERGED_GID]
    assert [(p.get_x() + 0.5, p.get_y() + 0.5) for p in diverged] == [(0, 2)]
    bad = [p for p in right.patches if p.get_gid() == training.INADMISSIBLE_GID]
    expected = sorted((i, j) for i, a in enumerate(ALPHAS) for j, r in enumerate(LR0S)
                      if a * r > trainability.ADMISSIBLE)
    assert sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in bad) == expected
    assert len(_gids(fig, training.ZERO_LOGITS_GID)) == len(zero)  # the middle panel only
    assert len(_gids(fig, training.INADMISSIBLE_GID)) == len(bad)  # the right panel only
    assert fig.legends and len(fig.legends[0].get_texts()) == 4


def test_fig8_outlines_the_d_plane_zone_and_the_full_space_one_apart():
    recs = grid_records()
    for r in recs:
        if r["kind"] == "zone":  # the d-plane zone narrower than the full-space one
            r.update(in_zone_projected=r["alpha"] == 1.0, zone_dim=50)
    assert trainability.zone_alphas(recs) == {a: a == 1.0 for a in ALPHAS}
    assert trainability.zone_alphas(recs, "full") == {a: 0.1 <= a <= 10 for a in ALPHAS}
    fig = training.fig8_figure(recs)
    strip = [p for p in fig.axes[0].patches if p.get_gid() == training.STRIP_GID]
    full = [p for p in fig.axes[0].patches if p.get_gid() == training.STRIP_FULL_GID]
    assert [p.alphas for p in strip] == [[1.0]] and [p.alphas for p in full] == [[0.1, 1.0, 10.0]]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("d = 50 plane" in t for t in texts) and any("full space" in t for t in texts)
    rows = {r["alpha"]: r for r in trainability.rows(recs)}
    assert rows[0.1]["zone"] is False and rows[0.1]["zone_full_space"] is True


def test_fig8_without_zone_single_alpha_and_nan_cells():
    fig = training.fig8_figure(grid_records(alphas=(1.0,), lr0s=(0.1,), zone=False))
    assert len(fig.axes) == 6 and not _gids(fig, training.STRIP_GID)
    recs = [_run(1.0, 0.1, 0, max_train_accuracy=None, max_parameter_norm=None,
                 lr_sharpness=None), _run(2.0, 0.3, 0, max_parameter_norm=math.nan)]
    fig = training.fig8_figure(recs)  # all-NaN maps and never-run cells stay blank
    assert len(fig.axes) == 6
    assert np.ma.getmaskarray(fig.axes[1].images[0].get_array()).all()
    fig = training.fig8_figure([])
    assert len(fig.axes) == 3 and not fig.legends


def test_fig9_one_panel_per_alpha_train_solid_test_dashed(tmp_path):
    recs = grid_records(alphas=(0.01, 1000.0), mode="curves")
    fig = training.fig9_figure(recs, title="Fig. 9", path_stem=tmp_path / "fig9")
    assert len(fig.axes) == 2
    assert (tmp_path / "fig9.png").exists() and (tmp_path / "fig9.pdf").exists()
    assert [ax.get_title() for ax in fig.axes] == [r"$\alpha$ = 0.01", r"$\alpha$ = 1e+03"]
    for ax in fig.axes:
        assert ax.get_ylim() == (0, 1) and ax.get_xlabel() == "step"
        styles = [line.get_linestyle() for line in ax.lines]
        assert styles.count("-") == styles.count("--") == len(LR0S)
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels[:3] == [r"$\eta_0$ = 0.01", r"$\eta_0$ = 0.1", r"$\eta_0$ = 1"]
    single = training.fig9_figure(grid_records(alphas=(1.0,), lr0s=(0.1,)))
    assert len(single.axes) == 1
    assert len(training.fig9_figure([]).axes) == 1


def test_fig12_right_one_panel_per_labels_value(tmp_path):
    recs = grid_records(alphas=(0.1, 100.0), labels=("random-per-step", "true"))
    fig = training.fig12_right_figure(recs, path_stem=tmp_path / "fig12")
    assert len(fig.axes) == 2
    assert (tmp_path / "fig12.png").exists() and (tmp_path / "fig12.pdf").exists()
    assert [ax.get_title() for ax in fig.axes] == [training.LABELS_TITLES["true"],
                                                  training.LABELS_TITLES["random-per-step"]]
    for ax in fig.axes:
        runs = [line for line in ax.lines if len(line.get_xdata()) == len(STEPS)]
        assert len(runs) == 2 * len(LR0S)  # one line per (alpha, lr0), the seeds averaged
        assert len({str(line.get_linestyle()) for line in runs}) == len(LR0S)  # eta0 told apart
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert all(any(f"= {lr0:.3g}" in t and "eta" in t for t in labels) for lr0 in LR0S)
    unnamed = [{k: v for k, v in r.items() if k != "labels"} for r in grid_records(alphas=(1.0,))]
    assert training.fig12_right_figure(unnamed).axes[0].get_title() == "true labels"
    recs = grid_records(alphas=(1.0,), zone=False)
    recs[0]["zero_logit_samples"] = None
    assert len(training.fig12_right_figure(recs).axes) == 1
    assert len(training.fig12_right_figure([]).axes) == 1
