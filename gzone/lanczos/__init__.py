"""Matrix-free spectral tools for symmetric operators given as matvecs ``v -> A v`` (1-D, length dim).

* :func:`lanczos_tridiag` — Lanczos tridiagonalisation with full reorthogonalisation (vectorised
  two-pass classical Gram–Schmidt against the stored basis) and a breakdown guard that restarts
  with a fresh random vector instead of dividing by a vanishing beta (Lanczos 1950; Paige 1972;
  Golub & Van Loan, *Matrix Computations*, Sec. 10.1).
* :func:`eigsh` — extreme eigenpairs (``"LA"``, ``"SA"``, ``"LM"``) with true residual norms.
* :func:`slq_quadrature`, :func:`density_from_quadrature`, :func:`spectral_density` — stochastic
  Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).
* Hutchinson-type trace and Frobenius estimators live in :mod:`gzone.hutchinson` (same operators,
  dtypes and probes).

Precision: every matrix product here (the recurrence, its reorthogonalisation, the Ritz vectors,
the products a matvec is called for) is full float32 on every backend (:data:`PRECISION`,
:mod:`gzone.precision`); ``lanczos_tridiag(..., precision="default")`` opts out, to measure it.

The operator may be indefinite and rank-deficient. Dtypes: every entry point works in the dtype of its inputs unless one is given: ``v0``'s dtype
where a start vector is passed, else the dtype of the operator's output (found with
``jax.eval_shape``, nothing is computed), so a float64 operator is never silently run in float32.
A ``dtype`` that is given is honoured as given — also one lower than the operator's, e.g.
``dtype=jnp.float32`` for a float64 Hessian: the vectors fed to the matvec and every result are
then in that dtype, visibly. The Lanczos recurrence (basis, alphas, betas, Gram–Schmidt) may run in
a wider ``reorth_dtype`` such as float64, which requires ``jax.config.update("jax_enable_x64",
True)`` (never switched on by this module).

Drivers. ``driver="fori"`` runs the whole iteration in one jitted ``lax.fori_loop`` (no host
sync). ``driver="host"`` runs a Python loop over one jitted Lanczos step with donated state.
``driver="auto"`` picks ``"host"`` on CPU and ``"fori"`` elsewhere: on CPU, XLA compiles
convolutions inside loop bodies much less efficiently (a LeNet-5 Hessian-vector product ran ~7x
slower inside ``fori_loop`` than jitted alone), whereas on GPU/TPU the fused loop avoids per-step
dispatch. Both drivers execute the same step function and agree to rounding.

Matvecs have the form ``matvec(v, *params)`` (matfree style; a plain ``v -> A v`` needs no
params), or are an :class:`Operator`, which binds such a function to its operands. Compiled code is
cached by jax per matvec *function* (a static argument) and per array shape, so pass one fixed
function and feed what changes between calls (network parameters, data batches) through
``*params`` or an :class:`Operator`'s operands: nothing is recompiled. A fresh closure per call
recompiles each time (and jax's cache keeps it, with whatever it captured, alive). By layer: :mod:`.operator` (operators, dtypes, products, probes), :mod:`.recurrence` (the Lanczos
recurrence, Ritz pairs, ``eigsh``), :mod:`.quadrature` (Gauss quadrature, SLQ densities).
Building blocks, composed by :func:`eigsh`, :func:`slq_quadrature`, :func:`spectral_density` and
:mod:`gzone.fullspace`: :func:`lanczos_tridiag`, :func:`select_ritz`, :func:`gauss_quadrature`,
:func:`residual_norms`, :func:`probe_vector`, :func:`density_grid` and
:func:`density_from_quadrature` (one width rule), :func:`apply` and :func:`apply_block`.
"""

from gzone.lanczos.operator import (
    DRIVERS,
    PRECISION,
    PROBES,
    Matvec,
    Operator,
    apply,
    apply_block,
    check_positive,
    operator_dtype,
    probe_vector,
    unpack,
    working_dtype,
)
from gzone.lanczos.quadrature import (
    density_from_quadrature,
    density_grid,
    gauss_quadrature,
    slq_quadrature,
    spectral_density,
)
from gzone.lanczos.recurrence import (
    WHICH,
    EigshResult,
    LanczosResult,
    _lanczos_init,  # noqa: F401  (the tests drive the recurrence step by step)
    _lanczos_step_host,  # noqa: F401
    eigsh,
    lanczos_tridiag,
    residual_norms,
    select_ritz,
    tridiagonal,
)

__all__ = ["DRIVERS", "PRECISION", "PROBES", "WHICH", "EigshResult", "LanczosResult", "Matvec", "Operator",
           "apply", "apply_block", "check_positive", "density_from_quadrature", "density_grid",
           "eigsh", "gauss_quadrature", "lanczos_tridiag", "operator_dtype", "probe_vector",
           "residual_norms", "select_ritz", "slq_quadrature", "spectral_density", "tridiagonal",
           "unpack", "working_dtype"]
