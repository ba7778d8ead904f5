#!/usr/bin/env python
"""What ``gzone.diagnose`` costs against its parts (issue 20): the projected pass and the
Lanczos/Hutchinson work it does.

LeNet-300-100 (bias-free, Kaiming) on the first N Fashion-MNIST training images
(``$GZONE_DATA_DIR``, else N(0, 1) images of that shape), float32, through
``gzone.adapters.function``. Timed, each the median of ``--repeats`` warm runs (compile apart):

* ``projected``: :func:`gzone.curvature.projected` with d tangents (H, G-term, H-term on a d-plane);
* ``fullspace``: :func:`gzone.fullspace.full_space_curvature` with diagnose's settings (per term
  ``lanczos_iters + probes + 2`` products);
* ``layers``: the per-layer blocks (exact: the block size rounded up to 16 products; else
  ``lanczos_iters + probes + 1`` products each);
* ``diagnose``: the whole call (no probes over T or α).

The claim checked: diagnose ≤ 1.5 × projected + fullspace + layers (the Lanczos work).

    python benchmarks/bench_diagnose.py                  # N = 10,000, d = 50 (the issue's size)
    python benchmarks/bench_diagnose.py --quick          # N = 1,000, d = 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp

import gzone
from gzone import adapters, curvature, data, diagnosis, fullspace, models, subspace


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of ``repeats`` further calls) in seconds, results ready."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    return first, statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--lanczos-iters", type=int, default=40)
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.n_samples or (1000 if args.quick else 10000)
    dim = args.dim or (10 if args.quick else 50)
    try:
        ds = data.load_dataset("fashion_mnist", "train", n=n, data_dir=os.environ.get("GZONE_DATA_DIR"))
    except (FileNotFoundError, ValueError, ImportError):
        ds = data.load_dataset("gaussian", "train", n=n, shape=(28, 28, 1))
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    net = models.LeNet300100()
    model = adapters.function(net.apply, models.init(net, jax.random.key(0), x.shape[1:]),
                              name="LeNet-300-100")
    params = model.params
    size = curvature.num_params(params)
    key = jax.random.key(1)
    basis = subspace.orthonormal_basis(key, size, dim, jnp.float32)
    proj_batches = curvature.prepare_batches(model.apply, params, x, y, None, dim)
    batches = curvature.prepare_batches(model.apply, params, x, y, None, 1)
    settings = {"lanczos_iters": args.lanczos_iters, "probes": args.probes}

    def projected():
        return curvature.projected(model.apply, params, basis, proj_batches).hessian

    def full():
        out = fullspace.full_space_curvature(
            model.apply, params, batches, None, 1.0, key=key, num_probes=args.probes,
            num_iters=args.lanczos_iters, top_k=1, density=False, common_probes=True)
        return out["hessian"].spectral_norm

    blocks = diagnosis.layer_blocks(params)

    def layers():
        return [diagnosis._layer_record(model, params, batches, name, index, key,
                                        exact_block=64, common={}, **settings)["top_eigenvalue"]
                for name, index in blocks]

    def whole():
        return gzone.diagnose(model, x, y, key=key, dim=dim, **settings).records[0]["dim"]

    results = {name: timed(fn, args.repeats) for name, fn in
               (("projected", projected), ("fullspace", full), ("layers", layers),
                ("diagnose", whole))}
    products = {"fullspace": 3 * (args.lanczos_iters + args.probes + 2),
                "layers": sum(-(-len(i) // 16) * 16 if len(i) <= 64 else
                              min(args.lanczos_iters, len(i)) + args.probes + 1 for _, i in blocks)}
    print(f"LeNet-300-100 ({size:,} parameters), N = {n:,}, d = {dim}, {jax.devices()[0].platform}, "
          f"{args.repeats} repeats (median), jax {jax.__version__}")
    print("| part | first call (s) | warm median (s) | matrix-vector products |")
    print("|---|---|---|---|")
    for name, (first, warm) in results.items():
        print(f"| {name} | {first:.2f} | {warm:.2f} | {products.get(name, '-')} |")
    budget = 1.5 * results["projected"][1] + results["fullspace"][1] + results["layers"][1]
    print(f"diagnose / (1.5 x projected + fullspace + layers) = "
          f"{results['diagnose'][1] / budget:.2f} (at most 1 required)")


if __name__ == "__main__":
    main()
