"""Fort & Scherlis Fig. 4: the zone across architectures — widths, depths, ReLU/tanh, with and
without biases, a CNN — and datasets.

The radius sweep of ``plane`` records (Tr H_d/‖H_d‖_F and the fraction of positive eigenvalues on
a random d-plane with the per-layer metric) at one d for every entry of ``architectures`` ×
``datasets``; each network's radius is measured in units of its own Xavier radius.

    gzone run fort/architectures
    gzone run fort/architectures --architectures mlp:300-100:relu,mlp:300-100:tanh
    gzone run fort/architectures --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gzone import data, models, subspace
from gzone.engine import FORT, Claim, ConfigError, Finding, Study
from gzone.engine.claims import INCONCLUSIVE
from gzone.engine.config import (
    check_at_least,
    check_choice,
    check_positive,
    check_range,
    field,
    parse_dataset,
)
from gzone.engine.setup import check_dim
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common


@dataclasses.dataclass(frozen=True)
class Config(common.DataConfig):
    """The radius sweep at one d for every architecture × dataset."""

    architectures: tuple[str, ...] = field(
        ("mlp:100:relu", "mlp:300-100:relu", "mlp:100-100-100:relu", "mlp:300-100:tanh",
         "mlp:300-100:relu:nobias"),
        "networks, each model[:widths[:activation[:nobias]]] with widths joined by -, e.g. "
        "mlp:300-100:tanh, lenet5")
    datasets: tuple[str, ...] = field(("digits",), "datasets, e.g. mnist,cifar10", data.DATASETS)
    seeds: int = field(3, "seeds (theta0 and basis) per radius")
    radius_min: float = field(0.1, "smallest radius, as a factor of the Xavier radius")
    radius_max: float = field(10.0, "largest radius, as a factor of the Xavier radius")
    num_radii: int = field(13, "radii (geometric grid)")
    dim: int = field(50, "hyperplane dimension d")
    basis: str = field("sparse", "random basis (the paper: sparse)", subspace.BASIS_KINDS)
    metric: bool = field(True, "per-layer metric M on the hyperplane (theta = theta0 + M R theta_hat)")


_MNIST_NETS = ("mlp:200:relu", "mlp:200-200:relu", "mlp:200-200-200:relu", "mlp:50-50:relu",
               "mlp:1000-1000:relu", "mlp:200-200:tanh", "mlp:200-200:relu:nobias", "lenet5")
_CIFAR_NETS = ("mlp:200-200:relu", "mlp:200-200-200:relu", "mlp:200-200:tanh",
               "mlp:200-200:relu:nobias", "lenet5")
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_samples": 200, "seeds": 1, "num_radii": 5, "dim": 10,
             "architectures": ("mlp:16:relu", "mlp:16:tanh")},
    "default": {},
    "cpu": {"datasets": ("mnist",), "n_samples": 1000, "seeds": 2, "num_radii": 9,
            "architectures": ("mlp:200:relu", "mlp:200-200:relu", "mlp:200-200:tanh",
                              "mlp:200-200:relu:nobias")},
    "paper": {"datasets": ("mnist",), "n_samples": 10000, "architectures": _MNIST_NETS},
    "mnist": {"datasets": ("mnist",), "n_samples": 10000, "architectures": _MNIST_NETS},
    "cifar10": {"datasets": ("cifar10",), "n_samples": 3000, "architectures": _CIFAR_NETS},
}


@dataclasses.dataclass(frozen=True)
class Network:
    """One entry of ``architectures`` on one dataset, with the study's data and plane settings
    (what :func:`gzone.studies.fort._common.setup_for` and the plane sweep read)."""

    model: str
    widths: tuple[int, ...]
    activation: str
    use_bias: bool
    dataset: str
    n_samples: int | None
    init: str
    dtype: str
    chunk_size: int | None
    metric: bool
    basis: str

    @property
    def label(self) -> str:
        if self.model != "mlp":
            return self.model
        name = f"{self.model} {'-'.join(map(str, self.widths))} {self.activation}"
        return name if self.use_bias else name + " no bias"


def parse_architecture(spec: str, config: Config, dataset: str) -> Network:
    """``model[:widths[:activation[:nobias]]]``: ``mlp:300-100:tanh``, ``mlp:200:relu:nobias``,
    ``lenet5`` (bias-free), ``lenet300``; widths joined by ``-`` (``,`` is read too, but a
    command line splits a list at commas)."""
    parts = spec.split(":")
    model = parts[0]
    if model not in models.MODEL_NAMES:
        raise ConfigError("architectures", f"unknown model {model!r} in {spec!r}; choose from "
                                           f"{', '.join(models.MODEL_NAMES)}")
    try:
        widths = (tuple(int(w) for w in parts[1].replace(",", "-").split("-"))
                  if len(parts) > 1 and parts[1] else (300, 100))
    except ValueError:
        raise ConfigError("architectures", f"bad widths in {spec!r}: write e.g. mlp:300-100") from None
    activation = parts[2] if len(parts) > 2 else "relu"
    if activation not in models.ACTIVATIONS:
        raise ConfigError("architectures", f"unknown activation {activation!r} in {spec!r}; "
                                           f"choose from {', '.join(models.ACTIVATIONS)}")
    if len(parts) > 3 and parts[3] != "nobias" or len(parts) > 4:
        raise ConfigError("architectures", f"bad entry {spec!r}: write model[:widths[:activation[:nobias]]]")
    if any(w < 1 for w in widths):
        raise ConfigError("architectures", f"widths must be >= 1 in {spec!r}")
    return Network(model, widths, activation, model != "lenet5" and len(parts) < 4, dataset,
                   config.n_samples, config.init, config.dtype, config.chunk_size, config.metric,
                   config.basis)


def validate(config: Config) -> None:
    check_choice(config, "init", models.INIT_SCHEMES)
    check_choice(config, "basis", subspace.BASIS_KINDS)
    check_positive(config, "radius_min", "radius_max")
    check_range(config, "radius_min", "radius_max")
    check_at_least(config, "seeds", "dim", "n_samples", "chunk_size")
    check_at_least(config, "num_radii", minimum=3)
    if not config.architectures:
        raise ConfigError("architectures", "{name} is empty: name at least one")
    if not config.datasets:
        raise ConfigError("datasets", "{name} is empty: name at least one")
    for name in config.datasets:
        if parse_dataset(name)[0] not in data.DATASETS:
            raise ConfigError("datasets", f"unknown dataset {name!r}; choose from {', '.join(data.DATASETS)}")
    for spec in config.architectures:
        parse_architecture(spec, config, config.datasets[0])


def prepare(config: Config, data_dir: str | None) -> dict[tuple[str, str], tuple[Network, Any]]:
    """Every network's setup (data loaded, d ≤ P checked) before anything is written."""
    jobs = {}
    for dataset in config.datasets:
        for spec in config.architectures:
            net = parse_architecture(spec, config, dataset)
            setup = common.setup_for(net, data_dir)
            check_dim(setup, config.dim)
            jobs[(spec, dataset)] = (net, setup)
    return jobs


