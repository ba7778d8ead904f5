"""The Sec. 5 training studies (icml/trainability, icml/curves, icml/random-labels) against
direct training runs and the curvature engine: records, resume after an interruption mid-batch,
process slices, one-line refusals. (Several processes under jax.distributed: test_engine.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from test_curvature import dense_terms, tiny_problem

from gzone import engine, models, studies, training
from gzone.engine import setup as engine_setup
from gzone.studies.icml._common import grid

ROOT = Path(__file__).resolve().parents[1]
STUDY = studies.get("icml/trainability")


def _key(r):
    return (r["kind"], r.get("labels"), r.get("alpha"), r.get("lr0"), r.get("seed"), r.get("step"))


def test_records_hold_every_point_step_and_field(tiny):
    run = tiny("icml/trainability")
    config = run.config
    logs = [r for r in run.records if r["kind"] == "log"]
    runs = [r for r in run.records if r["kind"] == "run"]
    zones = [r for r in run.records if r["kind"] == "zone"]
    points = {(r["alpha"], r["lr0"], r["seed"]) for r in runs}
    assert len(points) == len(runs) == 3 * 2 * 1 and len(zones) == 3
    assert len({_key(r) for r in logs}) == len(logs)  # one record per (alpha, lr0, seed, step)
    for alpha, lr0, seed in points:
        done = next(r for r in runs if (r["alpha"], r["lr0"], r["seed"]) == (alpha, lr0, seed))
        steps = sorted(r["step"] for r in logs if (r["alpha"], r["lr0"], r["seed"]) == (alpha, lr0, seed))
        assert steps[0] == 0 and steps[-1] == done["last_step"]
        if done["diverged_at"] is None:
            assert steps == [0, 20, 40]
        assert done["outcome"] in grid.OUTCOMES
    for r in logs:  # the config's fields travel with every log record
        assert r["model"] == "mlp" and r["steps"] == config.steps and r["labels"] == "true"
        assert set(training.HISTORY_FIELDS) <= set(r)
    rows = STUDY.summarize(run.records)
    assert [row["alpha"] for row in rows] == sorted({r["alpha"] for r in runs})
    assert sum(row[o] for row in rows for o in grid.OUTCOMES) == 6


def test_log_records_equal_a_direct_training_run(tmp_path):
    """float64 (a large-gradient phase amplifies float32 rounding); one point (α = 10, η0 = 0.3)."""
    config = dataclasses.replace(engine.make_config(STUDY, "tiny"), dtype="float64", num_alphas=1,
                                 alpha_min=10.0, alpha_max=10.0, num_lr0=1, lr0_min=0.3,
                                 lr0_max=0.3)
    records = engine.run(STUDY, config, tmp_path)
    setup = STUDY.prepare(config, None)
    lr = training.effective_lr(0.3, 10.0, setup.degree)
    theta = models.scale(engine_setup.seed_params(setup, config.init, 0), 10.0)
    direct = training.train(setup.model.apply, theta, setup.x, setup.y, lr=lr, steps=config.steps,
                            log_every=config.log_every, x_test=setup.x_test, y_test=setup.y_test,
                            key=engine_setup.stream_key(0, "training-labels"))
    logs = sorted((r for r in records if r["kind"] == "log"), key=lambda r: r["step"])
    assert [r["step"] for r in logs] == direct.history["step"].tolist()
    for f in ("loss", "train_accuracy", "test_accuracy", "parameter_norm", "gradient_norm",
              "sharpness", "entropy", "cos_param_init"):
        np.testing.assert_allclose([r[f] for r in logs], direct.history[f], rtol=1e-9, atol=1e-12,
                                   err_msg=f)
    done = next(r for r in records if r["kind"] == "run")
    assert done["lr"] == pytest.approx(lr)
    assert done["lr_sharpness"] == pytest.approx(lr * abs(direct.history["sharpness"][0]), rel=1e-9)
    assert done["max_train_accuracy"] == pytest.approx(direct.history["train_accuracy"].max(), abs=1e-12)


def test_zone_norms_equal_dense_spectral_norms():
    model, params, x, y = tiny_problem("mlp", n=11)
    setup = engine_setup.Setup(model, x, y, 4, models.num_params(params), x.dtype, "tiny")
    got = grid.zone_norms(setup, params, num_samples=None, chunk_size=None, num_iters=200)
    h, g, ht = (np.asarray(m) for m in dense_terms(model, params, x, y, 1.0))
    for name, matrix in (("hessian_norm", h), ("gterm_norm", g), ("hterm_norm", ht)):
        want = np.abs(np.linalg.eigvalsh((matrix + matrix.T) / 2)).max()
        assert got[name] == pytest.approx(want, rel=1e-8), name
    assert got["in_zone"] == (got["gterm_norm"] > got["hterm_norm"])
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(h.shape[0], 5)))[0]
    got = grid.zone_norms(setup, params, num_samples=None, chunk_size=None,
                          basis=jnp.asarray(basis, x.dtype))
    for name, matrix in (("hessian", h), ("gterm", g), ("hterm", ht)):  # Fig. 2's d-plane
        want = np.abs(np.linalg.eigvalsh(basis.T @ matrix @ basis)).max()
        assert got[f"{name}_norm_projected"] == pytest.approx(want, rel=1e-8), name
    assert got["zone_dim"] == 5 and got["in_zone_projected"] == (
        got["gterm_norm_projected"] > got["hterm_norm_projected"])


def _same(got, want, *, values=True):
    """The same records (keys; with ``values``, the same numbers too — a batch of another size
    changes float32 rounding, so slices compare keys and outcomes only)."""
    got, want = sorted(got, key=lambda r: repr(_key(r))), sorted(want, key=lambda r: repr(_key(r)))
    assert [_key(r) for r in got] == [_key(r) for r in want]  # nothing lost, nothing twice
    assert [r.get("outcome") for r in got] == [r.get("outcome") for r in want]
    for a, b in zip(got, want) if values else ():  # the same computation, resumed from an exact checkpoint
        for k, v in b.items():
            if isinstance(v, float):
                assert a[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (k, _key(b))
            else:
                assert a[k] == v, (k, _key(b))


def test_interrupted_study_resumes_without_losing_or_duplicating(tiny, tmp_path):
    run = tiny("icml/trainability")
    assert run.config.batch_size == 4  # the zone points, then two batches of runs: 4 + 2

    class Interrupt(Exception):
        pass

    def progress(items, total):
        for i, item in enumerate(items):
            if i == 3 + 7:  # after the 3 zone points, mid-way through the first batch's logs
                raise Interrupt
            yield item

    with pytest.raises(Interrupt):
        engine.run(STUDY, run.config, tmp_path, progress=progress)
    assert list((tmp_path / "checkpoints").glob("chunk-*"))  # the batch in progress
    _same(engine.run(STUDY, run.config, tmp_path), run.records)
    assert not (tmp_path / "checkpoints").exists()


def test_process_slices_merge_into_the_whole_grid(tiny, tmp_path):
    """Every kind of point dealt round-robin over the processes, each slice into its own folder;
    load() merges them (in one process: the slices without jax.distributed)."""
    run = tiny("icml/trainability")
    for index in (1, 0):
        engine.run(STUDY, run.config, tmp_path, process_index=index, process_count=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["process-0-of-2", "process-1-of-2"]
    _same(engine.load(tmp_path), run.records, values=False)


@pytest.mark.parametrize("overrides, message", [
    ({"alpha_min": 0.0}, "alpha_min must be a finite number > 0"),
    ({"lr0_max": -1.0}, "lr0_max must be a finite number > 0"),
    ({"lr0_min": 2.0, "lr0_max": 1.0}, "lr0_min exceeds lr0_max"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"steps": 10, "log_every": 20}, "log_every=20 exceeds steps=10"),
    ({"optimizer": "sgdm"}, "unknown optimizer 'sgdm'"),
    ({"labels": "shuffled"}, "unknown labels 'shuffled'"),
    ({"model": "resnet"}, "unknown model 'resnet'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"dataset": "gaussian"}, "unknown dataset 'gaussian'"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(overrides, message, tmp_path):
    config = dataclasses.replace(engine.make_config(STUDY, "tiny"), **overrides)
    with pytest.raises(ValueError, match=message) as info:
        engine.run(STUDY, config, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_curves_run_the_chosen_alphas(tiny):
    run = tiny("icml/curves")
    assert sorted({r["alpha"] for r in run.records if r["kind"] == "run"}) == [0.1, 10.0]
    assert {r["alpha"] for r in run.records if r["kind"] == "zone"} == {0.1, 10.0}
    rows = run.study.summarize(run.records)
    assert [row["alpha"] for row in rows] == [0.1, 10.0]


def test_random_labels_run_every_kind_of_labels_on_the_same_grid(tiny):
    run = tiny("icml/random-labels")
    runs = [r for r in run.records if r["kind"] == "run"]
    assert sorted(r["labels"] for r in runs) == sorted(training.LABELS)
    logs = [r for r in run.records if r["kind"] == "log"]
    assert {r["labels"] for r in logs} == set(training.LABELS)
    assert all(r["sharpness"] is None for r in logs)  # not measured: null, not flagged
    assert not any(r["flags"] for r in logs)
    rows = run.study.summarize(run.records)
    assert sorted(row["labels"] for row in rows) == sorted(training.LABELS)
    assert all(0 <= row["max_zero_logits"] <= 1 for row in rows)
