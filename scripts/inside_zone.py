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
``lenet5-cifar10``, ...) or ``tiny``. Every field of the study's config is an option
(``--study NAME --help`` lists them; tuples comma-separated, ``none`` for None), also settable
as ``--set field=value``. ``--dtype float64`` switches JAX to 64-bit; figures are only written
to files unless ``--show``. Records go to <out>/results.jsonl as they are computed (rerunning
resumes), the figure to <out>/<study>.png and .pdf, and a summary of the headline numbers to
stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any


def _studies_text(names) -> str:
    """Each study's one-line description (its config's docstring) and presets."""
    from gzone.experiments import inside

    lines = []
    for name in names:
        entry = inside.STUDIES[name]
        doc = (entry.config.__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name:<11} {doc}\n  {'':<11} presets: {', '.join(entry.presets)}")
    return "studies:\n" + "\n".join(lines)


def build_parser(study: str | None = None, preset: str | None = None) -> argparse.ArgumentParser:
    """The options: --study (gzone.experiments.inside.STUDIES), --preset (that study's presets),
    every field of its config (defaults shown from ``preset``), --set and the run options.
    Without ``study``: only the options every study has."""
    from gzone import cli
    from gzone.experiments import inside

    names = [study] if study is not None else list(inside.STUDIES)
    parser = cli.OneLineParser(
        description=__doc__, epilog=_studies_text(names),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        unrecognized_hint=(f"not an option of --study {study}; see --study {study} --help"
                           if study is not None else "options depend on --study; see --study NAME --help"))
    parser.add_argument("--study", required=True, metavar="STUDY",
                        help=f"the study, one of {', '.join(inside.STUDIES)}")
    if study is None:
        parser.add_argument("--preset", default="default",
                            help="named setting of the study (default: default)")
    else:
        entry = inside.STUDIES[study]
        parser.add_argument("--preset", choices=list(entry.presets), default="default",
                            help="named setting; explicit options override it (default: default)")
        cli.add_config_options(parser, entry.config, defaults=entry.presets.get(preset or "default"))
    cli.add_run_options(parser, out_default="runs/inside-<study>-<preset>")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``--study`` first, then the options of that study's config."""
    from gzone import cli
    from gzone.experiments import inside

    known = cli.peek(argv, "--study", "--preset")
    if known.study is not None and known.study not in inside.STUDIES:
        raise cli.UsageError(f"unknown study {known.study!r} for --study; choose one of "
                             f"{', '.join(inside.STUDIES)}")
    return build_parser(known.study, known.preset).parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The study's config of the preset and the options given (not validated yet: the run
    does that), and how each option was spelled. ``--x none`` gives None (make_config would
    ignore a None override)."""
    from gzone import cli
    from gzone.experiments import inside

    values, spellings = cli.config_overrides(args, inside.STUDIES[args.study].config)
    preset = inside.make_config(args.study, args.preset, validate=False)
    return dataclasses.replace(preset, **values), spellings


def configure(argv: list[str] | None = None) -> tuple[argparse.Namespace, Any, dict[str, str]]:
    """Parse, build the config and switch JAX to 64-bit iff its dtype is float64 (cli.configure)."""
    from gzone import cli

    return cli.configure(argv, parse_args, build_config)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, float) for v in value):
        return "(" + ", ".join(f"{v:.4g}" for v in value) + ")"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def main(argv: list[str] | None = None) -> int:
    from gzone import cli

    spellings: dict[str, str] = {}
    try:
        args, config, spellings = configure(argv)
        from gzone.experiments import inside

        study = inside.STUDIES[args.study]
        out = args.out or f"runs/inside-{args.study}-{args.preset}"
        progress = cli.progress_bar(args, args.study, "step")
        records = inside.run_study(config, out, data_dir=args.data_dir, progress=progress)
    except cli.ERRORS as error:
        return cli.report(error, spellings)
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
        cli.use_backend(args.show)
        import matplotlib.pyplot as plt

        name = config.model if config.model != "mlp" else f"mlp{'-'.join(map(str, config.widths))}"
        data_name = ", ".join(getattr(config, "datasets", ())) or config.dataset
        title = f"{args.study}: {name} on {data_name} ({args.preset})"
        fig = study.figure(records, title=title, path_stem=f"{out}/{args.study}")
        print(f"figure: {out}/{args.study}.png, {out}/{args.study}.pdf")
        if args.show:
            plt.show()
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
