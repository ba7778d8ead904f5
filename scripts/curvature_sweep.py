#!/usr/bin/env python
"""Goldilocks-zone sweeps: positive curvature and spectral norms of H, G-term and H-term on random
d-dimensional subspaces (ICML paper Fig. 1, 2, 4 left; Fort & Scherlis Fig. 3-4).

    python scripts/curvature_sweep.py --alpha-grid                 # Fig. 1 left / Fig. 2
    python scripts/curvature_sweep.py --temperature-grid           # Fig. 1 right (alpha = 1)
    python scripts/curvature_sweep.py --alpha-temperature          # Fig. 1 middle (T = alpha^L)
    python scripts/curvature_sweep.py --dim-grid                   # Fig. 4 left
    python scripts/curvature_sweep.py --alpha-grid --preset lenet300-fashion --data-dir ../shared/data
    python scripts/curvature_sweep.py --alpha-grid --full-space    # + the full parameter space

With no options it runs the alpha grid on the embedded default (scikit-learn digits, MLP
64-300-100-10, 1,000 samples, d = 50, 3 seeds) in about a minute on 2 CPU cores. Results are
appended to <out>/results.jsonl as they are computed; rerunning resumes; the figure goes to
<out>/zone.png and .pdf.

--full-space adds, per (alpha, T, seed), one record per term in the full P-dimensional space
(Hutchinson positive curvature with a standard error, Lanczos top eigenvalues and spectral norm,
SLQ spectral densities; gzone.fullspace), drawn dashed in zone.png, with the densities in
<out>/densities.png and .pdf. It costs about 3 x (lanczos-iters x density-probes + probes)
products H v per point. A directory is tied to --full-space and its settings either way.

Every field of gzone.experiments.zone.ZoneConfig is an option (listed below); --dtype float64
switches JAX to 64-bit; figures are only written to files unless --show.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The options: --preset, every ZoneConfig field (defaults shown from ``preset``) with a flag
    of its own for each mode of zone.MODES (--alpha-grid ...), --set, and the run options."""
    from gzone import cli
    from gzone.experiments import zone

    parser = cli.OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(zone.PRESETS), default="default",
                        help="named paper setting; explicit options override it (default: default)")
    cli.add_config_options(parser, zone.ZoneConfig, defaults=zone.PRESETS.get(preset or "default"),
                           shorthands={"mode": zone.MODES})
    cli.add_run_options(parser, out_default="runs/zone-<mode>-<preset>")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gzone import cli

    return build_parser(cli.peek(argv, "--preset").preset).parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The ZoneConfig of the preset and the options given, and how each was spelled."""
    from gzone import cli
    from gzone.experiments import zone

    values, spellings = cli.config_overrides(args, zone.ZoneConfig)
    return zone.ZoneConfig(**{**zone.PRESETS[args.preset], **values}), spellings


def configure(argv: list[str] | None = None) -> tuple[argparse.Namespace, Any, dict[str, str]]:
    """Parse, build the config and switch JAX to 64-bit iff its dtype is float64 (cli.configure)."""
    from gzone import cli

    return cli.configure(argv, parse_args, build_config)


def print_rows(rows: list[dict], x: str) -> None:
    for row in rows:
        pc, sn = row["positive_curvature"], row["spectral_norm"]
        pc_text = f"{pc[0]:8.3f} [{pc[1]:7.3f}, {pc[2]:7.3f}]" if pc else "undefined"
        sn_text = f"{sn[0]:15.4g}" if sn else "undefined"
        print(f"{row[x]:>12.4g} {row['term']:>8} {pc_text:>34} {sn_text}")


def main(argv: list[str] | None = None) -> int:
    from gzone import cli

    spellings: dict[str, str] = {}
    try:
        args, config, spellings = configure(argv)
        from gzone.experiments import zone

        out = args.out or f"runs/zone-{config.mode}-{args.preset}"
        progress = cli.progress_bar(args, "points", "pt")
        records = zone.run(config, out, data_dir=args.data_dir, progress=progress)
    except cli.ERRORS as error:
        return cli.report(error, spellings)
    x = zone.x_field(config.mode)
    print(f"{len(records)} records in {out}/results.jsonl")
    print(f"{x:>12} {'term':>8} {'pos.curv (median [min, max])':>34} {'||.||_2 median':>15}")
    print_rows(zone.summarize(records, x), x)
    if config.full_space:
        print("full parameter space:")
        print_rows(zone.summarize(records, x, full=True), x)
    flagged = sum(bool(r["flags"]) for r in records)
    if flagged:
        print(f"warning: {flagged} records carry flags (non-finite or undefined values); see 'flags'")
    if not args.no_plot:
        cli.use_backend(args.show)
        import matplotlib.pyplot as plt

        from gzone import plots

        title = f"{config.model} on {config.dataset}, N={config.n_samples}, {config.dtype}"
        figures = [plots.zone_figure(records, x, title=title, path_stem=f"{out}/zone")]
        print(f"figure: {out}/zone.png, {out}/zone.pdf")
        if config.full_space:
            figures.append(plots.density_figure(records, x, title=f"{title}, full space",
                                                path_stem=f"{out}/densities"))
            print(f"figure: {out}/densities.png, {out}/densities.pdf")
        if args.show:
            plt.show()
        for fig in figures:
            plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
