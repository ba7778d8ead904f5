"""gzone.cli: options derived from the config dataclasses, the one value parser, the one error
line, the float64 switch decided from the config, and the two scripts built on it."""

import argparse
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from gzone import cli, results
from gzone.experiments import base, inside, zone

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import curvature_sweep  # noqa: E402
import inside_zone  # noqa: E402

CONFIGS = {"zone": zone.ZoneConfig, **{name: entry.config for name, entry in inside.STUDIES.items()}}


def parser_of(name):
    """The parser a script builds for config ``name`` (``zone`` or a study)."""
    return curvature_sweep.build_parser() if name == "zone" else inside_zone.build_parser(name)


# ----------------------------------------------------------------------------- value parser

# (text, value) examples per field type; every type a config uses must be listed here.
EXAMPLES = {
    int: [("3", 3), ("-2", -2)],
    float: [("1e-2", 0.01), ("3", 3.0)],
    str: [("digits:test", "digits:test")],
    bool: [("true", True), ("no", False), ("1", True), ("OFF", False)],
    tuple[int, ...]: [("300,100", (300, 100)), ("7", (7,)), (" 2, 5 ,", (2, 5)), ("", ())],
    tuple[str, ...]: [("digits,gaussian", ("digits", "gaussian")), ("svhn", ("svhn",))],
    tuple[float, ...]: [("0.5, 0.9,0.99", (0.5, 0.9, 0.99))],
    int | None: [("none", None), ("None", None), ("12", 12)],
    float | None: [("none", None), ("2.5", 2.5)],
    tuple[float, ...] | None: [("none", None), ("1,2", (1.0, 2.0))],
}


def test_every_field_type_used_by_a_config_is_parsed():
    used = {tp for cls in CONFIGS.values() for tp in cli.field_types(cls).values()}
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


def test_describe_type():
    assert cli.describe_type(int) == "int"
    assert cli.describe_type(tuple[int, ...]) == "comma-separated ints"
    assert cli.describe_type(tuple[float, ...] | None) == "comma-separated floats or none"
    assert cli.describe_type(int | None) == "int or none"


# ----------------------------------------------------------------------------- options of a config


@dataclasses.dataclass(frozen=True)
class Toy:
    count: int = dataclasses.field(default=3, metadata={"help": "how many"})
    scale: float | None = None
    flag: bool = False
    on: bool = dataclasses.field(default=True, metadata={"help": "switch 100%"})
    widths: tuple[int, ...] = (4, 2)
    kind: str = dataclasses.field(default="a", metadata={"help": "which", "choices": ("a", "b")})
    names: tuple[str, ...] = dataclasses.field(default=("a",), metadata={
        "help": "several", "choices": ("a", "b")})
    chunk_size: int | None = None  # no help here: ModelDataConfig documents it


def toy_parser(**kwargs):
    parser = cli.OneLineParser()
    cli.add_config_options(parser, Toy, **kwargs)
    return parser


def parse_toy(*argv):
    args = toy_parser().parse_args(list(argv))
    return cli.config_overrides(args, Toy)


def test_options_not_given_are_none_and_leave_the_defaults():
    args = toy_parser().parse_args([])
    assert all(getattr(args, f.name) is None for f in dataclasses.fields(Toy))
    assert parse_toy() == ({}, {})


def test_typed_options_tuples_none_and_bool_flags():
    values, spellings = parse_toy("--count", "5", "--scale", "none", "--widths", "8,4,2",
                                  "--flag", "--no-on", "--names", "a,b", "--chunk-size", "16")
    assert values == {"count": 5, "scale": None, "widths": (8, 4, 2), "flag": True, "on": False,
                      "names": ("a", "b"), "chunk_size": 16}
    assert spellings == {name: cli.option_name(name) for name in values}
    assert parse_toy("--scale", "0.5")[0] == {"scale": 0.5}
    assert parse_toy("--no-flag")[0] == {"flag": False}


def test_set_assignments_use_the_same_value_parser():
    values, spellings = parse_toy("--set", "count=7", "--set", "chunk-size=none", "--set",
                                  "flag=yes", "--set", "widths=3")
    assert values == {"count": 7, "chunk_size": None, "flag": True, "widths": (3,)}
    assert spellings == {"count": "count", "chunk_size": "chunk-size", "flag": "flag",
                         "widths": "widths"}


