#!/usr/bin/env python
"""The GPU check of issue 21, one command: the install and the device, the precision of the
Lanczos recurrence, per-step costs at the papers' shapes with the hours of every paper
experiment, and short paper-shape runs of ``icml/trainability`` and ``icml/many-inits``.

On a GPU machine (under 10 minutes on one H100/H200; writes ``<out>/gpu_check.json`` and
``<out>/gpu_check.md`` after every section, so a cut-off run keeps what it measured):

    pip install -e ".[cuda12]"                       # once: jax with the CUDA 12 plugin
    GZONE_DATA_DIR=../shared/data python benchmarks/gpu_check.py --out /tmp/gpu_check

On this workplace's lent H200 (its image has jax with a CUDA plugin and every dependency of gzone;
nothing can be installed there and ``../shared`` does not travel): copy the data it reads into an
ignored folder of the checkout once here, then one ``run`` with ``carry: [".gpu-data"]``:

    mkdir -p .gpu-data && cp -r ../shared/data/fashion_mnist ../shared/data/cifar10 .gpu-data/
    echo /.gpu-data/ >> .git/info/exclude                      # 42 MB: under the 64 MiB limit
    PYTHONUNBUFFERED=1 PYTHONPATH=. GZONE_DATA_DIR=.gpu-data python3 benchmarks/gpu_check.py --out $OUT

(MNIST is left behind to fit: the Fort MLP's costs then use Gaussian images, the same cost.)

On this CPU (the tests run the first; the second gives the CPU column of benchmarks/README.md):

    python benchmarks/gpu_check.py --quick --out /tmp/gpu_check_quick
    GZONE_DATA_DIR=../shared/data python benchmarks/gpu_check.py --allow-cpu --max-n 10000 \\
        --max-n lenet5-cifar10=2000 --run-alphas 1 --run-lr0s 1 --run-steps 20 --run-inits 2 \\
        --out /tmp/gpu_check_cpu

Sections (``--skip`` any of them; ``--budget-s`` skips the rest, with a note, once spent):

* ``device``: jax/jaxlib/flax versions, backend, device kind and count, the CPU; without a GPU
  the check stops with a one-line error unless ``--quick`` or ``--allow-cpu``.
* ``precision``: ||QᵀQ − I||_max of the Lanczos basis (computed in float64 on the host) of the
  LeNet-300-100 loss Hessian on real Fashion-MNIST images, ``lanczos_tridiag(precision=...)``
  with "highest" (gzone's default: full float32) and "default" (the backend's: TF32 matrix
  products on recent NVIDIA GPUs). A CPU computes float32 either way.
* ``costs``: per case (LeNet-300-100 on Fashion-MNIST, LeNet-5 on CIFAR-10 — Gaussian images of
  that shape beyond the 3,805 shared ones —, Fort & Scherlis's 784-200-200-10 MLP on MNIST), at
  the paper's N unless ``--max-n`` caps it: U, the lean full-batch gradient (one jitted
  ``value_and_grad``, data as arguments); one GD step (``training.train`` without sharpness:
  (time of 2S steps − time of S steps) / S, compile and logs cancel); one projected-curvature
  pass (``curvature.projected``, d = 50); one Hessian-vector product; one Lanczos step (a run of
  ``--lanczos-steps`` steps / their number). Medians of ``--repeats``, compile time apart. Next
  to each, XLA's cost analysis of the compiled program (FLOPs, bytes accessed), per sample.
* ``hours``: every paper experiment (each study's ``paper`` preset, and the presets
  ``gzone reproduce --scale paper`` adds) counted in sample units of work (:func:`work_of`: a
  sample-gradient, a sample-direction of a projected pass, a sample-HVP), times the per-unit
  costs measured here; and a GPU estimate from the cost analysis, max(FLOPs / peak,
  bytes / bandwidth) with the peaks of :data:`GPUS` (a roofline: a lower bound).
* ``runs``: ``icml/trainability`` and ``icml/many-inits`` at the ``paper`` preset, fewer points
  and steps (``--run-*``), through ``engine.run`` into a temporary folder; wall time with
  compilation, and the paper experiment extrapolated from it (an upper bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

SECTIONS = ("device", "precision", "costs", "hours", "runs")
KINDS = ("grad", "proj", "hvp")
#: what one unit of each kind of work is
KIND_HELP = MappingProxyType({
    "grad": "sample-gradient (one sample's share of a full-batch GD step)",
    "proj": "sample-direction of a projected-curvature pass (N x d per pass)",
    "hvp": "sample-HVP (one sample's share of a Hessian / G-term / H-term product)"})


@dataclasses.dataclass(frozen=True)
class Gpu:
    """Peak float32 throughput (no tensor cores) and memory bandwidth of one GPU: assumptions of
    the roofline estimates, from NVIDIA's data sheets."""

    name: str
    flops: float  # FLOP/s, float32, CUDA cores
    bandwidth: float  # bytes/s, HBM


GPUS = (Gpu("H100 SXM", 67e12, 3.35e12), Gpu("H200", 67e12, 4.8e12))


@dataclasses.dataclass(frozen=True)
class Case:
    """A model on a dataset at the paper's size: the shapes whose per-sample costs are measured."""

    name: str
    model: str
    dataset: str
    shape: tuple[int, int, int]
    n_paper: int
    init: str = "kaiming"
    widths: tuple[int, ...] = (300, 100)
    use_bias: bool = False
    label: str = ""


CASES = (
    Case("lenet300-fashion", "lenet300", "fashion_mnist", (28, 28, 1), 60000,
         label="LeNet-300-100, Fashion-MNIST"),
    Case("lenet5-cifar10", "lenet5", "cifar10", (32, 32, 3), 50000, label="LeNet-5, CIFAR-10"),
    Case("fort-mlp-mnist", "mlp", "mnist", (28, 28, 1), 60000, init="xavier", widths=(200, 200),
         use_bias=True, label="MLP 784-200-200-10, MNIST"),
)
CASE_BY_NAME = MappingProxyType({c.name: c for c in CASES})
TRAIN_SIZE = MappingProxyType({"fashion_mnist": 60000, "mnist": 60000, "cifar10": 50000,
                               "svhn": 73257})
TEST_SIZE = MappingProxyType({"fashion_mnist": 10000, "mnist": 10000, "cifar10": 10000,
                              "svhn": 26032})
