"""gzone: curvature of neural-network training losses at initialization (the Goldilocks zone).

Reimplements, in JAX, Vysogorets, Dawid & Kempe, *Deconstructing the Goldilocks Zone of Neural
Network Initialization* (ICML 2024) and Fort & Scherlis, *The Goldilocks zone* (AAAI 2019).
"""

__version__ = "0.1.0"
