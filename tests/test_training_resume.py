"""Checkpoints and sharding of gzone.training: a grid sharded over 4 host devices (subprocesses
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``) and killed mid-way resumes to exactly
the uninterrupted single-device history; one run resumes from its checkpoint and refuses
another's; process slices of a grid cover it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_curvature import tiny_problem

from gzone import models, sharding, training

TESTS = Path(__file__).resolve().parent
POINTS = [(0.5, 0.3), (1.0, 0.3), (2.0, 0.05), (30.0, 1e200), (1.5, 0.2)]  # (alpha, lr); 30 diverges
GRID_KW = {"steps": 8, "log_every": 2, "driver": "scan", "sharpness_iters": 30,
           "sharpness_tol": 1e-2, "labels": "random-per-step"}

# the grid of POINTS on the tiny MLP, run in a subprocess; its history and final parameters are
# written to OUT as JSON. KILL_AT: SIGKILL the process at that log (before its checkpoint).
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests!r})
    import jax.numpy as jnp, numpy as np
    from jax.flatten_util import ravel_pytree
    from test_curvature import tiny_problem
    from test_training_resume import POINTS, GRID_KW, grid_params
    from gzone import training
    model, params, x, y = tiny_problem("mlp", n=11)
    kill_at = int(os.environ.get("KILL_AT", "-1"))
    def on_log(step, row, logged):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    ckpt = os.environ.get("CKPT") or None
    grid = training.train_grid(model.apply, grid_params(params), x, y, lr=[p[1] for p in POINTS],
                               x_test=x[:4], y_test=y[:4], key=jax.random.key(5),
                               batch_size=int(os.environ.get("BATCH", "8")), checkpoint_dir=ckpt,
                               on_log=on_log, **GRID_KW)
    out = {{"devices": jax.device_count(),
           "history": {{f: v.tolist() for f, v in grid.history.items()}},
           "diverged_at": grid.diverged_at.tolist(),
           "params": [np.asarray(ravel_pytree(jax.tree_util.tree_map(lambda a: a[i], grid.params))[0]).tolist()
                      for i in range(len(POINTS))]}}
    with open(os.environ["OUT"], "w") as f:
        json.dump(out, f)
""").format(tests=str(TESTS))


def grid_params(params):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[models.scale(params, a) for a, _ in POINTS])


def _run(tmp_path: Path, name: str, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "grid.py"
    script.write_text(SCRIPT)
    environ = {**os.environ, "OUT": str(tmp_path / f"{name}.json"), "JAX_PLATFORMS": "cpu", **env}
    return subprocess.run([sys.executable, str(script)], env=environ, capture_output=True, text=True,
                          timeout=600)


def _load(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / f"{name}.json").read_text())


def _assert_same(a: dict, b: dict) -> None:
    assert a["diverged_at"] == b["diverged_at"]
    for f in training.HISTORY_FIELDS:
        got, want = np.asarray(a["history"][f], float), np.asarray(b["history"][f], float)
        if f == "sharpness":  # ±λ of equal magnitude (the diverging point): either is the answer
            got, want = np.abs(got), np.abs(want)
        if f == "sharpness_residual":  # ‖Hv − λv‖ of a Ritz pair stopped at tol = 1e-2: a small
            # difference of large terms, whose rounding depends on how many points a device
            # vmaps (1 per device sharded, 3 on one): compare it to |λ|
            scale = np.abs(np.asarray(b["history"]["sharpness"], float))
            assert np.array_equal(np.isnan(got), np.isnan(want))
            ok = ~np.isnan(want)
            assert np.all(np.abs(got - want)[ok] <= 1e-9 * scale[ok]), f
            continue
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13, err_msg=f)
    np.testing.assert_allclose(np.asarray(a["params"]), np.asarray(b["params"]), rtol=1e-10, atol=1e-13)


def _grid(checkpoint_dir=None) -> dict:
    """The grid of SCRIPT, run in this process."""
    model, params, x, y = tiny_problem("mlp", n=11)
    grid = training.train_grid(model.apply, grid_params(params), x, y, lr=[p[1] for p in POINTS],
                               x_test=x[:4], y_test=y[:4], key=jax.random.key(5), batch_size=3,
                               checkpoint_dir=checkpoint_dir, **GRID_KW)
    return {"history": {f: v.tolist() for f, v in grid.history.items()},
            "diverged_at": grid.diverged_at.tolist(),
            "params": [np.asarray(ravel_pytree(jax.tree_util.tree_map(lambda a, i=i: a[i], grid.params))[0]).tolist()
                       for i in range(len(POINTS))]}


@pytest.fixture(scope="module")
def uninterrupted() -> dict:
    return _grid()


