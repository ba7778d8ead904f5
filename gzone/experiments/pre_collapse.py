"""ICML Appendix D / Fig. 10: the pre-collapse regime.

Per-sample softmax entropies vs α (from the α = 1 logits, z(αθ) = α^L z(θ), in float64), positive
curvature vs α, and the top eigenvector of the input-layer block H₁₁ of the Hessian (Lanczos,
``gzone.lanczos.eigsh``), reshaped to (inputs, hidden), averaged |·| over hidden units and shown
as an image; its top left singular vector is compared with every input image.

The input layer is the model's declared ``input_layer`` (checked by
:func:`gzone.curvature.resolve_input_layer`); it must be dense, since the eigenvector is read
over input pixels (LeNet-5's ``conv0`` is refused before anything is computed or written).
Randomness: θ0 from ``jax.random.key(seed)``; the Lanczos start vector and the basis of the
curvature points from the named streams ``base.EIGVEC_STREAM`` and ``base.CURVATURE_BASIS_STREAM``.

Records (kinds ``entropy``, ``curvature``, ``eigvec``): ``RECORD_FIELDS``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from gzone import curvature, lanczos, models, results, subspace
from gzone.experiments import base
from gzone.experiments.base import ConfigError, ModelDataConfig, Progress, Record, Setup
from gzone.jacobian import logits_of

NAME = "fig10"
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "entropy": ("alpha", "mean_entropy", "uncertain_samples", "top_sample", "top_share",
                "tracked_entropies"),
    "curvature": ("alpha", "hessian_positive_curvature", "gterm_positive_curvature",
                  "hterm_positive_curvature"),
    "eigvec": ("alpha", "operator", "top_sample", "top_share", "eigenvalue", "residual",
               "heatmap", "heatmap_signed", "heatmap_shape", "top_sample_cosine",
               "best_sample", "best_cosine", "median_cosine"),
}
OPERATORS = ("hessian", "gterm")


@dataclasses.dataclass(frozen=True)
class Fig10Config(ModelDataConfig):
    """Fig. 10 / App. D: per-sample entropies vs α and the first-layer top Hessian eigenvector."""

    n_samples: int = 300
    seed: int = 0
    dim: int = 20
    alpha_min: float = 1.0
    alpha_max: float | None = dataclasses.field(default=None, metadata={
        "help": "largest alpha (none: just past the alpha where the last sample collapses)"})
    num_points: int = dataclasses.field(default=161, metadata={
        "help": "alpha points of the entropy sweep (cheap)"})
    curvature_points: int = dataclasses.field(default=7, metadata={
        "help": "alpha points of the projected curvature, a coarser grid (0: skip)"})
    eig_alphas: tuple[float, ...] | None = dataclasses.field(default=None, metadata={
        "help": "alphas of the top-eigenvector images (none: alpha = 1 and those of the share levels)"})
    share_levels: tuple[float, ...] = (0.5, 0.9, 0.99)
    operator: str = dataclasses.field(default="hessian", metadata={
        "help": "operator of the top eigenvector (hessian: the paper)", "choices": OPERATORS})
    lanczos_iters: int = 30
    track: int = dataclasses.field(default=20, metadata={
        "help": "samples whose entropy curves are stored"})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ()
    STUDY: ClassVar[str] = NAME


def validate(config: Fig10Config) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_model_data(config)
    base.check_positive(config, "alpha_min", "alpha_max")
    base.check_range(config, "alpha_min", "alpha_max")
    base.check_at_least(config, "num_points", "lanczos_iters", "dim")
    base.check_at_least(config, "curvature_points", "track", minimum=0)
    base.check_choice(config, "operator", OPERATORS)
    if config.eig_alphas is not None:
        for a in config.eig_alphas:
            if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
                raise ConfigError("eig_alphas", f"{{name}} must be finite numbers > 0, got {a!r}")
    if any(not 0 < s <= 1 for s in config.share_levels):
        raise ConfigError("share_levels", "{name} must lie in (0, 1]")


def dense_input_layer(setup: Setup, config: Fig10Config) -> str:
    """The model's declared input layer, checked to be a Dense layer on the flattened input
    (shapes only, nothing computed); a one-line ConfigError naming the fix otherwise."""
    shapes = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                config.init, setup.dtype))
    layer = curvature.resolve_input_layer(setup.model.apply, shapes, setup.x[:1])
    if layer is None:
        raise ConfigError("model", f"fig10 needs a model that declares its input layer; "
                                   f"{config.model} does not: use {{name}} lenet300 or mlp")
    _, shape = first_layer_slice(shapes, layer)
    if len(shape) != 2:
        raise ConfigError("model", "fig10 shows the input-layer eigenvector over input pixels and "
                                   f"needs a dense input layer; {config.model}'s input layer "
                                   f"{layer} is a convolution: use {{name}} lenet300 or mlp")
    if shape[0] != math.prod(setup.input_shape):
        raise ConfigError("model", f"fig10 needs the input layer on the flattened input; "
                                   f"{config.model}'s {layer} takes {shape[0]} inputs, the images "
                                   f"have {math.prod(setup.input_shape)} values")
    return layer


# ----------------------------------------------------------------------------- entropies


def softmax_uncertainty(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample entropy and t = Tr(diag p − ppᵀ) = 1 − ‖p‖², float64 and cancellation-free
    (1 − p_max is summed from the other entries), for logits (..., K)."""
    log_p = scipy.special.log_softmax(np.asarray(logits, np.float64), axis=-1)
    p = np.exp(log_p)
    entropy = -np.sum(np.where(p > 0, p * log_p, 0.0), axis=-1)
    is_max = np.arange(p.shape[-1]) == np.argmax(p, axis=-1)[..., None]
    rest = np.sum(np.where(is_max, 0.0, p), axis=-1, keepdims=True)
    t = np.sum(p * np.where(is_max, rest, 1 - p), axis=-1)
    return entropy, t


