"""Command-line options derived from the study config dataclasses: the one pattern of
``scripts/curvature_sweep.py`` (:class:`~gzone.experiments.zone.ZoneConfig`) and
``scripts/inside_zone.py`` (the configs of :data:`gzone.experiments.inside.STUDIES`).

* Every field of a config dataclass is an option ``--field-name`` (:func:`add_config_options`),
  typed by the field's annotation (``typing.get_type_hints``): ``int``, ``float``, ``str``;
  ``bool`` as ``--x`` / ``--no-x``; ``tuple[int | float | str, ...]`` comma-separated; ``X | None``
  also takes ``none``. An option not given is None: the preset's value, else the dataclass
  default, applies. ``--set FIELD=VALUE`` (:func:`add_set_option`) sets any field with the same
  value parser, :func:`parse_value`.
* Help comes from the field's ``metadata``: ``"help"`` and, where the library has the list,
  ``"choices"``. A field redeclared with another default keeps the help of the class it
  overrides; the model/data fields that ``ZoneConfig`` repeats are documented once, on
  :class:`~gzone.experiments.base.ModelDataConfig`. Fields without help get a generic one.
* :class:`OneLineParser`: argument errors as one line (:class:`UsageError`, exit status 2).
* After parsing, a script builds its config (preset + options, :func:`config_overrides`) and
  calls :func:`apply_dtype` (64-bit JAX iff ``config.dtype == "float64"``) before any JAX array
  exists, and :func:`use_backend` (Agg unless ``--show``) before pyplot is imported.
* :func:`report`: any ``ValueError`` / ``FileNotFoundError`` as one ``error: ...`` line, with
  the parameters a library error names (:class:`~gzone.experiments.base.ConfigError`,
  :class:`gzone.results.ConfigMismatchError`) spelled as given on the command line: ``--dim``,
  the field name typed after ``--set``, ``--out`` for ``out_dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import gzone
from gzone import results
from gzone.experiments.base import ConfigError, ModelDataConfig, cli_flag

#: The errors a script turns into one ``error: ...`` line (exit status 2) with :func:`report`.
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


def option_name(field: str) -> str:
    """The option of a config field: ``alpha_min`` -> ``--alpha-min``."""
    return cli_flag(field)


class UsageError(ValueError):
    """A bad command line (unknown option, unparsable value, unknown study ...): one line."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (one line, no usage dump;
    the scripts print it with :func:`report` and exit with status 2). Abbreviated options are
    off: the options are derived from config fields, so a new field must not change what an
    abbreviation meant. ``unrecognized_hint`` is appended to the error about unknown
    arguments."""

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


def peek(argv: Sequence[str] | None, *options: str) -> argparse.Namespace:
    """The values of ``options`` (e.g. ``--study``, ``--preset``; None when absent) in ``argv``
    before the full parser exists: other arguments, ``--help`` included, are left alone."""
    parser = OneLineParser(add_help=False)
    for option in options:
        parser.add_argument(option)
    return parser.parse_known_args(argv)[0]


# ----------------------------------------------------------------------------- field types


def field_types(config_cls: type) -> dict[str, Any]:
    """The type of every dataclass field of ``config_cls`` (annotations evaluated)."""
    return dict(_field_types(config_cls))


@functools.cache
def _field_types(config_cls: type) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(config_cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(config_cls))


def field_default(config_cls: type, name: str) -> Any:
    """The dataclass default of field ``name`` (its factory called where it has one)."""
    field = config_cls.__dataclass_fields__[name]
    if field.default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _optional(tp: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, ``(tp, False)`` otherwise; TypeError for other unions."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported config field type {tp!r}: only X | None unions")
        return rest[0], len(rest) < len(typing.get_args(tp))
    return tp, False


def _element(tp: Any) -> Any | None:
    """``X`` of ``tuple[X, ...]``, else None."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported config field type {tp!r}: only tuple[X, ...]")
        return args[0]
    return None


_SCALARS = {int: ("int", "an integer"), float: ("float", "a number"), str: ("str", "a string"),
            bool: ("bool", "true or false")}


def _check_supported(tp: Any) -> None:
    base, _ = _optional(tp)
    element = _element(base)
    if (element if element is not None else base) not in _SCALARS or element is bool:
        raise TypeError(f"unsupported config field type {tp!r}")


def describe_type(tp: Any) -> str:
    """How a value of type ``tp`` is written: ``int``, ``comma-separated floats``, ``int or
    none`` ..."""
    _check_supported(tp)
    base, optional = _optional(tp)
    element = _element(base)
    text = f"comma-separated {_SCALARS[element][0]}s" if element is not None else _SCALARS[base][0]
    return f"{text} or none" if optional else text


