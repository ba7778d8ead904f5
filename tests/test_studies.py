"""The contract every study of the registry keeps (one test set, parametrized over
:data:`gzone.studies.STUDIES`), on its ``tiny`` preset run once per suite (``tiny`` fixture):
the declaration, the records' schema, resume without recomputation, refusal of another
configuration and of another study, the summary rows, the figure."""

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gzone import engine, results, studies
from gzone.engine.config import field_help, field_types
from gzone.engine.study import PRESETS, point_key

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(studies.STUDIES)


def test_the_registry_holds_every_paper_study():
    assert NAMES == [
        "icml/alpha-sweep", "icml/alpha-temperature", "icml/temperature-sweep", "icml/dim-sweep",
        "icml/gterm-prediction", "icml/gamma-entropy", "icml/gradient-cosines",
        "icml/gradient-prior", "icml/many-inits", "icml/pre-collapse", "icml/trainability",
        "icml/curves", "icml/random-labels", "icml/uso", "icml/uso-retrain", "icml/probe",
        "icml/lazy", "fort/radius", "fort/directions", "fort/architectures", "fort/loss-radius",
        "fort/stokes", "fort/hypersurface-training", "fort/init-selection", "fort/radius-drift",
        "beyond/normalization", "beyond/inhomogeneous", "beyond/logit-normalization",
        "beyond/adam", "beyond/init-quality"]
    with pytest.raises(ValueError, match="unknown study 'icml/fig7'; `gzone list` shows them"):
        studies.get("icml/fig7")


@pytest.mark.parametrize("name", NAMES)
def test_a_study_is_declared_once(name):
    """Its module under gzone/studies/<paper>/<topic>.py declares STUDY; every preset builds a
    valid config; every field has a help line; the docstring gives its command."""
    study = studies.get(name)
    paper, topic = name.split("/")
    module = studies.MODULES[name]
    assert module.__name__ == f"gzone.studies.{paper}.{topic.replace('-', '_')}"
    assert module.STUDY is study and study.doc == module.__doc__
    assert f"gzone run {name}" in study.doc
    assert list(study.presets)[:4] == list(PRESETS)
    for preset in study.presets:
        engine.check(study, engine.make_config(study, preset))
    for field in field_types(study.config):
        assert field_help(study.config, field).strip(), field
    assert set(study.done) <= set(study.kinds)


@pytest.mark.parametrize("name", NAMES)
def test_a_study_name_appears_nowhere_else_in_the_library(name):
    """Only its own module (and the registry's import list, by module name) knows a study."""
    module = studies.MODULES[name]
    own = Path(module.__file__).resolve()
    pattern = re.compile(re.escape(name) + r"(?![\w-])")
    found = [str(p.relative_to(ROOT)) for p in (ROOT / "gzone").rglob("*.py")
             if p.resolve() != own and pattern.search(p.read_text())]
    assert not found, found


