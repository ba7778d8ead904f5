"""The gzone command (gzone.command) and its option machinery (gzone.cli): options derived from
a study's config, the one value parser, whole error messages with fields spelled as given, the
float64 switch decided from the config, Ctrl-C, the documented scripts as shims, and every
example of every help text."""

import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gzone import cli, command, results, studies
from gzone.engine.config import ConfigError, field_types

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def gzone(*argv, cwd=ROOT, timeout=600, **kwargs):
    """``python -m gzone ARGV`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "gzone", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False, **kwargs)


# ----------------------------------------------------------------------------- value parser

# (text, value) examples per field type; every type a config uses must be listed here.
EXAMPLES = {
    int: [("3", 3), ("-2", -2)],
    float: [("1e-2", 0.01), ("3", 3.0)],
    str: [("digits:test", "digits:test")],
    bool: [("true", True), ("no", False), ("1", True), ("OFF", False)],
    tuple[int, ...]: [("300,100", (300, 100)), ("7", (7,)), (" 2, 5 ", (2, 5)), ("", ())],
    tuple[str, ...]: [("digits,gaussian", ("digits", "gaussian")), ("svhn", ("svhn",))],
    tuple[float, ...]: [("0.5, 0.9,0.99", (0.5, 0.9, 0.99))],
    int | None: [("none", None), ("None", None), ("12", 12)],
    float | None: [("none", None), ("2.5", 2.5)],
    tuple[float, ...] | None: [("none", None), ("1,2", (1.0, 2.0))],
}


def test_every_field_type_used_by_a_study_is_parsed():
    used = {tp for s in studies.STUDIES.values() for tp in field_types(s.config).values()}
    assert used <= set(EXAMPLES), f"add examples for {used - set(EXAMPLES)}"
    for tp, cases in EXAMPLES.items():
        for text, value in cases:
            got = cli.parse_value(text, tp)
            assert got == value and type(got) is type(value), (tp, text)


@pytest.mark.parametrize("text,tp,message", [
    ("x", int, "expected an integer, got 'x'"),
    ("1.5", int, "expected an integer, got '1.5'"),
    ("fast", float, "expected a number, got 'fast'"),
    ("maybe", bool, "expected true or false, got 'maybe'"),
    ("1,a", tuple[int, ...], "expected comma-separated ints, got '1,a'"),
    ("32,,16", tuple[int, ...], "expected comma-separated ints, got '32,,16' (an empty element)"),
    ("2,5,", tuple[int, ...], "expected comma-separated ints, got '2,5,' (an empty element)"),
    ("nil", int | None, "expected an integer or none, got 'nil'"),
    ("none", int, "expected an integer, got 'none'"),  # None only where the field allows it
    ("1,x", tuple[float, ...] | None, "expected comma-separated floats or none, got '1,x'"),
])
def test_bad_values_are_one_line_value_errors(text, tp, message):
    with pytest.raises(ValueError) as info:
        cli.parse_value(text, tp)
    assert str(info.value) == message


@pytest.mark.parametrize("tp", [dict, list[int], tuple[int, int], int | str, tuple[bool, ...]])
def test_unsupported_field_types_are_refused(tp):
    with pytest.raises(TypeError, match="unsupported config field type"):
        cli.parse_value("1", tp)


# ----------------------------------------------------------------------------- options of a config


@dataclasses.dataclass(frozen=True)
class Toy:
    count: int = dataclasses.field(default=3, metadata={"help": "how many"})
    scale: float | None = dataclasses.field(default=None, metadata={"help": "how much"})
    flag: bool = dataclasses.field(default=False, metadata={"help": "a switch"})
    on: bool = dataclasses.field(default=True, metadata={"help": "switch 100%"})
    widths: tuple[int, ...] = dataclasses.field(default=(4, 2), metadata={"help": "widths"})
    kind: str = dataclasses.field(default="a", metadata={"help": "which", "choices": ("a", "b")})
    names: tuple[str, ...] = dataclasses.field(default=("a",), metadata={
        "help": "several", "choices": ("a", "b")})


def toy_parser(**kwargs):
    parser = cli.OneLineParser()
    cli.add_config_options(parser, Toy, **kwargs)
    return parser


def parse_toy(*argv):
    return cli.config_overrides(toy_parser().parse_args(list(argv)), Toy)


def test_options_not_given_leave_the_defaults_and_given_ones_are_typed():
    assert parse_toy() == ({}, {})
    values, spellings = parse_toy("--count", "5", "--scale", "none", "--widths", "8,4,2",
                                  "--flag", "--no-on", "--names", "a,b")
    assert values == {"count": 5, "scale": None, "widths": (8, 4, 2), "flag": True, "on": False,
                      "names": ("a", "b")}
    assert spellings == {"count": "--count", "scale": "--scale", "widths": "--widths",
                         "flag": "--flag", "on": "--no-on", "names": "--names"}


def test_set_assignments_use_the_same_value_parser():
    values, spellings = parse_toy("--set", "count=7", "--set", "scale=none", "--set", "flag=yes")
    assert values == {"count": 7, "scale": None, "flag": True}
    assert spellings == {"count": "count", "scale": "scale", "flag": "flag"}


@pytest.mark.parametrize("argv,message", [
    (["--set", "nope=1"], "argument --set: unknown field 'nope' in 'nope=1'; fields: count, "),
    (["--set", "count"], "argument --set: expected FIELD=VALUE, got 'count'"),
    (["--set", "count=x"], "argument --set: 'count=x': expected an integer, got 'x'"),
    (["--count", "x"], "argument --count: expected an integer, got 'x'"),
    (["--widths", "32,,16"], "argument --widths: expected comma-separated ints, got '32,,16'"),
    (["--nope", "1"], "unrecognized arguments: --nope 1"),
    (["--cou", "1"], "unrecognized arguments: --cou 1"),  # no abbreviations of derived options
    (["--count", "1", "--count", "2"], "count given twice (--count and --count)"),
    (["--flag", "--no-flag"], "flag given twice (--flag and --no-flag)"),
])
def test_argument_errors_are_one_line_usage_errors(argv, message):
    with pytest.raises(cli.UsageError) as info:
        toy_parser().parse_args(argv)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_field_given_as_option_and_by_set_is_refused():
    with pytest.raises(cli.UsageError, match=r"count given twice \(--count and --set count=...\)"):
        parse_toy("--count", "1", "--set", "count=2")


def test_help_lines_carry_help_choices_type_and_the_presets_default():
    assert cli.option_help(Toy, "count", 3) == "how many (int, default: 3)"
    assert cli.option_help(Toy, "scale", None) == "how much (float or none, default: none)"
    assert cli.option_help(Toy, "flag", False) == "a switch (default: off)"
    assert cli.option_help(Toy, "kind", "a") == "which; one of a, b (default: a)"
    assert cli.option_help(Toy, "names", ("a",)) == "several; each one of a, b (comma-separated strs, default: a)"
    text = " ".join(toy_parser(defaults={"count": 8}).format_help().split())
    assert "switch 100%" in text and "how many (int, default: 8)" in text
    assert "--flag, --no-flag" in text


@pytest.mark.parametrize("name", list(studies.STUDIES))
def test_every_option_of_a_study_has_a_real_help_line(name):
    study = studies.get(name)
    parser = command.run_parser(study, "tiny")
    options = parser._option_string_actions
    for field in field_types(study.config):
        action = options[cli.option_name(field)]
        assert action.dest == field and not action.help.startswith("config field"), field
        assert len(action.help) > 15, field
    for option in ("--preset", "--set", "--out", "--data-dir", "--no-progress", "--no-plot",
                   "--show", "--dry-run", "--num-processes", "--process-id"):
        assert options[option].help, option
    assert options["--preset"].choices == list(study.presets)


def test_option_values_reach_the_config():
    study = studies.get("icml/dim-sweep")
    args, config = command.build(study, ["--preset", "tiny", "--dims", "2,4", "--no-full-space",
                                         "--set", "seeds=1"], spellings := {})
    assert (config.dims, config.full_space, config.seeds) == ((2, 4), False, 1)
    assert config.n_samples == study.presets["tiny"]["n_samples"]  # the preset's value kept
    assert spellings == {"dims": "--dims", "full_space": "--no-full-space", "seeds": "seeds"}
    _, config = command.build(studies.get("icml/pre-collapse"),
                              ["--preset", "tiny", "--eig-alphas", "1,2", "--set", "alpha_max=none"], {})
    assert (config.eig_alphas, config.alpha_max, config.num_points) == ((1.0, 2.0), None, 61)
    _, config = command.build(studies.get("icml/gradient-prior"), ["--n-samples", "none"], {})
    assert config.n_samples is None


# ----------------------------------------------------------------------------- errors


def test_error_text_keeps_the_whole_message_and_spells_fields_as_given():
    error = ConfigError("alpha_min", "{name} exceeds {other}; swap them", other="alpha_max")
    assert cli.error_text(error) == "error: --alpha-min exceeds --alpha-max; swap them"
    assert cli.error_text(error, {"alpha_max": "alpha_max"}) == (
        "error: --alpha-min exceeds alpha_max; swap them")  # as typed after --set
    assert cli.error_text(FileNotFoundError("no svhn files\n  looked in: here")) == (
        "error: no svhn files\n  looked in: here")  # the hints on later lines kept
    assert cli.error_text(ValueError("")) == "error: ValueError"


def test_a_refusal_names_the_study_the_differing_fields_and_out(tmp_path):
    results.open_results(tmp_path, {"study": "icml/x", "dim": 10, "a": 1, "b": 2, "c": 3, "d": 4})
    results.append_records(tmp_path, [{"alpha": 1.0}])
    with pytest.raises(results.ConfigMismatchError) as info:
        results.open_results(tmp_path, {"study": "icml/x", "dim": 12, "a": 2, "b": 3, "c": 4, "d": 5})
    line = cli.error_text(info.value)
    assert line.startswith(f"error: {tmp_path} holds results of icml/x with another configuration "
                           "(a: 1 there vs 2 now; b: 2 there vs 3 now; c: 3 there vs 4 now; and 2 more)")
    assert "use a different --out" in line and "\n" not in line
    with pytest.raises(results.ConfigMismatchError, match="holds results of icml/x, not icml/y"):
        results.open_results(tmp_path, {"study": "icml/y", "dim": 10})


@pytest.mark.parametrize("argv,message", [
    (["run", "icml/alpha-sweep", "--dim", "0"], "error: --dim must be at least 1, got 0"),
    (["run", "icml/alpha-sweep", "--dataset", "imagenet"], "error: unknown dataset 'imagenet'; choose --dataset"),
    (["run", "icml/alpha-sweep", "--set", "nope=1"], "error: argument --set: unknown field 'nope'"),
    (["run", "icml/dim-sweep", "--dims", "2,x"], "error: argument --dims: expected comma-separated ints"),
    (["run", "icml/alpha-sweep", "--widths", "32,,16"], "error: argument --widths: expected comma-separated ints, got '32,,16' (an empty element)"),
    (["run", "icml/alpha-sweep", "--full-space", "--no-full-space"], "error: full_space given twice"),
    (["run", "icml/fig7"], "error: unknown study 'icml/fig7'; `gzone list` shows them"),
    (["run"], "error: name a study: gzone run NAME"),
    (["frobnicate"], "error: unknown command 'frobnicate'"),
    (["run", "icml/gamma-entropy", "--dim", "3"], "error: unrecognized arguments: --dim 3 (not an option of icml/gamma-entropy"),
    (["run", "icml/alpha-sweep", "--preset", "nope"], "error: icml/alpha-sweep has no preset 'nope'"),
    (["run", "icml/alpha-sweep", "--process-id", "1"], "error: --process-id and --num-processes go together"),
    (["run", "icml/alpha-sweep", "--process-id", "2", "--num-processes", "2"], "error: --process-id must lie in 0..1"),
    (["run", "icml/alpha-sweep", "--dim", "999999999"], "error: subspace dimension --dim=999999999 exceeds"),
    (["run", "icml/alpha-sweep", "--model", "lenet5"], "error: LeNet5 needs images of at least 16x16"),
])
def test_bad_commands_are_refused_and_leave_nothing(argv, message, capsys, tmp_path):
    assert command.main([*argv, "--out", str(tmp_path / "out"), "--no-plot", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert not (tmp_path / "out").exists()


def test_missing_data_keeps_the_whole_message(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("GZONE_DATA_DIR", raising=False)
    argv = ["run", "icml/alpha-sweep", "--preset", "paper", "--data-dir", str(tmp_path / "none"),
            "--out", str(tmp_path / "out")]
    assert command.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fashion_mnist (train split) not found. Looked in:")
    assert "To get the data" in err and err.count("\n") > 2  # the places and the ways, kept
    assert not (tmp_path / "out").exists()


def test_ctrl_c_ends_with_one_line_saying_the_same_command_resumes(tmp_path):
    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe: a full pipe would block the run
        proc = subprocess.Popen(
            [sys.executable, "-m", "gzone", "run", "icml/alpha-sweep", "--preset", "tiny",
             "--num-points", "60", "--out", str(out), "--no-plot"], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=stderr,
            # a suite started in the background inherits SIGINT ignored, and a Python started
            # so never raises KeyboardInterrupt: restore it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300  # interrupted in the loop over points, after the first one
        while not (out / results.RESULTS_FILE).exists() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    assert proc.returncode == 130
    err = log.read_text()
    lines = [line for line in err.splitlines() if line.startswith(("interrupted", "Traceback"))]
    assert lines == [f"interrupted: rerun the same command to resume (every finished point is kept "
                     f"in {out})"]


# ----------------------------------------------------------------------------- float64, figures


def test_float64_is_switched_on_by_the_config_before_any_array(tmp_path):
    out = tmp_path / "f64"
    argv = ["run", "icml/gamma-entropy", "--preset", "tiny", "--dtype", "float64", "--no-plot",
            "--no-progress", "--out", str(out)]
    code = f"""
