"""The trainability study (gzone.experiments.trainability, ICML Sec. 5) and its script: records
against direct training runs and the curvature engine, resume after an interruption, refusal of
another configuration, process slices, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from test_curvature import dense_terms, tiny_problem

from gzone import models, results, training
from gzone.experiments import base, trainability

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import trainability as script  # noqa: E402  (scripts/trainability.py)

TINY = trainability.make_config("tiny")
# one worker runs the module, so its tiny study fixture is computed once under pytest -n
pytestmark = pytest.mark.xdist_group("trainability")


def _key(r):
    return (r["kind"], r.get("alpha"), r.get("lr0"), r.get("seed"), r.get("step"))


def _comparable(records):
    return sorted(({k: v for k, v in r.items()} for r in records), key=lambda r: repr(_key(r)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, trainability.run(TINY, out)


def test_records_hold_every_point_step_and_field(tiny_run):
    out, records = tiny_run
    points = trainability.points(TINY)
    assert len(points) == 3 * 2 * 1
    logs = [r for r in records if r["kind"] == "log"]
    runs = [r for r in records if r["kind"] == "run"]
    zones = [r for r in records if r["kind"] == "zone"]
    for kind, group in (("log", logs), ("run", runs), ("zone", zones)):
        for r in group:
            assert set(trainability.RECORD_FIELDS[kind]) <= set(r), kind
    assert {(r["alpha"], r["lr0"], r["seed"]) for r in runs} == set(points) and len(runs) == 6
    assert len(zones) == 3
    keys = [_key(r) for r in logs]
    assert len(keys) == len(set(keys))  # one record per (alpha, lr0, seed, logged step)
    for alpha, lr0, seed in points:
        run = next(r for r in runs if (r["alpha"], r["lr0"], r["seed"]) == (alpha, lr0, seed))
        steps = sorted(r["step"] for r in logs if (r["alpha"], r["lr0"], r["seed"]) == (alpha, lr0, seed))
        assert steps[0] == 0 and steps[-1] == run["last_step"]
        if run["diverged_at"] is None:
            assert steps == [0, 20, 40]
    for r in logs:  # the config fields travel with every log record (pandas-ready)
        assert r["model"] == "mlp" and r["steps"] == 40 and r["mode"] == "grid"
    assert json.loads((out / "config.json").read_text())["study"] == "trainability"
    assert not list((out / "checkpoints").glob("points-*"))  # recorded batches leave no checkpoint


def test_log_records_equal_a_direct_training_run(tmp_path):
    # float64: the trajectory through a large-gradient phase amplifies float32 rounding
    # one point (α = 10, η0 = 0.3): its batch of one compiles what the direct run then reuses
    config = dataclasses.replace(TINY, dtype="float64", num_alphas=1, alpha_min=10.0, alpha_max=10.0,
                                 num_lr0=1, lr0_min=0.3, lr0_max=0.3)
    records = trainability.run(config, tmp_path)
    setup, x_test, y_test = trainability.load_setup(config, None)
    alpha, lr0, seed = trainability.points(config)[-1]
    lr = training.effective_lr(lr0, alpha, setup.degree)
    theta = models.scale(trainability.initial_params(setup, config, seed), alpha)
    direct = training.train(setup.model.apply, theta, setup.x, setup.y, lr=lr, steps=config.steps,
                            log_every=config.log_every, x_test=x_test, y_test=y_test,
                            key=base.stream_key(0, base.TRAINING_LABELS_STREAM))
    logs = sorted((r for r in records if r["kind"] == "log" and
                   (r["alpha"], r["lr0"], r["seed"]) == (alpha, lr0, seed)), key=lambda r: r["step"])
    assert [r["step"] for r in logs] == direct.history["step"].tolist()
    for f in ("loss", "train_accuracy", "test_accuracy", "parameter_norm", "gradient_norm",
              "sharpness", "entropy", "cos_param_init"):
        np.testing.assert_allclose([r[f] for r in logs], direct.history[f], rtol=1e-9, atol=1e-12,
                                   err_msg=f)
    run = next(r for r in records if r["kind"] == "run" and r["alpha"] == alpha and r["lr0"] == lr0)
    assert run["lr"] == pytest.approx(lr)
    assert run["lr_sharpness"] == pytest.approx(lr * abs(direct.history["sharpness"][0]), rel=1e-9)
    assert run["max_train_accuracy"] == pytest.approx(direct.history["train_accuracy"].max(), abs=1e-12)


def test_zone_norms_equal_dense_spectral_norms():
    model, params, x, y = tiny_problem("mlp", n=11)
    setup = base.Setup(model, x, y, 4, models.num_params(params), x.dtype, "tiny")
    got = trainability.zone_norms(setup, params, num_samples=None, chunk_size=None, num_iters=200)
    h, g, ht = (np.asarray(m) for m in dense_terms(model, params, x, y, 1.0))
    for name, matrix in (("hessian_norm", h), ("gterm_norm", g), ("hterm_norm", ht)):
        want = np.abs(np.linalg.eigvalsh((matrix + matrix.T) / 2)).max()
        assert got[name] == pytest.approx(want, rel=1e-8), name
    assert got["in_zone"] == (got["gterm_norm"] > got["hterm_norm"])


def test_interrupted_study_resumes_without_losing_or_duplicating(tiny_run, tmp_path):
    _, whole = tiny_run
    assert TINY.batch_size == 4  # two batches: 4 + 2 runs

    class Interrupt(Exception):
        pass

    def progress(items, total):
        for i, item in enumerate(items):
            if i == 7:  # mid-way through the first batch's logs (4 runs x 3 logs)
                raise Interrupt
            yield item

    with pytest.raises(Interrupt):
        trainability.run(TINY, tmp_path, progress=progress)
    assert list((tmp_path / "checkpoints").glob("points-*"))  # the batch in progress
    resumed = trainability.run(TINY, tmp_path)
    got, want = _comparable(resumed), _comparable(whole)
    assert [_key(r) for r in got] == [_key(r) for r in want]  # nothing lost, nothing twice
    for a, b in zip(got, want):  # the same computation, resumed from an exact checkpoint
        for k, v in b.items():
            if isinstance(v, float):
                assert a[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (k, _key(b))
            else:
                assert a[k] == v, (k, _key(b))


def test_another_configuration_is_refused_in_one_line(tiny_run):
    out, _ = tiny_run
    with pytest.raises(results.ConfigMismatchError, match="steps: 40 there vs 60 now") as info:
        trainability.run(dataclasses.replace(TINY, steps=60), out)
    assert "\n" not in str(info.value)


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
    ({"curve_alphas": (1.0, -2.0)}, "curve_alphas must hold finite numbers > 0"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(overrides, message, tmp_path):
    config = dataclasses.replace(TINY, **overrides)
    with pytest.raises(ValueError, match=message) as info:
        trainability.run(config, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_script_refuses_bad_flags_in_one_line(capsys, tmp_path):
    assert script.main(["--preset", "tiny", "--alpha-min", "0", "--out", str(tmp_path / "o"),
                        "--no-plot", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --alpha-min must be a finite number > 0") and err.count("\n") == 1
    assert script.main(["--preset", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_script_runs_the_tiny_grid_and_draws(tiny_run, capsys):
    out, _ = tiny_run  # resumes the finished fixture run: summary and figures only
    assert script.main(["--preset", "tiny", "--grid", "--out", str(out)]) == 0  # with a tqdm bar
    text = capsys.readouterr().out
    assert "runs: 6" in text and "largest trained lr0" in text
    assert (out / "trainability.png").exists() and (out / "zero_logits.pdf").exists()


def test_cli_modes_and_preset_reach_the_config():
    args, config, _ = script.configure(["--curves", "--preset", "tiny", "--steps", "60",
                                        "--curve-alphas", "0.5,2"])
    assert config.mode == "curves" and config.steps == 60 and config.curve_alphas == (0.5, 2.0)
    assert config.n_train == 200 and trainability.alphas(config) == [0.5, 2.0]
    assert jax.config.jax_enable_x64 or config.dtype == "float32"


@pytest.mark.slow
def test_two_processes_under_jax_distributed_split_the_grid(tiny_run, tmp_path):
    # the script's multi-host path on one machine: two processes, a coordinator on localhost;
    # each runs its slice (sharding.process_points) into process-<i>-of-2, and load() merges them
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "grid"
    command = [sys.executable, str(ROOT / "scripts" / "trainability.py"), "--preset", "tiny",
               "--out", str(out), "--no-progress", "--no-plot", "--coordinator", f"localhost:{port}",
               "--num-processes", "2", "--process-id"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([*command, str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["process-0-of-2", "process-1-of-2"]
    _, whole = tiny_run
    merged = trainability.load(out)
    assert sorted(map(_key, merged)) == sorted(map(_key, whole))  # each point once, none lost
    assert sum(r["kind"] == "zone" for r in merged) == 3  # the zone once, by process 0