def points(config: Config, jobs: dict) -> list[dict[str, Any]]:
    return [p for spec, dataset in jobs
            for p in common.plane_points(config, "plane", architecture=spec, dataset=dataset)]


def measure(ctx, chunk):
    for point in chunk:
        spec, dataset = point["architecture"], point["dataset"]
        net, setup = ctx.setup[(spec, dataset)]
        yield from common.measure_planes(
            ctx, [point], setup, net, (ctx.config.dim,), cache=f"{spec}/{dataset}",
            extra={"architecture": spec, "label": net.label, "dataset": dataset})


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return common.plane_rows(records, "dataset", "label")


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Tr H_d/‖H_d‖_F (top) and the fraction of positive eigenvalues (bottom) against the radius
    in units of each network's Xavier radius, one column per dataset, one curve per network."""
    import matplotlib.pyplot as plt

    from gzone.plots import PLANE_POSITIVE_CURVATURE_LABEL, finish

    planes = [r for r in records if r.get("kind") == "plane"]
    datasets = sorted({r["dataset"] for r in planes}) or ["-"]
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 6.6), squeeze=False)
    for j, dataset in enumerate(datasets):
        group = [r for r in planes if r["dataset"] == dataset]
        archs = list(dict.fromkeys(r["label"] for r in group))
        colors = common.colors(archs, "tab10" if len(archs) <= 10 else "viridis")
        for arch in archs:
            for i, metric in enumerate(("positive_curvature", "local_convexity")):
                common.band(axes[i, j], group, "radius_factor", metric,
                            lambda r, a=arch: r["label"] == a, colors[arch], arch)
        if not group:
            common.empty(axes[0, j], "plane")
        ylabels = (PLANE_POSITIVE_CURVATURE_LABEL, common.POSITIVE_EIGENVALUES_LABEL)
        for i, ylabel in enumerate(ylabels):
            common.xavier(axes[i, j], group, factor=True)
            axes[i, j].set(xscale="log", xlabel=r"$r / r_{Xavier}$", ylabel=ylabel)
        axes[0, j].set_title(dataset)
        if axes[0, j].get_legend_handles_labels()[0]:
            axes[0, j].legend(fontsize=7)
    return finish(fig, title, path_stem)