@pytest.mark.parametrize("argv,message", [
    (["--set", "nope=1"], "argument --set: unknown field 'nope' in 'nope=1'; fields: count, "),
    (["--set", "count"], "argument --set: expected FIELD=VALUE, got 'count'"),
    (["--set", "count=x"], "argument --set: 'count=x': expected an integer, got 'x'"),
    (["--count", "x"], "argument --count: expected an integer, got 'x'"),
    (["--flag=1"], "argument --flag/--no-flag: ignored explicit argument '1'"),
    (["--nope", "1"], "unrecognized arguments: --nope 1"),
    (["--cou", "1"], "unrecognized arguments: --cou 1"),  # no abbreviations of derived options
])
def test_argument_errors_are_one_line_usage_errors(argv, message):
    with pytest.raises(cli.UsageError) as info:
        toy_parser().parse_args(argv)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert isinstance(info.value, cli.ERRORS)


def test_a_field_given_twice_is_refused():
    with pytest.raises(cli.UsageError, match=r"count given twice \(--count and --set count=...\)"):
        parse_toy("--count", "1", "--set", "count=2")


def test_unrecognized_hint():
    parser = cli.OneLineParser(unrecognized_hint="see --help")
    with pytest.raises(cli.UsageError, match=r"^unrecognized arguments: --x \(see --help\)$"):
        parser.parse_args(["--x"])


def test_help_text_from_metadata_choices_type_and_default():
    assert cli.field_help(Toy, "count") == "how many (int, default: 3)"
    assert cli.field_help(Toy, "count", 9) == "how many (int, default: 9)"
    assert cli.field_help(Toy, "scale") == "config field scale (float or none, default: none)"
    assert cli.field_help(Toy, "flag") == "config field flag (default: off)"
    assert cli.field_help(Toy, "kind") == "which; one of a, b (default: a)"
    assert cli.field_help(Toy, "names") == "several; each one of a, b (comma-separated strs, default: a)"
    assert cli.field_help(Toy, "widths").endswith("(comma-separated ints, default: 4,2)")
    # a field without help takes that of ModelDataConfig's same-named field
    assert cli.field_help(Toy, "chunk_size").startswith("samples per jit-compiled chunk")
    text = toy_parser(defaults={"count": 8}).format_help()  # '%' escaped for argparse
    assert "switch 100%" in text and "how many (int, default: 8)" in " ".join(text.split())


def test_help_is_inherited_by_redeclared_fields_and_shared_with_zone():
    widths = cli.field_metadata(inside.STUDIES["fig5-left"].config, "widths")
    assert widths["help"] == base.ModelDataConfig.__dataclass_fields__["widths"].metadata["help"]
    assert "lenet5" in cli.field_help(zone.ZoneConfig, "model")  # models.MODEL_NAMES
    assert "float64" in cli.field_help(zone.ZoneConfig, "dtype")  # gzone.DTYPES
    assert "sparse" in cli.field_help(zone.ZoneConfig, "basis")  # subspace.BASIS_KINDS
    assert "dim-grid" in cli.field_help(zone.ZoneConfig, "mode")  # zone.MODES
    assert "authors-early" in cli.field_help(inside.STUDIES["fig3"].config, "init")


def test_shorthand_flags_store_the_field_value():
    parser = cli.OneLineParser()
    cli.add_config_options(parser, zone.ZoneConfig, shorthands={"mode": zone.MODES})
    for mode in zone.MODES:
        assert parser.parse_args([f"--{mode}"]).mode == mode
    assert parser.parse_args(["--mode", "dim-grid"]).mode == "dim-grid"
    with pytest.raises(cli.UsageError, match="not allowed with"):
        parser.parse_args(["--alpha-grid", "--mode", "dim-grid"])


# ----------------------------------------------------------------------------- the scripts' parsers


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_field_has_its_option(name):
    parser = parser_of(name)
    options = parser._option_string_actions
    for field in dataclasses.fields(CONFIGS[name]):
        option = cli.option_name(field.name)
        assert option in options and options[option].dest == field.name, option
    for option in ("--preset", "--set", "--out", "--data-dir", "--no-progress", "--no-plot", "--show"):
        assert option in options
    presets = zone.PRESETS if name == "zone" else inside.STUDIES[name].presets
    assert options["--preset"].choices == list(presets)


