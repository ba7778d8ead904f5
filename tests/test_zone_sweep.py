"""Results store and the zone sweep end to end: resume, config checks, flags, CLI errors, figure."""

import json
import os
import sys
from pathlib import Path

import pytest

from gzone import results
from gzone.experiments import zone

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import curvature_sweep

TINY = ["--preset", "tiny", "--num-points", "3", "--seeds", "2", "--no-progress"]


def run_cli(tmp_path, *extra):
    return curvature_sweep.main([*TINY, "--out", str(tmp_path / "run"), *extra])


def read(tmp_path):
    return results.load_records(tmp_path / "run" / results.RESULTS_FILE)


def test_sweep_writes_records_figure_and_resumes(tmp_path, capsys):
    assert run_cli(tmp_path, "--alpha-grid") == 0
    records = read(tmp_path)
    assert len(records) == 3 * 2 * 3  # alphas × seeds × terms
    required = {"alpha", "temperature", "seed", "term", "positive_curvature", "local_convexity",
                "spectral_norm", "top_eigenvalue", "eigenvalues", "dim", "n_samples", "model",
                "dataset", "dtype", "flags"}
    assert required <= set(records[0])
    assert {r["term"] for r in records} == {"hessian", "gterm", "hterm"}
    assert all(len(r["eigenvalues"]) == 10 for r in records)
    assert (tmp_path / "run" / "zone.png").stat().st_size > 0
    assert (tmp_path / "run" / "zone.pdf").stat().st_size > 0
    lines_before = (tmp_path / "run" / results.RESULTS_FILE).read_text()
    assert run_cli(tmp_path, "--alpha-grid") == 0  # nothing left to compute
    assert (tmp_path / "run" / results.RESULTS_FILE).read_text() == lines_before
    assert run_cli(tmp_path, "--alpha-grid", "--seeds", "3") == 0  # extends the grid only
    assert len(read(tmp_path)) == 3 * 3 * 3


def test_interrupted_sweep_resumes_without_loss_or_duplicates(tmp_path):
    config = zone.ZoneConfig(**{**zone.PRESETS["tiny"], "num_points": 3, "seeds": 1})
    out = tmp_path / "run"

    def interrupt_after_two(iterator, total):
        for i, point in enumerate(iterator):
            if i == 2:
                raise KeyboardInterrupt
            yield point

    with pytest.raises(KeyboardInterrupt):
        zone.run(config, out, progress=interrupt_after_two)
    assert len(results.load_records(out / results.RESULTS_FILE)) == 2 * 3
    with open(out / results.RESULTS_FILE, "a") as handle:  # a write torn by the interruption
        handle.write('{"alpha": 1.0, "ter')
    records = zone.run(config, out)
    keys = [(r["alpha"], r["seed"], r["term"]) for r in records]
    assert len(keys) == len(set(keys)) == 3 * 3


def test_append_cut_short_after_some_lines_is_rolled_back(tmp_path, monkeypatch):
    """A point's three records are written as one append; if the process dies after only part
    of it reached the file (here: two complete lines and half of the third), the rerun must drop
    the partial point whole and recompute it — not keep two records and then append three more."""
    config = zone.ZoneConfig(**{**zone.PRESETS["tiny"], "num_points": 3, "seeds": 1})
    out = tmp_path / "run"
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
        zone.run(config, out)
    monkeypatch.setattr(results.os, "write", real_write)
    on_disk = (out / results.RESULTS_FILE).read_text().splitlines()
    assert len(on_disk) == 3 + 3 and (out / results.PENDING_FILE).exists()  # 3 + 2 + a torn line
    records = zone.run(config, out)
    keys = [(r["alpha"], r["seed"], r["term"]) for r in records]
    assert len(keys) == len(set(keys)) == 3 * 3
    assert not (out / results.PENDING_FILE).exists()


def test_other_configuration_in_same_directory_is_refused(tmp_path, capsys):
    assert run_cli(tmp_path) == 0
    assert run_cli(tmp_path, "--dim", "5") == 2
    message = capsys.readouterr().err
    assert "another configuration" in message and "dim" in message and "--out" in message


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--alpha-min", "0"], "--alpha-min must be a finite number > 0"),
        (["--model", "resnet"], "unknown model"),
        (["--dataset", "imagenet"], "imagenet"),
        (["--dim", "100000"], "exceeds"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, args, expected):
    assert run_cli(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0


@pytest.mark.parametrize(
    "bad,expected",
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--dim", "0"], "--dim must be at least 1, got 0"),
        (["--dim", "999999999"], "subspace dimension --dim=999999999 exceeds"),
        (["--model", "lenet5", "--dataset", "digits"], "16x16"),
        (["--dataset", "svhn"], "svhn"),
    ],
)
def test_refused_run_leaves_the_directory_usable(tmp_path, capsys, monkeypatch, bad, expected):
    """A refused run writes nothing (it used to leave config.json, so the corrected command in the
    same directory was refused as another configuration)."""
    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)  # no SVHN files anywhere
    no_data = ["--data-dir", str(tmp_path / "no-data")]
    assert run_cli(tmp_path, "--alpha-grid", *bad, *no_data) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err
    assert not (tmp_path / "run").exists()
    assert run_cli(tmp_path, "--alpha-grid", *no_data) == 0
    assert len(read(tmp_path)) == 3 * 2 * 3


