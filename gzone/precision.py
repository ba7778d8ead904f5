"""The float32 precision of gzone's matrix products, and the provenance of a run.

On recent NVIDIA GPUs JAX's *default* precision for float32 matrix products is TF32 (a 10-bit
mantissa): a Lanczos basis built with it loses orthogonality at about 1e-3, which spoils full-space
spectra and the warm-started sharpness. gzone's policy:

* every curvature and spectral computation — the projected passes and matrix-free products
  (:mod:`gzone.curvature`, :mod:`gzone.jacobian`), the Lanczos recurrence, its reorthogonalisation
  and Ritz vectors (:mod:`gzone.lanczos`), the Hutchinson forms (:mod:`gzone.hutchinson`), the
  losses, gradients and metrics a training log records — runs at full float32 (``"highest"``)
  whatever the backend: :func:`strict` (a context) and :func:`strictly` (a function wrapper,
  applied before ``jax.jit``). The precision is fixed in the traced program (each ``dot_general``
  and convolution carries it), so a caller's ``jax.default_matmul_precision`` does not change it;
* the training *updates* take a setting, :data:`MATMUL_PRECISIONS`: ``"float32"`` (the default:
  reproduces the papers' float32 runs) or ``"tf32"`` (opt-in, faster on GPUs; a CPU ignores it);
* :func:`provenance` is written into every results directory's ``config.json``: the precision
  policy, the backend, device kind and count, the process, and ``XLA_FLAGS``.

:func:`dot_precisions` reads the precision of every matrix product of a lowered program (the
tests check gzone's compiled programs with it; ``benchmarks/gpu_check.py`` too).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable
from typing import Any

import jax

#: the precision of every curvature, spectral and logged computation (JAX's name)
STRICT = "highest"
#: training's ``matmul_precision`` setting -> JAX's precision name
MATMUL_PRECISIONS = {"float32": "highest", "tf32": "tensorfloat32"}


def strict() -> contextlib.AbstractContextManager:
    """Full float32 matrix products for the code traced inside (``"highest"``)."""
    return jax.default_matmul_precision(STRICT)


def matmul(setting: str) -> contextlib.AbstractContextManager:
    """The context of a training ``matmul_precision`` setting (:data:`MATMUL_PRECISIONS`)."""
    if setting not in MATMUL_PRECISIONS:
        raise ValueError(f"unknown matmul_precision {setting!r}; choose one of "
                         f"{', '.join(MATMUL_PRECISIONS)}")
    return jax.default_matmul_precision(MATMUL_PRECISIONS[setting])


def strictly(fn: Callable) -> Callable:
    """``fn`` traced under :func:`strict` (wrap before ``jax.jit``: the precision is then part of
    the compiled program)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with strict():
            return fn(*args, **kwargs)

    return wrapped


_PRECISION = re.compile(r"precision = \[(\w+),|#stablehlo<precision (\w+)>")
_PRODUCT = re.compile(r"= stablehlo\.(dot_general|convolution|dot)\b")


def dot_precisions(lowered_text: str) -> list[str]:
    """The precision of every matrix product (``dot_general``, ``convolution``) of a lowered
    program's StableHLO text (``jax.jit(f).lower(...).as_text()``): ``"HIGHEST"``, ``"HIGH"``
    (TF32), ``"DEFAULT"`` (also for a product that names none) ..."""
    found = []
    for line in lowered_text.splitlines():
        if not _PRODUCT.search(line):
            continue
        match = _PRECISION.search(line)
        found.append((match.group(1) or match.group(2)) if match else "DEFAULT")
    return found


def provenance() -> dict[str, Any]:
    """Where and how a run computes: the precision policy, backend, device kind and count, this
    process's index and count, and ``XLA_FLAGS`` (written into ``config.json``)."""
    devices = jax.local_devices()
    return {"precision": {"curvature": STRICT, "lanczos": STRICT, "metrics": STRICT,
                          "default_matmul_precision":
                              str(jax.config.jax_default_matmul_precision or "default")},
            "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
            "device_count": len(devices), "global_device_count": jax.device_count(),
            "process_index": jax.process_index(), "process_count": jax.process_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "x64": bool(jax.config.jax_enable_x64)}
