#!/usr/bin/env python
"""Initialisations per second of the Fig. 6 computation: ``jax.vmap`` over seeds vs a Python loop.

Per initialisation (the study ``icml/many-inits``, ``gzone.studies.icml.many_inits``): Kaiming θ0 and an orthonormal (P, d) basis,
the projected Hessian and G-term on N images (one forward-over-reverse pass with d tangents per
chunk of samples), their positive curvature, the full-space gradient norm, the loss, the mean
softmax entropy and ‖Q̂ − Q‖. The model is LeNet-5 on N CIFAR-10-shaped N(0, 1) images.

    python benchmarks/bench_inside.py --quick      # N = 128, d = 10, 4 seeds (about a minute on 2 cores)
    python benchmarks/bench_inside.py              # N = 3,000, d = 50, 8 seeds (the paper's Fig. 6 size)
    python benchmarks/bench_inside.py --seeds 2 --repeats 1   # that size on a 2-core CPU (~10 min)

Reports compile times apart (first call minus the median run), then the median of ``--repeats`` timed runs
of each variant, and the largest relative difference between the two variants' statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import jax
import numpy as np

from gzone.engine.setup import load_data, make_setup
from gzone.studies.icml import many_inits  # the Fig. 6 study


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: N=128, d=10, 4 seeds")
    parser.add_argument("--model", default="lenet5", help="lenet5 | lenet300 | mlp")
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per vmapped batch")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.n_samples or (128 if args.quick else 3000)
    dim = args.dim or (10 if args.quick else 50)
    seeds = args.seeds or (4 if args.quick else 8)
    shape = (28, 28, 1) if args.model == "lenet300" else (32, 32, 3)
    config = many_inits.Config(model=args.model, dataset="gaussian", n_samples=n, dim=dim,
                               n_inits=seeds, seeds_per_chunk=seeds)
    setup = make_setup(config, load_data("gaussian", "train", n, data_dir=None, shape=shape))
    vconfig = dataclasses.replace(config, chunk_size=many_inits.chunk_size_for(setup, config))
    one = dataclasses.replace(config, seeds_per_chunk=1)
    lconfig = dataclasses.replace(one, chunk_size=many_inits.chunk_size_for(setup, one))
    keys = many_inits.seed_keys(0, seeds)
    print(f"{args.model}: P = {setup.num_params}, N = {n}, d = {dim}, {seeds} seeds; "
          f"device {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs visible; "
          f"sample chunks: vmapped {vconfig.chunk_size}, loop {lconfig.chunk_size}")

    batched = many_inits.batched_statistics(setup, vconfig)
    looped = many_inits.looped_statistics(setup, lconfig)
    # first calls compile (one chunk body, the state draw and the finalisation) and run once
    start = time.perf_counter()
    out_v = jax.device_get(batched(keys, setup.x, setup.y))
    first_v = time.perf_counter() - start
    start = time.perf_counter()
    out_l = [jax.device_get(looped(keys[0], setup.x, setup.y))]
    first_l = time.perf_counter() - start
    out_l += [jax.device_get(looped(k, setup.x, setup.y)) for k in keys[1:]]
    rel = max(abs(float(out_l[i][f]) - float(out_v[f][i])) / max(abs(float(out_v[f][i])), 1e-12)
              for i in range(seeds) for f in many_inits.FIG6_FIELDS)

    t_v = [_timed(lambda: batched(keys, setup.x, setup.y)) for _ in range(args.repeats)]
    t_l = [_timed(lambda: [looped(k, setup.x, setup.y) for k in keys]) for _ in range(args.repeats)]
    med_v, med_l = statistics.median(t_v), statistics.median(t_l)
    print(f"compile (first call minus a timed run): vmapped {first_v - med_v:.1f} s, "
          f"loop {first_l - med_l / seeds:.1f} s")
    print(f"vmapped over {seeds} seeds: median {med_v:.3f} s of {args.repeats} -> "
          f"{seeds / med_v:.2f} inits/s   (runs: {', '.join(f'{t:.3f}' for t in t_v)})")
    print(f"python loop over {seeds} seeds: median {med_l:.3f} s of {args.repeats} -> "
          f"{seeds / med_l:.2f} inits/s   (runs: {', '.join(f'{t:.3f}' for t in t_l)})")
    print(f"speed-up of vmap over the loop: {med_l / med_v:.2f}x; "
          f"largest relative difference of the statistics: {rel:.2e}")
    print("statistics of seed 0:", {f: round(float(np.asarray(out_v[f][0])), 4)
                                    for f in many_inits.FIG6_FIELDS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
