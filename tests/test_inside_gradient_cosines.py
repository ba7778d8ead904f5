"""ICML Fig. 5 left (gzone.experiments.gradient_cosines): gradient cosines across balanced datasets."""

import pytest
from inside_cases import TINY, check_fields, runner, tiny_config

from gzone.experiments import inside


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner(tmp_path_factory)


def test_fig5_left_positive_cosine(run):
    _, _, records = run("fig5-left")
    check_fields("fig5-left", records)
    pairs = [r for r in records if r["kind"] == "pair"]
    assert len(pairs) == TINY["fig5-left"]["inits"]
    assert all(r["cosine"] > 0.1 for r in pairs)  # balanced digits vs Gaussian noise align


def test_fig5_left_skips_absent_optional_dataset(tmp_path):
    config = tiny_config("fig5-left", inits=1, datasets=("digits", "svhn", "gaussian"))
    records = inside.run_study(config, tmp_path / "out", data_dir=str(tmp_path / "no-data"))
    skipped = [r for r in records if r["kind"] == "skipped"]
    assert [r["dataset"] for r in skipped] == ["svhn"]
    assert {r["dataset_b"] for r in records if r["kind"] == "pair"} == {"gaussian"}


def test_missing_required_dataset_leaves_nothing_behind(tmp_path, monkeypatch):
    """Absent SVHN files, when SVHN is required, refuse the run before the directory exists."""
    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)
    out = tmp_path / "out"
    required = tiny_config("fig5-left", inits=1, datasets=("digits", "svhn", "gaussian"),
                           optional_datasets=())
    with pytest.raises(FileNotFoundError, match="svhn"):
        inside.run_study(required, out, data_dir=str(tmp_path / "no-data"))
    assert not out.exists()
    records = inside.run_study(tiny_config("fig5-left", inits=1), out)
    assert len([r for r in records if r["kind"] == "pair"]) == 1
