"""ICML App. D and Fig. 10: the pre-collapse regime.

Per-sample softmax entropies against α (from the α = 1 logits, z(αθ) = α^L z(θ), in float64;
``entropy`` records, all at once), positive curvature against α on a coarser grid
(``curvature`` records, projected on an orthonormal d-plane), and the top eigenvector of the
input-layer block H₁₁ of the Hessian (Lanczos, :func:`gzone.lanczos.eigsh`; ``eigvec`` records)
reshaped to (inputs, hidden), averaged over hidden units and shown as an image (signed, as the
paper's Fig. 10; the mean of absolute values with ``figure(..., absolute=True)``); its top left
singular vector is compared with every input image. In the pre-collapse regime one sample, the
least confident, owns the G-term and the eigenvector is that sample's image.

The input layer is the model's declared ``input_layer``
(:func:`gzone.curvature.resolve_input_layer`); it must be dense, since the eigenvector is read
over input pixels (LeNet-5's ``conv0`` is refused before anything is computed or written).
Randomness: θ0 from ``jax.random.key(seed)``; the Lanczos start vector and the basis of the
curvature points from the named streams ``eigvec`` and ``curvature-basis``.

    gzone run icml/pre-collapse
    gzone run icml/pre-collapse --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, lanczos, models, subspace
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ConfigError,
    ModelDataConfig,
    check_at_least,
    check_choice,
    check_model_data,
    check_positive,
    check_range,
    field,
)
from gzone.engine.setup import Setup
from gzone.engine.study import Record
from gzone.engine.summary import positive_curvature
from gzone.jacobian import logits_of
from gzone.studies.icml._common import LENET300_FASHION

OPERATORS = ("hessian", "gterm")


@dataclasses.dataclass(frozen=True)
class Config(ModelDataConfig):
    """Per-sample entropies vs α and the first-layer top Hessian eigenvector."""

    n_samples: int = field(300, "first N samples of the split")
    seed: int = field(0, "seed of theta0")
    dim: int = field(20, "subspace dimension d of the curvature points")
    alpha_min: float = field(1.0, "smallest alpha")
    alpha_max: float | None = field(None, "largest alpha (none: just past the alpha where the "
                                          "last sample collapses)")
    num_points: int = field(161, "alpha points of the entropy sweep (cheap)")
    curvature_points: int = field(7, "alpha points of the projected curvature, a coarser grid "
                                     "(0: skip)")
    eig_alphas: tuple[float, ...] | None = field(None, "alphas of the top-eigenvector images "
                                                       "(none: alpha = 1 and those of the share levels)")
    share_levels: tuple[float, ...] = field((0.5, 0.9, 0.99), "shares of the G-term held by the "
                                            "least confident sample at which eigenvectors are drawn")
    operator: str = field("hessian", "operator of the top eigenvector (hessian: the paper)", OPERATORS)
    lanczos_iters: int = field(30, "Lanczos steps of the top eigenvector")
    track: int = field(20, "samples whose entropy curves are stored")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_samples": 100, "dim": 10, "num_points": 61,
             "curvature_points": 3, "lanczos_iters": 15, "share_levels": (0.9,)},
    "default": {},
    "cpu": {**LENET300_FASHION, "n_samples": 1000, "dim": 20, "num_points": 161,
            "curvature_points": 7, "lanczos_iters": 30},
    "paper": {**LENET300_FASHION, "n_samples": 10000, "dim": 50, "num_points": 201,
              "curvature_points": 13, "lanczos_iters": 40},
    "lenet300-fashion": {**LENET300_FASHION, "n_samples": 10000, "dim": 50, "num_points": 201,
                         "curvature_points": 13, "lanczos_iters": 40},
}


def validate(config: Config) -> None:
    check_model_data(config)
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")
    check_at_least(config, "num_points", "lanczos_iters", "dim")
    check_at_least(config, "curvature_points", "track", minimum=0)
    check_choice(config, "operator", OPERATORS)
    if config.eig_alphas is not None:
        for a in config.eig_alphas:
            if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
                raise ConfigError("eig_alphas", f"{{name}} must be finite numbers > 0, got {a!r}")
    if not config.share_levels or any(not 0 < s <= 1 for s in config.share_levels):
        raise ConfigError("share_levels", "{name} must lie in (0, 1]")


def dense_input_layer(setup: Setup, config: Config) -> str:
    """The model's declared input layer, checked to be a Dense layer on the flattened input
    (shapes only, nothing computed); a one-line ConfigError naming the fix otherwise."""
    shapes = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                config.init, setup.dtype))
    layer = curvature.resolve_input_layer(setup.model.apply, shapes, setup.x[:1])
    if layer is None:
        raise ConfigError("model", f"the pre-collapse study needs a model that declares its input layer; "
                                   f"{config.model} does not: use {{name}} lenet300 or mlp")
    _, shape = first_layer_slice(shapes, layer)
    if len(shape) != 2:
        raise ConfigError("model", "the pre-collapse study shows the input-layer eigenvector over input pixels and "
                                   f"needs a dense input layer; {config.model}'s input layer "
                                   f"{layer} is a convolution: use {{name}} lenet300 or mlp")
    if shape[0] != math.prod(setup.input_shape):
        raise ConfigError("model", f"the pre-collapse study needs the input layer on the flattened input; "
                                   f"{config.model}'s {layer} takes {shape[0]} inputs, the images "
                                   f"have {math.prod(setup.input_shape)} values")
    return layer


# ----------------------------------------------------------------------------- entropies


def softmax_uncertainty(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample entropy and t = Tr(diag p − ppᵀ) = 1 − ‖p‖², float64 and cancellation-free
    (1 − p_max is summed from the other entries), for logits (..., K)."""
    import scipy.special  # here, not at the top: scipy takes ~1 s to import
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