def parse_value(text: str, tp: Any) -> Any:
    """A command-line string as a value of the field type ``tp``: ``none`` for None where
    optional, tuples comma-separated (empty parts dropped), bools as true/false (yes/no, on/off,
    1/0). ValueError, worded for one line, when ``text`` is not such a value."""
    _check_supported(tp)
    base, optional = _optional(tp)
    if optional and text.strip().lower() == "none":
        return None
    element = _element(base)
    if element is not None:
        try:
            return tuple(parse_value(part.strip(), element) for part in text.split(",")
                         if part.strip())
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
        expected = _SCALARS[base][1] + (" or none" if optional else "")
        raise ValueError(f"expected {expected}, got {text!r}") from None


def _converter(tp: Any) -> Callable[[str], Any]:
    """:func:`parse_value` as an argparse ``type`` (errors as ``argument --x: expected ...``;
    ``none`` as :data:`EXPLICIT_NONE`, told apart from the option's default None)."""

    def convert(text: str) -> Any:
        try:
            value = parse_value(text, tp)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return EXPLICIT_NONE if value is None else value

    convert.__name__ = describe_type(tp)
    return convert


# ----------------------------------------------------------------------------- help


def field_metadata(config_cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of field ``name``: its own where it has help, else that of the nearest
    class in the MRO that declares the field with help, else that of the same-named field of
    :class:`~gzone.experiments.base.ModelDataConfig` (the model/data fields every study
    shares), else empty."""
    for cls in (*config_cls.__mro__, ModelDataConfig):
        fields = getattr(cls, "__dataclass_fields__", {})
        if name in fields and "help" in fields[name].metadata:
            return fields[name].metadata
    return {}


def show_value(value: Any) -> str:
    """A value as it is written on the command line (tuples comma-separated, None as none)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or '""'
    return str(value)


def field_help(config_cls: type, name: str, default: Any = dataclasses.MISSING) -> str:
    """The help of field ``name``: its metadata help (or a generic ``config field NAME``), its
    choices where known, its type and ``default`` (the dataclass default unless given)."""
    if default is dataclasses.MISSING:
        default = field_default(config_cls, name)
    meta = field_metadata(config_cls, name)
    tp = field_types(config_cls)[name]
    text = meta.get("help") or f"config field {name}"
    if meta.get("choices"):
        each = "each " if _element(_optional(tp)[0]) is not None else ""
        text += f"; {each}one of {', '.join(map(str, meta['choices']))}"
    kind = "" if tp is bool or (tp is str and meta.get("choices")) else f"{describe_type(tp)}, "
    return f"{text} ({kind}default: {show_value(default)})"


# ----------------------------------------------------------------------------- options


def add_config_options(
    parser: argparse.ArgumentParser,
    config_cls: type,
    *,
    defaults: Mapping[str, Any] | None = None,
    shorthands: Mapping[str, Sequence[str]] | None = None,
    set_option: bool = True,
) -> argparse._ArgumentGroup:
    """Add ``--field-name`` for every field of ``config_cls`` (default None: not given) to an
    argument group of its own, and (``set_option``) ``--set FIELD=VALUE``
    (:func:`add_set_option`). ``shorthands[field]``: values that also get a flag of their own
    (``--alpha-grid`` for ``--mode alpha-grid``), mutually exclusive with each other and the
    field's option. ``defaults`` (a preset) overrides the dataclass defaults shown in the help.
    Returns the group. TypeError for a field type :func:`parse_value` cannot read."""
    defaults = defaults or {}
    shorthands = shorthands or {}
    group = parser.add_argument_group(
        f"{config_cls.__name__} fields",
        "Each defaults to the preset's value, else the class default (shown).")
    for name, tp in field_types(config_cls).items():
        container = group
        if name in shorthands:
            container = group.add_mutually_exclusive_group()
            for value in shorthands[name]:
                container.add_argument(option_name(value), dest=name, action="store_const",
                                       const=value, help=f"{option_name(name)} {value}")
        default = defaults.get(name, field_default(config_cls, name))
        helptext = field_help(config_cls, name, default).replace("%", "%%")
        if tp is bool:
            container.add_argument(option_name(name), dest=name, default=None, help=helptext,
                                   action=argparse.BooleanOptionalAction)
        else:
            container.add_argument(option_name(name), dest=name, default=None, help=helptext,
                                   type=_converter(tp), metavar=name.upper())
    if set_option:
        add_set_option(group, config_cls)
    return group


def add_set_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                   config_cls: type) -> None:
    """Add ``--set FIELD=VALUE`` (repeatable) for any field of ``config_cls``, parsed by
    :func:`parse_value`; FIELD may be spelled with dashes. Values land in ``args.assignments``
    as (field, value, FIELD as typed)."""
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
    parser.add_argument("--set", dest=SET_DEST, action="append", default=[], type=assignment,
                        metavar="FIELD=VALUE",
                        help="set any field of this list by name, e.g. --set n_samples=100 (the "
                             "values its option takes); repeatable")


