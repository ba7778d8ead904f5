"""The claims of ICML Sec. 5 and App. E (the training studies: Fig. 7, 8, 9, 11, 12 and the lazy
regime), each check on constructed summary rows where the answer is known, in both directions;
the Fig. 8 outcome rule on real (tiny, float32) training histories; the presets that resolve the
LeNet-5 edge and reproduce Fig. 12 right on LeNet-5."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gzone import engine, models, studies, training
from gzone.engine import setup as engine_setup
from gzone.engine.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    fraction_verdict,
    wilson_interval,
)
from gzone.studies.icml import lazy, probe, random_labels, trainability, uso, uso_retrain
from gzone.studies.icml._common import grid
from gzone.studies.icml._common import grid_claims as gc

# ----------------------------------------------------------------------------- statistics


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert fraction_verdict(10, 10, 0.5) == REPRODUCED
    assert fraction_verdict(0, 10, 0.5) == NOT_REPRODUCED
    assert fraction_verdict(6, 10, 0.5) == INCONCLUSIVE
    assert fraction_verdict(0, 0, 0.5) == INCONCLUSIVE


# ----------------------------------------------------------------------------- grid rows


def _run(alpha, lr0, outcome, lr_sharpness=1.0, acc=0.9, seed=0):
    return {"kind": "run", "alpha": alpha, "lr0": lr0, "seed": seed, "outcome": outcome,
            "max_train_accuracy": acc, "max_test_accuracy": acc, "final_train_accuracy": acc,
            "final_test_accuracy": acc, "max_parameter_norm": 1.0, "final_zero_logit_samples": 0.0,
            "initial_sharpness": 1.0, "lr_sharpness": lr_sharpness, "lr": lr0}


def test_rows_give_the_staircase_bracket_and_the_fig8_counts():
    records = [{"kind": "zone", "alpha": 0.1, "seed": 0, "in_zone": False},
               _run(0.1, 0.01, "trained"), _run(0.1, 0.1, "trained", lr_sharpness=3.0),
               _run(0.1, 1.0, "zero-logits", lr_sharpness=30.0),
               _run(0.1, 10.0, "untrained", lr_sharpness=None),
               _run(1.0, 0.01, "trained"), _run(1.0, 0.1, "trained")]
    small, one = grid.rows(records)
    assert small["zone"] is False and one["zone"] is None
    assert small["largest_trained_lr0"] == 0.1 and small["next_lr0"] == 1.0
    assert (small["inadmissible"], small["inadmissible_failed"]) == (2, 1)  # None: not counted
    assert (small["above_edge"], small["above_edge_diverged_or_zero"]) == (2, 1)
    assert one["largest_trained_lr0"] == 0.1 and one["next_lr0"] is None  # edge above the grid
    assert one["above_edge"] == 0


def row(alpha, largest=None, nxt=None, zone=None, best_train=0.9, best_test=0.8, **counts):
    return {"alpha": alpha, "zone": zone, "largest_trained_lr0": largest, "next_lr0": nxt,
            "best_train": best_train, "best_test": best_test,
            **{o: counts.get(o.replace("-", "_"), 0) for o in grid.OUTCOMES},
            **{k: v for k, v in counts.items() if k.replace("_", "-") not in grid.OUTCOMES}}


LR0 = np.geomspace(1e-3, 3.0, 10).tolist()  # the paper's eta0 grid


def staircase(alphas, edge):
    """Rows whose largest trainable lr0 is the grid's value at or below ``edge(alpha)``."""
    out = []
    for a in alphas:
        j = max(i for i, v in enumerate(LR0) if v <= edge(a) * (1 + 1e-9))
        out.append(row(a, LR0[j], LR0[j + 1] if j + 1 < len(LR0) else None))
    return out


ALPHAS = np.geomspace(0.01, 0.5, 6).tolist()


def test_staircase_holds_for_a_linear_edge_and_fails_for_a_flat_one():
    good = gc.check_staircase(staircase(ALPHAS, lambda a: 2 * a))
    assert good.verdict == REPRODUCED and good.measured["slope"] == pytest.approx(1, abs=0.3)
    flat = gc.check_staircase(staircase(ALPHAS, lambda a: 0.05))
    assert flat.verdict == NOT_REPRODUCED and flat.measured["slope"] == pytest.approx(0)
    steep = gc.check_staircase(staircase(ALPHAS, lambda a: 50 * a**2))
    assert steep.verdict == NOT_REPRODUCED and steep.measured["slope"] > 1.5


