"""``gzone reproduce``: every selected study run (or resumed) at one scale, its claims evaluated,
one report (claims.jsonl, report.md, report.html) whose links resolve and which names every claim."""

import html.parser
import json
import os
import shutil
from pathlib import Path

import pytest

from gzone import command, engine, reproduce, studies
from gzone import report as report_module
from gzone.engine import claims

PAIR = "icml/alpha-sweep,fort/radius"


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.claims = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("#"):
                self.links.append(attrs[key])
        if tag == "tr" and attrs.get("class") == "claim":
            self.claims.append((attrs["data-study"], attrs["data-claim"]))


@pytest.fixture
def report(tiny, tmp_path):
    """A tiny reproduce of two studies whose runs the suite already made (``--runs``: reused,
    nothing recomputed)."""
    for name in PAIR.split(","):
        tiny(name)
    out = tmp_path / "report"
    found = reproduce.reproduce("tiny", out, only=PAIR, runs=os.environ["GZONE_RUNS"],
                                progress=False, echo=lambda line: None)
    return out, found


def test_the_report_links_existing_figures_and_names_every_claim(report):
    out, found = report
    lines = [json.loads(line) for line in (out / reproduce.CLAIMS_FILE).read_text().splitlines()]
    assert lines == json.loads(json.dumps(found)) and lines
    expected = [(s.name, c.id) for s in reproduce.select(PAIR) for c in s.claims]
    assert [(r["study"], r["claim"]) for r in lines] == expected
    for r in lines:
        assert {"study", "claim", "reference", "statement", "measured", "expected", "verdict",
                "scale", "dataset", "model", "paper"} <= set(r)
        assert r["verdict"] in claims.VERDICTS and r["scale"] == "tiny" and r["dataset"] != "-"
    page = _Links()
    page.feed((out / "report.html").read_text())
    assert page.links and all((out / link).is_file() for link in page.links), page.links
    assert {Path(p).parent.name for p in page.links} == {"icml", "fort"}
    assert page.claims == expected
    markdown = (out / "report.md").read_text()
    assert all(f"**{claim}**" in markdown for _, claim in expected)
    assert "fort/radius" in markdown and "Provenance" in markdown
    text = report_module.claims_table(found, width=40).splitlines()
    assert text[0].split()[:4] == ["study", "claim", "reference", "verdict"]
    assert len(text) == 1 + len(found) and all(len(line) < 200 for line in text)
    timing = json.loads((out / reproduce.TIMING_FILE).read_text())
    assert set(timing) == set(PAIR.split(","))


def test_selection_and_options_are_checked():
    assert [s.name for s in reproduce.select("'fort/*'")] == [n for n in studies.STUDIES
                                                              if n.startswith("fort/")]
    with pytest.raises(ValueError, match="matches no study"):
        reproduce.select("icml/nothing*")
    with pytest.raises(ValueError, match="scale must be one of"):
        reproduce.reproduce("huge", "x")
    assert command.main(["reproduce", "--scale", "tiny", "--out", "x", "--process-id", "0"]) == 2


def test_slices_then_one_process_write_the_report_without_recomputing(tmp_path, capsys):
    out = tmp_path / "r"
    for i in range(2):
        assert reproduce.reproduce("tiny", out, only="icml/gradient-cosines", process_index=i,
                                   process_count=2, progress=False) == []
        assert not (out / "report.html").exists()
    folder = studies.default_out("icml/gradient-cosines", "tiny", out / "runs")
    sliced = (folder / "process-0-of-2" / "results.jsonl").read_text()
    found = reproduce.reproduce("tiny", out, only="icml/gradient-cosines", progress=False)
    assert (out / "report.html").exists() and len(found) == len(studies.get("icml/gradient-cosines").claims)
    assert not (folder / "results.jsonl").exists() or not (folder / "results.jsonl").read_text()
    assert (folder / "process-0-of-2" / "results.jsonl").read_text() == sliced
    assert "its slice of 1 studies is done" in capsys.readouterr().out


