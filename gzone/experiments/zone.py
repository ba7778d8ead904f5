"""Goldilocks-zone sweeps: curvature of H, G-term and H-term on random d-dim subspaces.

ICML paper Fig. 1 (left: α grid at T = 1; middle: T = α^L; right: α = 1, T grid), Fig. 2
(positive curvature and spectral norms of the three terms vs α) and Fig. 4 left (positive
curvature vs subspace dimension d). Fort & Scherlis, Fig. 3–4 (same measurement, radius = α‖θ0‖).

One *point* is (α, T, seed, d): parameters α·θ0(seed), a random basis R(seed) of dimension d, and
the three projected matrices RᵀHR, RᵀGR, RᵀH-termR of the full-batch loss, each summarised by
:func:`gzone.metrics.spectrum_summary`. The same basis is used for every α and T of a seed (and,
in the dimension sweep, the first d columns of one basis), so curves are not jittered by basis
resampling.

With ``full_space`` on, every (α, T, seed) also gets one record per term in the full P-dimensional
space (``space: "full"``, ``dim = P``): Hutchinson positive curvature with a standard error,
Lanczos extreme eigenvalues and SLQ spectral densities (:mod:`gzone.fullspace`).

Built on :mod:`gzone.experiments.base` (config errors and validation, setup, keys, results
directory); :meth:`ZoneConfig.results_identity` keeps the identity of directories written before
that base existed, so they are still accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, fullspace, metrics, results, subspace
from gzone.data import load_dataset
from gzone.experiments import base
from gzone.experiments.base import ConfigError, Setup

MODES = ("alpha-grid", "temperature-grid", "alpha-temperature", "dim-grid")
TERMS = ("hessian", "gterm", "hterm")
POINT_FIELDS = ("alpha", "temperature", "seed", "dim")
FULL_POINT_FIELDS = ("alpha", "temperature", "seed")  # one full-space measurement per (α, T, seed)
FULL_SPACE_STREAM = base.FULL_SPACE_STREAM  # full-space probes; split(key(seed)) gives θ0 and R

# Named settings of the papers (override any field on the command line).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"model": "mlp", "dataset": "digits", "n_samples": 1000, "dim": 50},
    "lenet300-fashion": {"model": "lenet300", "dataset": "fashion_mnist", "n_samples": 10000, "dim": 50},
    "lenet5-cifar10": {"model": "lenet5", "dataset": "cifar10", "n_samples": 3000, "dim": 50},
    "tiny": {"model": "mlp", "dataset": "digits", "n_samples": 200, "dim": 10, "widths": (32, 16)},
}


@dataclasses.dataclass(frozen=True)
class ZoneConfig:
    """What to measure. Fields in ``IDENTITY_FIELDS`` define a results directory; the grid
    (α/T ranges, number of points, seeds, dims) may be extended in the same directory."""

    mode: str = dataclasses.field(default="alpha-grid", metadata={
        "help": "what is swept (or use one of the mode flags)", "choices": MODES})
    model: str = "mlp"
    widths: tuple[int, ...] = dataclasses.field(default=(300, 100), metadata={
        "help": "hidden widths of mlp, e.g. 300,100"})
    dataset: str = "digits"
    split: str = "train"
    n_samples: int = dataclasses.field(default=1000, metadata={
        "help": "first N samples of the split"})
    dim: int = dataclasses.field(default=50, metadata={"help": "subspace dimension d"})
    basis: str = dataclasses.field(default="orthonormal", metadata={
        "help": "random subspace basis", "choices": subspace.BASIS_KINDS})
    init: str = "kaiming"
    dtype: str = "float32"
    seeds: int = dataclasses.field(default=3, metadata={"help": "number of seeds (0..N-1)"})
    alpha_min: float = dataclasses.field(default=1e-2, metadata={
        "help": "smallest initialisation scale alpha of the grid"})
    alpha_max: float = dataclasses.field(default=1e2, metadata={
        "help": "largest initialisation scale alpha of the grid"})
    temperature_min: float | None = dataclasses.field(default=None, metadata={
        "help": "smallest softmax temperature T (none: alpha_max^-L, so Fig. 1 right mirrors left)"})
    temperature_max: float | None = dataclasses.field(default=None, metadata={
        "help": "largest softmax temperature T (none: alpha_min^-L)"})
    num_points: int = dataclasses.field(default=21, metadata={"help": "grid points of alpha or T"})
    dims: tuple[int, ...] = dataclasses.field(default=(2, 5, 10, 20, 50, 100, 200), metadata={
        "help": "subspace dimensions of the dim-grid mode, e.g. 2,5,10,20,50"})
    chunk_size: int | None = None
    full_space: bool = dataclasses.field(default=False, metadata={
        "help": "also measure H, G-term, H-term in the full parameter space (gzone.fullspace)"})
    probes: int = dataclasses.field(default=100, metadata={
        "help": "full space: Hutchinson probes per term"})
    lanczos_iters: int = dataclasses.field(default=100, metadata={
        "help": "full space: Lanczos steps per run (clipped to P)"})
    density_probes: int = dataclasses.field(default=1, metadata={
        "help": "full space: SLQ probes per term (each one Lanczos run)"})

    def results_identity(self) -> dict[str, Any]:
        """The part of the configuration a results directory is tied to (the override hook of
        :func:`gzone.experiments.base.identity`; unchanged since the first sweeps)."""
        out = {f: getattr(self, f) for f in IDENTITY_FIELDS}
        if self.mode != "dim-grid":
            out["dim"] = self.dim
        if self.model != "mlp":
            out.pop("widths")
        if self.full_space:  # absent when off: directories of earlier sweeps keep their identity
            out.update({f: getattr(self, f) for f in FULL_SPACE_FIELDS})
        return out


IDENTITY_FIELDS = ("mode", "model", "widths", "dataset", "split", "n_samples", "basis", "init", "dtype")
FULL_SPACE_FIELDS = ("full_space", "probes", "lanczos_iters", "density_probes")


def identity(config: ZoneConfig) -> dict[str, Any]:
    """The part of the configuration a results directory is tied to."""
    return base.identity(config)


def is_full_space(record: dict[str, Any]) -> bool:
    """Whether a record is a full-space measurement (subspace records carry no ``space``)."""
    return record.get("space", "subspace") == "full"


def validate(config: ZoneConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix (:class:`ConfigError`,
    naming the field)."""
    base.check_choice(config, "mode", MODES)
    base.check_model_data(config)
    base.check_choice(config, "basis", subspace.BASIS_KINDS)
    base.check_positive(config, "alpha_min", "alpha_max", "temperature_min", "temperature_max")
    base.check_range(config, "alpha_min", "alpha_max")
    base.check_range(config, "temperature_min", "temperature_max")
    base.check_at_least(config, "num_points", "seeds", "lanczos_iters", "density_probes")
    base.check_at_least(config, "probes", minimum=2)
    if config.mode == "dim-grid":
        if not config.dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                  for d in config.dims):
            raise ConfigError("dims", f"{{name}} must be integers >= 1, got {config.dims!r}")
    else:
        base.check_at_least(config, "dim")


