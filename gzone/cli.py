"""Command-line options derived from a study's config dataclass (the machinery of the ``gzone``
command, :mod:`gzone.command`).

* Every field of a config is an option ``--field-name`` (:func:`add_config_options`), typed by the
  field's annotation: ``int``, ``float``, ``str``; ``bool`` as ``--x`` / ``--no-x``;
  ``tuple[int | float | str, ...]`` comma-separated; ``X | None`` also takes ``none``. An option
  not given is None: the preset's value, else the dataclass default, applies. ``--set
  FIELD=VALUE`` sets any field with the same value parser, :func:`parse_value`.
* Help comes from the field's ``metadata["help"]`` (every field has one) and ``"choices"``, with
  the type and the default of the chosen preset.
* A field given twice (``--dim 3 --dim 4``, ``--full-space --no-full-space``, ``--dim 3 --set
  dim=4``) and a list with an empty element (``--widths 32,,16``) are refused.
* :class:`OneLineParser`: argument errors raise :class:`UsageError` (exit status 2).
* :func:`error_text`: a library error with its whole message (hints on later lines kept), the
  fields it names spelled as they were given on the command line (``--dim``, the field typed
  after ``--set``, ``--out`` for ``out_dir``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import gzone
from gzone import results
from gzone.engine.config import (
    ConfigError,
    cli_flag,
    element,
    field_choices,
    field_help,
    field_types,
    optional,
)

#: The errors a command turns into an ``error: ...`` message (exit status 2).
ERRORS = (ValueError, FileNotFoundError)
#: Spellings of the run parameters (not config fields) that library errors name.
RUN_FLAGS = {"out_dir": "--out", "data_dir": "--data-dir"}
#: ``args`` attribute holding the ``--set`` assignments: (field, value, field as typed).
SET_DEST = "assignments"

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class _ExplicitNone:
    """What an option holds after ``--x none``: given, as None (an option's own default None
    means not given)."""

    def __repr__(self) -> str:
        return "none"


EXPLICIT_NONE = _ExplicitNone()


def option_name(name: str) -> str:
    """The option of a config field: ``alpha_min`` -> ``--alpha-min``."""
    return cli_flag(name)


class UsageError(ValueError):
    """A bad command line (unknown option, unparsable value, unknown study ...)."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (one line, no usage dump) and
    that takes no abbreviated options (they are derived from config fields, so a new field must
    not change what an abbreviation meant). ``unrecognized_hint`` is appended to the error about
    unknown arguments."""

    def __init__(self, *args: Any, unrecognized_hint: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.unrecognized_hint = unrecognized_hint

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(" ".join(message.split()))

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            hint = f" ({self.unrecognized_hint})" if self.unrecognized_hint else ""
            self.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
        return parsed


# ----------------------------------------------------------------------------- values


_SCALARS = {int: ("int", "an integer"), float: ("float", "a number"), str: ("str", "a string"),
            bool: ("bool", "true or false")}


def _check_supported(tp: Any) -> None:
    base, _ = optional(tp)
    item = element(base)
    if (item if item is not None else base) not in _SCALARS or item is bool:
        raise TypeError(f"unsupported config field type {tp!r}")


def describe_type(tp: Any) -> str:
    """How a value of type ``tp`` is written: ``int``, ``comma-separated floats``, ``int or
    none`` ..."""
    _check_supported(tp)
    base, is_optional = optional(tp)
    item = element(base)
    text = f"comma-separated {_SCALARS[item][0]}s" if item is not None else _SCALARS[base][0]
    return f"{text} or none" if is_optional else text


def parse_value(text: str, tp: Any) -> Any:
    """A command-line string as a value of the field type ``tp``: ``none`` for None where
    optional, tuples comma-separated (an empty element is refused; an empty string is the empty
    tuple), bools as true/false (yes/no, on/off, 1/0). ValueError, worded for one line, when
    ``text`` is not such a value."""
    _check_supported(tp)
    base, is_optional = optional(tp)
    if is_optional and text.strip().lower() == "none":
        return None
    item = element(base)
    if item is not None:
        if not text.strip():
            return ()
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise ValueError(f"expected {describe_type(tp)}, got {text!r} (an empty element)")
        try:
            return tuple(parse_value(part, item) for part in parts)
        except ValueError:
            raise ValueError(f"expected {describe_type(tp)}, got {text!r}") from None
    if base is bool:
        if text.strip().lower() not in _TRUE + _FALSE:
            raise ValueError(f"expected true or false, got {text!r}")
        return text.strip().lower() in _TRUE
    if base is str:
        return text
    try:
        return base(text)
    except ValueError:
        expected = _SCALARS[base][1] + (" or none" if is_optional else "")
        raise ValueError(f"expected {expected}, got {text!r}") from None


def show_value(value: Any) -> str:
    """A value as it is written on the command line (tuples comma-separated, None as none)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or '""'
    return str(value)


