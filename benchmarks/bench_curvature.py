#!/usr/bin/env python
"""Cost of the projected curvature pass against full-batch gradients.

For each case and pass:

* U = the lean full-batch gradient: one ``jax.jit(jax.value_and_grad(loss))`` with the data passed
  as arguments, already on device, nothing padded per call (the unit of every ratio);
* LG = ``curvature.loss_and_gradient`` on ``Batches`` prepared once (automatic chunks), and on the
  raw arrays (padded and stacked per call), as ratios to U;
* P = ``curvature.projected`` (H, G-term and H-term, d = 50; called on the arrays, as a user does)
  with the input-layer pass (``input_layer="auto"``, the default) or the generic one
  (``input_layer=None``), automatic chunks unless ``--chunk-size``; the ratio P / (d·U), per repeat
  with U timed right before P (median and range);

compile times apart (first call minus the median); peak resident memory of the case's own
process. Medians of ``--repeats`` runs.

    python benchmarks/bench_curvature.py                 # all cases (real data if GZONE_DATA_DIR is set)
    python benchmarks/bench_curvature.py --quick         # small sizes, a smoke test
    python benchmarks/bench_curvature.py --case lenet300-10k --dtype float64

Targets (issue #9): LG ≤ 1.1·U and, with automatic chunks, P ≤ 1.0·d·U for LeNet-300-100 at
N = 10,000, float32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "lenet300-1k": {"model": "lenet300", "dataset": "fashion_mnist", "n": 1000},
    "lenet300-10k": {"model": "lenet300", "dataset": "fashion_mnist", "n": 10000},
    "lenet5-1k": {"model": "lenet5", "dataset": "cifar10", "n": 1000},
}
PASSES = ("input-layer", "generic")  # curvature.projected(input_layer="auto") / (input_layer=None)
QUICK = {"lenet300-1k": 200, "lenet300-10k": 500, "lenet5-1k": 100}


def first_call(fn) -> float:
    """Seconds of the first call, compilation included."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(gradient_fn, projected_fn, repeats: int) -> tuple[list[float], list[float]]:
    """Per repeat: the median of 5 gradients, then one projection — so both see the same machine
    state (on a shared VM the speed drifts by tens of per cent over minutes)."""
    import jax

    gradient_times, projected_times = [], []
    for _ in range(repeats):
        ticks = []
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(gradient_fn())
            ticks.append(time.perf_counter() - start)
        gradient_times.append(statistics.median(ticks))
        start = time.perf_counter()
        jax.block_until_ready(projected_fn())
        projected_times.append(time.perf_counter() - start)
    return gradient_times, projected_times


