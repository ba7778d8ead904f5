#!/usr/bin/env python
"""Cost of training on a random hyperplane (gzone.hypersurface) against full-space training.

LeNet-300-100 (``models.make_model("lenet300")``, bias-free: P = 266,200), one minibatch of 128
Fashion-MNIST-shaped Gaussian images (no data files needed), float32, Xavier θ0. Measured:

* U = one ``jax.jit(jax.value_and_grad(loss))`` of the full-space loss, data as arguments;
* one full-space Adam step (value_and_grad + ``optax.adam`` update), jitted, data as arguments —
  the unit of the table;
* one hyperplane Adam step θ̂ ↦ θ̂' (value_and_grad through ``hyperplane_point`` + Adam on θ̂) for
  d in (10, 100, 1,000, 10,000) with the sparse basis (``SparseBasis``: gather + segment_sum) and
  with a dense orthonormal (P, d) basis for d ≤ 1,000; basis, origin, metric and data are
  arguments of the jitted step. The dense basis is ``subspace.orthonormal_basis``'s — the Q of
  the same Gaussian matrix with diag(R) > 0 — computed by Cholesky QR (R = chol(AᵀA), Q = A R⁻¹):
  XLA:CPU's Householder QR takes 390 s at d = 1,000 on a 2-core CPU (NumPy's 217 s), Cholesky QR
  ~20 s; its agreement with ``orthonormal_basis`` (d = 10) and max |QᵀQ − I| are printed;
* the trainer's own step: ``train_hypersurface``'s compiled epoch (a ``lax.scan`` over S
  minibatches of 128, G = 1) divided by S, for the sparse bases;
* the time to build the sparse basis at d = 10,000 (NumPy, host).

Medians of ``--repeats`` calls; compilation is excluded (the first call) and reported apart.

    python benchmarks/bench_hypersurface.py             # ~2 minutes on a 2-core CPU
    python benchmarks/bench_hypersurface.py --quick     # d in (10, 100), a smoke test
"""

from __future__ import annotations

import argparse
import functools
import resource
import statistics
import time


