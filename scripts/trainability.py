#!/usr/bin/env python
"""Training outside the Goldilocks zone (ICML paper Sec. 5, Fig. 8, 9, 12 right): full-batch
gradient descent of alpha-scaled homogeneous networks at the learning rate lr0 * alpha^(2 - L),
over a grid of (alpha, lr0, seed).

    python scripts/trainability.py --grid                  # Fig. 8: heat maps over (alpha, lr0)
    python scripts/trainability.py --curves                # Fig. 9: accuracy curves at chosen alphas
    python scripts/trainability.py --grid --labels random-per-step     # Sec. 5's random labels
    python scripts/trainability.py --grid --preset fashion-cpu --data-dir ../shared/data
    python scripts/trainability.py --grid --preset lenet300-fashion    # the paper (GPU work)

With no options it runs the grid on the embedded default (scikit-learn digits, MLP 64-300-100-10,
7 alphas x 5 lr0, 500 steps) in a few minutes on 2 CPU cores. Presets: default, tiny,
fashion-cpu (LeNet-300-100 on 1,000 Fashion-MNIST images, 1,000 steps), lenet300-fashion and
lenet5-cifar10 (the paper's full training sets, 20,000 steps). Every field of
gzone.experiments.trainability.TrainabilityConfig is an option (listed below); --dtype float64
switches JAX to 64-bit.

Records go to <out>/results.jsonl as they are computed: one per (alpha, lr0, seed, logged step)
with the config fields and the metrics (pandas: pd.read_json(path, lines=True)), one per finished
run, one per (alpha, seed) locating the zone at init. Runs are checkpointed at every log under
<out>/checkpoints: rerunning the same command resumes, also a run cut short mid-way. The figure
goes to <out>/trainability.png and .pdf (Fig. 8 or 9) and <out>/zero_logits.png (Fig. 12 right).

Several devices: each batch of runs is sharded over all local devices. Several hosts: start one
process per host with --coordinator HOST:PORT --num-processes N --process-id I (jax.distributed);
each runs its slice of the grid into <out>/process-I-of-N (a shared --out, or gather the folders
afterwards) and the figures of all slices come from `--plot-only` once all have finished.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The options: --preset, every TrainabilityConfig field (defaults shown from ``preset``)
    with --grid / --curves for its modes, --set, the run options and the multi-process ones."""
    from gzone import cli
    from gzone.experiments import trainability

    parser = cli.OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(trainability.PRESETS), default="default",
                        help="named setting; explicit options override it (default: default)")
    cli.add_config_options(parser, trainability.TrainabilityConfig,
                           defaults=trainability.PRESETS.get(preset or "default"),
                           shorthands={"mode": trainability.MODES})
    cli.add_run_options(parser, out_default="runs/trainability-<mode>-<preset>")
    group = parser.add_argument_group("several processes (jax.distributed)")
    group.add_argument("--coordinator", default=None,
                       help="HOST:PORT of process 0; starts jax.distributed")
    group.add_argument("--num-processes", type=int, default=None, help="number of processes")
    group.add_argument("--process-id", type=int, default=None, help="this process's index")
    group.add_argument("--plot-only", action="store_true",
                       help="train nothing: summarise and draw the records already in --out")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gzone import cli

    return build_parser(cli.peek(argv, "--preset").preset).parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The TrainabilityConfig of the preset and the options given, and how each was spelled."""
    from gzone import cli
    from gzone.experiments import trainability

    return cli.preset_config(args, trainability.TrainabilityConfig, trainability.make_config)


def configure(argv: list[str] | None = None) -> tuple[argparse.Namespace, Any, dict[str, str]]:
    """Parse, build the config and switch JAX to 64-bit iff its dtype is float64 (cli.configure)."""
    from gzone import cli

    return cli.configure(argv, parse_args, build_config)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    from gzone import cli

    spellings: dict[str, str] = {}
    try:
        args, config, spellings = configure(argv)
        from gzone.experiments import trainability

        trainability.validate(config)
        out = args.out or f"runs/trainability-{config.mode}-{args.preset}"
        if args.coordinator is not None:
            import jax

            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        if not args.plot_only:
            progress = cli.progress_bar(args, "runs x logs", "log")
            trainability.run(config, out, data_dir=args.data_dir, progress=progress)
        records = trainability.load(out)
    except cli.ERRORS as error:
        return cli.report(error, spellings)
    summary = trainability.summarize(records)
    print(f"{len(records)} records in {out}")
    print(f"runs: {summary['runs']}  outcomes: " +
          ", ".join(f"{k} {v}" for k, v in summary["outcomes"].items()))
    if "largest_trainable_lr0" in summary:
        print(f"{'alpha':>10} {'zone':>5} {'best train':>11} {'best test':>10} {'largest trained lr0':>20}")
        zone = set(summary["zone_alphas"])
        for key in summary["largest_trainable_lr0"]:
            inside = "yes" if any(f"{a:.3g}" == key for a in zone) else ""
            print(f"{key:>10} {inside:>5} {_format(summary['best_train_accuracy'][key]):>11} "
                  f"{_format(summary['best_test_accuracy'][key]):>10} "
                  f"{_format(summary['largest_trainable_lr0'][key]):>20}")
    flagged = sum(bool(r.get("flags")) for r in records)
    if flagged:
        print(f"note: {flagged} records carry flags (non-finite values, stored as null); see 'flags'")
    if not args.no_plot:
        cli.use_backend(args.show)
        import matplotlib.pyplot as plt

        from gzone.plots import training as figures

        name = config.model if config.model != "mlp" else f"mlp{'-'.join(map(str, config.widths))}"
        title = f"{name} on {config.dataset}, {config.optimizer}, labels {config.labels} ({args.preset})"
        drawn = [figures.trainability_figure(records, title=title, path_stem=f"{out}/trainability"),
                 figures.fig12_right_figure(records, title=title, path_stem=f"{out}/zero_logits")]
        print(f"figures: {out}/trainability.png, {out}/zero_logits.png (and .pdf)")
        if args.show:
            plt.show()
        for fig in drawn:
            plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