def test_zone_parser_has_a_flag_per_mode_and_inside_one_per_study():
    options = curvature_sweep.build_parser()._option_string_actions
    for mode in zone.MODES:
        assert options[f"--{mode}"].const == mode and options[f"--{mode}"].dest == "mode"
    help_text = " ".join(inside_zone.build_parser().format_help().split())
    for name, entry in inside.STUDIES.items():
        assert name in help_text and ", ".join(entry.presets) in help_text


def test_option_values_reach_the_config():
    args, config, spellings = curvature_sweep.configure(
        ["--preset", "tiny", "--dim-grid", "--dims", "2,4", "--no-full-space", "--set", "seeds=1"])
    assert (config.mode, config.dims, config.full_space, config.seeds) == ("dim-grid", (2, 4), False, 1)
    assert config.n_samples == zone.PRESETS["tiny"]["n_samples"]  # preset value kept
    assert spellings == {"mode": "--mode", "dims": "--dims", "full_space": "--full-space",
                         "seeds": "seeds"}
    args, config, _ = inside_zone.configure(
        ["--study", "fig10", "--preset", "tiny", "--eig-alphas", "1,2", "--set", "alpha_max=none"])
    assert (config.eig_alphas, config.alpha_max, config.num_points) == ((1.0, 2.0), None, 61)
    # an explicit none is given (it would override a preset's value), unlike an absent option
    _, config, spellings = curvature_sweep.configure(["--temperature-min", "none", "--chunk-size", "4"])
    assert config.temperature_min is None and config.chunk_size == 4
    assert spellings == {"temperature_min": "--temperature-min", "chunk_size": "--chunk-size"}
    _, config, spellings = inside_zone.configure(["--study", "fig5-right", "--n-samples", "none"])
    assert config.n_samples is None and spellings == {"n_samples": "--n-samples"}


# ----------------------------------------------------------------------------- error line


def test_error_line_spells_parameters_as_flags():
    error = base.ConfigError("alpha_min", "{name} exceeds {other}; swap them", other="alpha_max")
    assert cli.error_line(error) == "error: --alpha-min exceeds --alpha-max; swap them"
    assert cli.error_line(error, {"alpha_max": "alpha_max"}) == (
        "error: --alpha-min exceeds alpha_max; swap them")  # as typed after --set
    assert cli.error_line(ValueError("first\nsecond")) == "error: first"
    assert cli.error_line(ValueError("")) == "error: ValueError"
    assert cli.error_line(FileNotFoundError("no svhn files")) == "error: no svhn files"


def test_config_mismatch_names_out_dir_as_the_out_flag(tmp_path):
    results.open_results(tmp_path, {"dim": 10})
    results.append_records(tmp_path, [{"alpha": 1.0}])
    with pytest.raises(results.ConfigMismatchError) as info:
        results.open_results(tmp_path, {"dim": 12})
    assert "use a different out_dir" in str(info.value)
    line = cli.error_line(info.value)
    assert "(dim: 10 there vs 12 now); use a different --out or remove" in line
    assert "out_dir" not in line and "\n" not in line


def test_report_prints_one_line_and_returns_2(capsys):
    assert cli.report(base.ConfigError("dim", "{name} must be at least 1, got 0")) == 2
    assert capsys.readouterr().err == "error: --dim must be at least 1, got 0\n"