def collapse_alpha(logits: np.ndarray, degree: int, floor: float = 1e-30) -> float:
    """α beyond which every sample's t < ``floor`` (softmax collapsed): the top-two logit gap Δ
    of the last sample to collapse satisfies α^L Δ ≈ −log(floor)."""
    top2 = np.sort(np.asarray(logits, np.float64), axis=-1)[:, -2:]
    gap = max(float(np.min(top2[:, 1] - top2[:, 0])), 1e-12)
    return float((-math.log(floor) / gap) ** (1.0 / degree))


def choose_eig_alphas(alphas: np.ndarray, share: np.ndarray, t_top: np.ndarray,
                      levels: Sequence[float], floor: float = 1e-20) -> list[float]:
    """α = 1 and, per level, the smallest grid α where the most uncertain sample holds that share
    of Σ_μ t_μ (its G-term dominates) while t stays above ``floor`` (resolvable in float32)."""
    chosen = [1.0]
    for level in levels:
        ok = np.flatnonzero((share >= level) & (t_top >= floor))
        if ok.size:
            chosen.append(float(alphas[ok[0]]))
    return sorted(set(chosen))


def first_layer_slice(params: Any, layer: str) -> tuple[int, tuple[int, ...]]:
    """(offset in the flat parameter vector, kernel shape) of the kernel of layer ``layer``
    (``params["params"][layer]["kernel"]``; flat order as ``ravel_pytree``). For a Dense input
    layer the shape is (inputs, hidden)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    offset = 0
    for path, leaf in leaves:
        names = [getattr(k, "key", None) for k in path]
        if names == ["params", layer, "kernel"]:
            return offset, tuple(leaf.shape)
        offset += leaf.size
    raise ValueError(f"the parameters hold no kernel of layer {layer!r}")


# ----------------------------------------------------------------------------- eigenvector


def top_eigenpair(matvec, dim: int, args: tuple, *, key: jax.Array, num_iters: int,
                  dtype: Any) -> tuple[float, np.ndarray, float]:
    """Largest algebraic eigenpair of a symmetric operator (``gzone.lanczos.eigsh``): (eigenvalue,
    eigenvector, residual norm)."""
    res = lanczos.eigsh(matvec, dim, 1, *args, key=key, num_iters=min(num_iters, dim),
                        which="LA", dtype=dtype)
    return (float(res.eigenvalues[0]), np.asarray(res.eigenvectors[:, 0]),
            float(res.residual_norms[0]))


def first_layer_operator(setup: Setup, config: Fig10Config, params: Any) -> Callable:
    """``matvec(v1, params, batches, T)``: the input-layer diagonal block of the Hessian (or
    G-term) of :mod:`gzone.curvature` (:func:`gzone.curvature.block_matvec`, one cached function,
    so Lanczos compiles once and is reused at every α)."""
    offset, shape = first_layer_slice(params, setup.model.input_layer)
    return curvature.block_matvec(config.operator, setup.model.apply, offset, int(np.prod(shape)))


def eigvec_record(
    setup: Setup, config: Fig10Config, params: Any, alpha: float, top_sample: int, share: float,
    matvec: Callable | None = None, batches: curvature.Batches | None = None,
) -> Record:
    """Top eigenvector of the input-layer block at α, as an image: mean |·| (and signed mean) over
    hidden units; its top left singular vector vs every input (|cosine|). (For ReLU networks the
    H-term's first-layer block is zero — z is linear in one layer's weights — so H₁₁ = G₁₁.)
    ``matvec`` and ``batches`` (:func:`first_layer_operator`, the data laid out once) may be passed
    to share them across α."""
    scaled = models.scale(params, alpha)
    _, shape = first_layer_slice(scaled, setup.model.input_layer)
    if batches is None:
        batches = curvature.prepare_batches(setup.model.apply, scaled, setup.x, setup.y,
                                            config.chunk_size)
    matvec = matvec or first_layer_operator(setup, config, params)
    operator = lanczos.Operator(matvec, (scaled, batches, jnp.asarray(1.0, setup.dtype)))
    lam, vec, residual = top_eigenpair(
        operator, int(np.prod(shape)), (), key=base.stream_key(config.seed, base.EIGVEC_STREAM),
        num_iters=config.lanczos_iters, dtype=setup.dtype)
    matrix = vec.reshape(shape).astype(np.float64)  # (inputs, hidden)
    image_shape = setup.input_shape
    heat = np.abs(matrix).mean(axis=1).reshape(image_shape).mean(axis=-1)
    signed = matrix.mean(axis=1).reshape(image_shape).mean(axis=-1)
    u1 = np.linalg.svd(matrix, full_matrices=False)[0][:, 0]
    inputs = np.asarray(setup.x, np.float64).reshape(len(setup.x), -1)
    cos = np.abs(inputs @ u1) / np.maximum(np.linalg.norm(inputs, axis=1), 1e-30)
    return {
        "alpha": alpha, "operator": config.operator, "method": "lanczos", "top_sample": top_sample,
        "top_share": share, "eigenvalue": lam, "residual": residual,
        "heatmap": heat.ravel().tolist(), "heatmap_signed": signed.ravel().tolist(),
        "heatmap_shape": list(heat.shape), "top_sample_cosine": float(cos[top_sample]),
        "best_sample": int(np.argmax(cos)), "best_cosine": float(cos.max()),
        "median_cosine": float(np.median(cos)),
    }


# ----------------------------------------------------------------------------- run


def run(
    config: Fig10Config, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 10: entropy sweep (all at once), then curvature and eigenvector points (resumable).
    Everything that can refuse the config (data, model, dense input layer, d) is checked before
    the directory is touched."""
    validate(config)
    setup = base.make_setup(config, base.load_data(config.dataset, config.split, config.n_samples,
                                                   data_dir=data_dir))
    if setup.degree is None:
        raise ConfigError("model", "fig10 scales logits as alpha^L: it needs a homogeneous {name}")
    dense_input_layer(setup, config)
    if config.curvature_points:
        base.check_dim(setup, config.dim, min_classes=True)
    params = base.init_params(setup, config.init, jax.random.key(config.seed))
    existing = base.open_results(config, out_dir)
    logits1 = np.asarray(logits_of(setup.model.apply, params, setup.x), np.float64)
    alpha_max = config.alpha_max or 1.5 * collapse_alpha(logits1, setup.degree)
    alphas = np.geomspace(config.alpha_min, max(alpha_max, config.alpha_min), config.num_points)
    # samples collapse in the order of their top-two logit gap: t ≈ 2 exp(-α^L Δ) (App. C, D)
    top2 = np.sort(logits1, axis=-1)[:, -2:]
    tracked = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[: config.track]
    sweep = [softmax_uncertainty(a ** setup.degree * logits1) for a in alphas]
    top = np.array([int(np.argmax(t)) for _, t in sweep])
    t_top = np.array([t[i] for (_, t), i in zip(sweep, top)])
    share = np.array([t.max() / t.sum() if t.sum() > 0 else np.nan for _, t in sweep])
    if not any(r["kind"] == "entropy" for r in existing):
        results.append_records(out_dir, [base.tag(NAME, "entropy", {
            "alpha": float(a), "mean_entropy": float(h.mean()),
            "uncertain_samples": int(np.sum(h > 1e-3)), "top_sample": int(top[i]),
            "top_share": float(share[i]), "top_t": float(t_top[i]),
            "tracked_samples": tracked.tolist(), "tracked_entropies": h[tracked].tolist()})
            for i, (a, (h, _)) in enumerate(zip(alphas, sweep))])
    eig_alphas = (list(config.eig_alphas) if config.eig_alphas is not None else
                  choose_eig_alphas(alphas, share, t_top, config.share_levels))
    curv_alphas = (np.geomspace(config.alpha_min, alpha_max, config.curvature_points).tolist()
                   if config.curvature_points else [])
    done = {(r["kind"], r["alpha"]) for r in existing}
    todo = [("curvature", a) for a in curv_alphas if ("curvature", a) not in done]
    todo += [("eigvec", a) for a in eig_alphas if ("eigvec", a) not in done]
    basis, matvec = None, first_layer_operator(setup, config, params)
    # the data laid out once: for the matvecs (one tangent) and the projections (d tangents)
    batches = curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                        config.chunk_size)
    projection_batches = curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                                   config.chunk_size, num_tangents=config.dim)
    for kind, alpha in base.iterate(todo, progress):
        if kind == "curvature":
            if basis is None:
                basis = subspace.random_basis(
                    base.stream_key(config.seed, base.CURVATURE_BASIS_STREAM), setup.num_params,
                    config.dim, "orthonormal", setup.dtype)
            proj = curvature.projected(setup.model.apply, models.scale(params, alpha), basis,
                                       projection_batches)
            record = {"alpha": alpha, "dim": config.dim,
                      **{f"{term}_positive_curvature": base.positive_curvature(getattr(proj, term))
                         for term in ("hessian", "gterm", "hterm")}}
        else:
            _, ti = softmax_uncertainty(alpha ** setup.degree * logits1)
            mu0 = int(np.argmax(ti))
            share_mu0 = float(ti[mu0] / ti.sum()) if ti.sum() > 0 else float("nan")
            record = eigvec_record(setup, config, params, alpha, mu0, share_mu0, matvec, batches)
        results.append_records(out_dir, [base.tag(NAME, kind, record)])
    return base.load(out_dir)