import json, sys
import jax, gzone
calls, real = [], gzone.enable_float64
def spy():
    calls.append(len(jax.live_arrays()))
    real()
gzone.enable_float64 = spy
from gzone import command
status = command.main({argv!r})
print(json.dumps({{"status": status, "calls": calls, "x64": jax.config.jax_enable_x64}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"status": 0, "calls": [0], "x64": True}
    assert json.loads((out / results.CONFIG_FILE).read_text())["dtype"] == "float64"


def test_list_show_and_plot_and_the_agg_backend(tiny, tmp_path, capsys, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    assert command.main(["list"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in studies.STUDIES) and len(text.splitlines()) == len(studies.STUDIES) + 1
    run = tiny("icml/gamma-entropy")
    assert command.main(["show", "icml/gamma-entropy", "--out", str(run.out)]) == 0
    assert "spearman_median" in capsys.readouterr().out
    out = tmp_path / "copy"
    import shutil

    shutil.copytree(run.out, out)
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    assert command.main(["plot", "icml/gamma-entropy", "--out", str(out)]) == 0
    assert matplotlib.get_backend().lower() == "agg" and shown == []
    assert (out / "gamma-entropy.png").stat().st_size > 0
    assert "figure: " in capsys.readouterr().out
    assert command.main(["plot", "icml/gamma-entropy", "--out", str(out), "--show"]) == 0
    assert shown == [1] and not plt.get_fignums()
    assert command.main(["show", "icml/uso", "--out", str(out)]) == 2
    assert "holds results of icml/gamma-entropy, not icml/uso" in capsys.readouterr().err
    assert command.main(["plot", "icml/uso", "--out", str(tmp_path / "none")]) == 2
    assert "no records of icml/uso" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shims and examples


@pytest.mark.parametrize("argv,name", [
    (["--alpha-grid"], "icml/alpha-sweep"), (["--dim-grid"], "icml/dim-sweep"),
    (["--mode", "temperature-grid"], "icml/temperature-sweep"), ([], "icml/alpha-sweep"),
])
def test_curvature_sweep_shim_maps_its_modes(argv, name, monkeypatch):
    calls = []
    monkeypatch.setattr(command, "main", lambda a: calls.append(a) or 0)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import curvature_sweep
    finally:
        sys.path.pop(0)
    assert command.shim([*argv, "--preset", "tiny"], {**curvature_sweep.SWEEPS, **{
        f"--mode {k[2:]}": v for k, v in curvature_sweep.SWEEPS.items()}},
        default="icml/alpha-sweep", option="--mode") == 0
    assert calls == [["run", name, "--preset", "tiny"]]


def test_shims_refuse_an_unknown_study_and_plot_only_plots(capsys, monkeypatch):
    selectors = {"--study fig3": "icml/gterm-prediction"}
    assert command.shim(["--study", "fig7"], selectors) == 2
    assert capsys.readouterr().err.startswith("error: unknown value 'fig7' of --study; choose one of fig3")
    calls = []
    monkeypatch.setattr(command, "main", lambda a: calls.append(a) or 0)
    command.shim(["--study", "fig3", "--out", "x", "--plot-only", "--no-progress"], selectors)
    assert calls == [["plot", "icml/gterm-prediction", "--out", "x"]]


def _examples():
    """(source, command) of every example in every help text: the gzone help, each study's
    docstring, each script's docstring."""
    examples = command.help_text().split("Examples:")[1]
    found = [("gzone --help", line.strip()) for line in examples.splitlines()
             if line.strip().startswith("gzone ")]
    for study in studies.STUDIES.values():
        found += [(study.name, line.strip()) for line in study.doc.splitlines()
                  if line.strip().startswith("gzone run ")]
    for script in SCRIPTS:
        doc = script.read_text().split('"""')[1]
        found += [(script.name, line.strip().split("  #")[0].strip()) for line in doc.splitlines()
                  if line.strip().startswith("python scripts/")]
    return found


def test_every_study_and_script_documents_examples():
    sources = {source for source, _ in _examples()}
    assert set(studies.STUDIES) <= sources and {s.name for s in SCRIPTS} <= sources


@pytest.mark.parametrize("source,example", _examples())
def test_every_help_example_runs(source, example, data_dir, tiny, monkeypatch, capsys):
    """Each example is accepted as written and its data is there (``--dry-run``: validated and
    prepared, nothing computed; show/plot against the study's finished tiny run)."""
    import runpy

    monkeypatch.setenv("GZONE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(ROOT)
    words = example.split()
    if words[0] == "gzone" and words[1] in ("show", "plot"):
        out = tiny(words[2]).out
        argv = [*words[1:words.index("--out") + 1], str(out)]
        if words[1] == "plot":
            pytest.skip("draws into the shared tiny run: the plot command is tested above")
        assert command.main(argv) == 0, capsys.readouterr().err
        return
    argv = [*words[1:], "--dry-run"] if words[0] == "gzone" else [*words[2:], "--dry-run"]
    if "--plot-only" in argv:
        pytest.skip("plots the records of a finished run: tested with the shims")
    if words[0] == "gzone":
        status = command.main(argv)
    else:
        monkeypatch.setattr(sys, "argv", [words[1], *argv])
        with pytest.raises(SystemExit) as info:
            runpy.run_path(str(ROOT / words[1]), run_name="__main__")
        status = info.value.code
    assert status == 0, (source, example, capsys.readouterr().err[-1500:])


def test_the_readme_figure_table_is_the_registry():
    """Every study has its row in the README's table, with its command."""
    readme = (ROOT / "README.md").read_text()
    for study in studies.STUDIES.values():
        assert re.search(rf"\|[^|\n]*\|\s*`gzone run {re.escape(study.name)}`", readme), study.name
    named = set(re.findall(r"gzone (?:run|show|plot) ([a-z]+/[a-z-]+)", readme))
    assert named <= set(studies.STUDIES), named - set(studies.STUDIES)
