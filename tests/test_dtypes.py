"""Dtype policy of every public numerical entry point (issue #9).

Each entry point works in the dtype of its inputs — ``v0``, the operator's output (found with
``jax.eval_shape``), the parameters — unless a dtype is given; a given dtype lower than the
operator's is honoured as given, visibly (the results carry it). Every case runs with 64-bit mode
off (float32 is all there is; float64 requests are refused with a message naming the fix) and on
(float64 inputs stay float64, float32 inputs stay float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_curvature import tiny_problem

from gzone import curvature, fullspace, hutchinson, jacobian, models
from gzone import lanczos as lz

F32, F64 = jnp.float32, jnp.float64
N = 24


def _dense(v, a):
    return a @ v


def _matrix(dtype):
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((N, N)))[0]
    return jnp.asarray(q @ np.diag(np.linspace(-1.0, 3.0, N)) @ q.T, dtype)


def _key():
    return jax.random.key(0)


# Each entry: name -> f(operand, dtype_kwarg) returning the arrays whose dtype is checked.
LANCZOS_ENTRY_POINTS = {
    "lanczos_tridiag": lambda a, kw: lz.lanczos_tridiag(_dense, jnp.ones(N, kw.get("dtype", a.dtype)), 10, a),
    "eigsh": lambda a, kw: lz.eigsh(_dense, N, 2, a, key=_key(), num_iters=12, **kw),
    "eigsh(Operator)": lambda a, kw: lz.eigsh(lz.Operator(_dense, (a,)), N, 2, key=_key(), num_iters=12, **kw),
    "slq_quadrature": lambda a, kw: lz.slq_quadrature(_dense, N, a, key=_key(), num_probes=2, num_iters=8, **kw),
    "spectral_density": lambda a, kw: lz.spectral_density(_dense, N, a, key=_key(), num_probes=2, num_iters=8, num_points=16, **kw),
    "trace_estimate": lambda a, kw: hutchinson.trace_estimate(_dense, N, a, key=_key(), num_probes=6, **kw),
    "trace_estimate(hutch++)": lambda a, kw: hutchinson.trace_estimate(_dense, N, a, key=_key(), num_probes=6, method="hutch++", **kw),
    "frobenius_estimate": lambda a, kw: hutchinson.frobenius_estimate(_dense, N, a, key=_key(), num_probes=6, **kw),
    "hutchinson_samples": lambda a, kw: hutchinson.hutchinson_samples(_dense, N, a, key=_key(), num_probes=3, **kw),
}


def _dtypes(out) -> set:
    # floating arrays only (counts such as EigshResult.num_iters are Python ints)
    return {jnp.dtype(leaf.dtype) for leaf in jax.tree_util.tree_leaves(out)
            if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)}


@pytest.mark.parametrize("name", sorted(LANCZOS_ENTRY_POINTS))
def test_lanczos_and_hutchinson_infer_and_honour_dtypes(name):
    call = LANCZOS_ENTRY_POINTS[name]
    with jax.enable_x64(False):  # 64-bit mode off: float32 throughout
        assert _dtypes(call(_matrix(F32), {})) == {jnp.dtype(F32)}
    assert _dtypes(call(_matrix(F64), {})) == {jnp.dtype(F64)}  # never silently float32
    assert _dtypes(call(_matrix(F32), {})) == {jnp.dtype(F32)}  # nor silently float64
    if name != "lanczos_tridiag":  # its dtype is v0's
        # a float32 request on a float64 operator is honoured, and the results say so
        assert _dtypes(call(_matrix(F64), {"dtype": F32})) == {jnp.dtype(F32)}


def test_float64_operator_keeps_float64_accuracy():
    # the defect of the old default dtype=float32: eigenvalues off by 1e-7 where float64 gives 1e-15
    a = _matrix(F64)
    exact = np.linalg.eigvalsh(np.asarray(a))[::-1][:2]
    got = lz.eigsh(_dense, N, 2, a, key=_key(), num_iters=N)
    np.testing.assert_allclose(got.eigenvalues, exact, rtol=1e-12)
    low = lz.eigsh(_dense, N, 2, a, key=_key(), num_iters=N, dtype=F32)
    assert np.abs(np.asarray(low.eigenvalues, np.float64) - exact).max() > 1e-12  # float32 visibly


def test_float64_request_without_x64_names_the_fix():
    with jax.enable_x64(False):
        a = _matrix(F32)
        for call in (lambda: lz.eigsh(_dense, N, 2, a, key=_key(), dtype=F64),
                     lambda: hutchinson.trace_estimate(_dense, N, a, key=_key(), num_probes=4, dtype=F64),
                     lambda: lz.slq_quadrature(_dense, N, a, key=_key(), num_probes=1, num_iters=4, dtype=F64)):
            with pytest.raises(ValueError, match="jax_enable_x64"):
                call()


# ----------------------------------------------------------------------------- network quantities


def _network_outputs(dtype):
    """Every public network-level entry point on the tiny MLP in ``dtype``: name -> outputs."""
    model, params, x, y = tiny_problem("mlp", dtype=dtype, n=7)
    p = ravel_pytree(params)[0].size
    basis = jnp.eye(p, 5, dtype=dtype)
    v = jnp.ones(p, dtype)
    batches = curvature.prepare_batches(model.apply, params, x, y, chunk_size=4)
    outs = {
        "prepare_batches": (batches.x, batches.w),
        "projected": curvature.projected(model.apply, params, basis, x, y),
        "projected(batches)": curvature.projected(model.apply, params, basis, batches),
        "loss_and_gradient": curvature.loss_and_gradient(model.apply, params, x, y),
        "loss_and_gradient(batches)": curvature.loss_and_gradient(model.apply, params, batches),
        "logit_tangents": jacobian.logit_tangents(model.apply, params, basis, x),
        "logits_of": jacobian.logits_of(model.apply, params, x),
        "class_mean_logit_gradients": jacobian.class_mean_logit_gradients(model.apply, params, x),
    }
    outs["full_space_curvature"] = fullspace.full_space_curvature(
        model.apply, params, x, y, key=_key(), num_probes=2, num_iters=4, top_k=1, density=False)
    for term in curvature.TERMS:
        outs[f"matvec[{term}]"] = curvature.matvec(term, model.apply)(v, params, batches, jnp.asarray(1.0, dtype))
        outs[f"operator[{term}]"] = curvature.OPERATORS[term](model.apply, params, x, y)(v)
        outs[f"block_matvec[{term}]"] = curvature.block_matvec(term, model.apply, 0, 6)(
            v[:6], params, batches, jnp.asarray(1.0, dtype))
    outs["scale"] = models.scale(params, np.float64(2.0))
    return outs


@pytest.mark.parametrize("x64, dtype", [(False, F32), (True, F32), (True, F64)],
                         ids=["float32-x64-off", "float32", "float64"])
def test_network_entry_points_follow_the_parameters_dtype(x64, dtype):
    # traced, not compiled (jax.eval_shape): a dtype is fixed when a program is traced, and the
    # entry points' own checks (a float64 request without x64...) run in Python either way; the
    # other tests run these entry points for their values. The composite full-space estimate in
    # every case, as a silent promotion would show in any of them.
    with jax.enable_x64(x64):
        outputs = jax.eval_shape(lambda: _network_outputs(dtype))
        for name, out in outputs.items():
            assert _dtypes(out) == {jnp.dtype(dtype)}, (name, dtype, x64)