def test_staircase_leaves_out_censored_alphas_and_needs_three_edges():
    rows = staircase(ALPHAS[:2], lambda a: 2 * a) + [
        row(0.2, LR0[-1], None),   # the largest lr0 trains: the edge lies above the grid
        row(0.3),                  # nothing trains: the staircase's end
        row(2.0, 0.1, 0.3)]        # alpha > 1: not part of the staircase
    found = gc.check_staircase(rows)
    assert found.verdict == INCONCLUSIVE and found.measured["points"] == 2
    # off by more than the tolerance, but within the grid's resolution: cannot tell
    coarse = [row(0.01, 1e-3, 1e-1), row(0.03, 1e-3, 1e-1), row(0.1, 1e-2, 1e-1)]
    found = gc.check_staircase(coarse)
    assert abs(found.measured["slope"] - 1) > gc.STAIRCASE_TOL and found.verdict == INCONCLUSIVE


def test_trained_outside_zone_both_ways():
    inside = [row(1.0, zone=True, best_train=1.0), row(10.0, zone=True, best_train=0.98)]
    assert gc.check_trained_outside_zone(
        inside + [row(0.05, zone=False, best_train=0.995)]).verdict == REPRODUCED
    assert gc.check_trained_outside_zone(
        inside + [row(0.05, zone=False, best_train=0.9)]).verdict == NOT_REPRODUCED
    assert gc.check_trained_outside_zone(inside).verdict == INCONCLUSIVE


@pytest.mark.parametrize("check, total, part", [
    (gc.check_inadmissible_fails, "inadmissible", "inadmissible_failed"),
    (gc.check_too_large_lr, "above_edge", "above_edge_diverged_or_zero")])
