"""ICML Fig. 5 left: cosine similarity of full-batch loss gradients across balanced datasets.

For several initialisations, the loss gradient of one θ0 on each balanced dataset (``dataset``
records) and all pairwise cosines (``pair`` records). Next to each the random model's
prediction: with shared orthogonal equal-norm c_k, Eq. (9) gives ∇ℓ_A ∝ Σ_k c_k δ_A,k with
δ = Q̂ − Q, so cos(∇ℓ_A, ∇ℓ_B) ≈ cos(δ_A, δ_B) (``predicted_cosine``). Optional datasets whose
files are absent become a ``skipped`` record.

    gzone run icml/gradient-cosines
    gzone run icml/gradient-cosines --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, data, metrics, objective
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ConfigError,
    ModelDataConfig,
    check_at_least,
    check_model_data,
    field,
    parse_dataset,
)
from gzone.engine.summary import mean_entropy, to_float
from gzone.jacobian import logits_of
from gzone.studies.icml._common import inside


@dataclasses.dataclass(frozen=True)
class Config(ModelDataConfig):
    """Gradient cosines of one initialisation across balanced datasets."""

    widths: tuple[int, ...] = field((128, 64), "hidden widths of mlp, e.g. 300,100")
    datasets: tuple[str, ...] = field(("digits", "digits:test", "gaussian"),
                                      "datasets compared, each NAME or NAME:SPLIT", data.DATASETS)
    optional_datasets: tuple[str, ...] = field(("svhn",), "more datasets, skipped with a note "
                                               "when their files are absent", data.DATASETS)
    n_samples: int = field(1000, "samples per dataset, balanced (capped by the smallest class)")
    inits: int = field(5, "initialisations (seeds 0..N-1)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_samples": 200, "inits": 3, "datasets": ("digits", "gaussian")},
    "default": {},
    "cpu": {"model": "lenet5", "datasets": ("cifar10", "gaussian"), "n_samples": 1000, "inits": 3},
    "paper": {"model": "lenet5", "datasets": ("cifar10", "svhn", "gaussian"), "n_samples": 5000,
              "inits": 5},
    "lenet300-fashion": {"model": "lenet300", "datasets": ("fashion_mnist", "mnist", "gaussian"),
                         "n_samples": 10000, "inits": 5},
    "lenet5-cifar10": {"model": "lenet5", "datasets": ("cifar10", "svhn", "gaussian"),
                       "n_samples": 5000, "inits": 5},
}


def validate(config: Config) -> None:
    check_model_data(config)
    check_at_least(config, "inits")
    for name in ("datasets", "optional_datasets"):
        for spec in getattr(config, name):
            if parse_dataset(spec)[0] not in data.DATASETS:
                raise ConfigError(name, f"unknown dataset {spec!r} in {{name}}; choose from "
                                        f"{', '.join(data.DATASETS)}")
    if len(config.datasets) < 2:
        raise ConfigError("datasets", "{name} must name at least two datasets to compare")


def load_datasets(config: Config, data_dir: str | None) -> tuple[dict[str, data.Dataset], list]:
    """Balanced datasets by spec; absent optional ones become ``skipped`` records."""
    sets: dict[str, data.Dataset] = {}
    skipped: list[dict[str, Any]] = []
    shape = None
    for spec in config.datasets:
        if parse_dataset(spec)[0] == "gaussian":
            continue
        try:
            ds = engine_setup.load_data(spec, config.split, config.n_samples, data_dir=data_dir,
                                        balanced=True)
        except FileNotFoundError as error:
            if parse_dataset(spec)[0] not in config.optional_datasets:
                raise
            skipped.append({"kind": "skipped", "dataset": spec,
                            "reason": str(error).splitlines()[0]})
            continue
        if shape is not None and ds.x.shape[1:] != shape:
            raise ValueError(f"{spec} images have shape {ds.x.shape[1:]}, others {shape}")
        shape = ds.x.shape[1:]
        sets[spec] = ds
    for spec in config.datasets:
        if parse_dataset(spec)[0] == "gaussian":
            n = min([len(d) for d in sets.values()] or [config.n_samples])
            sets[spec] = engine_setup.load_data(spec, config.split, n, data_dir=data_dir,
                                                shape=shape)
    if len(sets) < 2:
        raise ValueError(f"the gradient cosines need at least two datasets; have {sorted(sets)}")
    return {s: sets[s] for s in config.datasets if s in sets}, skipped


def prepare(config: Config, data_dir: str | None) -> tuple[dict[str, engine_setup.Setup], list]:
    datasets, skipped = load_datasets(config, data_dir)
    return {spec: engine_setup.make_setup(config, ds) for spec, ds in datasets.items()}, skipped


def points(config: Config, setup: tuple) -> list[dict[str, Any]]:
    skipped = [{"kind": "skipped"}] if setup[1] else []
    return skipped + [{"kind": "pair", "seed": s} for s in range(config.inits)]


def seed_records(config: Config, setups: dict[str, engine_setup.Setup], seed: int) -> list[dict]:
    """Gradients of one initialisation on every dataset, and all pairwise cosines."""
    first = next(iter(setups.values()))
    params = engine_setup.init_params(first, config.init, jax.random.key(seed))
    grads, deltas, records = {}, {}, []
    for spec, setup in setups.items():
        loss, grad = curvature.loss_and_gradient(setup.model.apply, params, setup.x, setup.y,
                                                 chunk_size=config.chunk_size)
        p = objective.probs(logits_of(setup.model.apply, params, setup.x))
        prior = data.class_prior(np.asarray(setup.y), setup.num_classes)
        deltas[spec] = np.asarray(p.mean(axis=0), float) - prior
        grads[spec] = grad
        records.append({"kind": "dataset", "seed": seed, "dataset": spec, "n_samples": len(setup.x),
                        "gradient_norm": to_float(jnp.linalg.norm(grad)), "loss": to_float(loss),
                        "q_gap": float(np.linalg.norm(deltas[spec])), "mean_entropy": mean_entropy(p)})
    names = list(setups)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            da, db = deltas[a], deltas[b]
            records.append({
                "kind": "pair", "seed": seed, "dataset_a": a, "dataset_b": b,
                "cosine": to_float(metrics.cosine_similarity(grads[a], grads[b])),
                "predicted_cosine": float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db)))})
    return records


def measure(ctx, chunk):
    setups, skipped = ctx.setup
    for point in chunk:
        yield skipped if point["kind"] == "skipped" else seed_records(ctx.config, setups, point["seed"])


def cosine_table(records: list[dict[str, Any]], name: str = "cosine") -> tuple[list[str], np.ndarray,
                                                                               np.ndarray]:
    """Dataset names, mean and standard deviation over seeds of the pairwise ``name`` (K×K)."""
    pairs = [r for r in records if r.get("kind") == "pair"]
    names = list(dict.fromkeys([n for r in pairs for n in (r["dataset_a"], r["dataset_b"])]))
    mean = np.eye(len(names))
    std = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i < j:
                v = np.array([r[name] for r in pairs if (r["dataset_a"], r["dataset_b"]) in
                              ((a, b), (b, a)) and r[name] is not None], float)
                mean[i, j] = mean[j, i] = v.mean() if v.size else np.nan
                std[i, j] = std[j, i] = v.std() if v.size else np.nan
    return names, mean, std


def pair_values(records: list[dict[str, Any]], a: str, b: str, name: str = "cosine") -> list:
    """The ``name`` of every initialisation's pair record of datasets ``a`` and ``b``."""
    return [r[name] for r in records if r.get("kind") == "pair"
            and (r["dataset_a"], r["dataset_b"]) in ((a, b), (b, a))]


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset pair: the mean, std and t interval (``inside.LEVEL``) over initialisations
    of the gradient cosine, and the prediction cos(δ_A, δ_B); then one row per skipped
    dataset."""
    names, mean, std = cosine_table(records)
    _, pred, _ = cosine_table(records, "predicted_cosine")
    inits = len({r["seed"] for r in records if r.get("kind") == "pair"})
    rows = [{"pair": f"{a} vs {b}", "inits": inits, "cosine": float(mean[i, j]),
             "cosine_std": float(std[i, j]), "predicted": float(pred[i, j]),
             "cosine_interval": inside.mean_interval(pair_values(records, a, b))}
            for i, a in enumerate(names) for j, b in enumerate(names) if i < j]
    rows += [{"pair": f"{r['dataset']} skipped", "note": r["reason"]}
             for r in records if r.get("kind") == "skipped"]
    return rows


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """The mean cosine similarity matrix (± std over initialisations annotated)."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    names, mean, std = cosine_table(records)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2.2, 1.1 * len(names) + 1.5))
    image = ax.imshow(mean, vmin=-1, vmax=1, cmap="RdBu_r")
    for i in range(len(names)):
        for j in range(len(names)):
            text = "1" if i == j else f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image, ax=ax, label="gradient cosine similarity")
    return finish(fig, title, path_stem, ax)


