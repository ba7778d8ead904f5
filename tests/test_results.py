"""The results store (gzone.results): a config.json binds a directory only once records exist."""

import json

import pytest

from gzone import results


def _stored(out):
    stored = json.loads((out / results.CONFIG_FILE).read_text())
    return {k: v for k, v in stored.items() if k not in results.PROVENANCE_KEYS}


def test_config_without_records_is_replaced(tmp_path):
    """A refused or stopped run that left only config.json does not block the next config."""
    assert results.open_results(tmp_path, {"dim": 0}) == []
    assert results.open_results(tmp_path, {"dim": 10}) == []
    assert _stored(tmp_path) == {"dim": 10}
    (tmp_path / results.RESULTS_FILE).write_text("")  # an empty results file holds no records
    assert results.open_results(tmp_path, {"dim": 12}) == []
    assert _stored(tmp_path) == {"dim": 12}


def test_config_with_only_a_torn_or_rolled_back_write_is_replaced(tmp_path):
    results.open_results(tmp_path, {"dim": 1})
    (tmp_path / results.RESULTS_FILE).write_text('{"alpha": 1.0, "ter')  # torn first line
    assert results.open_results(tmp_path, {"dim": 2}) == []
    assert _stored(tmp_path) == {"dim": 2}
    (tmp_path / results.PENDING_FILE).write_text("0")  # an append that never completed
    (tmp_path / results.RESULTS_FILE).write_text('{"alpha": 1.0}\n')
    assert results.open_results(tmp_path, {"dim": 3}) == []
    assert _stored(tmp_path) == {"dim": 3}
    assert not (tmp_path / results.PENDING_FILE).exists()


def test_config_with_records_is_refused_naming_out_dir(tmp_path):
    results.open_results(tmp_path, {"dim": 10, "model": "mlp"})
    results.append_records(tmp_path, [{"alpha": 1.0}])
    with pytest.raises(results.ConfigMismatchError) as info:
        results.open_results(tmp_path, {"dim": 12, "model": "mlp"})
    message = str(info.value)
    assert "another configuration (dim: 10 there vs 12 now)" in message
    assert "use a different out_dir" in message and "--" not in message
    assert _stored(tmp_path) == {"dim": 10, "model": "mlp"}  # untouched
    assert results.open_results(tmp_path, {"dim": 10, "model": "mlp"})[0]["alpha"] == 1.0