def add_run_options(parser: argparse.ArgumentParser, *, out_default: str) -> None:
    """Add the options of a run that are not config fields: ``--out``, ``--data-dir``,
    ``--no-progress``, ``--no-plot``, ``--show``."""
    group = parser.add_argument_group("run")
    group.add_argument("--out", default=None, help=f"output directory (default {out_default})")
    group.add_argument("--data-dir", default=None,
                       help="folder with the dataset files (else $GZONE_DATA_DIR)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--no-plot", action="store_true", help="skip the figure")
    group.add_argument("--show", action="store_true",
                       help="also show the figure in a window (an interactive matplotlib "
                            "backend); without it figures are only written to files (Agg)")


def config_overrides(args: argparse.Namespace, config_cls: type) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields given on the command line: ``(values, spellings)``, where ``spellings[field]``
    is how it was given (``--dim``, or the field as typed after ``--set``) for :func:`report`.
    An option left at None was not given; ``--x none`` gives None. UsageError when a field is
    given twice."""
    values: dict[str, Any] = {}
    spellings: dict[str, str] = {}
    for name in field_types(config_cls):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = None if value is EXPLICIT_NONE else value
            spellings[name] = option_name(name)
    for name, value, typed in getattr(args, SET_DEST, ()):
        if name in values:
            raise UsageError(f"{name} given twice ({spellings[name]} and --set {typed}=...)")
        values[name], spellings[name] = value, typed
    return values, spellings


def apply_dtype(config: Any) -> bool:
    """Switch JAX to 64-bit (:func:`gzone.enable_float64`) iff ``config.dtype == "float64"``;
    call it before any JAX array is created. Returns whether it did."""
    if config.dtype == "float64":
        gzone.enable_float64()
        return True
    return False


def configure(
    argv: Sequence[str] | None,
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    build_config: Callable[[argparse.Namespace], tuple[Any, dict[str, str]]],
) -> tuple[argparse.Namespace, Any, dict[str, str]]:
    """Both scripts' front half: parse ``argv``, build the config (``build_config`` returns it and
    how each field was spelled), then switch JAX to 64-bit iff its dtype is float64
    (:func:`apply_dtype`, before any JAX array exists)."""
    args = parse_args(argv)
    config, spellings = build_config(args)
    apply_dtype(config)
    return args, config, spellings


def preset_config(args: argparse.Namespace, config_cls: type,
                  make_config: Callable[..., Any]) -> tuple[Any, dict[str, str]]:
    """A script's ``build_config`` for a study with named presets: the config of ``args.preset``
    (``make_config(preset, validate_config=False)``, validated by the run) with the options given
    replacing its fields, and how each option was spelled."""
    values, spellings = config_overrides(args, config_cls)
    return dataclasses.replace(make_config(args.preset, validate_config=False), **values), spellings


def use_backend(show: bool) -> None:
    """Select the matplotlib backend before pyplot is imported: ``Agg`` (files only) unless
    ``show``, then matplotlib's own choice (``$MPLBACKEND``, matplotlibrc, else an interactive
    backend that works here)."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")


def progress_bar(args: argparse.Namespace, desc: str, unit: str) -> Callable[[Iterator, int], Iterator] | None:
    """A tqdm progress wrapper ``(iterator, total) -> iterator``, None with ``--no-progress``."""
    if getattr(args, "no_progress", False):
        return None
    from tqdm import tqdm

    def progress(items: Iterator, total: int) -> Iterator:
        return tqdm(items, total=total, desc=desc, unit=unit)

    return progress


# ----------------------------------------------------------------------------- errors


def error_line(error: BaseException, spellings: Mapping[str, str] | None = None) -> str:
    """``error: ...``, one line. A :class:`~gzone.experiments.base.ConfigError` or
    :class:`gzone.results.ConfigMismatchError` names its parameters as ``spellings[name]``, else
    :data:`RUN_FLAGS` (``out_dir`` -> ``--out``), else the option (``--alpha-min``)."""
    spell = {**RUN_FLAGS, **(spellings or {})}

    def flag(name: str) -> str:
        return spell.get(name, option_name(name))

    if isinstance(error, (ConfigError, results.ConfigMismatchError)):
        text = error.render(flag)
    else:
        text = str(error)
    lines = text.strip().splitlines()
    return f"error: {lines[0] if lines else type(error).__name__}"


def report(error: BaseException, spellings: Mapping[str, str] | None = None) -> int:
    """Print :func:`error_line` to stderr; the exit status of a refused command line, 2."""
    print(error_line(error, spellings), file=sys.stderr)
    return 2
