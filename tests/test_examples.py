"""``gzone diagnose`` on an example model of ``examples/`` at tiny sizes: the command's records,
figure and table, its one-line errors, and a results folder of other options refused. (The linen
and nnx examples run in ``notebooks/06_your_model.ipynb``, which the suite executes.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gzone import command, data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fashion(data_dir):
    return data.load_dataset("fashion_mnist", "train", n=16, data_dir=data_dir)


def test_the_command_diagnoses_a_file_and_refuses_other_options(data_dir, tmp_path, capsys):
    out = tmp_path / "diag"
    argv = ["diagnose", "--model", f"{EXAMPLES / 'plain_function.py'}:model", "--dataset",
            "fashion_mnist", "--n-samples", "16", "--dim", "3", "--lanczos-iters", "4",
            "--probes", "2", "--alphas", "2", "--no-per-layer", "--data-dir", str(data_dir),
            "--out", str(out)]
    assert command.main(argv) == 0
    text = capsys.readouterr().out
    assert "Goldilocks zone" in text and "alpha probe" in text
    records = [json.loads(line) for line in (out / "diagnosis.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"projected", "model"} and len(records) == 8
    assert (out / "diagnosis.png").stat().st_size > 0 and (out / "diagnosis.txt").exists()
    assert command.main([*argv[:-4], "--dim", "2", *argv[-2:]]) == 2
    assert "holds a diagnosis with other options" in capsys.readouterr().err
    bad = [(["--model", "nowhere.py:model"], "no file"),
           (["--model", f"{EXAMPLES / 'plain_function.py'}:nothing"], "has no function"),
           (["--model", f"{EXAMPLES / 'plain_function.py'}:apply"], "required arguments params, x"),
           (["--temperatures", "a,b"], "comma-separated numbers")]
    for change, words in bad:
        args = list(argv[:-2]) + ["--out", str(tmp_path / "bad")]
        if change[0] in args:
            i = args.index(change[0])
            args[i + 1] = change[1]
        else:
            args += change
        assert command.main(args) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
