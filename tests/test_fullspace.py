"""Full-space curvature (gzone.fullspace) against dense float64 eigendecompositions, its
statistics, its compile-once property, and the ``--full-space`` sweep end to end."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_curvature import dense_terms, tiny_problem

from gzone import command, curvature, fullspace, models, results
from gzone import lanczos as lz

TEMPERATURE = 0.8
TOP_K = 5
TRACES: list[int] = []
MODEL = models.MLP(widths=(6, 5, 4))  # the model of tiny_problem("mlp")
NUM_ITERS = 86  # = P of that model: a complete Krylov space, and one compiled Lanczos step


def counting_apply(params, x):
    """``MODEL.apply`` that counts how often it is traced (a Python side effect runs only then).
    Every test here uses it, so they share compilations."""
    TRACES.append(1)
    return MODEL.apply(params, x)


@pytest.fixture(scope="module")
def problem():
    """Tiny MLP (P = 86, N = 11), its dense spectra, and one full-space measurement with a
    complete Krylov space (num_iters = P) and many probes."""
    model, params, x, y = tiny_problem("mlp")
    assert model == MODEL and ravel_pytree(params)[0].size == NUM_ITERS
    dense = dict(zip(fullspace.TERMS, dense_terms(model, params, x, y, TEMPERATURE)))
    spectra = {t: np.linalg.eigvalsh(np.asarray(m)) for t, m in dense.items()}
    measured = fullspace.full_space_curvature(
        counting_apply, params, x, y, TEMPERATURE, key=jax.random.key(0), num_probes=500,
        num_iters=NUM_ITERS, top_k=TOP_K, density_probes=2,
    )
    return counting_apply, params, x, y, dense, spectra, measured


@pytest.mark.parametrize("term", fullspace.TERMS)
def test_eigenvalues_match_dense_reference(problem, term):
    *_, spectra, measured = problem
    lam, got = spectra[term], measured[term]
    scale = np.abs(lam).max()
    np.testing.assert_allclose(got.top_eigenvalues, lam[::-1][:TOP_K], rtol=1e-6, atol=1e-9 * scale)
    np.testing.assert_allclose(got.bottom_eigenvalues, lam[:TOP_K], rtol=1e-6, atol=1e-9 * scale)
    np.testing.assert_allclose(got.spectral_norm, scale, rtol=1e-8)
    assert np.all(np.asarray(got.residual_norms) < 1e-8 * scale)
    assert np.all(np.asarray(got.bottom_residual_norms) < 1e-8 * scale)


def test_gterm_is_positive_semidefinite(problem):
    *_, spectra, measured = problem
    gterm = measured["gterm"]
    assert float(gterm.bottom_eigenvalues[0]) >= -1e-12 * float(gterm.spectral_norm)
    assert spectra["gterm"].min() >= -1e-12 * spectra["gterm"].max()
    assert float(jnp.min(gterm.nodes)) >= -1e-12 * float(gterm.spectral_norm)


@pytest.mark.parametrize("term", fullspace.TERMS)
def test_hutchinson_within_three_standard_errors(problem, term):
    *_, spectra, measured = problem
    lam, got = spectra[term], measured[term]
    exact = {
        "positive_curvature": lam.sum() / np.sqrt((lam**2).sum()),
        "trace": lam.sum(),
        "frobenius_norm": np.sqrt((lam**2).sum()),
    }
    errors = {"positive_curvature": got.stderr, "trace": got.trace_stderr,
              "frobenius_norm": got.frobenius_stderr}
    for name, value in exact.items():
        assert abs(float(getattr(got, name)) - value) <= 3 * float(errors[name]), name
    # 500 probes: close in absolute terms too (Var zᵀAz ≤ 2‖A‖_F² gives se(ratio) ≈ √(2/m))
    assert float(got.stderr) < 0.1
    assert abs(float(got.positive_curvature) - exact["positive_curvature"]) < 0.2


def test_hterm_has_zero_trace_for_relu_networks(problem):
    """Bias-free ReLU nets: logits are linear in each layer's weights, so the H-term has zero
    diagonal blocks and zero positive curvature (ICML paper, Sec. 5, after Pappayan)."""
    *_, spectra, measured = problem
    assert abs(spectra["hterm"].sum()) < 1e-12 * np.abs(spectra["hterm"]).max()
    assert abs(float(measured["hterm"].positive_curvature)) < 3 * float(measured["hterm"].stderr)


@pytest.mark.parametrize("term", fullspace.TERMS)
def test_density_and_quadrature(problem, term):
    *_, spectra, measured = problem
    got = measured[term]
    np.testing.assert_allclose(jnp.trapezoid(got.density, got.grid), 1.0, rtol=1e-10)
    assert got.nodes.shape == got.weights.shape == (2, len(spectra[term]))
    np.testing.assert_allclose(got.weights.sum(axis=1), 1.0, rtol=1e-10)
    # num_iters = P (a complete Krylov space, with restarts past breakdowns): the nodes are the
    # eigenvalues themselves
    lam = spectra[term]
    for nodes in np.asarray(got.nodes):
        np.testing.assert_allclose(np.sort(nodes), lam, atol=1e-9 * np.abs(lam).max())
    assert got.grid[0] <= lam.min() and got.grid[-1] >= lam.max()


def test_chunked_stable_matvec_matches_dense(problem):
    apply_fn, params, x, y, dense, *_ = problem
    v = jax.random.normal(jax.random.key(3), (dense["hessian"].shape[0],), jnp.float64)
    temperature = jnp.asarray(TEMPERATURE)
    one_chunk = curvature.prepare_batches(apply_fn, params, x, y)
    for term in fullspace.TERMS:
        matvec = curvature.matvec(term, apply_fn)
        got = lz.apply(matvec, v, params, one_chunk, temperature)
        np.testing.assert_allclose(got, dense[term] @ v, rtol=1e-10, atol=1e-13)
        bound = curvature.operator(term, apply_fn, params, x, y, TEMPERATURE)
        np.testing.assert_allclose(bound(v), dense[term] @ v, rtol=1e-10, atol=1e-13)
    xs, ys, ws = chunks = curvature.prepare_batches(apply_fn, params, x, y, chunk_size=4)
    assert xs.shape[:2] == (3, 4) and float(ws.sum()) == pytest.approx(1.0) and ws[-1, -1] == 0
    got = lz.apply(curvature.matvec("hessian", apply_fn), v, params, chunks, temperature)
    np.testing.assert_allclose(got, dense["hessian"] @ v, rtol=1e-10, atol=1e-13)
    assert curvature.matvec("gterm", apply_fn) is curvature.matvec("gterm", apply_fn)


def test_common_probes_add_up_like_the_terms(problem):
    """With common probes, zᵀHz = zᵀGz + zᵀH-term z probe by probe, so the trace estimates add up."""
    apply_fn, params, x, y, *_ = problem
    out = fullspace.full_space_curvature(
        apply_fn, params, x, y, TEMPERATURE, key=jax.random.key(1), num_probes=20,
        num_iters=NUM_ITERS, density=False, common_probes=True,
    )
    np.testing.assert_allclose(out["hessian"].trace, out["gterm"].trace + out["hterm"].trace, rtol=1e-10)
    assert out["hessian"].nodes is None and out["hessian"].density is None


def test_deterministic_for_a_fixed_key(problem):
    apply_fn, params, x, y, *_ = problem
    kwargs = {"num_probes": 8, "num_iters": NUM_ITERS, "top_k": 3, "density_probes": 2,
              "terms": ("hterm",)}
    a = fullspace.full_space_curvature(apply_fn, params, x, y, key=jax.random.key(7), **kwargs)
    b = fullspace.full_space_curvature(apply_fn, params, x, y, key=jax.random.key(7), **kwargs)
    c = fullspace.full_space_curvature(apply_fn, params, x, y, key=jax.random.key(8), **kwargs)
    for field, value in a["hterm"]._asdict().items():
        np.testing.assert_array_equal(value, getattr(b["hterm"], field), err_msg=field)
    assert float(a["hterm"].positive_curvature) != float(c["hterm"].positive_curvature)


def test_sweep_over_alpha_and_temperature_compiles_once(problem, compilations):
    apply_fn, params, x, y, *_ = problem
    kwargs = {"num_probes": 3, "num_iters": NUM_ITERS, "top_k": 2, "density_probes": 1}
    fullspace.full_space_curvature(apply_fn, params, x, y, 1.0, key=jax.random.key(0), **kwargs)
    traced = len(TRACES)
    assert traced > 0
    scaled = {alpha: models.scale(params, alpha) for alpha in (0.3, 4.0)}  # eager ops compile
    with compilations() as compiled:
        for alpha, temperature in [(0.3, 1.0), (4.0, 2.5)]:
            fullspace.full_space_curvature(
                apply_fn, scaled[alpha], x, y, temperature, key=jax.random.key(1), **kwargs,
            )
    # new α, T and key: no new trace of the model, nothing compiled (jax's public compile log)
    assert len(TRACES) == traced and compiled == []
    chunks = curvature.prepare_batches(apply_fn, params, x, y, chunk_size=5)
    matvec = curvature.matvec("hterm", apply_fn)
    with compilations() as compiled:
        lz.apply(matvec, ravel_pytree(params)[0], params, chunks, jnp.asarray(1.0))
    assert len(TRACES) > traced  # new chunk shapes do retrace: the checks can see it
    assert "jit(_apply_one)" in compiled  # the product, with the matvec inlined
    fresh = curvature.matvec.__wrapped__("hterm", apply_fn)  # an equal but new function
    with compilations() as compiled:
        lz.apply(fresh, ravel_pytree(params)[0], params, chunks, jnp.asarray(1.0))
    assert "jit(_apply_one)" in compiled  # ... which is why matvec() caches it


def test_operators_reused_across_alpha_compile_nothing(problem, compilations):
    # the README's path: curvature.hessian_operator(...) handed to lanczos.eigsh, once per alpha
    apply_fn, params, x, y, *_ = problem
    dim = ravel_pytree(params)[0].size
    for make in curvature.OPERATORS.values():
        lz.eigsh(make(apply_fn, params, x, y), dim, 2, key=jax.random.key(0), num_iters=20)
    scaled = [models.scale(params, alpha) for alpha in (0.5, 2.0, 7.0)]  # eager ops compile
    with compilations() as compiled:
        for params_alpha in scaled:
            for make in curvature.OPERATORS.values():
                op = make(apply_fn, params_alpha, x, y, 1.3)
                res = lz.eigsh(op, dim, 2, key=jax.random.key(0), num_iters=20)
                assert res.eigenvalues.dtype == jnp.float64  # inferred from the operator
    assert compiled == []


def test_input_validation(problem):
    apply_fn, params, x, y, *_ = problem
    with pytest.raises(ValueError, match="unknown terms"):
        fullspace.full_space_curvature(apply_fn, params, x, y, key=jax.random.key(0), terms=("h",))
    with pytest.raises(ValueError, match="num_probes"):
        fullspace.full_space_curvature(apply_fn, params, x, y, key=jax.random.key(0), num_probes=1)
    with pytest.raises(ValueError, match="unknown term"):
        curvature.matvec("hess", apply_fn)


def test_cli_full_space_records_figure_and_resume(tmp_path, capsys, monkeypatch):
    # one model object for every run: bound methods compare by identity of their module, so a
    # new (equal) model per run would recompile everything (the rerun below would cost ~10 s)
    monkeypatch.setattr(models, "make_model", functools.cache(models.make_model))
    out = tmp_path / "run"
    argv = ["run", "icml/alpha-sweep", "--preset", "tiny", "--num-points", "2", "--seeds", "1",
            "--no-progress", "--out", str(out), "--full-space", "--probes", "4",
            "--lanczos-iters", "8"]
    assert command.main(argv) == 0
    records = results.load_records(out / results.RESULTS_FILE)
    full = [r for r in records if r.get("space") == "full"]
    assert len(records) == 2 * 3 * 2 and len(full) == 2 * 3
    num_params = 64 * 32 + 32 * 16 + 16 * 10
    for r in full:
        assert r["dim"] == num_params and r["basis"] == "identity"
        assert {"stderr", "spectral_norm", "top_eigenvalue", "top_eigenvalues", "residual_norms",
                "loss", "gradient_norm", "n_samples", "model", "dataset", "dtype", "mode"} <= set(r)
        assert len(r["top_eigenvalues"]) == len(r["residual_norms"]) == 5
        assert len(r["slq_nodes"][0]) == 8
    assert (out / "alpha-sweep-densities.png").stat().st_size > 0
    assert (out / "alpha-sweep-densities.pdf").stat().st_size > 0
    table = capsys.readouterr().out
    assert "subspace" in table and "full" in table

    # a point is finished only when its full-space records exist: drop one, rerun, get it back
    lines = (out / results.RESULTS_FILE).read_text().splitlines()
    dropped = [i for i, line in enumerate(lines) if json.loads(line).get("space") == "full"][-1]
    (out / results.RESULTS_FILE).write_text("\n".join(lines[:dropped] + lines[dropped + 1 :]) + "\n")
    assert command.main([*argv, "--no-plot"]) == 0
    again = results.load_records(out / results.RESULTS_FILE)
    assert len(again) == len(records) + 2  # the point's three full-space records, none else
    assert sum(r.get("space") != "full" for r in again) == 2 * 3

    # --full-space (and its settings) are part of the directory's identity
    plain = [a for a in argv if a not in ("--full-space",)]
    assert command.main(plain) == 2
    assert "full_space" in capsys.readouterr().err
    assert command.main([*argv[:-1], "16"]) == 2
    assert "lanczos_iters" in capsys.readouterr().err
