#!/usr/bin/env python
"""Outside the Goldilocks zone, explained (ICML paper App. E, Fig. 11, 12 left; Sec. 5): the
uniform-softmax-output (USO) model, retraining from its rotated points, linear probes, the lazy
regime and random labels.

    python scripts/outside_zone.py --study uso            # Fig. 11 left: alpha < 1 nets follow the USO path
    python scripts/outside_zone.py --study uso-retrain    # Fig. 11 right: rotation, and retraining from it
    python scripts/outside_zone.py --study probe          # Fig. 12 left: linear probes of learned features
    python scripts/outside_zone.py --study lazy           # alpha >> 1: the network against its linearisation
    python scripts/outside_zone.py --study random-labels  # Fig. 12 right: zero logits under random labels
    python scripts/outside_zone.py --study uso --preset lenet300-fashion --data-dir ../shared/data

With no options each study runs on the embedded default (scikit-learn digits, MLP 64-300-100-10,
1,000 full-batch GD steps) in a few minutes on 2 CPU cores. Presets: default, tiny, fashion-cpu
(LeNet-300-100 on 2,000 Fashion-MNIST images), lenet300-fashion (the paper's setting: full
Fashion-MNIST, lr0 = 0.0002 for Fig. 11, 20,000 steps; GPU work). Every field of
gzone.experiments.outside.OutsideConfig is an option (listed below); --dtype float64 switches JAX
to 64-bit.

Records go to <out>/results.jsonl as they are computed (pandas: pd.read_json(path, lines=True));
training runs are checkpointed under <out>/checkpoints, so rerunning the same command resumes,
also mid-run. The figure goes to <out>/<study>.png and .pdf.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The options: --preset, every OutsideConfig field (defaults shown from ``preset``), the run
    options and --plot-only."""
    from gzone import cli
    from gzone.experiments import outside

    parser = cli.OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(outside.PRESETS), default="default",
                        help="named setting; explicit options override it (default: default)")
    cli.add_config_options(parser, outside.OutsideConfig,
                           defaults=outside.PRESETS.get(preset or "default"))
    cli.add_run_options(parser, out_default="runs/outside-<study>-<preset>")
    parser.add_argument("--plot-only", action="store_true",
                        help="train nothing: summarise and draw the records already in --out")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gzone import cli

    return build_parser(cli.peek(argv, "--preset").preset).parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The OutsideConfig of the preset and the options given, and how each was spelled."""
    from gzone import cli
    from gzone.experiments import outside

    return cli.preset_config(args, outside.OutsideConfig, outside.make_config)


def configure(argv: list[str] | None = None) -> tuple[argparse.Namespace, Any, dict[str, str]]:
    """Parse, build the config and switch JAX to 64-bit iff its dtype is float64 (cli.configure)."""
    from gzone import cli

    return cli.configure(argv, parse_args, build_config)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def summary_lines(study: str, records: list[dict[str, Any]]) -> list[str]:
    """The printed summary of a study's records."""
    from gzone.experiments import lazy, uso

    lines = []
    if study == "uso":
        lines.append(f"{'alpha/seed':>14} {'softmax leaves uniform at':>26} {'leaves USO path at':>19} "
                     f"{'final train acc':>16}")
        for key, row in uso.summarize_uso(records).items():
            lines.append(f"{key:>14} {_format(row['left_uniform_at']):>26} "
                         f"{_format(row['left_uso_path_at']):>19} {_format(row['final_train_accuracy']):>16}")
    elif study == "uso-retrain":
        lines.append(f"{'seed':>4} {'USO step':>9} {'|theta|':>9} {'cos(th,th0)':>12} "
                     f"{'cos(th,-g)':>11} {'retrained train err':>20}")
        for r in uso.summarize_retrain(records):
            lines.append(f"{r['seed']:>4} {r['uso_step']:>9} {_format(r['parameter_norm']):>9} "
                         f"{_format(r['cos_param_init']):>12} {_format(r['cos_param_neg_gradient']):>11} "
                         f"{_format(r['train_error']):>20}")
    elif study == "probe":
        t = lazy.probe_table(records)
        lines.append(f"random unscaled features: probe test accuracy {_format(t['random'][0])} "
                     f"(min {_format(t['random'][1])}, max {_format(t['random'][2])})")
        lines.append(f"{'alpha':>8} {'probe test acc (mean)':>22} {'min':>7} {'max':>7}")
        for i, a in enumerate(t["alpha"]):
            lines.append(f"{a:>8.3g} {t['mean'][i]:>22.4f} {t['min'][i]:>7.4f} {t['max'][i]:>7.4f}")
    elif study == "lazy":
        t = lazy.lazy_table(records)
        lines.append(f"{'alpha':>8} {'train acc':>10} {'test acc':>9} {'lin. test acc':>14} "
                     f"{'|th-th0|/|th0|':>15} {'agreement':>10} {'|z-z_lin|/|z|':>14}")
        for i, a in enumerate(t["alpha"]):
            lines.append(f"{a:>8.3g} {t['train_accuracy'][i]:>10.4f} {t['test_accuracy'][i]:>9.4f} "
                         f"{t['linear_test_accuracy'][i]:>14.4f} {t['relative_distance'][i]:>15.4g} "
                         f"{t['test_agreement'][i]:>10.4f} {t['logit_relative_difference'][i]:>14.4g}")
    else:
        from gzone.plots.training import zero_logit_curves

        for labels, runs in zero_logit_curves(records).items():
            for (alpha, _), (steps, values) in runs.items():
                lines.append(f"labels {labels:>15}, alpha {alpha:.3g}: zero-logit samples "
                             f"max {values.max():.3f} (step {int(steps[values.argmax()])}), "
                             f"final {values[-1]:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from gzone import cli

    spellings: dict[str, str] = {}
    try:
        args, config, spellings = configure(argv)
        from gzone.experiments import outside

        outside.validate(config)
        out = args.out or f"runs/outside-{config.study}-{args.preset}"
        if not args.plot_only:
            progress = cli.progress_bar(args, config.study, "step")
            outside.run(config, out, data_dir=args.data_dir, progress=progress)
        records = outside.load(out)
    except cli.ERRORS as error:
        return cli.report(error, spellings)
    print(f"{len(records)} records in {out}")
    for line in summary_lines(config.study, records):
        print(line)
    flagged = sum(bool(r.get("flags")) for r in records)
    if flagged:
        print(f"note: {flagged} records carry flags (non-finite values, stored as null); see 'flags'")
    if not args.no_plot:
        cli.use_backend(args.show)
        import matplotlib.pyplot as plt

        from gzone.plots import outside as figures

        name = config.model if config.model != "mlp" else f"mlp{'-'.join(map(str, config.widths))}"
        title = f"{config.study}: {name} on {config.dataset} ({args.preset})"
        fig = figures.outside_figure(records, config.study, title=title,
                                     path_stem=f"{out}/{config.study}")
        print(f"figure: {out}/{config.study}.png (and .pdf)")
        if args.show:
            plt.show()
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