#: t = Tr(diag p − ppᵀ) of the least confident sample above which its G-term is resolvable in
#: float32 (below, the G-term is lost next to the H-term)
RESOLVABLE_T = 1e-20
#: the pre-collapse regime (App. D): one sample holds at least this share of Σ_μ t_μ
PRE_COLLAPSE_SHARE = 0.9


def choose_eig_alphas(alphas: np.ndarray, share: np.ndarray, t_top: np.ndarray,
                      levels: Sequence[float], floor: float = RESOLVABLE_T) -> list[float]:
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


def first_layer_operator(setup: Setup, config: Config, params: Any) -> Callable:
    """``matvec(v1, params, batches, T)``: the input-layer diagonal block of the Hessian (or
    G-term) of :mod:`gzone.curvature` (:func:`gzone.curvature.block_matvec`, one cached function,
    so Lanczos compiles once and is reused at every α)."""
    offset, shape = first_layer_slice(params, setup.model.input_layer)
    return curvature.block_matvec(config.operator, setup.model.apply, offset, int(np.prod(shape)))


def eigvec_record(
    setup: Setup, config: Config, params: Any, alpha: float, top_sample: int, share: float,
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
        operator, int(np.prod(shape)), (), key=engine_setup.stream_key(config.seed, "eigvec"),
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


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The model, θ0, its logits at α = 1 and the entropy sweep computed from them."""

    setup: Setup
    params: Any
    logits: np.ndarray
    alphas: np.ndarray
    alpha_max: float
    sweep: list[tuple[np.ndarray, np.ndarray]]
    tracked: np.ndarray
    top: np.ndarray
    t_top: np.ndarray
    share: np.ndarray


def prepare(config: Config, data_dir: str | None) -> Sweep:
    """Data, model (homogeneous, dense input layer, d ≤ P: all checked before anything is
    written) and the entropy sweep (samples collapse in the order of their top-two logit gap:
    t ≈ 2 exp(−α^L Δ), App. C, D)."""
    setup = engine_setup.make_setup(config, engine_setup.load_data(
        config.dataset, config.split, config.n_samples, data_dir=data_dir))
    if setup.degree is None:
        raise ConfigError("model", "the pre-collapse study scales logits as alpha^L: it needs a "
                                   "homogeneous {name}")
    dense_input_layer(setup, config)
    if config.curvature_points:
        engine_setup.check_dim(setup, config.dim, min_classes=True)
    params = engine_setup.init_params(setup, config.init, jax.random.key(config.seed))
    logits1 = np.asarray(logits_of(setup.model.apply, params, setup.x), np.float64)
    alpha_max = config.alpha_max or 1.5 * collapse_alpha(logits1, setup.degree)
    alphas = np.geomspace(config.alpha_min, max(alpha_max, config.alpha_min), config.num_points)
    top2 = np.sort(logits1, axis=-1)[:, -2:]
    tracked = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[: config.track]
    sweep = [softmax_uncertainty(a ** setup.degree * logits1) for a in alphas]
    top = np.array([int(np.argmax(t)) for _, t in sweep])
    t_top = np.array([t[i] for (_, t), i in zip(sweep, top)])
    share = np.array([t.max() / t.sum() if t.sum() > 0 else np.nan for _, t in sweep])
    return Sweep(setup, params, logits1, alphas, alpha_max, sweep, tracked, top, t_top, share)


def points(config: Config, s: Sweep) -> list[dict[str, Any]]:
    eig_alphas = (list(config.eig_alphas) if config.eig_alphas is not None else
                  choose_eig_alphas(s.alphas, s.share, s.t_top, config.share_levels))
    curv_alphas = (np.geomspace(config.alpha_min, s.alpha_max, config.curvature_points).tolist()
                   if config.curvature_points else [])
    return ([{"kind": "entropy"}] + [{"kind": "curvature", "alpha": a} for a in curv_alphas]
            + [{"kind": "eigvec", "alpha": a} for a in eig_alphas])


def measure(ctx, chunk):
    config, s = ctx.config, ctx.setup
    setup, params = s.setup, s.params
    # the data laid out once: for the matvecs (one tangent) and the projections (d tangents)
    batches = ctx.cached("batches", lambda: curvature.prepare_batches(
        setup.model.apply, params, setup.x, setup.y, config.chunk_size))
    for point in chunk:
        kind, alpha = point["kind"], point.get("alpha")
        if kind == "entropy":
            yield [{"kind": "entropy", "alpha": float(a), "mean_entropy": float(h.mean()),
                    "uncertain_samples": int(np.sum(h > 1e-3)), "top_sample": int(s.top[i]),
                    "top_share": float(s.share[i]), "top_t": float(s.t_top[i]),
                    "tracked_samples": s.tracked.tolist(), "tracked_entropies": h[s.tracked].tolist()}
                   for i, (a, (h, _)) in enumerate(zip(s.alphas, s.sweep))]
        elif kind == "curvature":
            basis = ctx.cached("basis", lambda: subspace.random_basis(
                engine_setup.stream_key(config.seed, "curvature-basis"), setup.num_params,
                config.dim, "orthonormal", setup.dtype))
            projection_batches = ctx.cached("projection_batches", lambda: curvature.prepare_batches(
                setup.model.apply, params, setup.x, setup.y, config.chunk_size,
                num_tangents=config.dim))
            proj = curvature.projected(setup.model.apply, models.scale(params, alpha), basis,
                                       projection_batches)
            yield [{"kind": "curvature", "alpha": alpha, "dim": config.dim,
                    **{f"{term}_positive_curvature": positive_curvature(getattr(proj, term))
                       for term in ("hessian", "gterm", "hterm")}}]
        else:
            matvec = ctx.cached("matvec", lambda: first_layer_operator(setup, config, params))
            _, ti = softmax_uncertainty(alpha ** setup.degree * s.logits)
            mu0 = int(np.argmax(ti))
            share_mu0 = float(ti[mu0] / ti.sum()) if ti.sum() > 0 else float("nan")
            yield [{"kind": "eigvec", **eigvec_record(setup, config, params, alpha, mu0, share_mu0,
                                                      matvec, batches)}]


def collapse_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The first α where one sample holds ≥ 90 % of Σ_μ Tr(diag p^μ − p^μ p^μᵀ) (pre-collapse),
    whether that sample stays the most uncertain at every larger α, and per eigenvector α: the
    sample's share, |cos| of the eigenvector's image with it, and the best-aligned input."""
    ent = sorted((r for r in records if r.get("kind") == "entropy"), key=lambda r: r["alpha"])
    dominant = [i for i, r in enumerate(ent)
                if r["top_share"] is not None and r["top_share"] >= PRE_COLLAPSE_SHARE]
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


def curvature_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per curvature α: positive curvature of G and H, the share of Σ_μ t_μ held by the most
    uncertain sample and its t (from the entropy record nearest in log α), and whether α lies
    in the pre-collapse window (share ≥ ``PRE_COLLAPSE_SHARE``, t ≥ ``RESOLVABLE_T``)."""
    ent = [r for r in records if r.get("kind") == "entropy"]
    grid = np.log([r["alpha"] for r in ent]) if ent else np.array([])
    rows = []
    for r in sorted((r for r in records if r.get("kind") == "curvature"), key=lambda r: r["alpha"]):
        near = ent[int(np.argmin(np.abs(grid - np.log(r["alpha"]))))] if ent else {}
        share, t = near.get("top_share"), near.get("top_t")
        rows.append({"what": "positive curvature", "alpha": r["alpha"], "top_share": share,
                     "top_t": t, "in_window": share is not None and t is not None
                     and share >= PRE_COLLAPSE_SHARE and t >= RESOLVABLE_T,
                     "gterm_positive_curvature": r["gterm_positive_curvature"],
                     "hessian_positive_curvature": r["hessian_positive_curvature"]})
    return rows


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per eigenvector α (the sample that owns the G-term there, its share, |cos| of the
    eigenvector image with it, the best-aligned input), after the collapse summary; then one row
    per curvature α (:func:`curvature_rows`)."""
    s = collapse_summary(records)
    rows = [{"alpha": s["alpha_share_0.9"], "what": "first alpha where one sample holds 90 %",
             "top_sample": s["last_uncertain_sample"],
             "stays_top": s["last_uncertain_sample_stays_top"]}]
    return rows + [{"what": "top eigenvector", **e} for e in s["eigvecs"]] + curvature_rows(records)


#: "positive curvature of G^μ0 and, hence, of the full Hessian, approaches 1 in the pre-collapse
#: regime" (App. D): Tr(G)/‖G‖_F within this of 1 (G is PSD, so ≥ 1 up to round-off)
NEAR_ONE_TOL = 0.1


def check_near_one(rows: list[dict[str, Any]]) -> Finding:
    """App. D: at every curvature α in the pre-collapse window (one sample holds ≥ 90 % of
    Σ_μ t_μ and its G-term is resolvable) Tr(G)/‖G‖_F is within ``NEAR_ONE_TOL`` of 1.
    Inconclusive when no curvature α falls in the window (the grid is too coarse) or a value
    there is undefined."""
    expected = (f"|Tr(G)/||G||_F - 1| <= {NEAR_ONE_TOL} at every curvature alpha with top share "
                f">= {PRE_COLLAPSE_SHARE} and t >= {RESOLVABLE_T:g}; at least one such alpha")
    window = [r for r in rows if r.get("what") == "positive curvature" and r.get("in_window")]
    measured = {"alphas_in_window": [r["alpha"] for r in window],
                "gterm_pc": [r["gterm_positive_curvature"] for r in window],
                "hessian_pc": [r["hessian_positive_curvature"] for r in window],
                "top_share": [r["top_share"] for r in window]}
    values = measured["gterm_pc"]
    if not window or any(v is None for v in values):
        return Finding(INCONCLUSIVE, measured, expected)
    holds = all(abs(v - 1) <= NEAR_ONE_TOL for v in values)
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


def eigvec_image(record: dict[str, Any], absolute: bool = False) -> np.ndarray:
    """The image of an ``eigvec`` record: the eigenvector's mean over hidden units, signed as in
    the paper (Fig. 10) — with the sign that makes its sum non-negative, an eigenvector's sign
    being arbitrary — or, ``absolute``, the mean of its absolute values."""
    if absolute:
        return np.asarray(record["heatmap"], float).reshape(record["heatmap_shape"])
    image = np.asarray(record["heatmap_signed"], float).reshape(record["heatmap_shape"])
    return -image if image.sum() < 0 else image


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None,
           floor: float = 1e-30, absolute: bool = False):
    """Top row: first-layer top eigenvector images (:func:`eigvec_image`: the signed mean over
    hidden units as the paper's, diverging colours around 0; ``absolute``: the mean |·|), own
    colour scale each; bottom: the tracked per-sample entropies vs α (log scale, clipped at
    ``floor``; the last uncertain sample in black) and positive curvature of H and G."""
    import matplotlib.pyplot as plt

    from gzone.plots import ALPHA_LABEL, POSITIVE_CURVATURE_LABEL, TERM_STYLE, finish

    eig = sorted((r for r in records if r.get("kind") == "eigvec"), key=lambda r: r["alpha"])
    ent = sorted((r for r in records if r.get("kind") == "entropy"), key=lambda r: r["alpha"])
    curv = sorted((r for r in records if r.get("kind") == "curvature"), key=lambda r: r["alpha"])
    cols = max(len(eig), 1)
    fig = plt.figure(figsize=(max(2.2 * cols, 7), 6))
    grid = fig.add_gridspec(2, cols, height_ratios=(1, 1.2))
    for i, r in enumerate(eig):
        ax = fig.add_subplot(grid[0, i])
        image = eigvec_image(r, absolute)
        if absolute:
            ax.imshow(image, cmap="magma")
        else:
            scale = float(np.max(np.abs(image))) or 1.0
            ax.imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(rf"$\alpha$ = {r['alpha']:.3g}, share {r['top_share']:.2f}"
                     f"\n$|\\cos|$ w/ #{r['top_sample']}: {r['top_sample_cosine']:.2f}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    if ent:
        alphas = np.array([r["alpha"] for r in ent])
        tracked = np.maximum(np.array([r["tracked_entropies"] for r in ent], float), floor)
        ax.plot(alphas, tracked, lw=0.8, alpha=0.6)
        last = collapse_summary(records)["last_uncertain_sample"]
        if last is not None and last in ent[0]["tracked_samples"]:
            column = ent[0]["tracked_samples"].index(last)
            ax.plot(alphas, tracked[:, column], color="black", lw=2, label=f"last uncertain #{last}")
            ax.legend(fontsize=7, loc="lower left")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor, 10)
        ax.set_ylabel(r"per-sample softmax entropy $\mathbb{H}(p^\mu)$ (nats)")
        for r in eig:
            ax.axvline(r["alpha"], color="grey", lw=0.5, ls="--")
    ax.set_xlabel(ALPHA_LABEL)
    if curv:
        twin = ax.twinx()
        for term in ("hessian", "gterm"):
            twin.plot([r["alpha"] for r in curv],
                      [np.nan if r[f"{term}_positive_curvature"] is None
                       else r[f"{term}_positive_curvature"] for r in curv],
                      color=TERM_STYLE[term]["color"], marker="o", ms=3,
                      label=TERM_STYLE[term]["label"])
        twin.set_ylabel(POSITIVE_CURVATURE_LABEL)
        twin.legend(fontsize=7, loc="upper right")
    return finish(fig, title, path_stem)


STUDY = Study(
    name="icml/pre-collapse", paper=ICML, reproduces="Fig. 10, App. D",
    title="per-sample entropies against alpha and the first-layer top Hessian eigenvector",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"entropy": (), "curvature": ("alpha",), "eigvec": ("alpha",)}, legacy={"match": {"study": "fig10"}},
    claims=(Claim("near-one", "App. D; Fig. 2, Fig. 10",
                  "In the pre-collapse regime, where one sample owns the G-term, the positive "
                  "curvature Tr(G)/||G||_F of the G-term is near 1.", check_near_one),),
    doc=__doc__)