def check_every_architecture(rows: list[dict[str, Any]]) -> Finding:
    """Obs. 3, Fig. 4: every network on every dataset has a zone — Tr H_d/‖H_d‖_F peaks above 1
    and the fraction of positive eigenvalues above 1/2 (above the binomial noise), each inside the
    radius grid in a band closed on both sides (:func:`claims.band_verdict`)."""
    expected = (f"for every network x dataset: Tr H/||H|| peaks above "
                f"{claims.TRACE_RATIO_MIN} and the positive-eigenvalue excess above {claims.NOISE_Z} binomial sd, inside the radius "
                f"grid, each band (>= {claims.BAND_FRACTION} x peak) closing before both grid ends")
    networks = sorted({(r.get("dataset"), r.get("label")) for r in rows if "label" in r},
                      key=str)
    measured: dict[str, Any] = {}
    verdicts = []
    for dataset, label in networks:
        eigen = claims.plane_curves(rows, "positive_eigenvalues", dataset=dataset, label=label)
        ratio = claims.plane_curves(rows, "trace_over_frobenius", dataset=dataset, label=label)
        found = []
        for dim, (x, y, seeds) in eigen.items():
            e_band = claims.find_band(x, claims.eigenvalue_excess(y))
            r_band = claims.find_band(*ratio[dim][:2])
            found += [claims.band_verdict(e_band, noise=claims.fraction_noise(dim, seeds)),
                      claims.band_verdict(r_band, minimum=claims.TRACE_RATIO_MIN)]
            measured[f"{label} on {dataset}"] = {
                "dim": dim, "trace_ratio": r_band.summary() if r_band else None,
                "excess": e_band.summary() if e_band else None, "verdict": claims.worst(found)}
        verdicts.append(claims.worst(found))
    if not networks:
        return Finding(INCONCLUSIVE, {"networks": 0}, expected)
    return Finding(claims.worst(verdicts), measured, expected)


STUDY = Study(
    name="fort/architectures", paper=FORT, reproduces="Fig. 4",
    title="the radius sweep for several architectures and datasets",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"plane": ("architecture", "dataset", "radius_factor", "seed")}, growable=("seeds",),
    legacy={"match": {"study": "fort"}},
    claims=(Claim("every-architecture", "Obs. 3; Fig. 4",
                  "The excess of positive curvature in a band of radii appears for fully-connected "
                  "networks of several widths and depths, ReLU and tanh, with and without biases, "
                  "on MNIST and CIFAR-10, and similarly for a CNN.", check_every_architecture,
                  scales=("cpu", "paper")),),
    doc=__doc__)
