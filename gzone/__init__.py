"""gzone: curvature of neural-network training losses at initialization (the Goldilocks zone).

Reimplements, in JAX, Vysogorets, Dawid & Kempe, *Deconstructing the Goldilocks Zone of Neural
Network Initialization* (ICML 2024) and Fort & Scherlis, *The Goldilocks zone* (AAAI 2019).
"""

__version__ = "0.1.0"


def enable_float64() -> None:
    """Switch JAX to 64-bit floats (``jax_enable_x64``), for extreme α and T.

    A process-wide JAX setting: call it once, before creating any arrays.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