def test_directory_of_a_run_stopped_before_its_first_point_takes_another_config(tmp_path):
    config = zone.ZoneConfig(**{**zone.PRESETS["tiny"], "num_points": 3, "seeds": 1, "dim": 5})

    def stop_at_once(iterator, total):
        raise KeyboardInterrupt
        yield

    with pytest.raises(KeyboardInterrupt):
        zone.run(config, tmp_path / "run", progress=stop_at_once)
    assert (tmp_path / "run" / results.CONFIG_FILE).exists()
    assert run_cli(tmp_path, "--alpha-grid") == 0
    assert {r["dim"] for r in read(tmp_path)} == {10}


def test_identity_of_existing_directories_is_unchanged():
    """Zone directories written before the shared study base must still be accepted."""
    config = zone.ZoneConfig(**zone.PRESETS["tiny"])
    assert zone.identity(config) == {
        "mode": "alpha-grid", "model": "mlp", "widths": (32, 16), "dataset": "digits",
        "split": "train", "n_samples": 200, "basis": "orthonormal", "init": "kaiming",
        "dtype": "float32", "dim": 10}
    full = zone.ZoneConfig(**{**zone.PRESETS["lenet300-fashion"], "mode": "dim-grid",
                              "full_space": True})
    assert zone.identity(full) == {
        "mode": "dim-grid", "model": "lenet300", "dataset": "fashion_mnist", "split": "train",
        "n_samples": 10000, "basis": "orthonormal", "init": "kaiming", "dtype": "float32",
        "full_space": True, "probes": 100, "lanczos_iters": 100, "density_probes": 1}


def test_temperature_modes_and_dim_grid(tmp_path):
    assert run_cli(tmp_path, "--alpha-temperature") == 0
    records = read(tmp_path)
    for r in records:  # T = alpha^L with L = 3 for the tiny MLP
        assert r["temperature"] == pytest.approx(r["alpha"] ** 3)
    hessian = [r["positive_curvature"] for r in records if r["term"] == "hessian" and r["seed"] == 0]
    assert max(hessian) - min(hessian) < 1e-3 * max(abs(h) for h in hessian)  # Fig. 1 middle
    assert curvature_sweep.main([*TINY, "--out", str(tmp_path / "dims"), "--dim-grid", "--dims", "2,4,8"]) == 0
    dims = results.load_records(tmp_path / "dims" / results.RESULTS_FILE)
    assert sorted({r["dim"] for r in dims}) == [2, 4, 8]


def test_nonfinite_values_are_written_as_null_with_flags(tmp_path):
    results.open_results(tmp_path, {"a": 1})
    results.append_records(tmp_path, [{"term": "gterm", "positive_curvature": float("nan"),
                                       "eigenvalues": [1.0, float("inf")]}])
    text = (tmp_path / results.RESULTS_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text)
    assert record["positive_curvature"] is None and record["eigenvalues"] == [1.0, None]
    assert set(record["flags"]) == {"nonfinite_positive_curvature", "nonfinite_eigenvalues"}


def test_zone_found_on_fashion_mnist(data_dir, tmp_path):
    """Issue criterion: LeNet-300-100, 1,000 Fashion-MNIST images, d = 50, 3 seeds — high positive
    curvature near α = 1 that falls towards 0 far from it, and ‖G‖₂ > ‖H-term‖₂ only inside."""
    config = zone.ZoneConfig(**{**zone.PRESETS["lenet300-fashion"], "n_samples": 1000, "seeds": 3,
                                "alpha_min": 0.03, "alpha_max": 30.0, "num_points": 3})
    records = zone.run(config, tmp_path, data_dir=str(data_dir))
    rows = {(r["alpha"], r["term"]): r for r in zone.summarize(records)}
    low, one, high = sorted({r["alpha"] for r in records})
    assert rows[(one, "hessian")]["positive_curvature"][1] > 3  # min over seeds
    for alpha in (low, high):
        assert abs(rows[(alpha, "hessian")]["positive_curvature"][0]) < 0.5
    assert rows[(one, "gterm")]["spectral_norm"][0] > rows[(one, "hterm")]["spectral_norm"][0]
    for alpha in (low, high):
        assert rows[(alpha, "gterm")]["spectral_norm"][0] < rows[(alpha, "hterm")]["spectral_norm"][0]