def field_default(config_cls: type, name: str) -> Any:
    """The dataclass default of field ``name``."""
    return config_cls.__dataclass_fields__[name].default


def option_help(config_cls: type, name: str, default: Any) -> str:
    """The help line of a field's option: its help, its choices, its type and ``default``."""
    tp = field_types(config_cls)[name]
    text = field_help(config_cls, name)
    choices = field_choices(config_cls, name)
    if choices:
        each = "each " if element(optional(tp)[0]) is not None else ""
        text += f"; {each}one of {', '.join(map(str, choices))}"
    kind = "" if tp is bool or (tp is str and choices) else f"{describe_type(tp)}, "
    return f"{text} ({kind}default: {show_value(default)})"


# ----------------------------------------------------------------------------- options


class _Once(argparse.Action):
    """Store a field's value, refusing a second mention of the field (``--x 1 --x 2``, ``--x
    --no-x``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given", {})
        if self.dest in seen:
            raise UsageError(f"{self.dest} given twice ({seen[self.dest]} and {option_string})")
        seen[self.dest] = option_string
        if self.nargs == 0:  # a bool: --x or --no-x
            values = not option_string.startswith("--no-")
        setattr(namespace, self.dest, values)


def add_config_options(parser: argparse.ArgumentParser, config_cls: type, *,
                       defaults: Mapping[str, Any] | None = None) -> argparse._ArgumentGroup:
    """Add ``--field-name`` for every field of ``config_cls`` (default None: not given; a bool
    as ``--x`` / ``--no-x``) and ``--set FIELD=VALUE`` to a group of their own; ``defaults`` (a
    preset) replaces the dataclass defaults shown in the help."""
    defaults = defaults or {}
    group = parser.add_argument_group(
        "options of the study (each defaults to the preset's value)")
    for name, tp in field_types(config_cls).items():
        default = defaults.get(name, field_default(config_cls, name))
        text = option_help(config_cls, name, default).replace("%", "%%")
        if tp is bool:
            group.add_argument(option_name(name), "--no-" + name.replace("_", "-"), dest=name,
                               default=None, action=_Once, nargs=0, help=text)
        else:
            group.add_argument(option_name(name), dest=name, default=None, action=_Once,
                               type=_converter(tp), metavar=name.upper(), help=text)
    add_set_option(group, config_cls)
    return group


def _converter(tp: Any) -> Callable[[str], Any]:
    """:func:`parse_value` as an argparse ``type`` (``none`` as :data:`EXPLICIT_NONE`)."""

    def convert(text: str) -> Any:
        try:
            value = parse_value(text, tp)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return EXPLICIT_NONE if value is None else value

    convert.__name__ = describe_type(tp)
    return convert


def add_set_option(parser: Any, config_cls: type) -> None:
    """Add ``--set FIELD=VALUE`` (repeatable) for any field of ``config_cls``, parsed by
    :func:`parse_value`; FIELD may be spelled with dashes."""
    types_ = field_types(config_cls)

    def assignment(item: str) -> tuple[str, Any, str]:
        typed, sep, text = item.partition("=")
        name = typed.strip().replace("-", "_")
        if not sep or not typed.strip():
            raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {item!r}")
        if name not in types_:
            raise argparse.ArgumentTypeError(
                f"unknown field {typed.strip()!r} in {item!r}; fields: {', '.join(types_)}")
        try:
            return name, parse_value(text, types_[name]), typed.strip()
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{item!r}: {error}") from None

    assignment.__name__ = "FIELD=VALUE"
    example = next(iter(types_), "field")
    parser.add_argument("--set", dest=SET_DEST, action="append", default=[], type=assignment,
                        metavar="FIELD=VALUE",
                        help=f"set any option by its field name, e.g. --set {example}=VALUE "
                             "(the values its option takes); repeatable")


def config_overrides(args: argparse.Namespace, config_cls: type) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields given on the command line: ``(values, spellings)``, where ``spellings[field]``
    is how it was given (``--dim``, or the field as typed after ``--set``). ``--x none`` gives
    None. UsageError when a field is given twice."""
    values: dict[str, Any] = {}
    spellings: dict[str, str] = {}
    given = getattr(args, "_given", {})
    for name in field_types(config_cls):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = None if value is EXPLICIT_NONE else value
            spellings[name] = given.get(name, option_name(name))
    for name, value, typed in getattr(args, SET_DEST, ()):
        if name in values:
            raise UsageError(f"{name} given twice ({spellings[name]} and --set {typed}=...)")
        values[name], spellings[name] = value, typed
    return values, spellings