def run_case(
    name: str, n: int, dim: int, dtype: str, repeats: int, chunk_size: int | None, pass_name: str
) -> dict:
    if dtype == "float64":
        import gzone

        gzone.enable_float64()
    import jax
    import jax.numpy as jnp

    from gzone import curvature, data, models, objective, subspace

    spec = CASES[name]
    try:
        ds = data.load_dataset(spec["dataset"], n=n)
        x, y, source = ds.x, ds.y, spec["dataset"]
    except (FileNotFoundError, ValueError):
        shape = (28, 28, 1) if spec["model"] == "lenet300" else (32, 32, 3)
        ds = data.load_dataset("gaussian", n=n, shape=shape)
        x, y, source = ds.x, ds.y, "gaussian (real files not found)"
    model = models.make_model(spec["model"])
    params = models.init(model, jax.random.key(0), x.shape[1:], dtype=jnp.dtype(dtype))
    x, y = jnp.asarray(x, dtype), jnp.asarray(y)
    num_params = models.num_params(params)
    basis = subspace.orthonormal_basis(jax.random.key(1), num_params, dim, jnp.dtype(dtype))
    input_layer = "auto" if pass_name == "input-layer" else None

    @jax.jit
    def lean_gradient(params, x, y):  # U: data as arguments, on device, nothing re-padded
        return jax.value_and_grad(lambda p: objective.cross_entropy(model.apply(p, x), y))(params)

    batches = curvature.prepare_batches(model.apply, params, x, y)

    def gradient_fn():
        return lean_gradient(params, x, y)

    def prepared_fn():
        return curvature.loss_and_gradient(model.apply, params, batches)

    def raw_fn():
        return curvature.loss_and_gradient(model.apply, params, x, y)

    def projected_fn():
        return curvature.projected(model.apply, params, basis, x, y, chunk_size=chunk_size,
                                   input_layer=input_layer)

    grad_first, proj_first = first_call(gradient_fn), first_call(projected_fn)
    first_call(prepared_fn), first_call(raw_fn)
    _, prepared_times = interleaved(gradient_fn, prepared_fn, 3 * repeats)
    gradient_times, raw_times = interleaved(gradient_fn, raw_fn, 3 * repeats)
    lg_ratio = statistics.median(p / g for g, p in zip(gradient_times, prepared_times))
    raw_ratio = statistics.median(p / g for g, p in zip(gradient_times, raw_times))
    gradient_times, projected_times = interleaved(gradient_fn, projected_fn, repeats)
    grad_time, proj_time = statistics.median(gradient_times), statistics.median(projected_times)
    ratios = [p / (dim * g) for g, p in zip(gradient_times, projected_times)]
    return {
        "case": name, "pass": pass_name, "model": spec["model"], "data": source, "n": len(x),
        "P": num_params, "d": dim, "dtype": dtype, "backend": jax.default_backend(),
        "device": str(jax.devices()[0]), "jax": jax.__version__,
        "chunk_size": chunk_size or curvature.auto_chunk_size(model.apply, params, x, dim),
        "gradient_s": grad_time, "lg_prepared_ratio": lg_ratio, "lg_raw_ratio": raw_ratio,
        "projected_s": proj_time, "ratio_to_dU": statistics.median(ratios),
        "ratio_range": (min(ratios), max(ratios)),
        "compile_gradient_s": grad_first - grad_time, "compile_projected_s": proj_first - proj_time,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small N: a smoke test of the script")
    parser.add_argument("--pass", dest="passes", choices=PASSES, action="append",
                        help="which projected pass to time (default: both)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = args.case or list(CASES)
    if args.child:
        name = cases[0]
        n = QUICK[name] if args.quick else CASES[name]["n"]
        print(json.dumps(run_case(name, n, args.dim, args.dtype, args.repeats, args.chunk_size,
                                  args.passes[0])))
        return 0
    header = (f"{'case':<14}{'pass':<13}{'N':>7}{'P':>8}{'U (s)':>9}{'LG/U':>6}{'raw/U':>6}"
              f"{'chunk':>7}{'proj (s)':>10}"
              f"{'proj/(d·U)':>12}{'[min, max]':>14}{'compile U/proj (s)':>20}{'peak GiB':>10}")
    print(header)
    for name in cases:
        for pass_name in args.passes or PASSES:  # one process each: own compile cache and peak memory
            command = [sys.executable, __file__, "--child", "--case", name, "--dim", str(args.dim),
                       "--dtype", args.dtype, "--repeats", str(args.repeats), "--pass", pass_name]
            command += ["--quick"] if args.quick else []
            command += ["--chunk-size", str(args.chunk_size)] if args.chunk_size else []
            out = subprocess.run(command, capture_output=True, text=True, env=os.environ, check=False)
            if out.returncode != 0:
                print(f"{name} ({pass_name}): failed\n{out.stderr[-2000:]}")
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            low, high = r["ratio_range"]
            print(f"{r['case']:<14}{r['pass']:<13}{r['n']:>7}{r['P']:>8}{r['gradient_s']:>9.4f}"
                  f"{r['lg_prepared_ratio']:>6.2f}{r['lg_raw_ratio']:>6.2f}{r['chunk_size']:>7}"
                  f"{r['projected_s']:>10.3f}{r['ratio_to_dU']:>12.2f}{f'[{low:.2f}, {high:.2f}]':>14}"
                  f"{r['compile_gradient_s']:>10.2f}/{r['compile_projected_s']:<9.2f}"
                  f"{r['peak_rss_gib']:>10.2f}", flush=True)
        print(f"  data: {r['data']}, dtype {r['dtype']}, d={r['d']}, {r['device']}, "
              f"jax {r['jax']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