#: Hessian-vector products of one sharpness estimate (bench_training: 7-10 warm, at most 20 cold)
SHARPNESS_MATVECS = 10
#: Lanczos steps of each of the zone's three norms (``grid.zone_norms``), plus one residual
ZONE_MATVECS = 31
#: a forward pass (accuracy, logits) in sample-gradients
FORWARD = 1 / 3


# ----------------------------------------------------------------------------- small helpers


def now() -> float:
    """Seconds of a monotonic clock."""
    return time.perf_counter()


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of ``fn()``, waiting for its result."""
    import jax

    start = now()
    jax.block_until_ready(fn())
    return now() - start


def repeat_times(fn: Callable[[], Any], repeats: int, max_s: float) -> tuple[float, list[float]]:
    """(seconds of the first call, compilation included; seconds of up to ``repeats`` later
    calls, at least one, stopping once they took ``max_s`` together)."""
    first, times = timed(fn), []
    while len(times) < max(1, repeats) and (not times or sum(times) < max_s):
        times.append(timed(fn))
    return first, times


def attempt(name: str, fn: Callable[[], Any], report: dict[str, Any]) -> Any:
    """``fn()``, or None with the error recorded in ``report["errors"][name]`` and printed: one
    part failing (out of memory, say) does not lose the others."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - recorded, the exit status says so
        text = traceback.format_exc()
        print(text, file=sys.stderr, flush=True)
        report["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
        report["notes"].append(f"{name}: failed ({type(error).__name__}), see errors")
        return None


def cost_of(compiled: Any) -> dict[str, float]:
    """FLOPs and bytes accessed from XLA's cost analysis of a compiled program (zeros where the
    backend gives none)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis
        analysis = None
    if isinstance(analysis, Sequence) and not isinstance(analysis, Mapping):
        analysis = analysis[0] if analysis else None
    analysis = analysis or {}
    return {"flops": float(analysis.get("flops", 0.0)),
            "bytes": float(analysis.get("bytes accessed", 0.0))}


def roofline_s(flops: float, nbytes: float, gpu: Gpu) -> float:
    """Seconds of a program on ``gpu`` at its peaks: max(FLOPs / peak, bytes / bandwidth)."""
    return max(flops / gpu.flops, nbytes / gpu.bandwidth)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for the tables: 3 significant digits, '—' for None."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and core count."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def device_memory() -> dict[str, Any] | None:
    """Peak and limit of the first device's memory (None where the backend does not say)."""
    import jax

    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if not stats:
        return None
    return {k: stats.get(k) for k in ("peak_bytes_in_use", "bytes_limit") if k in stats}


# ----------------------------------------------------------------------------- device


def device_section() -> dict[str, Any]:
    """Versions, backend, devices, the host CPU and the date."""
    import flax
    import jax
    import jaxlib

    devices = jax.devices()
    return {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
            "device_count": len(devices), "devices": [str(d) for d in devices],
            "host_cpu": cpu_model(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "memory": device_memory()}


def require_gpu(info: dict[str, Any]) -> str | None:
    """The one-line error when no GPU is visible, else None."""
    if info["backend"] == "gpu":
        return None
    return (f"gpu_check: no GPU visible to JAX (backend {info['backend']}, devices "
            f"{', '.join(info['devices'])}); install the CUDA build with "
            f"pip install -e \".[cuda12]\", or pass --allow-cpu (or --quick) to run on the CPU")


# ----------------------------------------------------------------------------- data and models


def case_data(case: Case, n: int, data_dir: str | None) -> tuple[Any, Any, str]:
    """The first ``n`` training images of the case's dataset as float32 arrays, completed with
    Gaussian images of the same shape where the files hold fewer (or none); and where they came
    from, in words."""
    import numpy as np

    from gzone import data

    try:
        real = data.load_dataset(case.dataset, "train", data_dir=data_dir)
        x, y = real.x[:n], real.y[:n]
    except (FileNotFoundError, ValueError) as error:
        x, y = np.zeros((0, *case.shape), np.float32), np.zeros((0,), np.int32)
        reason = str(error).splitlines()[0][:80]
        source = f"{n:,} Gaussian images ({case.dataset} not found: {reason})"
    else:
        source = f"{len(y):,} {case.dataset} images"
    if len(y) < n:
        fill = data.load_dataset("gaussian", "train", n=n - len(y), shape=case.shape)
        if len(y):
            source += f" + {n - len(y):,} Gaussian images of that shape"
        x, y = np.concatenate([x, fill.x]), np.concatenate([y, fill.y])
    return np.asarray(x, np.float32), np.asarray(y, np.int32), source


def case_model(case: Case) -> Any:
    from gzone import models

    return models.make_model(case.model, widths=case.widths, use_bias=case.use_bias)


# ----------------------------------------------------------------------------- precision


def orthogonality_error(basis: Any, rows: int) -> float:
    """||QᵀQ − I||_max of the first ``rows`` basis rows, in float64 on the host."""
    import numpy as np

    q = np.asarray(basis[:rows], np.float64)
    return float(np.max(np.abs(q @ q.T - np.eye(rows))))


def precision_section(n: int, iters: int, data_dir: str | None) -> dict[str, Any]:
    """Lanczos on the LeNet-300-100 Hessian at "highest" and "default" precision: orthogonality
    of the basis, the top Ritz value, wall time (first call with compilation, then a second)."""
    import jax
    import numpy as np

    from gzone import curvature, lanczos, models

    case = CASE_BY_NAME["lenet300-fashion"]
    x, y, source = case_data(case, n, data_dir)
    model = case_model(case)
    params = models.init(model, jax.random.key(0), case.shape)
    op = curvature.hessian_operator(model.apply, params, x, y)
    size = models.num_params(params)
    v0 = jax.random.normal(jax.random.key(1), (size,))
    out: dict[str, Any] = {"case": case.name, "n": n, "data": source, "iters": iters,
                           "P": size, "settings": {}}
    results = {}
    for setting in ("highest", "default"):
        def run(setting: str = setting) -> Any:
            return lanczos.lanczos_tridiag(op, v0, iters, precision=setting)

        first = timed(run)
        start = now()
        res = jax.block_until_ready(run())
        wall = now() - start
        alphas, betas = np.asarray(res.alphas, np.float64), np.asarray(res.betas, np.float64)
        ritz = np.linalg.eigvalsh(np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1))
        results[setting] = res
        out["settings"][setting] = {
            "orthogonality_max": orthogonality_error(res.basis, iters),
            "orthogonality_max_with_residual": orthogonality_error(res.basis, iters + 1),
            "top_ritz": float(ritz[-1]), "first_call_s": first, "wall_s": wall,
            "step_ms": 1e3 * wall / iters}
    high, low = out["settings"]["highest"], out["settings"]["default"]
    out["top_ritz_relative_gap"] = abs(low["top_ritz"] - high["top_ritz"]) / abs(high["top_ritz"])
    out["identical"] = bool(np.array_equal(np.asarray(results["highest"].basis),
                                           np.asarray(results["default"].basis)))
    out["note"] = ("CPU: XLA computes full float32 in both settings, so they agree (identical "
                   "here)" if jax.default_backend() == "cpu" else
                   "GPU: 'default' lets XLA use TF32 tensor cores in the recurrence's products")
    return out


# ----------------------------------------------------------------------------- per-step costs


def gd_step(apply_fn: Any, params: Any, x: Any, y: Any, steps: int, repeats: int,
            max_s: float) -> dict[str, Any]:
    """One full-batch GD step of ``training.train`` (sharpness off): the median over repeats of
    (time of 2S steps − time of S steps) / S, both with logs at the start and the end only, so
    compilation, data layout and logs cancel."""
    from gzone import training

    results = []

    def run(count: int) -> Callable[[], Any]:
        def call() -> Any:
            results.append(training.train(apply_fn, params, x, y, lr=0.01, steps=count,
                                          log_every=count, sharpness=False))
            return results[-1].params

        return call

    short, long = run(steps), run(2 * steps)
    first = timed(short) + timed(long)
    differences, spent = [], 0.0
    while len(differences) < max(1, repeats) and (not differences or spent < max_s):
        t_short, t_long = timed(short), timed(long)
        differences.append((t_long - t_short) / steps)
        spent += t_short + t_long
    step = statistics.median(differences)
    if step <= 0:  # a noisy machine: fall back on the long run's average step
        step = t_long / (2 * steps)
    return {"step_s": step, "steps": steps, "repeats": len(differences),
            "first_calls_s": first, "diverged_at": results[-1].diverged_at}


def case_costs(case: Case, n: int, dim: int, repeats: int, max_s: float, gd_target_s: float,
               lanczos_steps: int, data_dir: str | None) -> dict[str, Any]:
    """U, a GD step, a projected pass, an HVP and a Lanczos step of ``case`` on ``n`` samples,
    with the cost analysis of U, one projected chunk (times the chunks) and the HVP."""
    import jax
    import jax.numpy as jnp

    from gzone import curvature, lanczos, models, objective, subspace

    x_host, y_host, source = case_data(case, n, data_dir)
    model = case_model(case)
    params = models.init(model, jax.random.key(0), case.shape, case.init)
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)
    size = models.num_params(params)
    temperature = jnp.asarray(1.0, jnp.float32)
    out: dict[str, Any] = {"case": case.name, "label": case.label, "n": n,
                           "n_paper": case.n_paper, "data": source, "P": size, "d": dim}

    @jax.jit
    def lean(p: Any, xs: Any, ys: Any) -> Any:
        return jax.value_and_grad(lambda q: objective.cross_entropy(model.apply(q, xs), ys))(p)

    start = now()
    compiled = lean.lower(params, x, y).compile()
    compile_u = now() - start
    _, times = repeat_times(lambda: compiled(params, x, y), repeats, max_s)
    u = statistics.median(times)
    out["U"] = {"s": u, "compile_s": compile_u, **cost_of(compiled)}

    steps = max(2, min(100, round(gd_target_s / max(u, 1e-6))))
    out["gd"] = gd_step(model.apply, params, x, y, steps, repeats, max_s)
    out["gd"]["per_U"] = out["gd"]["step_s"] / u

    basis = subspace.orthonormal_basis(jax.random.key(1), size, dim)
    batches_d = curvature.prepare_batches(model.apply, params, x, y, num_tangents=dim)
    first, times = repeat_times(
        lambda: curvature.projected(model.apply, params, basis, batches_d).hessian, repeats, max_s)
    proj = statistics.median(times)
    layer = curvature.resolve_input_layer(model.apply, params, batches_d.x[0])
    columns = curvature.basis_columns(params, basis, layer)
    chunk = curvature.projected_chunk.lower(
        model.apply, params, columns, batches_d.x[0], batches_d.y[0], batches_d.w[0],
        temperature, layer).compile()
    chunks = int(batches_d.x.shape[0])
    chunk_cost = cost_of(chunk)
    out["proj"] = {"s": proj, "compile_s": first - proj, "chunks": chunks,
                   "chunk_size": batches_d.chunk_size, "input_layer": layer,
                   "per_dU": proj / (dim * u),
                   **{k: v * chunks for k, v in chunk_cost.items()}}

    matvec = curvature.matvec("hessian", model.apply)
    batches_1 = curvature.prepare_batches(model.apply, params, x, y)
    v = jax.random.normal(jax.random.key(2), (size,))
    start = now()
    hvp_compiled = matvec.lower(v, params, batches_1, temperature).compile()
    compile_hvp = now() - start
    _, times = repeat_times(lambda: hvp_compiled(v, params, batches_1, temperature), repeats, max_s)
    hvp = statistics.median(times)
    out["hvp"] = {"s": hvp, "compile_s": compile_hvp, "chunks": int(batches_1.x.shape[0]),
                  "per_U": hvp / u, **cost_of(hvp_compiled)}

    def lanczos_run() -> Any:
        return lanczos.lanczos_tridiag(matvec, v, lanczos_steps, params, batches_1,
                                       temperature).alphas

    first, times = repeat_times(lanczos_run, 1, max_s)
    step = times[0] / lanczos_steps
    out["lanczos"] = {"step_s": step, "steps": lanczos_steps, "compile_s": first - times[0],
                      "per_hvp": step / hvp, "driver": lanczos.operator.resolve_driver("auto")}
    out["per_unit"] = per_unit(out)
    out["memory"] = device_memory()
    return out


