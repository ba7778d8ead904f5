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
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gzone.experiments import zone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_mutually_exclusive_group()
    for mode in zone.MODES:
        modes.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode,
                           help=f"sweep mode {mode}")
    parser.add_argument("--preset", choices=sorted(zone.PRESETS), default="default",
                        help="named paper setting; explicit options override it")
    parser.add_argument("--model", help="lenet300 | lenet5 | mlp")
    parser.add_argument("--widths", type=lambda s: tuple(int(w) for w in s.split(",")),
                        help="hidden widths of --model mlp, e.g. 300,100")
    parser.add_argument("--dataset", help="digits | fashion_mnist | mnist | cifar10 | svhn | gaussian")
    parser.add_argument("--split", help="train | test")
    parser.add_argument("--n-samples", type=int, help="first N samples of the split")
    parser.add_argument("--dim", type=int, help="subspace dimension d")
    parser.add_argument("--dims", type=lambda s: tuple(int(d) for d in s.split(",")),
                        help="dimensions of --dim-grid, e.g. 2,5,10,20,50")
    parser.add_argument("--basis", help="orthonormal | sparse")
    parser.add_argument("--init", help="kaiming | xavier | authors | authors-early")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    parser.add_argument("--alpha-min", type=float)
    parser.add_argument("--alpha-max", type=float)
    parser.add_argument("--temperature-min", type=float)
    parser.add_argument("--temperature-max", type=float)
    parser.add_argument("--num-points", type=int, help="grid points of alpha or T")
    parser.add_argument("--dtype", choices=("float32", "float64"))
    parser.add_argument("--chunk-size", type=int, help="samples per jit-compiled chunk (default: automatic)")
    parser.add_argument("--full-space", action="store_true", default=None,
                        help="also measure H, G-term, H-term in the full parameter space")
    parser.add_argument("--probes", type=int, help="full space: Hutchinson probes per term (default 100)")
    parser.add_argument("--lanczos-iters", type=int,
                        help="full space: Lanczos steps per run, clipped to P (default 100)")
    parser.add_argument("--density-probes", type=int,
                        help="full space: SLQ probes (Lanczos runs) per term (default 1)")
    parser.add_argument("--out", default=None, help="output directory (default runs/zone-<mode>-<preset>)")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files (else $GZONE_DATA_DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", action="store_true", help="skip the figure")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    from gzone.experiments import zone

    fields = {**zone.PRESETS[args.preset], "mode": args.mode or "alpha-grid"}
    for field in dataclasses.fields(zone.ZoneConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            fields[field.name] = value
    return zone.ZoneConfig(**fields)


def print_rows(rows: list[dict], x: str) -> None:
    for row in rows:
        pc, sn = row["positive_curvature"], row["spectral_norm"]
        pc_text = f"{pc[0]:8.3f} [{pc[1]:7.3f}, {pc[2]:7.3f}]" if pc else "undefined"
        sn_text = f"{sn[0]:15.4g}" if sn else "undefined"
        print(f"{row[x]:>12.4g} {row['term']:>8} {pc_text:>34} {sn_text}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dtype == "float64":
        import gzone

        gzone.enable_float64()
    from tqdm import tqdm

    from gzone import plots
    from gzone.experiments import zone
    from gzone.experiments.base import ConfigError

    config = build_config(args)
    out = args.out or f"runs/zone-{config.mode}-{args.preset}"
    progress = None if args.no_progress else (lambda it, n: tqdm(it, total=n, desc="points", unit="pt"))
    try:
        records = zone.run(config, out, data_dir=args.data_dir, progress=progress)
    except (ValueError, FileNotFoundError) as error:
        text = error.for_cli({"out_dir": "--out"}) if isinstance(error, ConfigError) else error
        print(f"error: {text}", file=sys.stderr)
        return 2
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
        title = f"{config.model} on {config.dataset}, N={config.n_samples}, {config.dtype}"
        plots.zone_figure(records, x, title=title, path_stem=f"{out}/zone")
        print(f"figure: {out}/zone.png, {out}/zone.pdf")
        if config.full_space:
            plots.density_figure(records, x, title=f"{title}, full space", path_stem=f"{out}/densities")
            print(f"figure: {out}/densities.png, {out}/densities.pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