def test_fraction_claims_both_ways(check, total, part):
    def rows(k, n):  # spread over two alphas
        return [row(0.1, **{total: n // 2, part: k // 2}), row(1.0, **{total: n - n // 2, part: k - k // 2})]

    found = check(rows(18, 20))
    assert found.verdict == REPRODUCED and found.measured["fraction"] == 0.9
    assert check(rows(2, 20)).verdict == NOT_REPRODUCED
    assert check(rows(5, 10)).verdict == INCONCLUSIVE
    assert check(rows(0, 0)).verdict == INCONCLUSIVE


def test_taxonomy_is_the_table_of_outcomes_and_needs_every_class():
    full = [row(0.01, trained=1, zero_logits=3), row(0.1, trained=2, diverged=1),
            row(1.0, trained=4), row(100.0, trained=3, zero_logits=1, untrained=1)]
    found = gc.check_taxonomy(full)
    assert found.verdict == REPRODUCED and found.measured["missing"] == []
    table = found.measured["outcomes"]
    assert table["all"] == {"diverged": 1, "zero-logits": 4, "trained": 10, "untrained": 1}
    assert table["alpha<1"]["zero-logits"] == 3 and table["alpha>1"]["untrained"] == 1
    no_divergence = [r if r["alpha"] != 0.1 else row(0.1, trained=2, zero_logits=1) for r in full]
    assert gc.check_taxonomy(no_divergence).measured["missing"] == ["diverged"]
    never_back = [row(0.01, zero_logits=3), row(0.1, diverged=2), *full[2:]]
    found = gc.check_taxonomy(never_back)
    assert found.verdict == NOT_REPRODUCED
    assert found.measured["missing"] == ["alpha<1 trained (circles back)"]
    assert gc.check_taxonomy(full[:2]).verdict == INCONCLUSIVE  # no alpha > 1


def test_large_alpha_accuracy_both_ways():
    def rows(train=1.0, test=0.75, alpha=1000.0):
        return [row(0.01, best_train=1.0, best_test=0.84), row(1.0, best_train=1.0, best_test=0.85),
                row(alpha, best_train=train, best_test=test)]

    found = gc.check_large_alpha_accuracy(rows())
    assert found.verdict == REPRODUCED and found.measured["test_gap"] == pytest.approx(0.10)
    assert gc.check_large_alpha_accuracy(rows(train=0.9)).verdict == NOT_REPRODUCED
    assert gc.check_large_alpha_accuracy(rows(test=0.84)).verdict == NOT_REPRODUCED  # no gap
    assert gc.check_large_alpha_accuracy(rows(test=0.55)).verdict == NOT_REPRODUCED  # 30 points
    assert gc.check_large_alpha_accuracy(rows(alpha=10.0)).verdict == INCONCLUSIVE  # not >> 1
    assert gc.check_large_alpha_accuracy(rows(test=None)).verdict == INCONCLUSIVE


def test_lenet5_edge_both_ways_and_needs_resolution():
    config = engine.make_config(trainability.STUDY, "lenet5-cifar10")
    alphas = trainability.alphas(config)

    def rows(edge, grid_alphas=alphas):
        return [row(a, best_train=0.6 if a <= edge else 0.1) for a in grid_alphas]

    found = gc.check_untrainable_edge(rows(1.6))
    assert found.verdict == REPRODUCED and found.measured["largest_alpha_above_chance"] == 1.6
    assert gc.check_untrainable_edge(rows(1.0)).verdict == REPRODUCED  # "even the slightest"
    assert gc.check_untrainable_edge(rows(4.0)).verdict == NOT_REPRODUCED
    assert gc.check_untrainable_edge(rows(2.0)).verdict == NOT_REPRODUCED
    # the log grid alone (1, then 2.15) cannot place the edge between 1.8 and 2.15
    log_grid = np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()
    assert gc.check_untrainable_edge(rows(1.0, log_grid)).verdict == INCONCLUSIVE
    # nothing trains anywhere (a budget too small to tell): no edge to locate
    assert gc.check_untrainable_edge(rows(0.0)).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- presets


def test_the_lenet5_grid_resolves_the_edge_between_1_and_2_15():
    config = engine.make_config(trainability.STUDY, "lenet5-cifar10")
    assert (config.model, config.dataset) == ("lenet5", "cifar10")
    between = [a for a in trainability.alphas(config) if 1 < a < 2.15]
    assert len(between) >= 4 and any(1.8 < a <= 1.8 * gc.EDGE_RESOLUTION for a in between)
    points = trainability.points(config, None)
    assert {p["alpha"] for p in points if p["kind"] == "run"} == set(trainability.alphas(config))


def test_extra_alphas_enter_the_identity_only_when_set():
    """Results directories written before the field existed keep their identity."""
    default = engine.make_config(trainability.STUDY, "default")
    assert "extra_alphas" not in engine.identity(trainability.STUDY, default)
    extended = dataclasses.replace(default, extra_alphas=(1.5,))
    assert engine.identity(trainability.STUDY, extended)["extra_alphas"] == (1.5,)
    with pytest.raises(engine.ConfigError, match="extra_alphas"):
        engine.check(trainability.STUDY, dataclasses.replace(default, extra_alphas=(-1.0,)))


def test_random_labels_has_a_lenet5_preset_at_the_paper_settings():
    study = studies.get("icml/random-labels")
    config = engine.make_config(study, "lenet5-cifar10")
    assert (config.model, config.dataset, config.n_train, config.steps) == ("lenet5", "cifar10", None, 20000)
    assert set(config.label_kinds) == set(training.LABELS)
    assert random_labels.REFERENCE_ALPHA in config.labels_alphas


# ----------------------------------------------------------------------------- App. E


def labels_rows(fixed=(0.0, 0.6, 100, 0.01), per_step=(0.0, 0.7, 1000, 0.7), alpha=1.0):
    """Fig. 12 right summary rows: (initial, max, at_step, final) of each label kind."""
    return [{"labels": kind, "alpha": alpha, "lr0": 0.1, "initial_zero_logits": v[0],
             "max_zero_logits": v[1], "at_step": v[2], "final_zero_logits": v[3],
             "last_step": 1000} for kind, v in (("true", (0.0, 0.0, 0, 0.0)),
                                                  ("random-fixed", fixed), ("random-per-step", per_step))]


def test_zero_logits_under_random_labels_both_ways():
    check = random_labels.check_zero_logits
    assert check(labels_rows()).verdict == REPRODUCED
    assert check(labels_rows(fixed=(0.0, 0.6, 100, 0.5))).verdict == NOT_REPRODUCED  # stay
    assert check(labels_rows(fixed=(0.0, 0.6, 900, 0.01))).verdict == NOT_REPRODUCED  # late
    assert check(labels_rows(fixed=(0.0, 0.0, 0, 0.0))).verdict == NOT_REPRODUCED  # never appear
    assert check(labels_rows(per_step=(0.0, 0.7, 200, 0.2))).verdict == NOT_REPRODUCED  # recede
    assert check(labels_rows(per_step=(0.0, 0.02, 1000, 0.02))).verdict == NOT_REPRODUCED
    assert check(labels_rows(alpha=10.0)).verdict == INCONCLUSIVE  # no alpha = 1 run


def uso_rows(path=(600, 575, 525, 425), uniform=(625, 575, 475, 150), alphas=(0.003, 0.01, 0.03, 0.1)):
    return [{"alpha": a, "seed": 0, "left_uniform_at": u, "left_uso_path_at": p,
             "final_train_accuracy": 1.0, "diverged_at": None, "log_interval": 25}
            for a, p, u in zip(alphas, path, uniform)]


def test_uso_path_both_ways():
    found = uso.check_uso_path(uso_rows())
    assert found.verdict == REPRODUCED and found.measured["left_path_while_uniform"] == []
    assert uso.check_uso_path(uso_rows(path=(None, 575, 525, 425))).verdict == REPRODUCED
    # leaves the path long before its softmax leaves uniform
    off = uso.check_uso_path(uso_rows(path=(600, 575, 525, 100)))
    assert off.verdict == NOT_REPRODUCED and off.measured["left_path_while_uniform"] == ["alpha=0.1 seed=0"]
    assert uso.check_uso_path(uso_rows(uniform=(None, 575, 475, 150))).verdict == NOT_REPRODUCED
    # a smaller alpha leaves earlier
    assert uso.check_uso_path(uso_rows(path=(500, 575, 525, 425), uniform=(500,) * 4)).verdict == NOT_REPRODUCED
    assert uso.check_uso_path(uso_rows(path=(None,) * 4, uniform=(None,) * 4)).verdict == INCONCLUSIVE
    assert uso.check_uso_path(uso_rows(path=(450, 450, 450, 440), uniform=(450,) * 4)).verdict == INCONCLUSIVE


def retrain_rows(cos_init=(1.0, 0.95, 0.8, 0.4), cos_neg=(0.0, 0.3, 0.6, 0.9),
                 error=(0.0, 0.02, 0.1, 0.4), seeds=(0,)):
    return [{"seed": s, "uso_step": 100 * i, "parameter_norm": 1.0, "cos_param_init": c,
             "cos_param_neg_gradient": g, "train_error": e, "final_test_accuracy": 0.8}
            for s in seeds for i, (c, g, e) in enumerate(zip(cos_init, cos_neg, error))]


def test_uso_rotation_both_ways():
    found = uso_retrain.check_rotation(retrain_rows(seeds=(0, 1)))
    assert found.verdict == REPRODUCED and found.measured["spearman_cos_init"] == [-1.0, -1.0]
    assert uso_retrain.check_rotation(retrain_rows(error=(0.0, 0.0, 0.0, 0.006))).verdict == NOT_REPRODUCED
    assert uso_retrain.check_rotation(retrain_rows(cos_init=(0.4, 0.8, 0.95, 1.0))).verdict == NOT_REPRODUCED
    assert uso_retrain.check_rotation(retrain_rows(cos_neg=(0.3,) * 4)).verdict == NOT_REPRODUCED
    short = retrain_rows(cos_init=(1.0, 0.5), cos_neg=(0.0, 0.5), error=(0.0, 0.3))
    assert uso_retrain.check_rotation(short).verdict == INCONCLUSIVE


def probe_rows(random=0.80, one=0.88, large=0.81, band=0.005, large_alpha=1000.0):
    def r(features, alpha, acc):
        return {"features": features, "alpha": alpha, "probe_test_accuracy": acc,
                "min": acc - band, "max": acc + band}
    return [r("random", 1.0, random), r("trained", 0.1, 0.85), r("trained", 1.0, one),
            r("trained", large_alpha, large)]


def test_probe_both_ways():
    found = probe.check_probe(probe_rows())
    assert found.verdict == REPRODUCED and found.measured["below_alpha_1"] == pytest.approx(0.07)
    assert probe.check_probe(probe_rows(large=0.80)).verdict == REPRODUCED
    assert probe.check_probe(probe_rows(large=0.84)).verdict == NOT_REPRODUCED  # near alpha = 1
    assert probe.check_probe(probe_rows(large=0.70)).verdict == NOT_REPRODUCED  # far below random
    assert probe.check_probe(probe_rows(large=0.80, band=0.04)).verdict == INCONCLUSIVE
    assert probe.check_probe(probe_rows(large_alpha=3.0)).verdict == INCONCLUSIVE
    assert probe.check_probe(probe_rows(random=float("nan"))).verdict == INCONCLUSIVE


def lazy_rows(agreement=(0.97, 0.96, 0.99)):
    return [{"alpha": a, "train_accuracy": 1.0, "test_accuracy": 0.8, "relative_distance": 0.05,
             "linear_train_accuracy": 1.0, "linear_test_accuracy": 0.8, "test_agreement": g,
             "logit_relative_difference": 0.1} for a, g in zip((1.0, 10.0, 100.0), agreement)]


def test_lazy_both_ways():
    assert lazy.check_lazy(lazy_rows()).verdict == REPRODUCED
    found = lazy.check_lazy(lazy_rows((0.98, 0.83, 0.83)))
    assert found.verdict == NOT_REPRODUCED and found.measured["10"]["test_agreement"] == 0.83
    assert lazy.check_lazy(lazy_rows((0.97, float("nan"), 0.99))).verdict == INCONCLUSIVE
    assert lazy.check_lazy(lazy_rows()[:1]).verdict == INCONCLUSIVE


# ----------------------------------------------------------------------------- the outcome rule


def test_the_outcome_rule_on_real_training_histories():
    """Four real runs (a 16-16 MLP on 100 digits, float32, 20 full-batch GD steps, one vmapped
    program) that land in each outcome of Fig. 8; the rule (:func:`grid.run_record`) applied to
    their histories agrees with what their final parameters show."""
    config = dataclasses.replace(engine.make_config(trainability.STUDY, "tiny"), n_train=100,
                                 n_test=50, widths=(16, 16))
    setup = grid.prepare(config, None)
    theta = engine_setup.seed_params(setup, config.init, 0)
    # (alpha, lr0) -> the outcome it lands in
    runs = {(1.0, 1e-6): "untrained",     # does not move from theta0
            (1.0, 0.1): "trained",        # the zone, an admissible step
            (0.1, 0.5): "zero-logits",    # small alpha, too large a step: ReLUs die (Sec. 5)
            (0.1, 1e5): "diverged"}       # absurd step: the loss overflows
    lrs = [training.effective_lr(lr0, a, setup.degree) for a, lr0 in runs]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a).astype(jnp.float32),
                                    *[models.scale(theta, a) for a, _ in runs])
    res = training.train_grid(setup.model.apply, params, setup.x, setup.y, lr=lrs, steps=20,
                              log_every=5, x_test=setup.x_test, y_test=setup.y_test, sharpness=False)
    chance, records = 1 / setup.num_classes, []
    for j, ((alpha, lr0), outcome) in enumerate(runs.items()):
        history = {f: res.history[f][j] for f in training.HISTORY_FIELDS}
        record = grid.run_record(setup.num_classes, {"alpha": alpha, "lr0": lr0}, lrs[j], history,
                                 int(res.diverged_at[j]))
        assert record["outcome"] == outcome, (alpha, lr0, record)
        z = setup.model.apply(jax.tree_util.tree_map(lambda a, j=j: a[j], res.params), setup.x)
        zero = float(jnp.mean(jnp.all(z == 0, -1)))
        accuracy = float(jnp.mean(jnp.argmax(z, -1) == setup.y))
        if outcome == "diverged":
            assert record["diverged_at"] is not None and not np.all(np.isfinite(history["loss"]))
        else:
            assert bool(jnp.all(jnp.isfinite(z))) and record["diverged_at"] is None
            assert record["final_zero_logit_samples"] == pytest.approx(zero)
            assert record["final_train_accuracy"] == pytest.approx(accuracy)
        if outcome == "zero-logits":
            assert zero > grid.ZERO_LOGIT_MARK
        if outcome == "trained":
            assert accuracy > 2 * chance and zero <= grid.ZERO_LOGIT_MARK
        if outcome == "untrained":
            assert accuracy <= 2 * chance and zero == 0
        records.append({**record, "kind": "run", "seed": 0})
    small, one = grid.rows(records)  # the rule's outcomes counted per alpha, as the claims read them
    assert (small["alpha"], small["zero-logits"], small["diverged"]) == (0.1, 1, 1)
    assert (one["trained"], one["untrained"], one["largest_trained_lr0"]) == (1, 1, 0.1)
