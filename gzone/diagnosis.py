"""Your model, diagnosed: where is this initialization relative to the Goldilocks zone, and what
dominates its curvature? (the question of both papers, asked of any :class:`gzone.adapters.Model`).

:func:`diagnose` measures at the model's parameters, on the data given:

* **projected** (kind ``projected``, one record per term): the positive curvature Tr/‖·‖_F
  (ICML Eq. 2) and local convexity (fraction of positive eigenvalues) of RᵀXR for X = H, G-term,
  H-term (Eq. 4) on a random ``dim``-dimensional orthonormal subspace R, as the paper's Fig. 1–2;
* **whole model** (kind ``model``): ‖G‖₂, ‖H-term‖₂ and ‖H‖₂ in full space by Lanczos with the
  true residuals of their Ritz pairs, the verdict of Eq. (6), ``in_zone`` = ‖G‖₂ > ‖H-term‖₂;
  the ``sharpness`` max|λ(H)|; Tr H/‖H‖_F by Hutchinson with its standard error; Γ_p (Eq. 10),
  the mean softmax entropy, the fraction of zero-logit samples, the loss and the gradient norm;
* **per layer** (kind ``layer``, one record per parameter block — the leaves under one module):
  the diagonal block H_ll's top eigenvalue and positive curvature, exact (the block materialised
  by Hessian-vector products, ``eigvalsh``) up to ``exact_block`` parameters, by Lanczos and
  Hutchinson (with residual and standard error) above — on the masked operator m ⊙ H(m ⊙ v), so
  every block runs the same compiled programs;
* optionally the same projected and whole-model metrics over ``temperatures`` (softmax
  temperature T at fixed parameters, Eq. 5) and over ``alphas`` (the parameters scaled by α,
  Sec. 3: the paper's probe for homogeneous networks; for another model each record says
  ``homogeneous: false`` and the caveat).

Every record carries the model's description, the key's data, dtype, matmul precision, number of
samples, and its ``term``/``layer``/``temperature``/``alpha``. Cost per point: ``dim`` tangents
in one projected pass; per term ``lanczos_iters + probes + 2`` Hessian/G/H-term products; per
layer up to ``exact_block`` (exact) or ``lanczos_iters + probes + 1`` products.

    import gzone
    from gzone import adapters
    d = gzone.diagnose(adapters.linen(module, variables), x, y, key=jax.random.key(0))
    print(d.table()); d.figure("diagnosis.png"); d.to_jsonl("diagnosis.jsonl")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import (
    curvature,
    fullspace,
    hutchinson,
    lanczos,
    metrics,
    models,
    precision,
    random_model,
    results,
    subspace,
)
from gzone.adapters import Model, ModelError
from gzone.training import metrics as training_metrics

#: the record fields a diagnosis writes (issue 20: public)
FIELDS = ("term", "layer", "temperature", "alpha", "positive_curvature", "local_convexity",
          "g_norm", "hterm_norm", "hessian_norm", "in_zone", "sharpness", "sharpness_residual",
          "trace_ratio", "trace_ratio_stderr", "gamma_p", "entropy", "zero_logit_samples", "loss",
          "gradient_norm")
TERM_NAMES = {"hessian": "H", "gterm": "G-term", "hterm": "H-term"}


@dataclasses.dataclass
class Diagnosis:
    """The records of :func:`diagnose`, a printed table, a figure and a JSONL file."""

    records: list[dict[str, Any]]

    def select(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """The records of ``kind`` whose fields equal ``match``."""
        return [r for r in self.records if r["kind"] == kind
                and all(r.get(k) == v for k, v in match.items())]

    def table(self) -> str:
        """A summary a person reads in ten seconds (:func:`summary_text`)."""
        return summary_text(self.records)

    def figure(self, path: str | Path | None = None):
        """Per-layer curvature, and the temperature and α probes when measured (:func:`figure`)."""
        return figure(self.records, path)

    def to_jsonl(self, path: str | Path) -> Path:
        """The records, one JSON object per line (non-finite numbers as null, flagged)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            for record in self.records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
        return path


# ----------------------------------------------------------------------------- measurement