def max_dim(config: ZoneConfig) -> int:
    """The largest subspace dimension of the sweep (the basis drawn per seed has that many
    columns; the dimension sweep uses its leading ones)."""
    return max(config.dims) if config.mode == "dim-grid" else config.dim


def grid(config: ZoneConfig, degree: int | None) -> list[tuple[float, float, int, int]]:
    """All points (α, T, seed, d) of the sweep, in computation order."""
    alphas = base.alpha_grid(config)
    # H(αθ, 1) = α^-2 H(θ, α^-L) (Eq. 5), so T ∈ [α_max^-L, α_min^-L] mirrors the α grid.
    power = degree if degree is not None else 1
    t_min = config.temperature_min or config.alpha_max**-power
    t_max = config.temperature_max or config.alpha_min**-power
    temps = np.geomspace(t_min, t_max, config.num_points).tolist()
    if config.mode == "alpha-grid":
        pairs = [(a, 1.0) for a in alphas]
    elif config.mode == "temperature-grid":
        pairs = [(1.0, t) for t in temps]
    elif config.mode == "alpha-temperature":
        if degree is None:
            raise ValueError("alpha-temperature mode (T = alpha^L) needs a homogeneous model")
        pairs = [(a, a**degree) for a in alphas]
    else:
        pairs = [(1.0, 1.0)]
    dims = sorted(config.dims) if config.mode == "dim-grid" else [config.dim]
    return [(a, t, s, d) for s in range(config.seeds) for d in dims for a, t in pairs]


def prepare(config: ZoneConfig, data_dir: str | None = None) -> Setup:
    """Validate ``config``, load the data (first ``n_samples`` of the split, as the authors) and
    build the model (run once on one sample, shapes only); the subspace must fit (d ≤ P)."""
    validate(config)
    data = load_dataset(config.dataset, config.split, n=config.n_samples, data_dir=data_dir)
    setup = base.make_setup(config, data)
    base.check_dim(setup, max_dim(config), name="dims" if config.mode == "dim-grid" else "dim")
    return setup