@pytest.mark.parametrize("main,argv,message", [
    (curvature_sweep.main, ["--dim", "0"], "error: --dim must be at least 1, got 0"),
    (curvature_sweep.main, ["--dataset", "imagenet"], "error: unknown dataset 'imagenet'; choose --dataset"),
    (curvature_sweep.main, ["--set", "nope=1"], "error: argument --set: unknown field 'nope'"),
    (curvature_sweep.main, ["--dims", "2,x"], "error: argument --dims: expected comma-separated ints"),
    (inside_zone.main, ["--study", "nope"], "error: unknown study 'nope' for --study; choose one of fig3"),
    (inside_zone.main, ["--study", "fig3", "--set", "nope=1"], "error: argument --set: unknown field 'nope'"),
    (inside_zone.main, ["--study", "fig3", "--dataset", "imagenet"], "error: unknown dataset 'imagenet'; choose --dataset"),
    (inside_zone.main, ["--study", "fig4-right", "--dim", "3"],
     "error: unrecognized arguments: --dim 3 (not an option of --study fig4-right"),
    (inside_zone.main, [], "error: the following arguments are required: --study"),
])
def test_scripts_refuse_bad_input_in_one_line(main, argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-plot", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- float64 and backend


def _python(code):
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_float64_is_switched_on_by_the_config_before_any_array(tmp_path):
    """The script run as a program: x64 on, switched before any JAX array existed."""
    out = tmp_path / "f64"
    argv = ["--study", "fig4-right", "--preset", "tiny", "--dtype", "float64", "--no-plot",
            "--no-progress", "--out", str(out)]
    code = f"""
import json, runpy, sys
import jax, gzone
calls, real = [], gzone.enable_float64
def spy():
    calls.append(len(jax.live_arrays()))
    real()
gzone.enable_float64 = spy
sys.argv = ["inside_zone.py", *{argv!r}]
try:
    runpy.run_path("scripts/inside_zone.py", run_name="__main__")
    status = 0
except SystemExit as exit:
    status = exit.code
print(json.dumps({{"status": status, "calls": calls, "x64": jax.config.jax_enable_x64}}))
"""
    assert _python(code) == {"status": 0, "calls": [0], "x64": True}
    assert json.loads((out / results.CONFIG_FILE).read_text())["dtype"] == "float64"


def test_float64_decided_from_the_config_not_from_argv():
    """No run, no preset: 64-bit stays off unless the built config asks for float64, however it
    was given (--dtype, --set dtype=...)."""
    code = """
import json, sys
sys.path.insert(0, "scripts")
import jax, curvature_sweep, inside_zone
seen = []
for configure, argv in [
        (inside_zone.configure, ["--study", "fig4-right"]),
        (curvature_sweep.configure, ["--alpha-grid", "--dtype", "float32"]),
        (inside_zone.configure, ["--study", "fig3", "--set", "dtype=float32"]),
        (curvature_sweep.configure, ["--set", "dtype=float64"])]:
    configure(argv)
    seen.append(jax.config.jax_enable_x64)
print(json.dumps(seen))
"""
    assert _python(code) == [False, False, False, True]
    code = """
import json, sys
sys.path.insert(0, "scripts")
import jax, inside_zone
_, config, _ = inside_zone.configure(["--study", "fig10", "--dtype", "float64"])
print(json.dumps([config.dtype, jax.config.jax_enable_x64]))
"""
    assert _python(code) == ["float64", True]


def test_apply_dtype_reads_only_the_config(monkeypatch):
    calls = []
    monkeypatch.setattr("gzone.enable_float64", lambda: calls.append(1))
    assert not cli.apply_dtype(zone.ZoneConfig())
    assert cli.apply_dtype(zone.ZoneConfig(dtype="float64")) and calls == [1]


def test_backend_is_agg_unless_show(tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    argv = ["--study", "fig4-right", "--preset", "tiny", "--no-progress", "--out", str(tmp_path)]
    assert inside_zone.main(argv) == 0
    assert matplotlib.get_backend().lower() == "agg" and shown == []
    assert (tmp_path / "fig4-right.png").stat().st_size > 0
    assert inside_zone.main([*argv, "--show"]) == 0  # resumes: nothing recomputed
    assert shown == [1]
    assert not plt.get_fignums()


def test_help_of_both_scripts(capsys):
    with pytest.raises(SystemExit) as info:
        curvature_sweep.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ") and "--alpha-grid" in text and "--n-samples N_SAMPLES" in text
    with pytest.raises(SystemExit):
        inside_zone.main(["--study", "fig3", "--preset", "tiny", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--unbiased, --no-unbiased" in text and "(int, default: 200)" in text  # tiny's n_samples


def test_config_types_are_the_annotations():
    hints = typing.get_type_hints(zone.ZoneConfig)
    assert cli.field_types(zone.ZoneConfig) == {f.name: hints[f.name]
                                               for f in dataclasses.fields(zone.ZoneConfig)}
    assert isinstance(cli.OneLineParser(), argparse.ArgumentParser)