def per_unit(costs: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Seconds, FLOPs and bytes per sample unit of each kind (:data:`KIND_HELP`) from one case's
    measurements: a GD step / N (FLOPs and bytes of U), a projected pass / (N·d), an HVP / N."""
    n, d = costs["n"], costs["d"]
    return {
        "grad": {"s": costs["gd"]["step_s"] / n, "flops": costs["U"]["flops"] / n,
                 "bytes": costs["U"]["bytes"] / n},
        "proj": {"s": costs["proj"]["s"] / (n * d), "flops": costs["proj"]["flops"] / (n * d),
                 "bytes": costs["proj"]["bytes"] / (n * d)},
        "hvp": {"s": costs["hvp"]["s"] / n, "flops": costs["hvp"]["flops"] / n,
                "bytes": costs["hvp"]["bytes"] / n},
    }


# ----------------------------------------------------------------------------- work of each experiment


@dataclasses.dataclass(frozen=True)
class Work:
    """The work of one paper experiment: (case, kind, sample units) terms and a note on what is
    approximated or left out; ``counted=False``: its work is not counted here."""

    terms: tuple[tuple[str, str, float], ...] = ()
    note: str = ""
    counted: bool = True

    def units(self) -> dict[str, float]:
        """Sample units per kind, summed over cases."""
        out = dict.fromkeys(KINDS, 0.0)
        for _, kind, amount in self.terms:
            out[kind] += amount
        return out


def num_logs(steps: int, log_every: int) -> int:
    """Logs of a run (step 0 and the last included), as ``grid.num_logs``."""
    return len({*range(0, steps, log_every), steps})


def mlp_params(widths: Sequence[int], inputs: int = 784, classes: int = 10,
               bias: bool = True) -> int:
    """P of a dense network ``inputs``-``widths``-``classes``."""
    sizes = [inputs, *widths, classes]
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes, sizes[1:]))


def case_of(model: str, widths: Sequence[int] = (200, 200), bias: bool = True
            ) -> tuple[str, float]:
    """The measured case whose per-sample costs stand for ``model``, and the factor to scale them
    by: LeNet-300-100 and LeNet-5 are measured; an MLP is Fort's 200-200 scaled by P (dense
    layers: FLOPs ∝ P)."""
    if model == "lenet300":
        return "lenet300-fashion", 1.0
    if model == "lenet5":
        return "lenet5-cifar10", 1.0
    return "fort-mlp-mnist", mlp_params(widths, bias=bias) / mlp_params((200, 200))


def train_size(config: Any, field_name: str = "n_train") -> int:
    n = getattr(config, field_name)
    return TRAIN_SIZE[config.dataset] if n is None else n


def test_size(config: Any, field_name: str = "n_test") -> int:
    n = getattr(config, field_name)
    return TEST_SIZE[config.dataset] if n is None else n


def training_terms(case: str, runs: float, steps: int, log_every: int, n_train: int,
                   n_test: int, sharpness: bool) -> list[tuple[str, str, float]]:
    """Full-batch runs: ``steps`` gradients on ``n_train`` samples each, and at every log one
    gradient (the metrics) plus a test forward pass and, with ``sharpness``,
    :data:`SHARPNESS_MATVECS` Hessian-vector products."""
    logs = num_logs(steps, log_every)
    terms = [(case, "grad", runs * (steps * n_train + logs * (n_train + FORWARD * n_test)))]
    if sharpness:
        terms.append((case, "hvp", runs * logs * SHARPNESS_MATVECS * n_train))
    return terms


def zone_terms(case: str, points: int, samples: int, dim: int) -> list[tuple[str, str, float]]:
    """The zone points of a training grid: three Lanczos norms (:data:`ZONE_MATVECS` products
    each) and a d-plane projection on ``samples`` samples."""
    terms = [(case, "hvp", points * 3 * ZONE_MATVECS * samples)]
    if dim:
        terms.append((case, "proj", points * samples * dim))
    return terms


def grid_work(config: Any, alphas: int, lr0s: int, labels: int = 1) -> Work:
    """A Sec. 5 training grid (``icml/trainability``, ``curves``, ``random-labels``)."""
    case, _ = case_of(config.model)
    n_train = train_size(config)
    zone_samples = min(config.zone_samples or n_train, n_train)
    runs = alphas * lr0s * labels * config.seeds
    terms = training_terms(case, runs, config.steps, config.log_every, n_train,
                           test_size(config), config.sharpness)
    terms += zone_terms(case, alphas * config.seeds, zone_samples, config.zone_dim)
    return Work(tuple(terms), f"{runs} runs x {config.steps:,} steps on {n_train:,} images")


def sweep_work(config: Any, points: int, dim: int, note: str = "") -> Work:
    """A zone sweep: one projection per (point, seed) on ``n_samples`` (full-space part: not
    counted)."""
    case, scale = case_of(config.model)
    terms = ((case, "proj", scale * config.seeds * points * config.n_samples * dim),)
    full = " ; full-space part not counted" if getattr(config, "full_space", False) else ""
    return Work(terms, (note or f"{config.seeds * points} projections, d = {dim}") + full)


def radius_work(config: Any, dim: int, hvps: int = 0, grads: int = 0) -> Work:
    """Fort's radius sweeps: per (radius, seed) one d-plane projection, ``hvps`` metric-Hessian
    products and ``grads`` gradients on ``n_samples``."""
    case, scale = case_of(config.model, config.widths, config.use_bias)
    points = config.seeds * config.num_radii
    n = config.n_samples
    terms = [(case, "proj", scale * points * n * dim)]
    if hvps:
        terms.append((case, "hvp", scale * points * hvps * n))
    if grads:
        terms.append((case, "grad", scale * points * grads * n))
    return Work(tuple(terms), f"{points} points x (projection d = {dim}"
                + (f", {hvps} HVPs" if hvps else "") + ")")


def work_icml_training(name: str, config: Any) -> Work:
    """App. E's training studies: runs x steps (USO and linearised steps counted as GD steps)."""
    case, _ = case_of(config.model)
    n_train, n_test = train_size(config), test_size(config)
    if name == "icml/uso":
        runs, note = config.seeds * (1 + len(config.uso_alphas)), "USO steps as GD steps"
        terms = training_terms(case, runs, config.steps, config.log_every, n_train, n_test, False)
    elif name == "icml/uso-retrain":
        terms = training_terms(case, 2 * config.seeds, config.steps, config.log_every, n_train,
                               n_test, False)
        terms += training_terms(case, config.seeds * config.retrain_points, config.retrain_steps,
                                max(1, config.retrain_steps // 10), n_train, n_test, False)
        note = "the USO path twice (horizon, then segments) and the retrainings"
    elif name == "icml/probe":
        runs = config.seeds * len(config.probe_alphas)
        terms = training_terms(case, runs, config.steps, config.log_every, n_train, n_test, False)
        note = f"{runs} runs; the logistic-regression probes not counted"
    else:  # icml/lazy
        runs = 2 * config.seeds * len(config.lazy_alphas)
        terms = training_terms(case, runs, config.steps, config.log_every, n_train, n_test, False)
        note = f"{runs} runs; linearised steps counted as GD steps (a lower bound)"
    return Work(tuple(terms), note)


def work_of(name: str, config: Any) -> Work:
    """The work of study ``name`` at ``config`` (its paper preset), by its points (read from each
    study's ``points`` and ``measure``); not counted where it is not simple."""
    if name in ("icml/alpha-sweep", "icml/alpha-temperature", "icml/temperature-sweep"):
        return sweep_work(config, config.num_points, config.dim)
    if name == "icml/dim-sweep":
        return sweep_work(config, 1, max(config.dims),
                          "one projection per seed at d = max(dims) (nested); Eq. (8)'s tangents "
                          "not counted")
    if name == "icml/gterm-prediction":
        return sweep_work(config, config.num_points, config.dim,
                          "projections; the logit tangents of Eq. (8) not counted")
    if name == "icml/gamma-entropy":
        case, _ = case_of(config.model)
        return Work(((case, "grad", FORWARD * config.n_sets),), "one forward pass: seconds")
    if name == "icml/gradient-cosines":
        case, _ = case_of(config.model)
        amount = config.inits * len(config.datasets) * config.n_samples * (1 + FORWARD)
        return Work(((case, "grad", amount),), "a gradient and logits per (init, dataset)")
    if name == "icml/gradient-prior":
        case, _ = case_of(config.model)
        pool = TRAIN_SIZE[config.dataset] if config.n_samples is None else config.n_samples
        subset = min(config.subset_size, pool // 10)
        amount = config.n_priors * subset * (1 + FORWARD) + 10 * subset
        return Work(((case, "grad", amount),), f"{config.n_priors} priors x a gradient on "
                    f"{subset:,} images; calibration as K gradients")
    if name == "icml/many-inits":
        case, _ = case_of(config.model)
        return Work(((case, "proj", config.n_inits * config.n_samples * config.dim),),
                    f"{config.n_inits} inits x one projection on {config.n_samples:,} images")
    if name == "icml/pre-collapse":
        case, _ = case_of(config.model)
        eig = 1 + len(config.share_levels)
        terms = ((case, "proj", config.curvature_points * config.n_samples * config.dim),
                 (case, "hvp", eig * (config.lanczos_iters + 1) * config.n_samples))
        return Work(terms, f"{config.curvature_points} projections, <= {eig} Lanczos runs")
    if name == "icml/trainability":
        from gzone.studies.icml import trainability

        return grid_work(config, len(trainability.alphas(config)), config.num_lr0)
    if name == "icml/curves":
        return grid_work(config, len(config.curve_alphas), config.num_lr0)
    if name == "icml/random-labels":
        return grid_work(config, len(config.labels_alphas), 1, len(config.label_kinds))
    if name in ("icml/uso", "icml/uso-retrain", "icml/probe", "icml/lazy"):
        return work_icml_training(name, config)
    if name == "fort/radius":
        return radius_work(config, max(config.dims))
    if name == "fort/directions":
        return radius_work(config, max(config.dims), config.probes + config.num_directions)
    if name == "fort/loss-radius":
        return radius_work(config, config.dim, config.probes, 1)
    if name == "fort/architectures":
        return architectures_work(config)
    if name == "fort/stokes":
        case, scale = case_of(config.model, config.widths, config.use_bias)
        points, n = config.num_radii * config.sphere_points, config.n_samples
        return Work(((case, "grad", scale * points * n), (case, "hvp", scale * points *
                                                          config.sphere_probes * n)),
                    f"{points} sphere points x (a gradient, {config.sphere_probes} HVPs)")
    if name in ("fort/init-selection", "fort/radius-drift"):
        return fort_training_work(name, config)
    if name == "fort/hypersurface-training":
        return hypersurface_work(config)
    if name.startswith("beyond/"):
        return beyond_work(name, config)
    return Work(note="not counted", counted=False)


def beyond_work(name: str, config: Any) -> Work:
    """The studies beyond the papers (issue 22), each network variant priced as the homogeneous
    network of its architecture (biases, norms and activations add little to these FLOPs; the
    residual CNN is not measured: priced as LeNet-5)."""
    if name in ("beyond/normalization", "beyond/inhomogeneous"):
        case, scale = case_of("lenet5" if config.arch == "lenet5" else "mlp", config.widths)
        points = len(config.variants) * config.seeds * (config.num_alphas + config.num_temperatures)
        n = config.n_samples
        terms = [(case, "proj", scale * points * n * config.dim),
                 (case, "hvp", scale * points * 2 * config.lanczos_iters * n)]
        note = f"{points} zone points (projection d = {config.dim}, 2 Lanczos norms)"
        if name == "beyond/inhomogeneous":
            runs = len(config.variants) * len(config.train_alphas) * len(config.lr0s) * config.seeds
            terms += training_terms(case, scale * runs, config.steps, config.log_every, n,
                                    test_size(config), False)
            note += f"; {runs} runs x {config.steps:,} steps on {n:,} images"
        return Work(tuple(terms), note)
    if name == "beyond/adam":
        return grid_work(config, config.num_alphas, config.num_lr0, len(config.optimizers))
    if name == "beyond/logit-normalization":
        kinds = 1 + len(config.taus)
        return grid_work(config, config.num_alphas, config.num_lr0, kinds)
    case, _ = case_of(config.model)  # beyond/init-quality
    n_train = train_size(config)
    terms = training_terms(case, config.n_inits, config.steps, config.log_every, n_train,
                           test_size(config), False)
    terms += [(case, "proj", config.n_inits * n_train * config.dim),
              (case, "hvp", config.n_inits * 3 * config.lanczos_iters * n_train)]
    return Work(tuple(terms), f"{config.n_inits} inits: predictors (NTK not counted) and "
                f"{config.steps:,} GD steps on {n_train:,} images")


def architectures_work(config: Any) -> Work:
    """Fort Fig. 4: the radius sweep at d for every architecture x dataset; MLPs scaled from the
    200-200 MLP by P, LeNet-5 on MNIST priced as LeNet-5 on CIFAR-10 (an upper bound)."""
    terms = []
    points = config.seeds * config.num_radii
    for spec in config.architectures * len(config.datasets):
        parts = spec.split(":")
        widths = tuple(int(w) for w in parts[1].split("-")) if len(parts) > 1 else (300, 100)
        case, scale = case_of(parts[0], widths, len(parts) < 4)
        terms.append((case, "proj", scale * points * config.n_samples * config.dim))
    return Work(tuple(terms), f"{len(terms)} networks x {points} projections; MLPs scaled by P, "
                "LeNet-5/MNIST at LeNet-5/CIFAR-10 cost")


def fort_training_work(name: str, config: Any) -> Work:
    """Fort's full-batch Adam runs (Adam steps as GD steps), and init-selection's projections."""
    case, scale = case_of(config.model, config.widths, config.use_bias)
    n_train, n_test = train_size(config, "n_samples"), test_size(config)
    if name == "fort/init-selection":
        runs = config.inits
        extra = [(case, "proj", scale * runs * n_train * config.dim),
                 (case, "grad", scale * runs * FORWARD * n_test)]
    else:
        runs, extra = config.seeds * len(config.drift_factors), []
    terms = [(c, k, scale * a) for c, k, a in training_terms(
        case, runs, config.train_steps, config.train_log_every, n_train, n_test, False)]
    return Work(tuple(terms + extra), f"{runs} Adam runs x {config.train_steps:,} steps")


def hypersurface_work(config: Any) -> Work:
    """Fort Fig. 2: minibatch Adam on θ̂ for every (surface, d, seed) and radius, counted as
    sample-gradients (the basis's gather/scatter and a small batch's launch overhead not
    counted), and the plane Hessians (a projection at start and end) for d ≤ hs_hessian_dim."""
    case, scale = case_of(config.model, config.widths, config.use_bias)
    n = train_size(config, "n_samples")
    grids = config.seeds * (1 + len(config.hs_surfaces) * len(config.hs_dims))
    grad = scale * grids * len(config.hs_radii) * config.hs_epochs * n
    dims = sum(d for d in config.hs_dims if d <= config.hs_hessian_dim)
    proj = scale * config.seeds * len(config.hs_radii) * 2 * n * dims
    return Work(((case, "grad", grad), (case, "proj", proj)),
                f"{grids} grids x {len(config.hs_radii)} radii x {config.hs_epochs} epochs of "
                f"batches of {config.hs_batch}: GPU time dominated by launches, not counted")


def paper_experiments() -> list[tuple[str, str]]:
    """(study, preset): every study's ``paper`` preset and the presets ``gzone reproduce
    --scale paper`` adds."""
    from gzone import studies

    out = []
    for name, study in studies.STUDIES.items():
        out.append((name, "paper"))
        out += [(name, p) for p in study.extra_presets.get("paper", ())]
    return out


def experiment_hours(name: str, preset: str, units: Mapping[str, Mapping[str, Any]],
                     measured_on: str) -> dict[str, Any]:
    """One row of the hours table: the experiment's work, its hours from the per-unit costs
    measured here (``units[case][kind]``), and its roofline hours on each of :data:`GPUS`."""
    from gzone import engine, studies

    study = studies.get(name)
    work = work_of(name, engine.make_config(study, preset))
    row: dict[str, Any] = {"study": name, "preset": preset, "reproduces": study.reproduces,
                           "note": work.note, "counted": work.counted, "units": work.units()}
    if not work.counted:
        return row
    missing = sorted({c for c, _, a in work.terms if a and c not in units})
    if missing:
        row["note"] += f"; per-step costs of {', '.join(missing)} not measured"
        return row
    seconds = flops = nbytes = 0.0
    gpu_s = dict.fromkeys((g.name for g in GPUS), 0.0)
    for case, kind, amount in work.terms:
        u = units[case][kind]
        seconds += amount * u["s"]
        flops += amount * u["flops"]
        nbytes += amount * u["bytes"]
        for g in GPUS:
            gpu_s[g.name] += amount * roofline_s(u["flops"], u["bytes"], g)
    row.update({"hours": seconds / 3600, "measured_on": measured_on, "flops": flops,
                "bytes": nbytes, "roofline_hours": {k: v / 3600 for k, v in gpu_s.items()}})
    return row


# ----------------------------------------------------------------------------- short runs


def short_run(name: str, overrides: Mapping[str, Any], paper_units: float, unit: str,
              measured_units: float, data_dir: str | None) -> dict[str, Any]:
    """``name`` at its ``paper`` preset with ``overrides``, run by ``engine.run`` into a
    temporary folder: wall time (compilation included), records by kind, and the paper
    experiment extrapolated by ``paper_units / measured_units`` (an upper bound)."""
    from collections import Counter

    from gzone import engine, studies

    study = studies.get(name)
    config = engine.make_config(study, "paper", **overrides)
    out: dict[str, Any] = {"study": name, "overrides": dict(overrides), "unit": unit}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        start = now()
        try:
            records = engine.run(study, config, Path(folder) / "out", data_dir=data_dir)
        except FileNotFoundError as error:
            return {**out, "skipped": f"data not found: {str(error).splitlines()[0][:120]}"}
        wall = now() - start
    out.update({"wall_s": wall, "records": dict(Counter(r.get("kind") for r in records)),
                "measured_units": measured_units, "s_per_unit": wall / measured_units,
                "paper_units": paper_units,
                "paper_hours_upper_bound": wall / measured_units * paper_units / 3600,
                "memory": device_memory()})
    return out


def runs_section(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, Any]:
    """The short paper-shape runs of ``icml/trainability`` and ``icml/many-inits`` (a failing one
    recorded in ``report["errors"]``)."""
    from gzone import engine, studies

    steps = args.run_steps
    train = {"num_alphas": args.run_alphas, "alpha_min": 1.0, "alpha_max": 10.0,
             "num_lr0": args.run_lr0s, "lr0_min": 0.01, "lr0_max": 0.1, "steps": steps,
             "log_every": max(1, steps // 2), "batch_size": args.run_alphas * args.run_lr0s}
    inits = {"n_inits": args.run_inits, "seeds_per_chunk": min(8, args.run_inits)}
    if args.quick:  # a smoke test of the code path: small, and no convolution to compile
        train.update(n_train=200, n_test=100, zone_samples=100, zone_dim=10)
        inits.update(n_samples=100, dim=10, model="lenet300", dataset="fashion_mnist")
    paper = engine.make_config(studies.get("icml/trainability"), "paper")
    from gzone.studies.icml import trainability

    paper_run_steps = len(trainability.alphas(paper)) * paper.num_lr0 * paper.steps
    many = engine.make_config(studies.get("icml/many-inits"), "paper")
    plans = {"trainability": ("icml/trainability", train, paper_run_steps, "run-step",
                              args.run_alphas * args.run_lr0s * steps),
             "many-inits": ("icml/many-inits", inits, many.n_inits, "init", args.run_inits)}
    out = {}
    for key, plan in plans.items():
        result = attempt(f"runs: {plan[0]}", lambda plan=plan: short_run(*plan, args.data_dir),
                         report)
        if result is not None:
            out[key] = result
    return out


# ----------------------------------------------------------------------------- report


def markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown tables."""
    lines = ["# gzone GPU check", ""]
    dev = report.get("device", {})
    if dev:
        lines += [f"{dev['date']}: {dev['device_count']} x {dev['device_kind']} (backend "
                  f"{dev['backend']}), host {dev['host_cpu']}; jax {dev['jax']}, jaxlib "
                  f"{dev['jaxlib']}, flax {dev['flax']}, Python {dev['python']}"
                  + (" (quick: tiny shapes)" if report.get("quick") else ""), ""]
    lines += precision_lines(report.get("precision"))
    lines += costs_lines(report.get("costs"))
    lines += hours_lines(report.get("hours"))
    lines += runs_lines(report.get("runs"))
    notes = report.get("notes", [])
    errors = report.get("errors", {})
    if notes or errors:
        lines += (["## Notes", ""] + [f"- {n}" for n in notes]
                  + [f"- error in {k}: {v.splitlines()[0][:300]}" for k, v in errors.items()] + [""])
    lines += ["Elapsed per section (s): " + ", ".join(
        f"{k} {v:.1f}" for k, v in report.get("elapsed_s", {}).items()), ""]
    return "\n".join(lines)


def precision_lines(p: Mapping[str, Any] | None) -> list[str]:
    if not p or "settings" not in p:
        return []
    lines = ["## Precision: Lanczos orthogonality", "",
             f"LeNet-300-100 Hessian (P = {p['P']:,}) on {p['data']}, {p['iters']} Lanczos steps, "
             "full reorthogonalisation; ||QᵀQ − I||_max over the m basis rows (and with "
             "q_{m+1}), in float64 on the host.", "",
             "| precision | ‖QᵀQ − I‖_max | with q_{m+1} | top Ritz value | step (ms) | first call (s) |",
             "|---|---|---|---|---|---|"]
    for name, s in p["settings"].items():
        lines.append(f"| {name} | {fmt(s['orthogonality_max'])} | "
                     f"{fmt(s['orthogonality_max_with_residual'])} | {s['top_ritz']:.6g} | "
                     f"{fmt(s['step_ms'])} | {fmt(s['first_call_s'])} |")
    lines += ["", f"Top Ritz values differ by {fmt(p['top_ritz_relative_gap'])} (relative); "
              f"bases identical: {p['identical']}. {p['note']}.", ""]
    return lines


def costs_lines(costs: Mapping[str, Any] | None) -> list[str]:
    if not costs:
        return []
    lines = ["## Per-step costs", "",
             "| case | N (paper) | P | U (ms) | GD step (ms) / U | projection d=50 (s) / (d·U) | "
             "HVP (ms) / U | Lanczos step / HVP | compile U / proj / HVP (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in costs.values():
        if "U" not in c:
            continue
        lines.append(
            f"| {c['label']} | {c['n']:,} ({c['n_paper']:,}) | {c['P']:,} | {fmt(1e3 * c['U']['s'])}"
            f" | {fmt(1e3 * c['gd']['step_s'])} / {c['gd']['per_U']:.2f} | {fmt(c['proj']['s'])}"
            f" / {c['proj']['per_dU']:.2f} | {fmt(1e3 * c['hvp']['s'])} / {c['hvp']['per_U']:.2f}"
            f" | {c['lanczos']['per_hvp']:.2f} | {c['U']['compile_s']:.1f} / "
            f"{c['proj']['compile_s']:.1f} / {c['hvp']['compile_s']:.1f} |")
    lines += ["", "Per sample unit (seconds measured here; XLA cost analysis: FLOPs and bytes "
              "accessed):", "", "| case | kind | s | FLOP | bytes | H100 / H200 roofline (s) | "
              f"measured / {GPUS[-1].name} roofline |", "|---|---|---|---|---|---|---|"]
    for c in costs.values():
        for kind, u in c.get("per_unit", {}).items():
            roofs = [roofline_s(u["flops"], u["bytes"], g) for g in GPUS]
            lines.append(f"| {c['case']} | {kind} | {fmt(u['s'])} | {fmt(u['flops'])} | "
                         f"{fmt(u['bytes'])} | {' / '.join(fmt(r) for r in roofs)} | "
                         f"{fmt(u['s'] / roofs[-1] if roofs[-1] else None)} |")
    lines += ["", "Data: " + "; ".join(f"{c['case']}: {c['data']}" for c in costs.values()
                                      if "data" in c), ""]
    return lines


def hours_lines(hours: Sequence[Mapping[str, Any]] | None) -> list[str]:
    if not hours:
        return []
    names = " / ".join(g.name for g in GPUS)
    lines = ["## Hours of each paper experiment", "",
             "Work in sample units (" + "; ".join(f"{k}: {v}" for k, v in KIND_HELP.items())
             + "). Hours here: work x the per-unit seconds measured above. GPU: roofline "
             "estimate max(FLOP / peak, bytes / bandwidth) from the cost analysis, "
             + ", ".join(f"{g.name} {g.flops / 1e12:.0f} TFLOP/s float32, "
                         f"{g.bandwidth / 1e12:.2f} TB/s" for g in GPUS) + " (a lower bound).", "",
             f"| experiment | reproduces | work: grad / proj / hvp | hours here | {names} est. (h) "
             "| FLOP / bytes | note |", "|---|---|---|---|---|---|---|"]
    for r in hours:
        units = " / ".join(fmt(r["units"][k], 2) for k in KINDS)
        name = r["study"] + ("" if r["preset"] == "paper" else f" ({r['preset']})")
        if "hours" not in r:
            lines.append(f"| {name} | {r['reproduces']} | {units} | — | — | — | {r['note']} |")
            continue
        roof = " / ".join(fmt(v) for v in r["roofline_hours"].values())
        lines.append(f"| {name} | {r['reproduces']} | {units} | {fmt(r['hours'])} | {roof} | "
                     f"{fmt(r['flops'], 2)} / {fmt(r['bytes'], 2)} | {r['note']} |")
    total = sum(r.get("hours", 0.0) for r in hours)
    lines += ["", f"Total counted: {fmt(total)} hours here.", ""]
    return lines


def runs_lines(runs: Mapping[str, Any] | None) -> list[str]:
    if not runs:
        return []
    lines = ["## Short paper-shape runs", "",
             "| study | overrides of `paper` | wall (s, compile included) | records | "
             "s per unit | paper experiment (h, upper bound) |", "|---|---|---|---|---|---|"]
    for r in runs.values():
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items())
        if "skipped" in r:
            lines.append(f"| {r['study']} | {over} | skipped: {r['skipped']} | | | |")
            continue
        recs = ", ".join(f"{k} {v}" for k, v in r["records"].items())
        lines.append(f"| {r['study']} | {over} | {r['wall_s']:.1f} | {recs} | "
                     f"{fmt(r['s_per_unit'])} per {r['unit']} | {fmt(r['paper_hours_upper_bound'])} |")
    return lines + [""]


def write(report: Mapping[str, Any], out: Path) -> None:
    """``gpu_check.json`` and ``gpu_check.md`` under ``out`` (rewritten after every section)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))


# ----------------------------------------------------------------------------- main


def parse_max_n(values: Sequence[str] | None) -> tuple[int | None, dict[str, int]]:
    """``--max-n N`` (every case) and ``--max-n CASE=N`` (one case)."""
    default, per_case = None, {}
    for value in values or ():
        name, _, number = value.rpartition("=")
        if name:
            if name not in CASE_BY_NAME:
                raise SystemExit(f"gpu_check: unknown case {name!r} in --max-n; cases: "
                                 f"{', '.join(CASE_BY_NAME)}")
            per_case[name] = int(number)
        else:
            default = int(number)
    return default, per_case


def case_n(case: Case, args: argparse.Namespace) -> int:
    """Samples of a case's measurements: the paper's N, capped by ``--max-n`` (quick: 128)."""
    if args.quick:
        return 128
    default, per_case = parse_max_n(args.max_n)
    cap = per_case.get(case.name, default)
    return case.n_paper if cap is None else min(cap, case.n_paper)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of gpu_check.json and gpu_check.md")
    parser.add_argument("--quick", action="store_true", help="tiny shapes on any backend (tests)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU")
    parser.add_argument("--skip", choices=SECTIONS, action="append", default=[])
    parser.add_argument("--case", choices=[c.name for c in CASES], action="append", default=[],
                        help="measure the costs of this case only (repeatable; default: all)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="start no section (or case) once this many seconds are spent")
    parser.add_argument("--max-n", action="append",
                        help="cap on the samples of the per-step costs: N, or CASE=N (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each cost")
    parser.add_argument("--max-repeat-s", type=float, default=30.0,
                        help="stop repeating a cost once its repeats took this long")
    parser.add_argument("--dim", type=int, default=None, help="d of the projected pass (50)")
    parser.add_argument("--lanczos-steps", type=int, default=20,
                        help="steps of the Lanczos run whose average step is timed")
    parser.add_argument("--precision-n", type=int, default=10000)
    parser.add_argument("--precision-iters", type=int, default=100)
    parser.add_argument("--run-alphas", type=int, default=2)
    parser.add_argument("--run-lr0s", type=int, default=2)
    parser.add_argument("--run-steps", type=int, default=200)
    parser.add_argument("--run-inits", type=int, default=16)
    parser.add_argument("--data-dir", default=None, help="dataset folder (else $GZONE_DATA_DIR)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.max_repeat_s = 1, 5.0
        args.precision_n, args.precision_iters, args.lanczos_steps = 256, 10, 5
        args.run_alphas = args.run_lr0s = 1
        args.run_steps, args.run_inits = 4, 2
    args.dim = args.dim or (5 if args.quick else 50)
    parse_max_n(args.max_n)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    start = now()
    report: dict[str, Any] = {"quick": args.quick, "args": vars(args), "elapsed_s": {},
                              "notes": [], "errors": {},
                              "gpus_assumed": [dataclasses.asdict(g) for g in GPUS]}

    def section(name: str, fn: Callable[[], Any]) -> Any:
        if name in args.skip:
            report["notes"].append(f"{name}: skipped (--skip)")
            return None
        spent = now() - start
        if spent > args.budget_s:
            report["notes"].append(f"{name}: skipped, the budget of {args.budget_s:.0f} s was "
                                   f"spent ({spent:.0f} s)")
            print(f"== {name}: skipped (budget spent)", flush=True)
            return None
        print(f"== {name} ...", flush=True)
        t0 = now()
        result = attempt(name, fn, report)
        report["elapsed_s"][name] = now() - t0
        print(f"== {name}: {now() - t0:.1f} s", flush=True)
        if result is not None:
            report[name] = result
        write(report, out)
        return result

    info = device_section()
    report["device"] = info
    report["elapsed_s"]["device"] = now() - start
    print(f"jax {info['jax']} (jaxlib {info['jaxlib']}), backend {info['backend']}, "
          f"{info['device_count']} x {info['device_kind']}; host {info['host_cpu']}", flush=True)
    error = require_gpu(info)
    if error and not (args.quick or args.allow_cpu):
        write(report, out)
        print(error, file=sys.stderr)
        return 2
    n_precision = min(args.precision_n, case_n(CASE_BY_NAME["lenet300-fashion"], args))
    section("precision", lambda: precision_section(n_precision, args.precision_iters,
                                                   args.data_dir))

    def costs() -> dict[str, Any]:
        measured: dict[str, Any] = {}
        for case in CASES:
            if args.case and case.name not in args.case:
                continue
            if now() - start > args.budget_s:
                report["notes"].append(f"costs of {case.name}: skipped (budget spent)")
                continue
            t0 = now()
            result = attempt(f"costs of {case.name}", lambda case=case: case_costs(
                case, case_n(case, args), args.dim, args.repeats, args.max_repeat_s,
                0.2 if args.quick else 2.0, args.lanczos_steps, args.data_dir), report)
            if result is not None:
                measured[case.name] = result
            print(f"   {case.name}: {now() - t0:.1f} s", flush=True)
            report["costs"] = measured
            write(report, out)
        return measured

    measured = section("costs", costs) or {}
    units = {name: c["per_unit"] for name, c in measured.items()}
    backend = info["backend"]
    section("hours", lambda: [experiment_hours(name, preset, units, backend)
                              for name, preset in paper_experiments()])
    section("runs", lambda: runs_section(args, report))
    report["elapsed_s"]["total"] = now() - start
    write(report, out)
    print(markdown(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