def apply_dtype(config: Any) -> bool:
    """Switch JAX to 64-bit (:func:`gzone.enable_float64`) iff ``config.dtype == "float64"``; call
    it before any JAX array is created. Returns whether it did."""
    if getattr(config, "dtype", "float32") == "float64":
        gzone.enable_float64()
        return True
    return False


def use_backend(show: bool) -> None:
    """Select the matplotlib backend before pyplot is imported: ``Agg`` (files only) unless
    ``show``, then matplotlib's own choice."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")


def progress_bar(desc: str, unit: str) -> Callable[[Iterator, int], Iterator]:
    """A tqdm progress wrapper ``(iterator, total) -> iterator``."""
    from tqdm import tqdm

    def progress(items: Iterator, total: int) -> Iterator:
        return tqdm(items, total=total, desc=desc, unit=unit)

    return progress


# ----------------------------------------------------------------------------- errors


def error_text(error: BaseException, spellings: Mapping[str, str] | None = None) -> str:
    """``error: ...`` with the whole message (hints on later lines kept). A
    :class:`~gzone.engine.config.ConfigError` or :class:`gzone.results.ConfigMismatchError` names
    its fields as ``spellings[name]``, else :data:`RUN_FLAGS` (``out_dir`` -> ``--out``), else the
    option (``--alpha-min``)."""
    spell = {**RUN_FLAGS, **(spellings or {})}

    def flag(name: str) -> str:
        return spell.get(name, option_name(name))

    if isinstance(error, (ConfigError, results.ConfigMismatchError)):
        text = error.render(flag)
    else:
        text = str(error)
    text = text.strip() or type(error).__name__
    return f"error: {text}"


def report(error: BaseException, spellings: Mapping[str, str] | None = None) -> int:
    """Print :func:`error_text` to stderr; the exit status of a refused command, 2."""
    print(error_text(error, spellings), file=sys.stderr)
    return 2


def config_fields(config: Any) -> dict[str, Any]:
    """The fields of a config (a shallow ``dataclasses.asdict``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


# ----------------------------------------------------------------------------- tables, titles


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return "(" + ", ".join(_cell(v) for v in value) + ")"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts) as an aligned text table: the columns are the keys in order of appearance,
    numbers right-aligned, text left-aligned."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]

    def line(values):
        return "  ".join((v.rjust(w) if num else v.ljust(w))
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), *(line(r) for r in cells)])


def _joined(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def model_and_data(fields: Mapping[str, Any]) -> tuple[str, str]:
    """The network (``mlp 300-100`` for an MLP) and the dataset(s) a config's fields name."""
    model = fields.get("model") or _joined(fields.get("models") or "")
    if model == "mlp" and fields.get("widths"):
        model = "mlp " + "-".join(map(str, fields["widths"]))
    return str(model), _joined(fields.get("datasets") or fields.get("dataset") or "")


def title(study: Any, config: Any, preset: str | None = None) -> str:
    """A figure title: the study and preset, then its network, data, N, d and seeds (those the
    config has), on two lines."""
    fields = config_fields(config) if not isinstance(config, dict) else config
    model, data = model_and_data(fields)
    what = [f"{model} on {data}" if model and data else (data or model or "")]
    first = {label: next((fields[k] for k in keys if fields.get(k) is not None), None)
             for label, keys in (("N", ("n_samples", "n_train")), ("d", ("dim", "dims", "hs_dims")),
                                 ("seeds", ("seeds",)), ("inits", ("n_inits",)))}
    what += [f"{label} = {_joined(first[label])}" for label in ("N", "d") if first[label]]
    if first["seeds"]:
        what.append(f"{first['seeds']} seed" + ("s" if first["seeds"] != 1 else ""))
    if first["inits"]:
        what.append(f"{first['inits']} initializations")
    head = study.name + (f" ({preset})" if preset else "")
    return head + "\n" + ", ".join(w for w in what if w)


def process_options(args: argparse.Namespace) -> None:
    """``--process-id`` / ``--num-processes`` checked (they go together), else read from a
    launcher's environment (:func:`gzone.sharding.process_from_env`), else (None, None): one
    process."""
    from gzone import sharding

    if (args.num_processes is None) != (args.process_id is None):
        raise UsageError("--process-id and --num-processes go together")
    if args.num_processes is None:
        args.process_id, args.num_processes = sharding.process_from_env() or (None, None)
    if args.num_processes is not None and not (
            args.num_processes >= 1 and 0 <= args.process_id < args.num_processes):
        raise UsageError(f"--process-id must lie in 0..{args.num_processes - 1} and "
                             "--num-processes be at least 1")