def timed(fn) -> float:
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def median_time(fn, repeats: int) -> tuple[float, float]:
    """(first call — compilation included —, median of ``repeats`` later calls), seconds."""
    first = timed(fn)
    return first, statistics.median(timed(fn) for _ in range(repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--scan-steps", type=int, default=20, help="minibatches of the trainer epoch")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.flatten_util import ravel_pytree

    from gzone import hypersurface as hs
    from gzone import models, objective, subspace

    dims = (10, 100) if args.quick else (10, 100, 1_000, 10_000)
    dense_max = 100 if args.quick else 1_000
    batch = 128
    model = models.make_model("lenet300")
    keys = jax.random.split(jax.random.key(0), 4)
    params = models.init(model, keys[0], (28, 28, 1), scheme="xavier")
    origin, unravel = ravel_pytree(params)
    p = origin.size
    metric = subspace.layer_metric(params)
    x = jax.random.normal(keys[1], (batch * args.scan_steps, 28, 28, 1), jnp.float32)
    y = jax.random.randint(keys[2], (batch * args.scan_steps,), 0, 10)
    xb, yb = x[:batch], y[:batch]
    adam = optax.adam(1e-3)
    print(f"LeNet-300-100, P = {p:,}, minibatch {batch} Gaussian 28x28x1 images, float32, "
          f"{jax.devices()[0]}, jax {jax.__version__}; medians of {args.repeats}")

    def loss_full(q, x, y):
        return objective.cross_entropy(model.apply(q, x), y)

    lean = jax.jit(jax.value_and_grad(loss_full))
    c, u = median_time(lambda: lean(params, xb, yb), args.repeats)
    print(f"U (lean value_and_grad, full space): {u * 1e3:.2f} ms (first call {c:.2f} s)")

    @jax.jit
    def full_step(q, state, x, y):
        loss, grad = jax.value_and_grad(loss_full)(q, x, y)
        updates, state = adam.update(grad, state, q)
        return optax.apply_updates(q, updates), state, loss

    state = adam.init(params)
    c, full = median_time(lambda: full_step(params, state, xb, yb), args.repeats)
    print(f"one full-space Adam step: {full * 1e3:.2f} ms = {full / u:.2f} U (first call {c:.2f} s)")

    @jax.jit
    def plane_step(theta_hat, state, origin, basis, metric, x, y):
        def loss(t):
            return loss_full(unravel(hs.hyperplane_point(origin, basis, metric, t, 1.0)), x, y)

        value, grad = jax.value_and_grad(loss)(theta_hat)
        updates, state = adam.update(grad, state, theta_hat)
        return optax.apply_updates(theta_hat, updates), state, value

    @functools.partial(jax.jit, static_argnums=1)
    def dense_basis(key, d):
        """Q of subspace.orthonormal_basis(key, P, d) by Cholesky QR: A = Q R, R = chol(AᵀA)ᵀ."""
        a = jax.random.normal(key, (p, d), jnp.float32)
        r = jnp.linalg.cholesky(a.T @ a).T  # upper, positive diagonal
        return a @ jax.scipy.linalg.solve_triangular(r, jnp.eye(d, dtype=r.dtype), lower=False)

    def epoch_step(basis):  # the trainer's compiled epoch: S minibatches in one scan, G = 1
        theta = jnp.zeros((1, basis.dim), jnp.float32)
        carry = (theta, jax.vmap(optax.adam(1.0).init)(theta), jnp.full((1,), -1, jnp.int32))
        operands = (jnp.asarray(1e-3, jnp.float32), jnp.asarray(1.0, jnp.float32), x, y)
        return lambda: hs._epoch(model.apply, "hyperplane", batch, carry, np.int32(0), keys[3],
                                 params, basis, metric, jnp.ones(1, jnp.float32), *operands)

    checks: list[str] = []
    print(f"\n{'d':>7} {'basis':>7} {'nnz / P*d':>12} {'build s':>8} {'compile s':>9} "
          f"{'step ms':>8} {'/ full Adam':>11} {'trainer step ms':>15} {'/ full Adam':>11}")
    for d in dims:
        kinds = ("sparse", "dense") if d <= dense_max else ("sparse",)
        for kind in kinds:
            start = time.perf_counter()
            if kind == "sparse":
                basis = hs.sparse_basis(keys[3], p, d)
                size = basis.nnz  # the draw's own entries; stored: nnz_capacity(P, d)
            else:
                basis = dense_basis(keys[3], d)
                size = p * d
            jax.block_until_ready(basis)
            build = time.perf_counter() - start
            if kind == "dense":
                m = min(64, d)
                gram = basis[:, :m].T @ basis
                checks.append(f"d = {d:,}: max |QᵀQ − I| (first {m} rows) "
                              f"{float(jnp.max(jnp.abs(gram - jnp.eye(m, d)))):.1e}")
                if d == 10:
                    ref = subspace.orthonormal_basis(keys[3], p, d)
                    checks.append(f"d = 10: max |Q − orthonormal_basis| {float(jnp.max(jnp.abs(basis - ref))):.1e}")
            theta = jnp.zeros(d, jnp.float32)
            st = adam.init(theta)
            c, t = median_time(lambda theta=theta, st=st, basis=basis: plane_step(
                theta, st, origin, basis, metric, xb, yb), args.repeats)
            trainer = ""
            if kind == "sparse":
                _, te = median_time(epoch_step(basis), max(3, args.repeats // 3))
                trainer = f"{te / args.scan_steps * 1e3:15.2f} {te / args.scan_steps / full:11.2f}"
            print(f"{d:>7,} {kind:>7} {size:>12,} {build:8.2f} {c:9.2f} {t * 1e3:8.2f} "
                  f"{t / full:11.2f} {trainer}")

    print("dense bases: " + "; ".join(checks))
    if not args.quick:
        builds = [timed(lambda i=i: hs.sparse_basis(jax.random.fold_in(keys[3], i), p, 10_000).values)
                  for i in range(3)]
        print(f"\nsparse basis build, P = {p:,}, d = 10,000: median {statistics.median(builds):.2f} s "
              f"of {len(builds)} ({', '.join(f'{b:.2f}' for b in builds)})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