def test_a_scale_also_runs_the_extra_presets_a_claim_needs():
    trainability = studies.get("icml/trainability")
    assert reproduce.jobs([trainability], "cpu") == [(trainability, "cpu"),
                                                     (trainability, "lenet5-cifar10-cpu")]
    assert reproduce.jobs([trainability], "tiny") == [(trainability, "tiny")]
    assert any("lenet5-cifar10-cpu" in c.scales for c in trainability.claims)
    import dataclasses
    with pytest.raises(ValueError, match="unknown presets"):
        dataclasses.replace(trainability, extra_presets={"cpu": ("nonesuch",)})


def test_notebook_helpers_state_and_check_the_claims(tiny):
    name = "icml/alpha-temperature"
    text = report_module.statements([name, "icml/alpha-sweep"])
    assert "icml/alpha-temperature  invariance (Eq. (5); Fig. 1 middle)" in text
    checked = report_module.check({name: tiny(name).records}, "tiny")
    assert checked.splitlines()[1].split()[:2] == [name, "invariance"]
    assert "reproduced" in checked


def test_a_failing_study_is_reported_and_the_others_still_run(tiny, tmp_path, monkeypatch, capsys):
    name = "icml/alpha-temperature"
    tiny(name)
    real = reproduce.run_study

    def flaky(study, *args, **kwargs):
        if study.name == "icml/alpha-sweep":
            raise ValueError("no data here")
        return real(study, *args, **kwargs)

    monkeypatch.setattr(reproduce, "run_study", flaky)
    argv = ["reproduce", "--scale", "tiny", "--out", str(tmp_path), "--only",
            f"icml/alpha-sweep,{name}", "--runs", os.environ["GZONE_RUNS"], "--no-progress"]
    assert command.main(argv) == 1
    assert "icml/alpha-sweep: ValueError: no data here" in capsys.readouterr().err + \
        (tmp_path / "report.md").read_text()
    assert [json.loads(line)["study"] for line in
            (tmp_path / reproduce.CLAIMS_FILE).read_text().splitlines()] == [name]


def test_a_rerun_of_a_subset_keeps_the_other_studies_of_the_report(tiny, tmp_path):
    """``--only`` updates a report in place: unselected studies already in it are read from their
    finished results, not dropped and not recomputed; an unfinished one is left out."""
    names = ["icml/alpha-temperature", "fort/stokes"]
    for name in names:
        tiny(name)
    runs = os.environ["GZONE_RUNS"]
    quiet = {"progress": False, "echo": lambda line: None, "runs": runs}
    first = reproduce.reproduce("tiny", tmp_path, only=",".join(names), **quiet)
    folder = studies.default_out(names[1], "tiny", Path(runs))
    before = (folder / "results.jsonl").stat().st_mtime_ns
    again = reproduce.reproduce("tiny", tmp_path, only=names[0], **quiet)
    assert [(r["study"], r["claim"]) for r in again] == [(r["study"], r["claim"]) for r in first]
    assert (folder / "results.jsonl").stat().st_mtime_ns == before
    assert "not selected by --only" in (tmp_path / "report.md").read_text()
    study = studies.get(names[1])
    config = engine.make_config(study, "tiny")
    assert engine.unfinished(study, config, folder) == 0
    assert engine.unfinished(study, config, tmp_path / "nowhere") is None
    # a study of the report whose results lost points: left out, not rerun
    copy = tmp_path / "copy"
    for name in names:
        shutil.copytree(studies.default_out(name, "tiny", Path(runs)),
                        studies.default_out(name, "tiny", copy))
    cut = studies.default_out(names[1], "tiny", copy) / "results.jsonl"
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:1]))
    assert engine.unfinished(study, config, cut.parent) > 0
    assert reproduce.read_study(study, "tiny", copy, data_dir=None)[1] is None
    assert len(reproduce.read_study(study, "tiny", Path(runs), data_dir=None)[1]) > 1
