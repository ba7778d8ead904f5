"""The contract every study of the registry keeps (one test set, parametrized over
:data:`gzone.studies.STUDIES`), on its ``tiny`` preset run once per suite (``tiny`` fixture):
the declaration, the records' schema, resume without recomputation, refusal of another
configuration and of another study, the summary rows, the figure."""

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
        "fort/stokes", "fort/hypersurface-training", "fort/init-selection", "fort/radius-drift"]
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