#: "gradients of LeNet-5 computed on CIFAR-10 and on random images drawn from a Gaussian have
#: cosine similarity > 0.7" (Sec. 4, Fig. 5 left)
COSINE_MIN = 0.7
#: the paper's pair (Fig. 5 left)
PAPER_PAIR = ("cifar10", "gaussian")


def gaussian_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary rows of the paper's pair (CIFAR-10 vs Gaussian) if there is one, else of
    every pair of a real dataset with the Gaussian one."""
    pairs = [r for r in rows if "cosine_interval" in r]
    split = {id(r): r["pair"].split(" vs ") for r in pairs}
    paper = [r for r in pairs if sorted(split[id(r)]) == sorted(PAPER_PAIR)]
    return paper or [r for r in pairs if sum(s.startswith("gaussian") for s in split[id(r)]) == 1]


def check_cosine(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 5 left: the mean gradient cosine over initialisations between CIFAR-10 (else each
    real dataset of the run) and Gaussian images exceeds ``COSINE_MIN``, its t interval
    (``inside.LEVEL``) entirely above; not reproduced when the interval lies entirely below;
    inconclusive when it straddles 0.7, with fewer than 2 initialisations, or no such pair."""
    expected = (f"mean cosine over inits of (cifar10 | real data) vs gaussian > {COSINE_MIN}, "
                f"its {inside.LEVEL:.0%} t interval entirely above")
    pairs = gaussian_pairs(rows)
    measured = {"pairs": [r["pair"] for r in pairs], "cosine": [r["cosine"] for r in pairs],
                "interval": [r["cosine_interval"] for r in pairs],
                "inits": max((r["inits"] for r in pairs), default=0)}
    sides = [inside.against(r["cosine_interval"], COSINE_MIN) for r in pairs]
    if not pairs or "missing" in sides:
        return Finding(INCONCLUSIVE, measured, expected)
    if "outside" in sides:
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(REPRODUCED if set(sides) == {"inside"} else INCONCLUSIVE, measured, expected)


STUDY = Study(
    name="icml/gradient-cosines", paper=ICML, reproduces="Fig. 5 left, Eq. (9)",
    title="cosine similarity of loss gradients of one initialisation across datasets",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"pair": ("seed",), "skipped": ()}, growable=("inits",), kinds=("dataset", "pair", "skipped"), legacy={"match": {"study": "fig5-left"}},
    claims=(Claim("cosine", "Fig. 5 left; Eq. (9)",
                  "Loss gradients of one LeNet-5 initialization on CIFAR-10 and on Gaussian "
                  "random images have cosine similarity > 0.7.",
                  check_cosine, scales=("cpu", "paper")),),
    doc=__doc__)