def summarize(records: list[Record]) -> dict[str, Any]:
    """The first α where one sample holds ≥ 90% of Σ_μ Tr(diag p^μ − p^μ p^μᵀ) (pre-collapse),
    whether that sample stays the most uncertain at every larger α, and per eigenvector α: the
    sample's share, |cos| of the eigenvector's image with it, and the best-aligned input."""
    ent = sorted((r for r in records if r.get("kind") == "entropy"), key=lambda r: r["alpha"])
    dominant = [i for i, r in enumerate(ent) if r["top_share"] is not None and r["top_share"] >= 0.9]
    later = [r["top_sample"] for r in ent[dominant[0]:] if r["top_t"] and r["top_t"] > 0] \
        if dominant else []
    eig = sorted((r for r in records if r.get("kind") == "eigvec"), key=lambda r: r["alpha"])
    return {
        "alpha_range": (ent[0]["alpha"], ent[-1]["alpha"]) if ent else None,
        "alpha_share_0.9": ent[dominant[0]]["alpha"] if dominant else None,
        "last_uncertain_sample": later[0] if later else None,
        "last_uncertain_sample_stays_top": bool(later) and len(set(later)) == 1,
        "eigvecs": [{k: r[k] for k in ("alpha", "top_sample", "top_share", "top_sample_cosine",
                                       "best_sample", "best_cosine", "median_cosine", "eigenvalue",
                                       "residual")} | {"method": r.get("method")} for r in eig],
    }