def test_no_study_imports_a_sibling_and_no_import_cycles():
    """Studies import the engine, the numerics and their paper's _common only."""
    for path in (ROOT / "gzone" / "studies").rglob("*.py"):
        text = path.read_text()
        for other in re.findall(r"from gzone\.studies\.(\w+)\.(\w+) import|from gzone\.studies\.(\w+) import (\w+)", text):
            module = [part for part in other if part]
            assert module[-1] in ("_common", "grid", "sweep", "outside", "grid_figures") or \
                module[-1].startswith("_"), (path, module)
    code = ("import sys; import gzone.studies, gzone.command; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_library_modules_stay_under_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "gzone").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"split these modules by job: {long}"


@pytest.mark.parametrize("name", NAMES)
def test_records_schema(name, tiny):
    """Every record names its study and a kind the study writes; a finishing record holds the
    fields of its point; ``flags`` is a list of strings; every point is finished."""
    run = tiny(name)
    assert run.records
    for r in run.records:
        assert r["study"] == name and r["kind"] in run.study.kinds, r.get("kind")
        assert all(isinstance(f, str) for f in r["flags"])
        for f in run.study.done.get(r["kind"], ()):
            assert f in r, (r["kind"], f)
    points = run.study.points(run.config, run.study.prepare(run.config, None))
    assert {point_key(p) for p in points} <= run.study.finished_keys(run.config, run.records)


@pytest.mark.parametrize("name", NAMES)
def test_resume_computes_nothing_again(name, tiny, tmp_path):
    run = tiny(name)
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    before = (out / results.RESULTS_FILE).read_bytes()

    def measure(ctx, chunk):
        raise AssertionError(f"{name} measured {chunk} again")

    again = engine.run(dataclasses.replace(run.study, measure=measure), run.config, out)
    assert (out / results.RESULTS_FILE).read_bytes() == before
    assert len(again) == len(run.records)
    assert not (out / "checkpoints").exists()


def _changed(study, config):
    """A config of ``study`` that differs from ``config`` in one field of its identity."""
    for field, tp in field_types(study.config).items():
        value = getattr(config, field)
        if field in study.growable or field in ("widths", "chunk_size"):
            continue
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            other = dataclasses.replace(config, **{field: value + 1})
        elif tp is float and isinstance(value, float):
            other = dataclasses.replace(config, **{field: value * 1.5})
        else:
            continue
        if engine.identity(study, other) != engine.identity(study, config):
            return field, other
    raise AssertionError(f"{study.name}: no numeric identity field to change")


@pytest.mark.parametrize("name", NAMES)
def test_another_configuration_or_study_is_refused(name, tiny):
    """The refusal names the study and the differing field, in one line; another study is
    refused by name (the study is part of the identity)."""
    run = tiny(name)
    field, other = _changed(run.study, run.config)
    with pytest.raises(results.ConfigMismatchError) as info:
        engine.run(run.study, other, run.out)
    message = str(info.value)
    assert f"holds results of {name} with another configuration ({field}:" in message
    assert message.count(" there vs ") <= 3 and "\n" not in message
    sibling = next(s for s in studies.STUDIES.values() if s.name != name)
    stored = json.loads((run.out / results.CONFIG_FILE).read_text())
    wanted = {**stored, "study": sibling.name}
    with pytest.raises(results.ConfigMismatchError, match=f"holds results of {name}, not {sibling.name}"):
        results.open_results(run.out, {k: v for k, v in wanted.items()
                                       if k not in results.PROVENANCE_KEYS})


@pytest.mark.parametrize("name", NAMES)
def test_summary_rows_and_figure(name, tiny, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tiny(name)
    rows = run.study.summarize(run.records)
    assert rows and all(isinstance(r, dict) and r for r in rows)
    json.dumps(rows)  # plain values: a table, a report, JSON
    figures = run.study.figure(run.records, title=name, path_stem=tmp_path / "fig")
    figures = figures if isinstance(figures, list) else [figures]
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.pdf").exists()
    for fig in figures:
        plt.close(fig)
    empty = run.study.figure([], title=name)  # no records: blank panels, no error
    for fig in empty if isinstance(empty, list) else [empty]:
        plt.close(fig)


#: the studies whose tiny presets the default suite runs as 2 processes x 2 devices (a training
#: grid with zone points, a Fort & Scherlis curvature study with Hutchinson probes and sparse
#: bases, Fig. 6's initialisations sharded over the devices); GZONE_SLICE_STUDIES=all runs every
#: study (about 4 minutes on 2 cores), or name them: GZONE_SLICE_STUDIES=icml/uso,fort/radius
SLICED = ("icml/curves", "fort/loss-radius", "icml/many-inits")


def _sliced_names() -> list[str]:
    chosen = os.environ.get("GZONE_SLICE_STUDIES", "")
    if chosen == "all":
        return NAMES
    return chosen.split(",") if chosen else list(SLICED)


def _measured(value) -> bool:
    """A float, or a list holding one (a spectrum): a measured value, not part of a record's key."""
    if isinstance(value, (list, tuple)):
        return any(_measured(v) for v in value)
    return isinstance(value, float)


def _split(record: dict) -> tuple[str, dict]:
    """(its other fields as a key, its measured fields)."""
    key = json.dumps({k: v for k, v in record.items() if not _measured(v)}, sort_keys=True)
    return key, {k: v for k, v in record.items() if _measured(v)}


def _grouped(records: list[dict]) -> dict[str, list[dict]]:
    """Records' measured fields grouped by their other fields."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        key, numbers = _split(r)
        groups.setdefault(key, []).append(numbers)
    return groups


def _distance(a: dict, b: dict) -> float:
    """The largest relative difference of two records' float fields (lists: their first entry)."""
    def first(v):
        return v[0] if isinstance(v, (list, tuple)) and v else v

    gaps = [abs(first(a[f]) - first(b[f])) / max(abs(first(a[f])), abs(first(b[f])), 1e-12)
            for f in a if isinstance(first(a.get(f)), float) and isinstance(first(b.get(f)), float)
            and math.isfinite(first(a[f])) and math.isfinite(first(b[f]))]
    return max(gaps, default=0.0)


def _pairs(want: list[dict], got: list[dict]) -> list[tuple[dict, dict]]:
    """Each wanted record with the nearest remaining one of ``got`` (:func:`_distance`)."""
    left, pairs = list(got), []
    for a in want:
        b = min(left, key=lambda r: _distance(a, r))
        left.remove(b)
        pairs.append((a, b))
    return pairs


@pytest.mark.slow
def test_every_study_split_over_two_processes_of_two_devices_gives_the_single_run(tiny, tmp_path):
    """Each process runs its slice of each study (``gzone reproduce --process-id I
    --num-processes 2``) on 2 forced host devices, nothing shared (two processes at once, and a
    killed one resuming: tests/test_engine.py): together they
    write exactly the records of the single-process tiny run — nothing lost or repeated — with
    the same values (1e-4), except the logged trajectories of training runs, where batches of
    another composition change float32 rounding that chaotic runs (α = 10) amplify: those must
    match in their keys and their first log's loss."""
    names = _sliced_names()
    devices = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = {**os.environ, "XLA_FLAGS": devices, "JAX_PLATFORMS": "cpu"}
    for i in range(2):  # one after the other: the second loads the first's compiled programs
        done = subprocess.run([sys.executable, "-m", "gzone", "reproduce", "--scale", "tiny",
                               "--out", str(tmp_path / "out"), "--only", ",".join(names),
                               "--no-progress", "--process-id", str(i), "--num-processes", "2"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in names:
        run = tiny(name)
        out = tmp_path / "out" / "runs" / run.out.relative_to(run.out.parents[2])
        assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("process")) \
            == ["process-0-of-2", "process-1-of-2"], name
        want, got = _grouped(run.records), _grouped(engine.load(out))
        assert {k: len(v) for k, v in want.items()} == {k: len(v) for k, v in got.items()}, \
            f"{name}: records lost or repeated"
        for key, rows in want.items():
            log = json.loads(key)["kind"] == "log"
            if log and json.loads(key).get("step") != 0:
                continue
            for a, b in _pairs(rows, got[key]):
                for f in (("loss",) if log else a):
                    want_f = np.asarray(a[f], float) if a.get(f) is not None else np.nan
                    got_f = np.asarray(b[f], float) if b.get(f) is not None else np.nan
                    np.testing.assert_allclose(got_f, want_f, rtol=1e-4, atol=1e-6,
                                               err_msg=f"{name} {key} {f}")
