"""ICML Fig. 5 left: cosine similarity of full-batch loss gradients across balanced datasets.

For several initialisations, the loss gradient of one θ0 on different balanced datasets, and all
pairwise cosines. Next to it the random model's prediction: with shared orthogonal equal-norm
c_k, Eq. (9) gives ∇ℓ_A ∝ Σ_k c_k δ_A,k with δ = Q̂ − Q, so cos(∇ℓ_A, ∇ℓ_B) ≈ cos(δ_A, δ_B)
(``predicted_cosine``). Optional datasets whose files are absent become ``skipped`` records.

Records (kinds ``dataset``, ``pair``, ``skipped``): ``RECORD_FIELDS``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, data, metrics, objective, results
from gzone.experiments import base
from gzone.experiments.base import ModelDataConfig, Progress, Record, Setup
from gzone.jacobian import logits_of

NAME = "fig5-left"
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "dataset": ("seed", "dataset", "n_samples", "gradient_norm", "loss", "q_gap", "mean_entropy"),
    "pair": ("seed", "dataset_a", "dataset_b", "cosine", "predicted_cosine"),
    "skipped": ("dataset", "reason"),
}


@dataclasses.dataclass(frozen=True)
class Fig5LeftConfig(ModelDataConfig):
    """Fig. 5 left: gradient cosines of one initialisation across balanced datasets."""

    widths: tuple[int, ...] = (128, 64)
    datasets: tuple[str, ...] = dataclasses.field(default=("digits", "digits:test", "gaussian"), metadata={
        "help": "datasets compared, each NAME or NAME:SPLIT", "choices": data.DATASETS})
    optional_datasets: tuple[str, ...] = dataclasses.field(default=("svhn",), metadata={
        "help": "more datasets, skipped with a note when their files are absent", "choices": data.DATASETS})
    n_samples: int = dataclasses.field(default=1000, metadata={
        "help": "samples per dataset, balanced (capped by the smallest class)"})
    inits: int = 5

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("inits",)
    STUDY: ClassVar[str] = NAME


def validate(config: Fig5LeftConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_model_data(config)
    base.check_at_least(config, "inits")


def load_fig5_datasets(
    config: Fig5LeftConfig, data_dir: str | None
) -> tuple[dict[str, data.Dataset], list[Record]]:
    """Balanced datasets by spec; absent optional ones become ``skipped`` records."""
    sets: dict[str, data.Dataset] = {}
    skipped: list[Record] = []
    shape = None
    for spec in config.datasets:
        if base.parse_dataset(spec)[0] == "gaussian":
            continue
        try:
            ds = base.load_data(spec, config.split, config.n_samples, data_dir=data_dir,
                                balanced=True)
        except FileNotFoundError as error:
            if base.parse_dataset(spec)[0] not in config.optional_datasets:
                raise
            skipped.append(base.tag(NAME, "skipped", {
                "dataset": spec, "reason": str(error).splitlines()[0]}))
            continue
        if shape is not None and ds.x.shape[1:] != shape:
            raise ValueError(f"{spec} images have shape {ds.x.shape[1:]}, others {shape}")
        shape = ds.x.shape[1:]
        sets[spec] = ds
    for spec in config.datasets:
        if base.parse_dataset(spec)[0] == "gaussian":
            n = min([len(d) for d in sets.values()] or [config.n_samples])
            sets[spec] = base.load_data(spec, config.split, n, data_dir=data_dir, shape=shape)
    if len(sets) < 2:
        raise ValueError(f"fig5-left needs at least two datasets; have {sorted(sets)}")
    return {s: sets[s] for s in config.datasets if s in sets}, skipped


def fig5_left_seed(
    config: Fig5LeftConfig, setups: dict[str, Setup], seed: int
) -> list[Record]:
    """Gradients of one initialisation on every dataset, and all pairwise cosines."""
    first = next(iter(setups.values()))
    params = base.init_params(first, config.init, jax.random.key(seed))
    grads, deltas, records = {}, {}, []
    for spec, setup in setups.items():
        loss, grad = curvature.loss_and_gradient(setup.model.apply, params, setup.x, setup.y,
                                                 chunk_size=config.chunk_size)
        p = objective.probs(logits_of(setup.model.apply, params, setup.x))
        prior = data.class_prior(np.asarray(setup.y), setup.num_classes)
        deltas[spec] = np.asarray(p.mean(axis=0), float) - prior
        grads[spec] = grad
        records.append(base.tag(NAME, "dataset", {
            "seed": seed, "dataset": spec, "n_samples": len(setup.x),
            "gradient_norm": base.to_float(jnp.linalg.norm(grad)), "loss": base.to_float(loss),
            "q_gap": float(np.linalg.norm(deltas[spec])), "mean_entropy": base.mean_entropy(p)}))
    names = list(setups)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            da, db = deltas[a], deltas[b]
            records.append(base.tag(NAME, "pair", {
                "seed": seed, "dataset_a": a, "dataset_b": b,
                "cosine": base.to_float(metrics.cosine_similarity(grads[a], grads[b])),
                "predicted_cosine": float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db)))}))
    return records


def run(
    config: Fig5LeftConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 5 left, resumable per initialisation seed."""
    validate(config)
    datasets, skipped = load_fig5_datasets(config, data_dir)
    setups = {spec: base.make_setup(config, ds) for spec, ds in datasets.items()}
    existing = base.open_results(config, out_dir)
    if not any(r["kind"] == "skipped" for r in existing) and skipped:
        results.append_records(out_dir, skipped)
    done = {r["seed"] for r in existing if r["kind"] == "pair"}
    todo = [s for s in range(config.inits) if s not in done]
    for seed in base.iterate(todo, progress):
        results.append_records(out_dir, fig5_left_seed(config, setups, seed))
    return base.load(out_dir)


def cosine_table(records: list[Record], field: str = "cosine") -> tuple[list[str], np.ndarray,
                                                                         np.ndarray]:
    """Dataset names, mean and standard deviation over seeds of the pairwise ``field`` (K×K)."""
    pairs = [r for r in records if r.get("kind") == "pair"]
    names = list(dict.fromkeys([n for r in pairs for n in (r["dataset_a"], r["dataset_b"])]))
    mean = np.eye(len(names))
    std = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i < j:
                v = np.array([r[field] for r in pairs if (r["dataset_a"], r["dataset_b"]) in
                              ((a, b), (b, a)) and r[field] is not None], float)
                mean[i, j] = mean[j, i] = v.mean() if v.size else np.nan
                std[i, j] = std[j, i] = v.std() if v.size else np.nan
    return names, mean, std


def summarize(records: list[Record]) -> dict[str, Any]:
    """Mean ± std cosine per dataset pair, with the prediction cos(δ_A, δ_B), and skipped sets."""
    names, mean, std = cosine_table(records)
    _, pred, _ = cosine_table(records, "predicted_cosine")
    pairs = {f"{a} vs {b}": (float(mean[i, j]), float(std[i, j]), float(pred[i, j]))
             for i, a in enumerate(names) for j, b in enumerate(names) if i < j}
    return {
        "inits": len({r["seed"] for r in records if r.get("kind") == "pair"}),
        "cosine_mean_std_predicted": pairs,
        "min_mean_cosine": float(min(v[0] for v in pairs.values())) if pairs else float("nan"),
        "skipped": [f"{r['dataset']}: {r['reason']}" for r in records if r.get("kind") == "skipped"],
    }
