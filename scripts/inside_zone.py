#!/usr/bin/env python
"""Inside the Goldilocks zone: the studies of Sec. 4 and Appendix D of the ICML paper.

    python scripts/inside_zone.py --study fig3          # G-term curvature vs Eq. (8) across alpha
    python scripts/inside_zone.py --study fig4-right    # Gamma_p^-2 vs softmax entropy
    python scripts/inside_zone.py --study fig5-left     # gradient cosines across datasets
    python scripts/inside_zone.py --study fig5-right    # gradient norm vs ||Q^ - Q|| (Eq. 9)
    python scripts/inside_zone.py --study fig6          # many Kaiming inits: entropy, grad, curvature, loss
    python scripts/inside_zone.py --study fig10         # pre-collapse: entropies, top eigenvector image
    python scripts/inside_zone.py --study fig6 --preset lenet5-cifar10 --data-dir ../shared/data

With no preset each study runs a small default (scikit-learn digits, an MLP) in about a minute or
less on 2 CPU cores; ``--preset`` picks the paper's settings (``lenet300-fashion``,
``lenet5-cifar10``, ...) or ``tiny``. Any config field can be set with ``--set field=value``
(tuples comma-separated, ``none`` for None); the common ones also have their own options.
Records go to <out>/results.jsonl as they are computed (rerunning resumes), the figure to
<out>/<study>.png and .pdf, and a summary of the headline numbers to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any

COMMON = {  # option -> (config field, type)
    "--model": ("model", str), "--dataset": ("dataset", str), "--split": ("split", str),
    "--n-samples": ("n_samples", int), "--dim": ("dim", int), "--seeds": ("seeds", int),
    "--alpha-min": ("alpha_min", float), "--alpha-max": ("alpha_max", float),
    "--num-points": ("num_points", int), "--chunk-size": ("chunk_size", int),
    "--dtype": ("dtype", str),
}


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one ``error: ...`` line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True,
                        help="a study of gzone.experiments.inside.STUDIES (listed above)")
    parser.add_argument("--preset", default="default", help="named setting (default, tiny, paper presets)")
    for option, (field, kind) in COMMON.items():
        parser.add_argument(option, dest=field, type=kind, default=None, help=f"config field {field}")
    parser.add_argument("--widths", type=str, default=None, help="hidden widths of mlp, e.g. 300,100")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="FIELD=VALUE",
                        help="any config field, e.g. --set n_priors=500 --set datasets=digits,gaussian")
    parser.add_argument("--out", default=None, help="output directory (default runs/inside-<study>-<preset>)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (else $GZONE_DATA_DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", action="store_true", help="skip the figure")
    return parser.parse_args(argv)


def _parse_value(text: str, annotation: str) -> Any:
    """A command-line string as a value of the dataclass field type ``annotation`` (a string)."""
    optional = "None" in annotation
    if optional and text.strip().lower() == "none":
        return None
    base = annotation.replace("| None", "").strip()
    if base.startswith("tuple["):
        inner = base[len("tuple["):].split(",")[0].strip()
        return tuple(_parse_value(part.strip(), inner) for part in text.split(",") if part.strip())
    if base == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if base == "int":
        return int(text)
    if base == "float":
        return float(text)
    return text


def overrides(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """Config field overrides from the common options and ``--set`` (ValueError if unknown)."""
    fields = {f.name: f.type for f in dataclasses.fields(config_cls)}
    out: dict[str, Any] = {}
    for field, _ in COMMON.values():
        value = getattr(args, field)
        if value is not None:
            if field not in fields:
                raise ValueError(f"--{field.replace('_', '-')} does not apply to {args.study}")
            out[field] = value
    if args.widths is not None:
        out["widths"] = _parse_value(args.widths, "tuple[int, ...]")
    for item in args.assignments:
        field, sep, text = item.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or field not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        try:
            out[field] = _parse_value(text, str(fields[field]))
        except ValueError as error:
            raise ValueError(f"--set {item!r}: {error}") from None
    return out


def _spelling(field: str) -> str:
    """How a config field is set on this command line: its option, else ``--set`` FIELD=..."""
    options = {f: option for option, (f, _) in COMMON.items()} | {"widths": "--widths"}
    return options.get(field, field)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, float) for v in value):
        return "(" + ", ".join(f"{v:.4g}" for v in value) + ")"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        wants_float64 = args.dtype == "float64" or any(
            a.replace(" ", "").startswith("dtype=float64") for a in args.assignments)
        if wants_float64:
            import gzone

            gzone.enable_float64()
        from gzone.experiments import inside

        if args.study not in inside.STUDIES:
            raise ValueError(f"unknown study {args.study!r}; choose one of {', '.join(inside.STUDIES)}")
        study = inside.STUDIES[args.study]
        config = inside.make_config(args.study, args.preset, **overrides(args, study.config))
        out = args.out or f"runs/inside-{args.study}-{args.preset}"
        progress = None
        if not args.no_progress:
            from tqdm import tqdm

            def progress(items, total):
                return tqdm(items, total=total, desc=args.study, unit="step")

        records = inside.run_study(config, out, data_dir=args.data_dir, progress=progress)
    except (ValueError, FileNotFoundError) as error:
        from gzone.experiments.base import ConfigError

        text = error.render(_spelling) if isinstance(error, ConfigError) else str(error)
        print(f"error: {text.splitlines()[0] if text else type(error).__name__}", file=sys.stderr)
        return 2
    print(f"{len(records)} records in {out}/results.jsonl")
    for key, value in study.summarize(records).items():
        if key == "eigvecs":
            for row in value:
                print("  eigvec " + ", ".join(f"{k}={_format(v)}" for k, v in row.items()))
        elif isinstance(value, dict):
            for k, v in value.items():
                print(f"  {key}[{k}] = {_format(v)}")
        else:
            print(f"  {key} = {_format(value)}")
    flagged = sum(bool(r.get("flags")) for r in records)
    if flagged:
        print(f"note: {flagged} records carry flags (undefined or capped values); see 'flags'")
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        name = config.model if config.model != "mlp" else f"mlp{'-'.join(map(str, config.widths))}"
        data_name = ", ".join(getattr(config, "datasets", ())) or config.dataset
        title = f"{args.study}: {name} on {data_name} ({args.preset})"
        fig = study.figure(records, title=title, path_stem=f"{out}/{args.study}")
        plt.close(fig)
        print(f"figure: {out}/{args.study}.png, {out}/{args.study}.pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
