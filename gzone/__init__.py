"""gzone: curvature of neural-network training losses at initialization (the Goldilocks zone).

Reimplements, in JAX, Vysogorets, Dawid & Kempe, *Deconstructing the Goldilocks Zone of Neural
Network Initialization* (ICML 2024) and Fort & Scherlis, *The Goldilocks zone* (AAAI 2019).
"""

__version__ = "0.2.0"


def enable_float64() -> None:
    """Switch JAX to 64-bit floats (``jax_enable_x64``), for extreme α and T.

    A process-wide JAX setting: call it once, before creating any arrays.
    """
    import jax

    jax.config.update("jax_enable_x64", True)


DTYPES = ("float32", "float64")


def check_dtype(name: str) -> None:
    """Reject a dtype name other than float32/float64, and float64 while JAX is 32-bit, with
    one-line messages that name the fix (shared by every experiment's ``validate``)."""
    import jax

    if name not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {name!r}")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64: call gzone.enable_float64() first")


def diagnose(model, x, y, **kwargs):
    """Where is ``model``'s initialization relative to the Goldilocks zone, and what dominates its
    curvature? :func:`gzone.diagnosis.diagnose` (keyword arguments: ``key``, ``dim``, ``alphas``,
    ``temperatures``, ``per_layer`` ...); ``model`` comes from :mod:`gzone.adapters`."""
    from gzone.diagnosis import diagnose as run

    return run(model, x, y, **kwargs)
