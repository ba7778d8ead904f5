#!/usr/bin/env python
"""What issue #21 changed at paper shapes, measured on this machine: the cost of one training log
with sharpness, and the memory of a batch of runs against gzone's estimate.

* **Log cost.** One log of a batch of G LeNet-300-100 runs (Fashion-MNIST, N images, warm-started
  sharpness as at a log of a run): the metrics pass plus the sharpness of every run — *before*,
  each run's sharpness by its own host-driven Lanczos (:func:`gzone.training.sharpness_of`, one
  device-to-host read per Lanczos step and per run, as gzone did until issue #21), and *now*, one
  vmapped Lanczos over the batch in one program (:func:`gzone.training.sharpness.grid_sharpness`,
  one host read per log). Medians of repeats, compilation apart.
* **Memory.** For a batch of G runs on N images in chunks of C: XLA's own memory analysis of the
  compiled block of steps (arguments + temporaries) against :func:`gzone.training.loop.point_bytes`
  × G plus the data, unchunked and chunked (the chunks' gradients accumulated in a scan).

    python benchmarks/bench_scale.py                 # N = 10,000, G = 6
    python benchmarks/bench_scale.py --quick         # N = 1,000, G = 3
"""

from __future__ import annotations

import argparse
import statistics
import time


def timed(fn) -> float:
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--points", type=int, default=None, help="runs per batch (G)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from gzone import curvature, data, models, training
    from gzone.training import sharpness, step
    from gzone.training.loop import point_bytes

    n = args.n or (1000 if args.quick else 10000)
    g = args.points or (3 if args.quick else 6)
    try:
        ds, source = data.load_dataset("fashion_mnist", n=n), "Fashion-MNIST"
    except (FileNotFoundError, ValueError):
        ds, source = data.load_dataset("gaussian", n=n, shape=(28, 28, 1)), "Gaussian images"
    model = models.make_model("lenet300")
    params = models.init(model, jax.random.key(0), ds.x.shape[1:])
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    batches = curvature.prepare_batches(model.apply, params, x, y)
    alphas = np.geomspace(0.7, 1.5, g)
    grid = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[models.scale(params, a) for a in alphas])
    temps = jnp.ones((g,), jnp.float32)
    size = curvature.num_params(params)
    print(f"LeNet-300-100, {source}, N = {n}, G = {g} runs, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}")

    # a warm start, as at every log but the first: each run's top eigenvector, slightly perturbed
    warm = sharpness.grid_sharpness(model.apply, grid, batches, temps, jnp.zeros((g, size)),
                                    jnp.zeros(g, bool), jnp.ones(g, bool), jax.random.key(1),
                                    num_iters=20, tol=1e-3, driver="scan")[2]
    warm = warm + 0.05 * jax.random.normal(jax.random.key(2), warm.shape) / np.sqrt(size)
    key = jax.random.key(3)

    def before():
        out = []
        for i in range(g):
            point = jax.tree_util.tree_map(lambda a, i=i: a[i], grid)
            out.append(training.sharpness_of(model.apply, point, batches, temps[i], num_iters=20,
                                             v0=warm[i], key=key, tol=1e-3)[0])
        return jnp.asarray(out)

    def now():
        return sharpness.grid_sharpness(model.apply, grid, batches, temps, warm, jnp.ones(g, bool),
                                        jnp.ones(g, bool), key, num_iters=20, tol=1e-3,
                                        driver="scan")[0]

    metrics = training.metrics.grid_metrics

    def log_metrics():
        return metrics(model.apply, grid, grid, batches, temps, False)["loss"]

    for fn in (before, now, log_metrics):
        timed(fn)
    rows = {name: statistics.median(timed(fn) for _ in range(args.repeats))
            for name, fn in (("before", before), ("now", now), ("metrics", log_metrics))}
    lam_before, lam_now = np.asarray(before()), np.asarray(now())
    print(f"one log's sharpness of {g} runs: before {rows['before']:.3f} s (per run, host "
          f"Lanczos), now {rows['now']:.3f} s (one vmapped program): "
          f"{rows['before'] / rows['now']:.2f}x; the log's metrics pass {rows['metrics']:.3f} s; "
          f"max |Δλ|/|λ| = {np.max(np.abs(lam_now - lam_before) / np.abs(lam_before)):.1e}")

    # memory: the compiled block of steps, XLA's own analysis, against the estimate
    opt = training.make_optimizer("gd")
    state = jax.vmap(lambda p: training.init_optimizer("gd", p, 0.1))(grid)
    carry = (grid, state, jnp.full((g,), -1, jnp.int32))
    for chunk in (n, -(-n // 4)):
        b = curvature.prepare_batches(model.apply, params, x, y, chunk)
        compiled = step._scan_block.lower(model.apply, opt, "true", False, 10, True, "float32", 2,
                                          carry, jnp.int32(0), b, temps,
                                          jax.random.key(0)).compile()
        analysis = compiled.memory_analysis()
        measured = analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
        activations = 4 * curvature._activation_floats_per_sample(model.apply, params, x) * 4 * chunk * g
        estimate = g * point_bytes(params, "gd", False, 20) + b.x.nbytes + activations
        print(f"block of steps, G = {g}, chunks of {chunk}: XLA {measured / 2**20:7.1f} MiB "
              f"(arguments {analysis.argument_size_in_bytes / 2**20:.1f} + temporaries "
              f"{analysis.temp_size_in_bytes / 2**20:.1f}); estimate {estimate / 2**20:7.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
