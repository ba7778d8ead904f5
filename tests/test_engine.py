"""The study engine's life cycle, written once for every study (gzone.engine): interruption and
resume, appends cut short, directories of a run stopped before its first point, the identity of
a directory, process slices, chunks and their checkpoint folders, the lock, migration of gzone 0.1
directories."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gzone import engine, results, studies
from gzone.engine import migrate
from gzone.engine.lifecycle import LOCK_FILE, process_slice
from gzone.engine.study import batched, point_key, remove_checkpoints

SWEEP = studies.get("icml/alpha-sweep")
ROOT = Path(__file__).resolve().parents[1]


def small_sweep(**changes):
    return dataclasses.replace(engine.make_config(SWEEP, "tiny"), **{"num_points": 3, "seeds": 1,
                                                                       **changes})


def _interrupt_after(n):
    def progress(iterator, total):
        for i, point in enumerate(iterator):
            if i == n:
                raise KeyboardInterrupt
            yield point

    return progress


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path):
    config, out = small_sweep(), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        engine.run(SWEEP, config, out, progress=_interrupt_after(2))
    assert len(results.load_records(out / results.RESULTS_FILE)) == 2 * 3
    with open(out / results.RESULTS_FILE, "a") as handle:  # a write torn by the interruption
        handle.write('{"alpha": 1.0, "ter')
    records = engine.run(SWEEP, config, out)
    keys = [(r["alpha"], r["seed"], r["term"]) for r in records]
    assert len(keys) == len(set(keys)) == 3 * 3


def test_append_cut_short_after_some_lines_is_rolled_back(tmp_path, monkeypatch):
    """A point's three records are one append; if the process dies after only part of it reached
    the file (two complete lines and half of the third), the rerun drops the partial point whole
    and recomputes it — not keep two records and then append three more."""
    config, out = small_sweep(), tmp_path / "run"
    real_write, calls = os.write, []

    def write_then_die(fd, data):
        calls.append(len(data))
        if len(calls) < 2:
            return real_write(fd, data)
        lines = bytes(data).split(b"\n")
        real_write(fd, b"\n".join(lines[:2]) + b"\n" + lines[2][: len(lines[2]) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.run(SWEEP, config, out)
    monkeypatch.setattr(results.os, "write", real_write)
    on_disk = (out / results.RESULTS_FILE).read_text().splitlines()
    assert len(on_disk) == 3 + 3 and (out / results.PENDING_FILE).exists()  # 3 + 2 + a torn line
    records = engine.run(SWEEP, config, out)
    keys = [(r["alpha"], r["seed"], r["term"]) for r in records]
    assert len(keys) == len(set(keys)) == 3 * 3
    assert not (out / results.PENDING_FILE).exists()


def test_a_run_stopped_before_its_first_point_does_not_bind_the_directory(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        engine.run(SWEEP, small_sweep(dim=5), out, progress=_interrupt_after(0))
    assert (out / results.CONFIG_FILE).exists()
    assert results.load_records(out / results.RESULTS_FILE) == []
    records = engine.run(SWEEP, small_sweep(), out)
    assert {r["dim"] for r in records} == {10}


def test_the_grid_extends_in_place_and_nothing_is_computed_twice(tmp_path):
    out = tmp_path / "run"
    engine.run(SWEEP, small_sweep(), out)
    before = (out / results.RESULTS_FILE).read_text()
    engine.run(SWEEP, small_sweep(), out)
    assert (out / results.RESULTS_FILE).read_text() == before
    records = engine.run(SWEEP, small_sweep(seeds=2), out)  # seeds are growable
    assert len(records) == 3 * 2 * 3 and (out / results.RESULTS_FILE).read_text().startswith(before)


def test_identity_is_the_study_and_the_fields_it_reads():
    config = engine.make_config(SWEEP, "tiny")
    got = engine.identity(SWEEP, config)
    assert got["study"] == "icml/alpha-sweep" and list(got)[0] == "study"
    assert not {"seeds", "alpha_min", "alpha_max", "num_points", "chunk_size"} & set(got)  # growable
    assert not {"probes", "lanczos_iters", "density_probes"} & set(got)  # unread: full space off
    full = engine.identity(SWEEP, dataclasses.replace(config, full_space=True))
    assert {"probes", "lanczos_iters", "density_probes"} <= set(full)
    lenet = engine.identity(SWEEP, engine.make_config(SWEEP, "paper"))
    assert lenet["model"] == "lenet300" and "widths" not in lenet  # read by mlp only


def test_process_slices_deal_each_kind_round_robin():
    points = ([{"kind": "zone", "i": i} for i in range(3)]
              + [{"kind": "run", "i": i} for i in range(5)])
    slices = [process_slice(points, k, 2) for k in range(2)]
    assert sorted(slices[0] + slices[1]) == list(range(8))
    assert [points[i]["i"] for i in slices[0]] == [0, 2, 0, 2, 4]
    assert [points[i]["i"] for i in slices[1]] == [1, 1, 3]
    assert process_slice(points, 0, 1) == list(range(8))


def test_a_rerun_with_another_process_count_repeats_nothing(tmp_path):
    """Two slices, then one process: the points the slices finished are not computed again
    (only a slice of another configuration's folder does not count)."""
    config, out = small_sweep(), tmp_path / "run"
    engine.run(SWEEP, config, out, process_index=0, process_count=2)
    other = tmp_path / "run" / "process-1-of-2"
    engine.run(SWEEP, small_sweep(dim=5), other, process_index=0, process_count=1)
    records = engine.run(SWEEP, config, out, process_index=0, process_count=1)
    alphas = sorted({r["alpha"] for r in records if r["dim"] == 10})
    mine = {r["alpha"] for r in engine.load(out / "process-0-of-2")}
    assert len(alphas) == 3 and not mine & {r["alpha"] for r in results.load_records(
        out / results.RESULTS_FILE)}  # the first slice's points were not recomputed


@pytest.mark.slow
def test_two_processes_split_a_study_with_no_coordinator_and_a_killed_one_resumes(tmp_path):
    """Two real processes, one given its slot by flags, the other by Slurm's variables; the
    second is SIGKILLed once it has written a record and then rerun: every point of every kind
    once, each slice in its own folder, nothing shared, nothing waited for."""
    import signal

    out = tmp_path / "run"
    command = [sys.executable, "-m", "gzone", "run", "icml/gradient-prior", "--preset", "tiny",
               "--n-priors", "6", "--out", str(out), "--no-progress", "--no-plot"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    logs = [open(tmp_path / f"log{i}", "w") for i in range(2)]  # files: a full pipe would block
    first = subprocess.Popen([*command, "--num-processes", "2", "--process-id", "0"], env=env,
                             stdout=logs[0], stderr=subprocess.STDOUT, cwd=ROOT)
    slurm = {**env, "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}
    second = subprocess.Popen(command, env=slurm, stdout=logs[1], stderr=subprocess.STDOUT, cwd=ROOT)
    mine = out / "process-1-of-2" / results.RESULTS_FILE
    deadline = time.time() + 300
    while second.poll() is None and time.time() < deadline and not (
            mine.exists() and mine.read_text().count("\n") >= 1):
        time.sleep(0.05)
    if second.poll() is None:
        second.send_signal(signal.SIGKILL)
    second.wait(timeout=300)
    assert first.wait(timeout=600) == 0, (tmp_path / "log0").read_text()[-2000:]
    for log in logs:
        log.close()
    rerun = subprocess.run(command, env=slurm, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "process 1 of 2: its slice is done" in rerun.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["process-0-of-2", "process-1-of-2"]
    records = engine.load(out)
    assert sorted(r["prior"] for r in records if r["kind"] == "prior") == list(range(6))
    assert [r["kind"] for r in records].count("calibration") == 1
    slice1 = [r["prior"] for r in engine.load(out / "process-1-of-2") if r["kind"] == "prior"]
    assert sorted(slice1) == [1, 3, 5]


def test_loading_merges_slices_and_keeps_each_record_once(tmp_path):
    """The same record in two slice folders (one of another process count, interrupted after it
    wrote a point's records the other then wrote again) is loaded once; a run's context sees the
    records of every folder of its configuration."""
    config, out = small_sweep(), tmp_path / "run"
    engine.run(SWEEP, config, out, process_index=0, process_count=2)
    first = results.load_records(out / "process-0-of-2" / results.RESULTS_FILE)
    (out / "process-0-of-3").mkdir()
    shutil.copy(out / "process-0-of-2" / results.CONFIG_FILE, out / "process-0-of-3")
    results.append_records(out / "process-0-of-3", first[:2])
    records = engine.load(out)
    assert len(records) == len(first)
    assert engine.run(SWEEP, config, out, process_index=0, process_count=3) == records


def test_batched_chunks_group_consecutive_points_of_a_kind():
    chunks = batched(lambda config: 2, kinds=("run",))
    points = [{"kind": "zone"}, {"kind": "run", "i": 0}, {"kind": "run", "i": 1},
              {"kind": "run", "i": 2}, {"kind": "zone"}, {"kind": "run", "i": 3}]
    assert [[p.get("i") for p in c] for c in chunks(None, points)] == [[None], [0, 1], [2], [None], [3]]


def test_stale_checkpoint_folders_are_removed(tmp_path):
    for name in ("chunk-000001", "chunk-000001-network", "chunk-000007", "other"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    remove_checkpoints(tmp_path, {"000007"})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["chunk-000007", "other"]
    shutil.rmtree(tmp_path / "checkpoints" / "other")
    remove_checkpoints(tmp_path, set())
    assert not (tmp_path / "checkpoints").exists()


def test_a_second_writer_is_refused_in_one_line_or_waits_when_asked(tmp_path, capsys):
    import fcntl

    from gzone.engine.lifecycle import BusyError

    out = tmp_path / "run"
    out.mkdir()
    handle = open(out / LOCK_FILE, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write("gzone process 4242 on elsewhere\n")
    handle.flush()
    with pytest.raises(BusyError, match=r"is being written by gzone process 4242 on elsewhere; "
                                        r"wait for it to finish, or give this run another --out") as info:
        engine.run(SWEEP, small_sweep(), out)
    assert "\n" not in str(info.value) and not (out / results.CONFIG_FILE).exists()
    done = []
    worker = threading.Thread(target=lambda: done.append(engine.run(SWEEP, small_sweep(), out,
                                                                     wait=True)))
    worker.start()
    time.sleep(1.0)
    assert not done and not (out / results.CONFIG_FILE).exists()  # waiting, nothing written
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
    worker.join(timeout=300)
    assert len(done[0]) == 3 * 3
    assert "gzone process 4242 on elsewhere is writing" in capsys.readouterr().err


def test_records_are_written_with_nulls_and_flags_for_nonfinite_values(tmp_path):
    results.open_results(tmp_path, {"a": 1})
    results.append_records(tmp_path, [{"term": "gterm", "positive_curvature": float("nan"),
                                       "eigenvalues": [1.0, float("inf")]}])
    text = (tmp_path / results.RESULTS_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text)
    assert record["positive_curvature"] is None and record["eigenvalues"] == [1.0, None]
    assert set(record["flags"]) == {"nonfinite_positive_curvature", "nonfinite_eigenvalues"}


def _as_gzone_01(run, out, tag, legacy_fields):
    """A copy of a tiny run in the shape gzone 0.1 wrote it: its old identity in config.json
    (``legacy_fields``) and records tagged ``tag`` (the zone sweeps: no study, no kind)."""
    shutil.copytree(run.out, out)
    stored = json.loads((out / results.CONFIG_FILE).read_text())
    old = {k: v for k, v in stored.items() if k not in ("study",)} | legacy_fields
    (out / results.CONFIG_FILE).write_text(json.dumps(old))
    lines = []
    for r in results.load_records(out / results.RESULTS_FILE):
        r = {k: v for k, v in r.items() if k not in ("study", "kind")} if tag is None else {**r, "study": tag}
        lines.append(json.dumps(r))
    (out / results.RESULTS_FILE).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name, tag, legacy", [
    ("icml/alpha-sweep", None, {"mode": "alpha-grid"}),
    ("icml/gterm-prediction", "fig3", {"study": "fig3"}),
])
def test_a_gzone_01_directory_is_refused_with_how_to_migrate_then_migrated(name, tag, legacy, tiny,
                                                                        tmp_path):
    run = tiny(name)
    out = tmp_path / "old"
    _as_gzone_01(run, out, tag, legacy)
    with pytest.raises(results.ConfigMismatchError) as info:
        engine.run(run.study, run.config, out)
    message = str(info.value)
    assert "was written by gzone 0.1" in message and f"gzone migrate {name} --out {out}" in message
    wrong = studies.get("icml/many-inits")
    with pytest.raises(ValueError, match="not written by the gzone 0.1 form of icml/many-inits"):
        migrate.migrate(wrong, out)
    text = migrate.migrate(run.study, out)
    assert text.startswith(f"migrated {out} to {name}: {len(run.records)} records kept")
    assert (out / "results.jsonl.v1").exists() and (out / "config.json.v1").exists()

    def measure(ctx, chunk):
        raise AssertionError("recomputed after migration")

    again = engine.run(dataclasses.replace(run.study, measure=measure), run.config, out)
    assert [point_key(r) for r in again] == [point_key(r) for r in run.records]
    with pytest.raises(ValueError, match="already belongs to"):
        migrate.migrate(run.study, out)
