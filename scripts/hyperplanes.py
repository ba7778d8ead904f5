#!/usr/bin/env python
"""Fort & Scherlis, The Goldilocks zone (AAAI 2019): curvature on random hyperplanes across
configuration-space radii, its theory (Sec. 2.4-2.6) and its architectures.

    python scripts/hyperplanes.py --study radius          # Fig. 3: positive eigenvalues and Tr H/||H|| vs radius and d
    python scripts/hyperplanes.py --study directions      # Sec. 2.4: random directions vs eigenvalues, exact relations
    python scripts/hyperplanes.py --study architectures   # Fig. 4: widths, depths, ReLU/tanh, biases, CNN
    python scripts/hyperplanes.py --study loss-radius     # Fig. 5: mean loss vs radius (power law L), Tr H, ||H||
    python scripts/hyperplanes.py --study stokes          # Eq. (4): mean Laplacian over spheres vs d<loss>/dr
    python scripts/hyperplanes.py --study hypersurface-training  # Fig. 2: train on random planes/spheres
    python scripts/hyperplanes.py --study init-selection  # Fig. 6: convexity of an init vs steps to an accuracy
    python scripts/hyperplanes.py --study radius-drift    # observation 8: training pulls the radius to the zone
    python scripts/hyperplanes.py --study architectures --preset mnist --data-dir ../shared/data

With no options each study runs on the embedded default (scikit-learn digits, MLP 64-300-100-10
with biases initialised at 0, Xavier initialisation, 1,000 samples) in minutes on 2 CPU cores.
Radii are factors of each seed's Xavier radius (--radius-min, --radius-max, --num-radii); the
records hold the radius itself (radius), the factor (radius_factor) and the Xavier radius.
Presets: default, tiny, mnist and cifar10 (the paper's data and their Fig. 4 architectures). Every
field of gzone.experiments.fort.FortConfig is an option (listed below); --dtype float64 switches
JAX to 64-bit.

Records go to <out>/results.jsonl as they are computed; rerunning the same command resumes. The
figure goes to <out>/<study>.png and .pdf.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The options: --preset, every FortConfig field, the run options and --plot-only."""
    from gzone import cli
    from gzone.experiments import fort

    parser = cli.OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(fort.PRESETS), default="default",
                        help="named setting; explicit options override it (default: default)")
    cli.add_config_options(parser, fort.FortConfig, defaults=fort.PRESETS.get(preset or "default"))
    cli.add_run_options(parser, out_default="runs/fort-<study>-<preset>")
    parser.add_argument("--plot-only", action="store_true",
                        help="compute nothing: summarise and draw the records already in --out")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gzone import cli

    return build_parser(cli.peek(argv, "--preset").preset).parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The FortConfig of the preset and the options given, and how each was spelled."""
    from gzone import cli
    from gzone.experiments import fort

    return cli.preset_config(args, fort.FortConfig, fort.make_config)


def configure(argv: list[str] | None = None) -> tuple[argparse.Namespace, Any, dict[str, str]]:
    """Parse, build the config and switch JAX to 64-bit iff its dtype is float64."""
    from gzone import cli

    return cli.configure(argv, parse_args, build_config)


def _f(value: Any) -> str:
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def _mean(group: list[dict[str, Any]], field: str) -> float | None:
    values = [g[field] for g in group if g.get(field) is not None]
    return sum(values) / len(values) if values else None


def summary_lines(study: str, records: list[dict[str, Any]]) -> list[str]:
    """The printed summary of a study's records (means over seeds)."""
    from gzone.experiments import radial_loss

    lines: list[str] = []
    if study in ("radius", "directions", "architectures"):
        planes: dict[tuple, list] = {}
        for r in records:
            if r.get("kind") == "plane":
                planes.setdefault((r.get("label", ""), r.get("dataset"), r["radius_factor"], r["dim"]), []).append(r)
        lines.append(f"{'network':>22} {'data':>8} {'r/r_X':>7} {'radius':>9} {'d':>5} "
                     f"{'pos. eig.':>9} {'TrH/||H||':>10} {'predicted':>10}")
        for (label, dataset, c, d), g in sorted(planes.items()):
            lines.append(f"{label or '-':>22} {dataset:>8} {c:>7.3g} {_f(_mean(g, 'radius')):>9} {d:>5} "
                         f"{_f(_mean(g, 'local_convexity')):>9} {_f(_mean(g, 'positive_curvature')):>10} "
                         f"{_f(_mean(g, 'predicted_positive_curvature')):>10}")
    if study == "directions":
        points: dict[float, list] = {}
        for r in records:
            if r.get("kind") == "directions":
                points.setdefault(r["radius_factor"], []).append(r)
        lines.append(f"{'r/r_X':>7} {'pos. directions':>15} {'predicted':>9} {'mean vHv':>10} "
                     f"{'predicted':>10} {'var vHv':>10} {'predicted':>10}")
        for c, g in sorted(points.items()):
            lines.append(f"{c:>7.3g} {_f(_mean(g, 'positive_directions')):>15} "
                         f"{_f(_mean(g, 'predicted_positive_directions')):>9} "
                         f"{_f(_mean(g, 'direction_mean')):>10} {_f(_mean(g, 'predicted_direction_mean')):>10} "
                         f"{_f(_mean(g, 'direction_variance')):>10} "
                         f"{_f(_mean(g, 'predicted_direction_variance')):>10}")
    if study == "loss-radius":
        s = radial_loss.loss_radius_summary(records)
        lines.append(f"{'radius':>10} {'mean loss':>10} {'Tr H':>10} {'||H||_F':>10}")
        for row in s["rows"]:
            lines.append(f"{row['radius']:>10.4g} {row['loss']:>10.4g} {row['trace']:>10.4g} "
                         f"{row['frobenius_norm']:>10.4g}")
        if s["rows"]:
            fit = s["fit"]
            lines.append(f"Xavier radius {s['xavier_radius']:.4g}; critical radius "
                         f"{_f(s['critical_radius'])}; L = {s['weight_layers']} weight layers; fitted "
                         + ("exponent: too few points above 3 log K" if fit is None else
                            f"exponent {fit['exponent']:.3f} +- {fit['stderr']:.3f} on r >= {fit['r_min']:.4g}"))
    if study == "hypersurface-training":
        from gzone.experiments import hypersurface_training as hs

        table = hs.accuracy_table(records)
        factors = sorted({f for accs in table.values() for f in accs})
        lines.append(f"{'surface':>12} {'d':>7} " + " ".join(f"{'r=' + format(f, 'g') + 'r_X':>10}" for f in factors))
        for (surface, dim), accs in table.items():
            lines.append(f"{surface:>12} {dim:>7} " + " ".join(f"{_f(accs.get(f)):>10}" for f in factors))
        for surface, by_radius in hs.intrinsic_dimension(records).items():
            lines.append(f"intrinsic dimension ({surface}): " + ", ".join(
                f"r={f:g}r_X: {_f(d)}" for f, d in sorted(by_radius.items())))
    if study == "init-selection":
        from gzone.experiments import init_selection

        summary = init_selection.selection_summary(records)
        lines.append(f"{summary['draws']} draws, {summary.get('reached', 0)} reached the target; "
                     f"median steps to target {_f(summary.get('median_steps'))}")
        lines.append(f"{'measure':>20} {'Spearman':>9} {'favourable':>11} {'unfavourable':>13} {'MWU p':>8}")
        for name, m in summary["measures"].items():
            lines.append(f"{name:>20} {m['spearman']:>9.3f} {m['favourable_median_steps']:>11.4g} "
                         f"{m['unfavourable_median_steps']:>13.4g} {m['p_value']:>8.3g}")
    if study == "radius-drift":
        from gzone.experiments import radius_drift

        lines.append(f"{'start r/r_X':>11} {'start radius':>13} {'final radius':>13} {'Xavier':>8} "
                     f"{'test acc':>9}")
        for row in radius_drift.drift_table(records):
            lines.append(f"{row['radius_factor']:>11.3g} {row['radius']:>13.4g} {row['final_radius']:>13.4g} "
                         f"{row['xavier_radius']:>8.4g} {row['final_test_accuracy']:>9.4f}")
    if study == "stokes":
        lines.append(f"{'radius':>10} {'mean loss':>10} {'<Laplacian>':>12} {'stderr':>9} {'Eq. 4 rhs':>10}")
        for row in radial_loss.stokes_summary(records):
            lines.append(f"{row['radius']:>10.4g} {row['loss']:>10.4g} {row['laplacian']:>12.4g} "
                         f"{row['laplacian_stderr']:>9.3g} {_f(row['stokes_laplacian']):>10}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from gzone import cli

    spellings: dict[str, str] = {}
    try:
        args, config, spellings = configure(argv)
        from gzone.experiments import fort

        fort.validate(config)
        out = args.out or f"runs/fort-{config.study}-{args.preset}"
        if not args.plot_only:
            fort.run(config, out, data_dir=args.data_dir,
                     progress=cli.progress_bar(args, config.study, "point"))
        records = fort.load(out)
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

        from gzone.plots import fort as figures

        name = config.model if config.model != "mlp" else f"mlp{'-'.join(map(str, config.widths))}"
        title = f"{config.study}: {name} on {config.dataset} ({args.preset})"
        fig = figures.fort_figure(records, config.study, title=title, path_stem=f"{out}/{config.study}")
        print(f"figure: {out}/{config.study}.png (and .pdf)")
        if args.show:
            plt.show()
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
