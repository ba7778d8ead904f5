"""The precision policy (:mod:`gzone.precision`), read in gzone's compiled programs: every matrix
product of the curvature operators, the Lanczos recurrence and Ritz vectors, the Hutchinson forms,
the logged metrics and the batched sharpness is full float32 (``HIGHEST``) whatever the caller's
default; training updates follow their ``matmul_precision`` setting; results directories record
the precision, devices and XLA flags."""

import json

import jax
import jax.numpy as jnp
import pytest
from test_curvature import tiny_problem

from gzone import curvature, hutchinson, lanczos, precision, results
from gzone.lanczos import recurrence
from gzone.training import metrics, sharpness, step


def _precisions(fn, *args, **kwargs) -> list[str]:
    """The precision of every matrix product of ``fn`` lowered for ``args`` — traced under a
    caller's ``bfloat16`` default, which must not leak into gzone's programs."""
    with jax.default_matmul_precision("bfloat16"):
        text = fn.lower(*args, **kwargs).as_text()
    found = precision.dot_precisions(text)
    assert found, "no matrix product found: the check would pass vacuously"
    return found


@pytest.fixture(scope="module")
def problem():
    model, params, x, y = tiny_problem("cnn", dtype=jnp.float32, n=5)
    batches = curvature.prepare_batches(model.apply, params, x, y)
    return model, params, batches


def test_the_reader_sees_each_setting():
    a = jnp.ones((3, 3), jnp.float32)
    for name, want in (("highest", "HIGHEST"), ("tensorfloat32", "HIGH"), ("default", "DEFAULT")):
        with jax.default_matmul_precision(name):
            text = jax.jit(lambda u: u @ u).lower(a).as_text()
        assert precision.dot_precisions(text) == [want]


def test_curvature_lanczos_and_hutchinson_products_are_full_float32(problem):
    model, params, batches = problem
    size = curvature.num_params(params)
    v = jnp.ones((size,), jnp.float32)
    temperature = jnp.float32(1.0)
    matvec = curvature.matvec("hessian", model.apply)
    assert set(_precisions(matvec, v, params, batches, temperature)) == {"HIGHEST"}
    operands = (params, batches, temperature)
    state = recurrence._lanczos_init(v, jax.random.key(0), 4, jnp.float32)
    update = recurrence._lanczos_update_jit
    assert set(_precisions(update, jnp.float32, lanczos.PRECISION, jnp.int32(0), state, v)) == {"HIGHEST"}
    fori = recurrence._lanczos_fori
    assert set(_precisions(fori, matvec, jnp.float32, lanczos.PRECISION, 4, state, *operands)) == {"HIGHEST"}
    # the opt-out exists (to measure what TF32 costs in orthogonality) and is visible
    assert set(_precisions(update, jnp.float32, "default", jnp.int32(0), state, v)) == {"DEFAULT"}
    ritz = recurrence._select_ritz
    assert set(_precisions(ritz, state.alphas, state.betas, state.basis, "LA", 2)) == {"HIGHEST"}
    assert set(_precisions(hutchinson._scaled_forms, v, v)) == {"HIGHEST"}
    chunk = curvature.projected_chunk
    columns = curvature.basis_columns(params, jnp.eye(size, 3, dtype=jnp.float32), None)
    assert set(_precisions(chunk, model.apply, params, columns, batches.x[0], batches.y[0],
                           batches.w[0], temperature)) == {"HIGHEST"}


def test_logged_metrics_and_sharpness_are_full_float32_and_updates_follow_the_setting(problem):
    model, params, batches = problem
    grid = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    temps = jnp.ones((2,), jnp.float32)
    assert set(_precisions(metrics.grid_metrics, model.apply, grid, grid, batches, temps, False)) == {"HIGHEST"}
    assert set(_precisions(metrics.grid_accuracy, model.apply, grid, batches)) == {"HIGHEST"}
    size = curvature.num_params(params)
    vectors, flags = jnp.zeros((2, size), jnp.float32), jnp.ones((2,), bool)
    assert set(_precisions(sharpness.fused, model.apply, 5, 1e-3, grid, batches, temps, vectors,
                           flags, flags, jax.random.key(0))) == {"HIGHEST"}
    from gzone.training import init_optimizer, make_optimizer

    opt = make_optimizer("gd")
    state = jax.vmap(lambda p: init_optimizer("gd", p, 0.1))(grid)
    carry = (grid, state, jnp.full((2,), -1, jnp.int32))
    key = jax.random.key(0)
    for setting, want in (("float32", "HIGHEST"), ("tf32", "HIGH")):
        found = _precisions(step._scan_block, model.apply, opt, "true", False, 4, True, setting, 2,
                            carry, jnp.int32(0), batches, temps, key)
        assert set(found) == {want}, setting
    with pytest.raises(ValueError, match="unknown matmul_precision 'fp16'; choose one of float32, tf32"):
        precision.matmul("fp16")


def test_a_results_directory_records_precision_devices_and_xla_flags(tmp_path):
    results.open_results(tmp_path, {"study": "x", "a": 1})
    stored = json.loads((tmp_path / results.CONFIG_FILE).read_text())
    assert stored["provenance"]["precision"]["lanczos"] == "highest"
    assert stored["provenance"]["device_count"] == jax.local_device_count()
    assert stored["provenance"]["device_kind"] == jax.local_devices()[0].device_kind
    assert "xla_flags" in stored["provenance"]
    # provenance is not identity: the directory opens again from another device setting
    assert results.open_results(tmp_path, {"study": "x", "a": 1}) == []
    sessions = [json.loads(line) for line in (tmp_path / results.PROVENANCE_FILE).read_text().splitlines()]
    assert len(sessions) == 2 and sessions[1]["provenance"]["process_count"] == jax.process_count()