def homogeneity(model: Model, x: jax.Array) -> tuple[bool, float | None]:
    """(homogeneous, degree L): whether f(2θ, x) = 2^L f(θ, x) for an integer L ≥ 1 (relative
    tolerance from the dtype), checked on up to 16 samples."""
    sample = jnp.asarray(x)[:16]
    f1 = np.asarray(model.compiled(model.params, sample), np.float64)
    f2 = np.asarray(model.compiled(models.scale(model.params, 2.0), sample), np.float64)
    n1, n2 = np.linalg.norm(f1), np.linalg.norm(f2)
    if not (n1 > 0 and np.isfinite(n2)):
        return False, None
    degree = round(math.log2(n2 / n1))
    tol = 1e3 * float(jnp.finfo(curvature.params_dtype(model.params)).eps)
    ok = degree >= 1 and np.linalg.norm(f2 - 2.0**degree * f1) <= tol * n2
    return bool(ok), float(degree) if ok else None


def _probs_stats(model: Model, params: Any, batches: curvature.Batches,
                 temperature: float) -> dict[str, float]:
    """Γ_p (Eq. 10) of the batch-averaged softmax Hessian over the real samples."""
    probs = [jax.nn.softmax(model.compiled(params, x) / temperature, -1)[np.asarray(w) > 0]
             for x, _, w in zip(*batches)]
    return {"gamma_p": float(random_model.gamma_p(jnp.concatenate(probs)))}


def _spectral(term: fullspace.TermCurvature) -> tuple[float, float]:
    """(max |λ|, the residual of that Ritz pair)."""
    top, bottom = float(term.top_eigenvalues[0]), float(term.bottom_eigenvalues[0])
    if abs(top) >= abs(bottom):
        return abs(top), float(term.residual_norms[0])
    return abs(bottom), float(term.bottom_residual_norms[0])


def _point(model: Model, params: Any, basis: jax.Array, projected_batches: curvature.Batches,
           batches: curvature.Batches, temperature: float, key: jax.Array, *,
           lanczos_iters: int, probes: int, common: dict[str, Any]) -> list[dict[str, Any]]:
    """The projected records (one per term) and the whole-model record at one (params, T)."""
    proj = curvature.projected(model.apply, params, basis, projected_batches,
                               temperature=temperature)
    out = []
    for term in curvature.TERMS:
        summary = metrics.spectrum_summary(getattr(proj, term))
        out.append(results.sanitize({**common, "kind": "projected", "term": term, "layer": None,
                            "positive_curvature": summary["positive_curvature"],
                            "local_convexity": summary["local_convexity"],
                            "top_eigenvalue": summary["top_eigenvalue"],
                            "flags": summary["flags"]}))
    full = fullspace.full_space_curvature(
        model.apply, params, batches, None, temperature, key=key, num_probes=probes,
        num_iters=lanczos_iters, top_k=1, density=False, common_probes=True)
    g_norm, g_res = _spectral(full["gterm"])
    h_norm, h_res = _spectral(full["hterm"])
    hess_norm, hess_res = _spectral(full["hessian"])
    logged = training_metrics.log_metrics(model.apply, params, params, batches,
                                          jnp.asarray(temperature, curvature.params_dtype(params)))
    record = {**common, "kind": "model", "term": None, "layer": None,
              "g_norm": g_norm, "g_norm_residual": g_res, "hterm_norm": h_norm,
              "hterm_norm_residual": h_res, "hessian_norm": hess_norm,
              "hessian_norm_residual": hess_res, "in_zone": bool(g_norm > h_norm),
              "sharpness": hess_norm, "sharpness_residual": hess_res,
              "trace_ratio": float(full["hessian"].positive_curvature),
              "trace_ratio_stderr": float(full["hessian"].stderr),
              "entropy": float(logged["entropy"]),
              "zero_logit_samples": float(logged["zero_logit_samples"]),
              "loss": float(logged["loss"]), "gradient_norm": float(logged["gradient_norm"]),
              "train_accuracy": float(logged["train_accuracy"]),
              **_probs_stats(model, params, batches, temperature)}
    return out + [results.sanitize(record)]


# ----------------------------------------------------------------------------- per layer


