"""``benchmarks/gpu_check.py --quick`` (issue 21): the GPU check runs on the CPU at tiny shapes and
writes every section with finite numbers and positive times; its work counting covers every paper
experiment."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_script():
    """The script as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_run_writes_every_section(tmp_path):
    """One cost case (LeNet-300-100; the others are the same code on other models, and the full
    check on this CPU measured them: benchmarks/README.md) and every section."""
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--case", "lenet300-fashion",
                           "--out", str(out)],
                          cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert (out / "gpu_check.md").read_text().startswith("# gzone GPU check")
    assert "## Hours of each paper experiment" in done.stdout

    device = report["device"]
    assert device["device_count"] >= 1 and device["jax"] and device["backend"]

    precision = report["precision"]
    for setting in ("highest", "default"):
        s = precision["settings"][setting]
        assert 0 <= s["orthogonality_max"] < 1e-3  # float32 with full reorthogonalisation
        assert positive(s["top_ritz"]) and positive(s["wall_s"]) and positive(s["first_call_s"])
    if device["backend"] == "cpu":
        assert precision["identical"]

    costs = report["costs"]
    assert set(costs) == {"lenet300-fashion"}
    for c in costs.values():
        assert positive(c["U"]["s"]) and positive(c["gd"]["step_s"]) and c["gd"]["diverged_at"] is None
        assert positive(c["proj"]["s"]) and positive(c["hvp"]["s"]) and positive(c["lanczos"]["step_s"])
        for kind in ("grad", "proj", "hvp"):
            unit = c["per_unit"][kind]
            assert positive(unit["s"]) and positive(unit["flops"]) and positive(unit["bytes"])

    hours = report["hours"]
    assert {r["study"] for r in hours} >= {"icml/trainability", "icml/many-inits", "fort/radius"}
    fig8 = next(r for r in hours if r["study"] == "icml/trainability")
    for r in hours:
        assert r["counted"], r["study"]
        if "not measured" in r.get("note", ""):  # a model whose costs this run did not measure
            continue
        assert positive(r["hours"]) and positive(r["flops"]) and positive(r["bytes"]), r["study"]
        assert all(positive(h) for h in r["roofline_hours"].values()), r["study"]
    assert "not measured" not in fig8.get("note", "") and positive(fig8["hours"])

    runs = report["runs"]
    for name in ("trainability", "many-inits"):
        r = runs[name]
        if "skipped" in r:  # only without the shared data
            assert not os.environ.get("GZONE_DATA_DIR"), r["skipped"]
            continue
        assert positive(r["wall_s"]) and positive(r["paper_hours_upper_bound"])
        assert r["records"]
    assert set(report["elapsed_s"]) >= {"device", "precision", "costs", "hours", "runs", "total"}
    assert report["errors"] == {}


def test_work_counts_follow_the_paper_presets():
    from gzone import engine, studies

    check = load_script()
    experiments = check.paper_experiments()
    assert ("icml/trainability", "lenet5-cifar10") in experiments
    assert {name for name, _ in experiments} == set(studies.STUDIES)
    for name, preset in experiments:
        work = check.work_of(name, engine.make_config(studies.get(name), preset))
        assert work.counted and sum(work.units().values()) > 0, name
        assert {case for case, _, _ in work.terms} <= set(check.CASE_BY_NAME), name

    # Fig. 8: 13 alphas x 10 lr0 runs of 20,000 steps on all 60,000 images, 201 logs each
    config = engine.make_config(studies.get("icml/trainability"), "paper")
    grad = dict(((k, c), a) for c, k, a in check.work_of("icml/trainability", config).terms
                if k == "grad")
    runs, logs = 130, 201
    assert grad[("grad", "lenet300-fashion")] == pytest.approx(
        runs * (20000 * 60000 + logs * (60000 + 10000 / 3)))
    # Fig. 6: 2,000 inits x one d = 50 projection on 3,000 images
    config = engine.make_config(studies.get("icml/many-inits"), "paper")
    assert check.work_of("icml/many-inits", config).units()["proj"] == 2000 * 3000 * 50
    assert check.mlp_params((200, 200)) == 199210


def test_roofline_and_gpu_requirement():
    check = load_script()
    h200 = next(g for g in check.GPUS if g.name == "H200")
    assert check.roofline_s(67e12, 0.0, h200) == pytest.approx(1.0)
    assert check.roofline_s(0.0, 4.8e12, h200) == pytest.approx(1.0)
    info = {"backend": "cpu", "devices": ["TFRT_CPU_0"]}
    assert "no GPU visible" in check.require_gpu(info)
    assert check.require_gpu({**info, "backend": "gpu"}) is None
