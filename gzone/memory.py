"""How much memory a pass may plan for, and the sample chunks that keep it there: the budget of
the device a pass runs on (:func:`device_memory_budget`: a fixed 2 GiB on a CPU, half the free
memory of an accelerator) and the samples per chunk of a forward-over-reverse pass with a given
number of tangent directions or vmapped points (:func:`auto_chunk_size`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

ApplyFn = Callable[[Any, jax.Array], jax.Array]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of intermediate values one chunk may use (CPU)
#: the share of an accelerator's free memory one pass may plan for (the rest: its inputs,
#: outputs and XLA's own buffers)
DEVICE_MEMORY_SHARE = 0.5


def device_memory_budget(device: Any = None) -> int:
    """Bytes one jit-compiled pass may use for its intermediate values on ``device`` (default:
    the first local device): :data:`DEFAULT_MEMORY_BUDGET` on a CPU (or a device that does not
    report its memory), else :data:`DEVICE_MEMORY_SHARE` of its free memory (``bytes_limit −
    bytes_in_use`` of ``device.memory_stats()``: about 70 GB on an idle H200). A pass that
    vmaps W points over the same chunk divides it by W (``num_tangents``)."""
    device = jax.local_devices()[0] if device is None else device
    if getattr(device, "platform", "cpu") == "cpu":
        return DEFAULT_MEMORY_BUDGET
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if "bytes_limit" not in stats:
        return DEFAULT_MEMORY_BUDGET
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    return max(int(DEVICE_MEMORY_SHARE * free), 64 * 1024**2)


def _activation_floats_per_sample(apply_fn: ApplyFn, params: Any, x: jax.Array) -> int:
    """Number of intermediate values one sample produces in the forward pass (from its jaxpr)."""
    jaxpr = jax.make_jaxpr(apply_fn)(params, x[:1])
    return int(sum(math.prod(v.aval.shape) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars))


def auto_chunk_size(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    num_tangents: int = 1,
    memory_budget: int | None = None,
) -> int:
    """Samples per chunk so that a forward-over-reverse pass with ``num_tangents`` directions stays
    within ``memory_budget`` bytes (primal, tangent and backward values, a factor 4 of headroom),
    balanced over the chunks that needs: ⌈N / C⌉ with C = ⌈N / largest fitting chunk⌉, so the last
    chunk's padding is under C samples (N = 10,000 with room for 1,651: 7 chunks of 1,429, not
    7 of 1,651 with 1,557 padded samples — 16 % of the work wasted). ``memory_budget``: default
    :func:`device_memory_budget` of the first local device."""
    memory_budget = device_memory_budget() if memory_budget is None else memory_budget
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be positive, got {memory_budget}")
    per_sample = _activation_floats_per_sample(apply_fn, params, x) * jnp.dtype(x.dtype).itemsize
    largest = max(1, min(len(x), memory_budget // max(1, 4 * per_sample * (num_tangents + 1))))
    num_chunks = -(-len(x) // largest)
    return int(-(-len(x) // num_chunks))
