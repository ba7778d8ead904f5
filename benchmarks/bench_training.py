#!/usr/bin/env python
"""Cost of full-batch training (gzone.training) against the lean gradient U.

LeNet-300-100 on the first N Fashion-MNIST images (Gaussian images of that shape when the files
are missing, which the output says), float32:

* U = one ``jax.jit(jax.value_and_grad(loss))`` with the data as arguments (median of 7);
* one GD step = (time of ``train(steps=S, log_every=S, sharpness=False)``) / S, both drivers
  (``scan``: a ``lax.scan`` block; ``host``: a Python loop over one jitted step), as a ratio to U
  (target, issue #10: ≤ 1.1 U);
* the sharpness overhead at ``log_every=100``: ``train`` with and without sharpness over the same
  steps (target ≤ 20 % of training time; the first estimate is cold, later ones warm-started);
* grid throughput: ``train_grid`` over G points vmapped against a Python loop of ``train`` runs;
* App. E (issue #11): one USO step (``uso=True``: the gradient of a linear objective of the
  logits) and one GD step of the linearised model (``jacobian.linearized``: a ``jvp`` inside the
  gradient), in U.

Compilation is excluded (every timed call is the second of its kind).

    python benchmarks/bench_training.py                # N = 10,000, S = 200, 400 steps, G = 4
    python benchmarks/bench_training.py --quick        # N = 1,000, a smoke test
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time


def timed(fn) -> float:
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps of the per-step timing")
    parser.add_argument("--sharpness-steps", type=int, default=None)
    parser.add_argument("--grid", type=int, default=4, help="points of the grid timing")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from gzone import data, jacobian, models, objective, training

    n = args.n or (1000 if args.quick else 10000)
    steps = args.steps or (50 if args.quick else 200)
    sharp_steps = args.sharpness_steps or (200 if args.quick else 400)
    try:
        ds, source = data.load_dataset("fashion_mnist", n=n), "fashion_mnist"
    except (FileNotFoundError, ValueError) as error:
        ds = data.load_dataset("gaussian", n=n, shape=(28, 28, 1))
        source = f"gaussian images (Fashion-MNIST not found: {str(error).splitlines()[0][:60]})"
    model = models.make_model("lenet300")
    params = models.init(model, jax.random.key(0), ds.x.shape[1:])
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)

    @jax.jit
    def lean_gradient(p, x, y):
        return jax.value_and_grad(lambda q: objective.cross_entropy(model.apply(q, x), y))(p)

    timed(lambda: lean_gradient(params, x, y))
    u = statistics.median(timed(lambda: lean_gradient(params, x, y)) for _ in range(7))
    print(f"LeNet-300-100, N = {n} ({source}), float32, {jax.devices()[0]}, jax {jax.__version__}")
    print(f"U (lean full-batch gradient): {u * 1e3:.1f} ms")

    def run(**kw):
        return training.train(model.apply, params, x, y, lr=0.05, **kw).params

    for driver in ("scan", "host"):
        kw = {"steps": steps, "log_every": steps, "sharpness": False, "driver": driver}
        timed(lambda kw=kw: run(**kw))
        t = timed(lambda kw=kw: run(**kw))
        print(f"one GD step, {driver:>4} driver: {t / steps * 1e3:7.1f} ms = {t / steps / u:.2f} U "
              f"({steps} steps and 2 logs in {t:.2f} s)")

    for name, fn, start, extra in (
            ("USO", model.apply, params, {"uso": True}),
            ("linearised-model", jacobian.linearized(model.apply),
             jacobian.linearization_point(params), {})):
        kw = {"steps": steps, "log_every": steps, "sharpness": False, "driver": "scan", **extra}

        def step_run(fn=fn, start=start, kw=kw):
            return training.train(fn, start, x, y, lr=0.05, **kw).params

        timed(step_run)
        t = timed(step_run)
        print(f"one {name} step (scan): {t / steps * 1e3:7.1f} ms = {t / steps / u:.2f} U")

    kw = {"steps": sharp_steps, "log_every": 100, "driver": "scan"}
    timed(lambda: run(sharpness=False, **kw)), timed(lambda: run(**kw))
    plain, sharp = timed(lambda: run(sharpness=False, **kw)), timed(lambda: run(**kw))
    matvecs = training.train(model.apply, params, x, y, lr=0.05, **kw).history["sharpness_matvecs"]
    print(f"sharpness at log_every=100 over {sharp_steps} steps: +{(sharp - plain) / plain * 100:.0f} % "
          f"({plain:.2f} s -> {sharp:.2f} s; {len(matvecs)} estimates, Hessian-vector products "
          f"per estimate {matvecs.astype(int).tolist()})")

    g = args.grid
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                     *[models.scale(params, a) for a in jnp.geomspace(0.5, 2, g)])
    lrs = [0.05] * g
    kw = {"steps": steps, "log_every": steps, "sharpness": False, "driver": "scan"}

    def grid():
        return training.train_grid(model.apply, stacked, x, y, lr=lrs, **kw).params

    def loop():
        return [training.train(model.apply, jax.tree_util.tree_map(lambda a, i=i: a[i], stacked),
                               x, y, lr=lrs[i], **kw).params for i in range(g)]

    timed(grid), timed(loop)
    tg, tl = timed(grid), timed(loop)
    print(f"grid of {g} runs x {steps} steps: vmapped {tg:.2f} s, loop of runs {tl:.2f} s "
          f"-> vmap {tl / tg:.2f}x the loop")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