def seed_state(setup: Setup, config: ZoneConfig, seed: int) -> tuple[Any, jax.Array]:
    """θ0 and the basis R of one seed (independent keys split from ``jax.random.key(seed)``)."""
    return base.seed_state(setup, seed, dim=max_dim(config), basis=config.basis, init=config.init)


def batches(setup: Setup, config: ZoneConfig, params: Any, num_tangents: int) -> curvature.Batches:
    """The sweep's data laid out once (``config.chunk_size``, else automatic for a pass with
    ``num_tangents`` directions): every projection, matvec and gradient of the sweep reuses it."""
    return curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                     config.chunk_size, num_tangents)


def project(
    setup: Setup, batches: curvature.Batches, params: Any, basis: jax.Array, alpha: float,
    temperature: float,
) -> curvature.ProjectedCurvature:
    """RᵀHR, RᵀGR, RᵀH-termR at α·θ0 and temperature T."""
    scaled = jax.tree_util.tree_map(lambda leaf: leaf * alpha, params)
    return curvature.projected(setup.model.apply, scaled, basis, batches, None, temperature)


def point_records(
    config: ZoneConfig, projection: curvature.ProjectedCurvature, point: tuple, n_samples: int
) -> list[dict[str, Any]]:
    """The three records (H, G-term, H-term) of one point; ``projection`` may span a larger
    nested basis, whose leading d×d blocks are the projections onto its first d columns."""
    alpha, temperature, seed, dim = point
    common = {
        "alpha": alpha, "temperature": temperature, "seed": seed, "dim": dim,
        "n_samples": n_samples, "model": config.model, "dataset": config.dataset,
        "dtype": config.dtype, "basis": config.basis, "mode": config.mode,
        "loss": float(projection.loss), "gradient_norm": float(projection.gradient_norm),
    }
    records = [
        {**common, "term": term, **metrics.spectrum_summary(getattr(projection, term)[:dim, :dim])}
        for term in TERMS
    ]
    return _flag_unresolved_gterm(records, jnp.finfo(jnp.dtype(config.dtype)).eps)


def _flag_unresolved_gterm(records: list[dict[str, Any]], eps: float) -> list[dict[str, Any]]:
    """Flag the Hessian record when ‖G‖₂ is below the floating-point resolution of ‖H-term‖₂:
    H = G + H-term then carries no trace of G in this dtype (use dtype float64)."""
    norms = {r["term"]: r["spectral_norm"] or 0.0 for r in records}
    if 0 < norms["gterm"] < 10 * eps * norms["hterm"]:
        for r in records:
            if r["term"] == "hessian":
                r["flags"] = sorted({*r["flags"], "gterm_below_dtype_resolution"})
    return records


def full_space(
    setup: Setup, config: ZoneConfig, batches: curvature.Batches, params: Any, seed: int,
    alpha: float, temperature: float,
) -> tuple[dict[str, fullspace.TermCurvature], float, float]:
    """Full-space curvature of the three terms at α·θ0 and T, with the loss and ‖∇ℓ‖ there.

    The probes depend on the seed only (``base.stream_key(seed, FULL_SPACE_STREAM)``) and are common
    to the three terms, so every α, T and term of a seed sees the same probes, as it sees the same
    basis R: the curves are not jittered by probe resampling.
    """
    scaled = jax.tree_util.tree_map(lambda leaf: leaf * alpha, params)
    key = base.stream_key(seed, FULL_SPACE_STREAM)
    terms = fullspace.full_space_curvature(
        setup.model.apply, scaled, batches, None, temperature, key=key, terms=TERMS,
        num_probes=config.probes, num_iters=config.lanczos_iters,
        density_probes=config.density_probes, common_probes=True,
    )
    loss, grad = curvature.loss_and_gradient(setup.model.apply, scaled, batches, None, temperature)
    return terms, float(loss), float(jnp.linalg.norm(grad))


def _floats(a: Any) -> list[float]:
    return np.asarray(jax.device_get(a), dtype=np.float64).tolist()