def layer_blocks(params: Any) -> list[tuple[str, np.ndarray]]:
    """(layer name, indices into ``ravel_pytree(params)``) per parameter block: the leaves that
    share a module (every key of the path but the last), in the flat vector's order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    blocks: dict[str, list[np.ndarray]] = {}
    start = 0
    for path, leaf in leaves:
        keys = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
        keys = [k for k in keys if k not in ("params", "value")]
        name = "/".join(keys[:-1]) or (keys[0] if keys else "params")
        size = int(np.size(leaf))
        blocks.setdefault(name, []).append(np.arange(start, start + size))
        start += size
    return [(name, np.concatenate(parts)) for name, parts in blocks.items()]


@functools.cache
def block_matvec(apply_fn: Any) -> Any:
    """``(v, params, batches, T, mask) -> m ⊙ H (m ⊙ v)`` with m the 0/1 ``mask`` of a block's
    coordinates: the diagonal block H_ll of the full-batch Hessian, embedded in R^P (zero
    elsewhere). Every block shares this one compiled program (the mask is an operand)."""
    hvp = curvature.matvec("hessian", apply_fn)

    def matvec(v, params, batches, temperature, mask):
        return mask * hvp(mask * v.astype(mask.dtype), params, batches, temperature)

    return jax.jit(matvec)


#: columns of a block materialised per vmapped call (one compiled program for every block)
BLOCK_COLUMNS = 16


@functools.partial(jax.jit, static_argnums=(0,))
def _block_columns(matvec: Any, operands: tuple, columns: jax.Array) -> jax.Array:
    """``matvec`` applied to the unit vectors e_c, c in ``columns`` (−1: a zero vector), (C, P)."""
    mask = operands[-1]
    units = jnp.where(columns[:, None] == jnp.arange(mask.shape[0])[None, :], 1, 0).astype(mask.dtype)
    return jax.vmap(lambda e: matvec(e, *operands))(units)


def dense_block(op: lanczos.Operator, index: np.ndarray) -> np.ndarray:
    """The symmetrised block (X_ij), i, j in ``index``, of the masked operator ``op``
    (:func:`block_matvec`), ``BLOCK_COLUMNS`` products per call; assembled on the host, so
    blocks of every size share the one compiled program."""
    size = len(index)
    padded = np.full(-(-size // BLOCK_COLUMNS) * BLOCK_COLUMNS, -1)
    padded[:size] = index
    rows = [np.asarray(_block_columns(op.matvec, op.operands, jnp.asarray(part)))
            for part in padded.reshape(-1, BLOCK_COLUMNS)]
    block = np.concatenate(rows)[:size][:, index]
    return (block + block.T) / 2


def _host_summary(block: np.ndarray) -> dict[str, Any]:
    """Positive curvature, local convexity and top eigenvalue of a symmetric block
    (``numpy.linalg.eigvalsh`` in the block's dtype), None and a flag where undefined."""
    flags = []
    if not np.all(np.isfinite(block)):
        return {"positive_curvature": None, "local_convexity": None, "top_eigenvalue": None,
                "flags": ["nonfinite_matrix"]}
    eigs = np.linalg.eigvalsh(block)
    norm = float(np.sqrt(np.sum(np.square(eigs, dtype=np.float64))))
    if norm == 0:
        flags.append("zero_matrix")
    return {"positive_curvature": float(eigs.sum(dtype=np.float64)) / norm if norm else None,
            "local_convexity": float(np.mean(eigs > 0)), "top_eigenvalue": float(eigs[-1]),
            "flags": flags}


def _layer_record(model: Model, params: Any, batches: curvature.Batches, name: str,
                  index: np.ndarray, key: jax.Array, *, exact_block: int, lanczos_iters: int,
                  probes: int, common: dict[str, Any]) -> dict[str, Any]:
    flat = ravel_pytree(params)[0]
    dtype, total = flat.dtype, flat.shape[0]
    mask = np.zeros((total,), dtype)
    mask[index] = 1
    mask = jnp.asarray(mask)
    op = lanczos.Operator(block_matvec(model.apply),
                          (params, batches, jnp.asarray(1.0, dtype), mask))
    size = len(index)
    record = {**common, "kind": "layer", "term": "hessian", "layer": name, "block_size": size}
    if size <= exact_block:
        summary = _host_summary(dense_block(op, index))
        record.update(method="exact", positive_curvature=summary["positive_curvature"],
                      positive_curvature_stderr=0.0, local_convexity=summary["local_convexity"],
                      top_eigenvalue=summary["top_eigenvalue"], top_eigenvalue_residual=0.0,
                      flags=summary["flags"])
        return results.sanitize(record)
    key_start, key_lanczos, key_hutch = jax.random.split(key, 3)
    start = np.asarray(mask) * np.asarray(jax.random.normal(key_start, (total,), dtype))
    res = lanczos.eigsh(op, total, 1, key=key_lanczos, num_iters=min(lanczos_iters, size),
                        which="LA", v0=jnp.asarray(start / np.linalg.norm(start)))
    stats = hutchinson.ratio_estimate(*hutchinson.hutchinson_samples(
        op, total, key=key_hutch, num_probes=probes, dtype=dtype))
    record.update(method="lanczos", positive_curvature=float(stats[0]),
                  positive_curvature_stderr=float(stats[1]), local_convexity=None,
                  top_eigenvalue=float(res.eigenvalues[0]),
                  top_eigenvalue_residual=float(res.residual_norms[0]))
    return results.sanitize(record)


# ----------------------------------------------------------------------------- the call


def _check_positive_list(name: str, values: Sequence[float] | None) -> list[float]:
    values = [] if values is None else [float(v) for v in values]
    if any(not (math.isfinite(v) and v > 0) for v in values):
        raise ModelError(f"{name} must be finite numbers > 0, got {values}")
    return values


def diagnose(model: Model, x: jax.Array, y: jax.Array, *, key: jax.Array, dim: int = 50,
             alphas: Sequence[float] | None = None, temperatures: Sequence[float] | None = None,
             per_layer: bool = True, lanczos_iters: int = 40, probes: int = 30,
             exact_block: int = 64, chunk_size: int | None = None) -> Diagnosis:
    """Diagnose ``model`` (a :class:`gzone.adapters.Model`) at its parameters on (``x``, ``y``)
    — the module docstring lists what is measured. ``key`` draws the subspace, the Lanczos start
    vectors and the Hutchinson probes (``fold_in`` per point); a BatchNorm model in batch mode is
    bound to ``x`` first (:meth:`gzone.adapters.Model.bind`)."""
    if not isinstance(model, Model):
        raise ModelError(f"diagnose takes a gzone.adapters.Model, got {type(model).__name__}; "
                         "wrap it with adapters.linen, adapters.nnx or adapters.function")
    temperatures = _check_positive_list("temperatures", temperatures)
    alphas = _check_positive_list("alphas", alphas)
    x, y = jnp.asarray(x), jnp.asarray(y)
    if len(x) != len(y):
        raise ModelError(f"x has {len(x)} samples but y has {len(y)}; pass matching arrays")
    model = model.bind(x, chunk_size)
    classes = model.check(x, y)
    params = model.params
    size = curvature.num_params(params)
    if not 1 <= dim <= size:
        raise ModelError(f"dim={dim} must lie in 1..P={size} (the number of parameters)")
    dtype = curvature.params_dtype(params)
    key_basis, key_points, key_layers = jax.random.split(key, 3)
    basis = subspace.orthonormal_basis(key_basis, size, dim, dtype)
    projected_batches = curvature.prepare_batches(model.apply, params, x, y, chunk_size, dim)
    batches = curvature.prepare_batches(model.apply, params, x, y, chunk_size, 1)
    homogeneous, degree = homogeneity(model, x) if alphas else (None, None)
    common = {**model.describe(x), "seed": [int(v) for v in np.ravel(jax.random.key_data(key))],
              "dtype": str(dtype), "n_samples": int(len(x)), "num_classes": classes, "dim": dim,
              "matmul_precision": precision.STRICT,  # every product: gzone.precision
              "device_kind": jax.local_devices()[0].device_kind}
    points = [(1.0, 1.0)] + [(t, 1.0) for t in temperatures if t != 1.0] \
        + [(1.0, a) for a in alphas if a != 1.0]
    records = []
    for i, (t, a) in enumerate(points):
        extra = {"temperature": t, "alpha": a}
        if a != 1.0 or alphas:
            extra.update(homogeneous=homogeneous, homogeneity_degree=degree)
            if a != 1.0 and not homogeneous:
                extra["caveat"] = ("the model is not homogeneous: scaling its parameters by alpha "
                                   "is not the paper's alpha (Eq. 5, T = alpha^L, does not hold)")
        records += _point(model, models.scale(params, a) if a != 1.0 else params, basis,
                          projected_batches, batches, t, jax.random.fold_in(key_points, i),
                          lanczos_iters=lanczos_iters, probes=probes, common={**common, **extra})
    if per_layer:
        for j, (name, index) in enumerate(layer_blocks(params)):
            records.append(_layer_record(
                model, params, batches, name, index, jax.random.fold_in(key_layers, j),
                exact_block=exact_block, lanczos_iters=lanczos_iters, probes=probes,
                common={**common, "temperature": 1.0, "alpha": 1.0}))
    return Diagnosis(records)


# ----------------------------------------------------------------------------- reading it


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def summary_text(records: list[dict[str, Any]]) -> str:
    """The whole-model verdict first, then the projected terms, the layers and the probes."""
    base = next((r for r in records if r["kind"] == "model" and r["temperature"] == 1.0
                 and r["alpha"] == 1.0), None)
    if base is None:
        return "no diagnosis records"
    k = base["num_classes"]
    lines = [f"{base['model']}: {base['num_params']:,} parameters, {base['n_samples']:,} samples, "
             f"{base['dtype']}" + (f", batch_norm={base['batch_norm']}" if base["batch_norm"] else ""),
             *(f"  note: {n}" for n in base["adapter_notes"]),
             f"  loss {_fmt(base['loss'])} (log K = {math.log(k):.3g}), gradient norm "
             f"{_fmt(base['gradient_norm'])}, train accuracy {_fmt(base['train_accuracy'])}",
             f"  softmax entropy {_fmt(base['entropy'])} of {math.log(k):.3g}, Gamma_p "
             f"{_fmt(base['gamma_p'])} in [1, {math.sqrt(k - 1):.3g}], zero-logit samples "
             f"{_fmt(base['zero_logit_samples'], '.1%')}",
             f"  Eq. (6): ||G||_2 = {_fmt(base['g_norm'])} "
             f"{'>' if base['in_zone'] else '<='} ||H-term||_2 = {_fmt(base['hterm_norm'])}: "
             + ("IN the Goldilocks zone" if base["in_zone"] else "OUTSIDE the Goldilocks zone"),
             f"  sharpness max|lambda(H)| = {_fmt(base['sharpness'])} (residual "
             f"{_fmt(base['sharpness_residual'], '.1e')}), Tr H/||H||_F = "
             f"{_fmt(base['trace_ratio'])} +- {_fmt(base['trace_ratio_stderr'], '.2g')}"]
    proj = [r for r in records if r["kind"] == "projected" and r["temperature"] == 1.0
            and r["alpha"] == 1.0]
    lines.append(f"  on a random d = {base['dim']} subspace: " + "; ".join(
        f"{TERM_NAMES[r['term']]} positive curvature {_fmt(r['positive_curvature'])}, "
        f"{_fmt(r['local_convexity'], '.0%')} positive" for r in proj))
    layers = [r for r in records if r["kind"] == "layer"]
    if layers:
        width = max(len(r["layer"]) for r in layers)
        lines.append(f"  {'layer':<{width}}  {'size':>8}  {'top eig':>9}  {'Tr/||.||_F':>10}  "
                     "positive")
        lines += [f"  {r['layer']:<{width}}  {r['block_size']:>8,}  {_fmt(r['top_eigenvalue']):>9}  "
                  f"{_fmt(r['positive_curvature']):>10}  {_fmt(r['local_convexity'], '.0%'):>8}"
                  for r in layers]
    for field, name in (("temperature", "T"), ("alpha", "alpha")):
        rows = sorted((r for r in records if r["kind"] == "model" and (
            r[field] != 1.0 or (r["temperature"] == 1.0 and r["alpha"] == 1.0))),
            key=lambda r: r[field])
        if len(rows) > 1 and any(r[field] != 1.0 for r in rows):
            other = "alpha" if field == "temperature" else "temperature"
            pcs = {(r[field], r["term"]): r["positive_curvature"] for r in records
                   if r["kind"] == "projected" and r[other] == 1.0}
            lines.append(f"  {name} probe: " + "; ".join(
                f"{name}={r[field]:g}: PC(H) {_fmt(pcs.get((r[field], 'hessian')))}, "
                f"{'in' if r['in_zone'] else 'out'}" for r in rows
                if (name == "T" and r["alpha"] == 1.0) or (name == "alpha" and r["temperature"] == 1.0)))
            caveat = next((r.get("caveat") for r in rows if r.get("caveat")), None)
            if caveat and name == "alpha":
                lines.append(f"  caveat: {caveat}")
    return "\n".join(lines)


def figure(records: list[dict[str, Any]], path: str | Path | None = None):
    """Per-layer top eigenvalue and positive curvature (bars); when probed, the projected
    positive curvature of H, G-term and H-term and ‖G‖₂, ‖H-term‖₂ against T and against α,
    the zone (‖G‖₂ > ‖H-term‖₂) shaded."""
    import matplotlib.pyplot as plt

    from gzone.plots import ALPHA_LABEL, TEMPERATURE_LABEL, TERM_STYLE

    probes = [(f, label) for f, label in (("temperature", TEMPERATURE_LABEL), ("alpha", ALPHA_LABEL))
              if len({r[f] for r in records if r["kind"] == "model"}) > 1]
    layers = [r for r in records if r["kind"] == "layer"]
    panels = (1 if layers else 0) + len(probes)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(5.2 * max(panels, 1), 3.8), squeeze=False)
    axes = list(axes[0])
    if layers:
        ax = axes.pop(0)
        pos = np.arange(len(layers))
        ax.bar(pos - 0.2, [r["top_eigenvalue"] or 0 for r in layers], 0.4, label="top eigenvalue")
        twin = ax.twinx()
        twin.bar(pos + 0.2, [r["positive_curvature"] or 0 for r in layers], 0.4, color="tab:orange",
                 label=r"positive curvature $\mathrm{Tr}/\|\cdot\|_F$")
        ax.set_xticks(pos, [r["layer"] for r in layers], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(r"top eigenvalue of $H_{ll}$")
        twin.set_ylabel(r"positive curvature $\mathrm{Tr}(H_{ll})/\|H_{ll}\|_F$")
        ax.set_title("diagonal Hessian blocks, per layer", fontsize=9)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7)
    for ax, (field, label) in zip(axes, probes):
        other = "alpha" if field == "temperature" else "temperature"
        rows = {r[field]: r for r in records if r["kind"] == "model" and r[other] == 1.0}
        xs = sorted(rows)
        for term, style in TERM_STYLE.items():
            pc = {r[field]: r["positive_curvature"] for r in records if r["kind"] == "projected"
                  and r["term"] == term and r[other] == 1.0}
            ax.plot(xs, [np.nan if pc.get(v) is None else pc[v] for v in xs], "o-", ms=3,
                    color=style["color"], label=style["label"])
        for v in xs:
            if rows[v]["in_zone"]:
                ax.axvspan(v / 1.15, v * 1.15, color="gold", alpha=0.25, lw=0)
        ax.set(xscale="log", xlabel=label,
               ylabel=r"positive curvature $\mathrm{Tr}/\|\cdot\|_F$ (projected)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(r"shaded: $\|G_*\|_2 > \|H_*\|_2$ (Eq. 6)", fontsize=9)
        ax.legend(fontsize=7)
    if not panels:
        axes[0].text(0.5, 0.5, "nothing to draw: no per-layer records or probes", ha="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    base = next((r for r in records if r["kind"] == "model"), None)
    if base:
        fig.suptitle(f"{base['model']}: {base['num_params']:,} parameters, N = {base['n_samples']:,}, "
                     f"d = {base['dim']}", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# ----------------------------------------------------------------------------- the command

COMMAND_DOC = """gzone diagnose: your model at initialization, against the Goldilocks zone.

    gzone diagnose --model examples/linen_cnn_batchnorm.py:model --dataset fashion_mnist
    gzone diagnose --model my_net.py:build --dataset cifar10 --n-samples 2000 \\
        --temperatures 0.1,1,10 --alphas 0.5,2 --out runs/diagnose/my_net

FUNCTION (in FILE.py) returns a gzone.adapters.Model; it is called with whichever of
``input_shape`` (H, W, C), ``num_classes`` and ``key`` it takes. Writes DIR/diagnosis.jsonl,
DIR/diagnosis.png and DIR/diagnosis.txt (the printed table) and DIR/config.json; a DIR written
with other options is refused.
"""


def parse(argv: Sequence[str]) -> Any:
    """The options of ``gzone diagnose``."""
    import argparse

    from gzone import cli, data

    parser = cli.OneLineParser(prog="gzone diagnose", description=COMMAND_DOC,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="FILE.py:FUNCTION returning a Model")
    parser.add_argument("--dataset", required=True, choices=list(data.DATASETS))
    parser.add_argument("--n-samples", type=int, default=1000, help="first N training samples")
    parser.add_argument("--dim", type=int, default=50, help="dimension of the random subspace")
    parser.add_argument("--temperatures", default="", help="comma-separated softmax temperatures")
    parser.add_argument("--alphas", default="", help="comma-separated parameter scales alpha")
    parser.add_argument("--seed", type=int, default=0, help="the key: jax.random.key(seed)")
    parser.add_argument("--no-per-layer", action="store_true", help="skip the per-layer blocks")
    parser.add_argument("--lanczos-iters", type=int, default=40)
    parser.add_argument("--probes", type=int, default=30, help="Hutchinson probes")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--data-dir", default=None,
                        help="folder with the dataset files (else $GZONE_DATA_DIR, then tfds)")
    parser.add_argument("--out", default=None, help="folder of the results "
                        "(default runs/diagnose/<FILE stem>)")
    args = parser.parse_args(list(argv))
    args.temperatures = _floats("--temperatures", args.temperatures)
    args.alphas = _floats("--alphas", args.alphas)
    for name in ("n_samples", "dim", "lanczos_iters", "probes"):
        if getattr(args, name) < 1:
            raise cli.UsageError(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _floats(option: str, text: str) -> list[float]:
    from gzone import cli

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise cli.UsageError(f"{option} takes comma-separated numbers, got {text!r}") from None


def load_model(spec: str, input_shape: tuple[int, ...], num_classes: int, key: jax.Array) -> Model:
    """The :class:`Model` that ``FILE.py:FUNCTION`` returns (called with whichever of
    ``input_shape``, ``num_classes`` and ``key`` it takes)."""
    import importlib.util
    import inspect

    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ModelError(f"--model takes FILE.py:FUNCTION, got {spec!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--model: no file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"gzone_user_model_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    build = getattr(module, name, None)
    if not callable(build):
        raise ModelError(f"--model: {path} has no function {name!r}")
    offered = {"input_shape": tuple(input_shape), "num_classes": num_classes, "key": key}
    wanted = inspect.signature(build).parameters
    missing = [k for k, p in wanted.items() if k not in offered and p.default is p.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise ModelError(f"--model: {name}() has required arguments {', '.join(missing)} that "
                         "gzone cannot pass (it passes input_shape, num_classes and key); give "
                         "them defaults")
    model = build(**{k: v for k, v in offered.items() if k in wanted})
    if not isinstance(model, Model):
        raise ModelError(f"--model: {name}() returned {type(model).__name__}, not a "
                         "gzone.adapters.Model; return adapters.linen(...), adapters.nnx(...) "
                         "or adapters.function(...)")
    return model


def command(argv: Sequence[str], echo: Any = print) -> int:
    """``gzone diagnose`` (:data:`COMMAND_DOC`): load the model and the data, diagnose, print
    the table and write the records, the figure and the table into ``--out``."""
    from gzone import data, results

    args = parse(argv)
    out = Path(args.out or Path("runs", "diagnose", Path(args.model.rpartition(":")[0]).stem))
    config = {k: v for k, v in sorted(vars(args).items()) if k not in ("out", "data_dir")}
    stored = out / results.CONFIG_FILE
    if stored.exists() and json.loads(stored.read_text()) != json.loads(json.dumps(config)):
        raise ValueError(f"{out} holds a diagnosis with other options ({stored}); choose another "
                         "--out or delete that folder")
    dataset = data.load_dataset(args.dataset, "train", n=args.n_samples, data_dir=args.data_dir)
    key = jax.random.key(args.seed)
    model = load_model(args.model, dataset.x.shape[1:], dataset.num_classes,
                       jax.random.fold_in(key, 1))
    found = diagnose(model, dataset.x, dataset.y, key=key, dim=args.dim, alphas=args.alphas,
                     temperatures=args.temperatures, per_layer=not args.no_per_layer,
                     lanczos_iters=args.lanczos_iters, probes=args.probes,
                     chunk_size=args.chunk_size)
    text = found.table()
    echo(text)
    out.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(config, indent=1))
    found.to_jsonl(out / "diagnosis.jsonl")
    (out / "diagnosis.txt").write_text(text + "\n")
    from gzone import cli

    cli.use_backend(False)
    import matplotlib.pyplot as plt

    plt.close(found.figure(out / "diagnosis.png"))
    echo(f"records: {out / 'diagnosis.jsonl'}; figure: {out / 'diagnosis.png'}")
    return 0