@pytest.mark.slow
def test_killed_sharded_grid_resumes_to_the_single_device_history(tmp_path, uninterrupted):
    # one pair of subprocesses checks both: the grid sharded over 4 host devices (batches of 3
    # and 2 points, padded to 4), SIGKILLed at its step-4 log (before that checkpoint), resumed
    # on 4 devices, equals the uninterrupted single-device grid of this process
    # (the suite's XLA flags kept: the same compile options, so the compilation cache is shared)
    ckpt = tmp_path / "ckpt"
    devices = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()
    killed = _run(tmp_path, "killed", BATCH="3", CKPT=str(ckpt), KILL_AT="4", XLA_FLAGS=devices)
    assert killed.returncode != 0 and not (tmp_path / "killed.json").exists()
    assert sorted(p.name for p in ckpt.iterdir()) == ["batch-000000"]  # killed in the first batch
    resumed = _run(tmp_path, "resumed", BATCH="3", CKPT=str(ckpt), XLA_FLAGS=devices)
    assert resumed.returncode == 0, resumed.stderr
    assert _load(tmp_path, "resumed")["devices"] == 4
    _assert_same(_load(tmp_path, "resumed"), uninterrupted)
    assert sorted(p.name for p in ckpt.iterdir()) == ["batch-000000", "batch-000003"]
    # the finished grid, opened again on one device: restored as it is, nothing recomputed
    _assert_same(_grid(ckpt), uninterrupted)


def test_train_resumes_from_its_checkpoint_and_refuses_another_run(tmp_path):
    model, params, x, y = tiny_problem("mlp", n=11)
    kw = {"lr": 0.3, "steps": 6, "log_every": 2, "driver": "scan", "sharpness_iters": 30,
          "sharpness_tol": 1e-2}
    whole = training.train(model.apply, params, x, y, **kw)

    class Stop(Exception):
        pass

    def stop_at_4(step, row):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        training.train(model.apply, params, x, y, checkpoint_dir=tmp_path, on_log=stop_at_4, **kw)
    seen = []
    resumed = training.train(model.apply, params, x, y, checkpoint_dir=tmp_path,
                             on_log=lambda step, row: seen.append(step), **kw)
    assert seen == [4, 6]  # steps 0 and 2 came from the checkpoint
    for f in training.HISTORY_FIELDS:
        np.testing.assert_allclose(resumed.history[f], whole.history[f], rtol=1e-10, atol=1e-13, err_msg=f)
    np.testing.assert_allclose(ravel_pytree(resumed.params)[0], ravel_pytree(whole.params)[0], rtol=1e-10)
    with pytest.raises(ValueError, match=r"holds a checkpoint of another run \(differs in lr\)") as info:
        training.train(model.apply, params, x, y, checkpoint_dir=tmp_path, **{**kw, "lr": 0.4})
    assert "\n" not in str(info.value)


def test_process_points_partition_the_grid():
    parts = [sharding.process_points(11, i, 3) for i in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(11))
    assert parts[1].tolist() == [1, 4, 7, 10]
    assert sharding.process_points(5).tolist() == list(range(5))  # one process: everything
    with pytest.raises(ValueError, match="process index must be in"):
        sharding.process_points(5, 3, 3)
    padded, size = sharding.pad_points({"a": np.arange(5)}, 4)
    assert size == 5 and padded["a"].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_checkpoints_follow_their_cadence_and_histories_are_appended(tmp_path):
    """checkpoint_every=4 (steps) with a log every 2: saved at steps 4 and 8 (the last), so a run
    stopped at its step-6 log resumes from step 4; the history file only grows."""
    from gzone.training import checkpoints

    model, params, x, y = tiny_problem("mlp", n=11)
    kw = {"lr": 0.3, "steps": 8, "log_every": 2, "driver": "scan", "sharpness": False,
          "checkpoint_every": 4}
    whole = training.train(model.apply, params, x, y, **kw)

    class Stop(Exception):
        pass

    sizes = []

    def stop_at_6(step, row):
        path = tmp_path / "batch-000000" / checkpoints.HISTORY_FILE
        sizes.append(path.stat().st_size if path.exists() else 0)
        if step == 6:
            raise Stop

    with pytest.raises(Stop):
        training.train(model.apply, params, x, y, checkpoint_dir=tmp_path, on_log=stop_at_6, **kw)
    assert sizes[:3] == [0, 0, 0] and sizes[3] > 0  # nothing saved before step 4's log
    seen = []
    resumed = training.train(model.apply, params, x, y, checkpoint_dir=tmp_path,
                             on_log=lambda step, row: seen.append(step), **kw)
    assert seen == [6, 8]
    for f in training.HISTORY_FIELDS:
        np.testing.assert_allclose(resumed.history[f], whole.history[f], rtol=1e-12, err_msg=f)
    lines = (tmp_path / "batch-000000" / checkpoints.HISTORY_FILE).read_text().splitlines()
    assert len(lines) == 5  # steps 0 … 8, each row once
    timed = training.train(model.apply, params, x, y, checkpoint_dir=tmp_path / "timed",
                           **{**kw, "checkpoint_every": "3600s"})  # only the last log saves
    np.testing.assert_allclose(timed.history["loss"], whole.history["loss"], rtol=1e-12)
    for bad in (0, "5m", "1.5", -3, True):
        with pytest.raises(ValueError, match="checkpoint_every must be a positive number"):
            training.train(model.apply, params, x, y, **{**kw, "checkpoint_every": bad})