def full_space_records(
    config: ZoneConfig,
    measured: tuple[dict[str, fullspace.TermCurvature], float, float],
    point: tuple,
    n_samples: int,
    num_params: int,
) -> list[dict[str, Any]]:
    """The three full-space records (``space: "full"``, ``dim = P``, basis ``identity``) of the
    (α, T, seed) of ``point``; the common fields are those of :func:`point_records`."""
    alpha, temperature, seed = point[:3]
    terms, loss, gradient_norm = measured
    common = {
        "alpha": alpha, "temperature": temperature, "seed": seed, "dim": num_params,
        "n_samples": n_samples, "model": config.model, "dataset": config.dataset,
        "dtype": config.dtype, "basis": "identity", "mode": config.mode,
        "loss": loss, "gradient_norm": gradient_norm, "space": "full",
        "num_probes": config.probes, "density_probes": config.density_probes,
    }
    records = []
    for term in TERMS:
        c = terms[term]
        top = _floats(c.top_eigenvalues)
        records.append({
            **common, "term": term, "lanczos_iters": min(config.lanczos_iters, num_params),
            "positive_curvature": float(c.positive_curvature), "stderr": float(c.stderr),
            "trace": float(c.trace), "trace_stderr": float(c.trace_stderr),
            "frobenius_norm": float(c.frobenius_norm), "frobenius_stderr": float(c.frobenius_stderr),
            "spectral_norm": float(c.spectral_norm), "top_eigenvalue": top[0],
            "top_eigenvalues": top, "residual_norms": _floats(c.residual_norms),
            "bottom_eigenvalues": _floats(c.bottom_eigenvalues),
            "bottom_residual_norms": _floats(c.bottom_residual_norms),
            "slq_nodes": [_floats(row) for row in c.nodes],
            "slq_weights": [_floats(row) for row in c.weights],
            "flags": ["zero_matrix"] if float(c.spectral_norm) == 0 else [],
        })
    return records


def run(
    config: ZoneConfig,
    out_dir: str,
    *,
    data_dir: str | None = None,
    progress: Callable[[Iterator, int], Iterator] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a sweep, appending records to ``<out_dir>/results.jsonl`` point by point.

    ``progress`` wraps the iterator of remaining points (e.g. ``lambda it, n: tqdm(it, total=n)``).
    With ``config.full_space`` a point is finished only once the full-space records of its
    (α, T, seed) exist too. Returns all records of the directory. The config is validated, the
    data loaded and the model built before ``out_dir`` is touched: a refused run leaves nothing.
    """
    setup = prepare(config, data_dir)
    points = grid(config, setup.model.homogeneity_degree)
    existing = base.open_results(config, out_dir)
    done = results.finished_points(
        [r for r in existing if not is_full_space(r)], POINT_FIELDS, TERMS
    )
    done_full = results.finished_points(
        [r for r in existing if is_full_space(r)], FULL_POINT_FIELDS, TERMS
    )
    todo = [p for p in points if p not in done or (config.full_space and p[:3] not in done_full)]
    states: dict[int, tuple[Any, jax.Array]] = {}
    laid_out: dict[int, curvature.Batches] = {}  # by number of tangents: d (projections), 1
    last: tuple[tuple, curvature.ProjectedCurvature | None] = ((), None)
    for point in base.iterate(todo, progress):
        alpha, temperature, seed, _ = point
        if seed not in states:
            states[seed] = seed_state(setup, config, seed)
        if not laid_out:
            laid_out = {t: batches(setup, config, states[seed][0], t) for t in {max_dim(config), 1}}
        if point not in done:
            if last[0] != (alpha, temperature, seed):  # the dim grid reuses one projection per seed
                projection = project(setup, laid_out[max_dim(config)], *states[seed], alpha, temperature)
                last = ((alpha, temperature, seed), projection)
            records = point_records(config, last[1], point, len(setup.x))
            results.append_records(out_dir, records)
        if config.full_space and point[:3] not in done_full:
            measured = full_space(setup, config, laid_out[1], states[seed][0], seed, alpha, temperature)
            records = full_space_records(config, measured, point, len(setup.x), setup.num_params)
            results.append_records(out_dir, records)
            done_full.add(point[:3])
    return base.load(out_dir)


def summarize(
    records: list[dict[str, Any]], x_field: str = "alpha", *, full: bool = False
) -> list[dict[str, Any]]:
    """Per (x, term): median and min/max over seeds of positive curvature and spectral norm, of
    the subspace records (or, with ``full``, of the full-space ones)."""
    table: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if is_full_space(r) != full:
            continue
        table.setdefault((r[x_field], r["term"]), []).append(r)
    rows = []
    for (x, term), group in sorted(table.items()):
        row = {x_field: x, "term": term, "seeds": len(group)}
        for metric in ("positive_curvature", "spectral_norm", "top_eigenvalue"):
            values = np.array([g[metric] for g in group if g[metric] is not None], dtype=float)
            row[metric] = (
                (float(np.median(values)), float(values.min()), float(values.max()))
                if values.size else None
            )
        rows.append(row)
    return rows


def x_field(mode: str) -> str:
    """The swept quantity plotted on the x axis."""
    return {"temperature-grid": "temperature", "dim-grid": "dim"}.get(mode, "alpha")
