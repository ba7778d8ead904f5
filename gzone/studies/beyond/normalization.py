"""ICML Sec. 6: "our preliminary experiments show that BatchNorm eliminates the Goldilocks zone
altogether" — measured, under weight scaling and under temperature.

Positive curvature of H (a random d-plane) and the full-space ‖G‖₂ against ‖H-term‖₂ of networks
without normalisation, with BatchNorm (the batch's statistics differentiated, as full-batch
training sees them; or held as constants, as evaluation mode with converged running averages) and
with LayerNorm, over a log grid of weight scales α (θ → αθ, every parameter, T = 1) and of
softmax temperatures T (α = 1) (:mod:`gzone.studies.beyond._common`).

What a normalisation does to the α axis: a layer followed by a normalisation is scale-invariant
(its kernel and bias scaled together leave the output unchanged, up to ε;
:func:`gzone.architectures.scale_invariant_layers`), so θ → αθ moves the logits only through the
last normalisation's scale and bias and the output layer: z(αθ) = α² z(θ) at initialisation
(biases zero) instead of α^L — the rows' ``logit_degree`` measures it around α = 1; over the
whole grid (``logit_degree_grid``) the normalisations' ε (added to the variance) breaks the
invariance once α²·Var ≲ ε — while the loss is flat in the invariant layers' scale and their
Hessian block falls as 1/α². Whether a zone survives is what the claims below measure; the
temperature probe acts on the logits directly and is untouched by the normalisation.

    gzone run beyond/normalization
    gzone run beyond/normalization --preset cpu --data-dir ../shared/data
    gzone run beyond/normalization --preset lenet5-cifar10-cpu --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gzone.engine import BEYOND, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.study import batched
from gzone.studies.beyond import _common as zc


@dataclasses.dataclass(frozen=True)
class Config(zc.ZoneConfig):
    """The zone of networks with and without normalisation, under α and under T."""

    variants: tuple[str, ...] = zc.field(("bias", "batchnorm", "batchnorm-held", "layernorm"),
                                         "network variants, e.g. bias,batchnorm",
                                         tuple(zc.VARIANTS))


_WIDE = {"alpha_min": 0.01, "alpha_max": 100.0, "num_alphas": 9, "temperature_min": 1e-3,
         "temperature_max": 1e3, "num_temperatures": 13}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (16,), "n_samples": 100, "variants": ("batchnorm",), "num_alphas": 3,
             "num_temperatures": 3, "dim": 4, "seeds": 1, "lanczos_iters": 0},
    "default": {},
    "cpu": {"dataset": "fashion_mnist", "widths": (300, 100), "n_samples": 1000, **_WIDE,
            "dim": 20, "seeds": 2, "lanczos_iters": 20,
            "variants": ("plain", "bias", "batchnorm", "batchnorm-held", "layernorm")},
    "paper": {"dataset": "fashion_mnist", "widths": (300, 100), "n_samples": 10000, **_WIDE,
              "num_alphas": 17, "dim": 50, "seeds": 3, "lanczos_iters": 40,
              "variants": ("plain", "bias", "batchnorm", "batchnorm-held", "layernorm")},
    # the zone of the d-plane (lanczos_iters 0, as ICML Fig. 2): XLA:CPU runs the convolutions
    # of a Lanczos loop slowly (../PERFORMANCE-NOTES: ~8x), so the full-space norms are GPU work
    "lenet5-cifar10-cpu": {"arch": "lenet5", "dataset": "cifar10", "n_samples": 128, **_WIDE,
                           "num_alphas": 5, "num_temperatures": 5, "dim": 10, "seeds": 1,
                           "lanczos_iters": 0,
                           "variants": ("bias", "batchnorm", "batchnorm-held", "layernorm")},
}


def prepare(config: Config, data_dir: str | None) -> zc.ZoneSetup:
    return zc.prepare_zone(config, data_dir)


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return zc.zone_points(config)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return zc.zone_rows(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """PC(H) and ‖G‖₂/‖H-term‖₂ against α and T, one line per variant."""
    from gzone import plots

    fig = zc.zone_figure(records, title=title or "normalisation and the Goldilocks zone")
    plots.save(fig, path_stem)
    return fig


_ZONE_SCALES = ("default", "cpu", "paper", "lenet5-cifar10-cpu")


def _baseline(rows: list[dict[str, Any]], probe: str) -> dict[str, Any] | None:
    return zc.row_of(rows, "bias", probe) or zc.row_of(rows, "plain", probe)


def check_eliminated(variant: str):
    """The check that ``variant`` (a BatchNorm variant) has no zone under weight scaling where the
    network without normalisation (``bias``, else ``plain``) has one; measured also: its zone
    under T and its logits' degree."""
    expected = (f"no zone for {variant} under weight scaling (PC(H) rising from both ends of the "
                f"alpha grid, each <= {zc.ZONE_FRACTION} x its peak, to an interior peak where "
                "||G||_2 > ||H-term||_2), where the network without normalisation has one")

    def check(rows: list[dict[str, Any]]) -> Finding:
        base, mine = _baseline(rows, "alpha"), zc.row_of(rows, variant, "alpha")
        under_t = zc.row_of(rows, variant, "temperature") or {}
        measured = {"baseline_zone": None if base is None else base.get("has_zone"),
                    "zone_alpha": None if mine is None else mine.get("has_zone"),
                    "zone_temperature": under_t.get("has_zone")}
        if mine is not None:
            measured.update({k: mine.get(k) for k in ("pc_peak", "peak_at", "pc_ends", "zone",
                                                      "logit_degree")})
        if base is None or mine is None or None in (base.get("has_zone"), mine.get("has_zone")) \
                or not base["has_zone"]:
            return Finding(INCONCLUSIVE, measured, expected)
        return Finding(NOT_REPRODUCED if mine["has_zone"] else REPRODUCED, measured, expected)

    return check


#: a measured degree within this of the predicted one agrees
DEGREE_TOLERANCE = 0.05


def check_degree(rows: list[dict[str, Any]]) -> Finding:
    """The logits of every normalised variant scale as α² under θ → αθ (module docstring)."""
    expected = (f"logit degree 2 +- {DEGREE_TOLERANCE} over {zc.DEGREE_WINDOW[0]} <= alpha <= "
                f"{zc.DEGREE_WINDOW[1]} for every BatchNorm/LayerNorm variant")
    found = {r["variant"]: r.get("logit_degree") for r in rows
             if r.get("probe") == "alpha" and zc.VARIANTS[r["variant"]].norm != "none"}
    plain = zc.row_of(rows, "plain", "alpha")
    measured = {**{f"{v}_logit_degree": d for v, d in found.items()},
                "plain_logit_degree": None if plain is None else plain.get("logit_degree")}
    if not found or any(d is None for d in found.values()):
        return Finding(INCONCLUSIVE, measured, expected)
    ok = all(abs(d - 2.0) <= DEGREE_TOLERANCE for d in found.values())
    return Finding(REPRODUCED if ok else NOT_REPRODUCED, measured, expected)


STUDY = Study(
    name="beyond/normalization", paper=BEYOND, reproduces="ICML Sec. 6 (BatchNorm, LayerNorm)",
    title="normalisation against the zone: PC and ||G|| vs ||H-term|| under alpha and under T",
    config=Config, presets=PRESETS, validate=zc.validate_zone, prepare=prepare, points=points,
    measure=zc.measure_zone, summarize=summarize, figure=figure,
    done={"zone": ("variant", "probe", "value", "seed")},
    chunks=batched(lambda config: None, group=lambda config, p: (p["variant"], p["seed"])),
    extra_presets={"cpu": ("lenet5-cifar10-cpu",)},
    claims=(
        Claim("batchnorm-eliminates-zone", "ICML Sec. 6",
              "BatchNorm eliminates the Goldilocks zone altogether (the authors' preliminary "
              "experiments): no zone under weight scaling — BatchNorm on the batch's statistics, "
              "differentiated (the loss full-batch training descends).",
              check_eliminated("batchnorm"), scales=_ZONE_SCALES),
        Claim("held-batchnorm-eliminates-zone", "ICML Sec. 6",
              "The same with BatchNorm's statistics held as constants (evaluation mode with "
              "running averages equal to the data's statistics).",
              check_eliminated("batchnorm-held"), scales=_ZONE_SCALES),
        Claim("normalized-logit-degree", "ICML Sec. 3, 6 (scale invariance of BatchNorm)",
              "Layers before a normalisation are scale-invariant, so weight scaling moves the "
              "logits as alpha^2 (the last normalisation's scale times the output layer), "
              "not alpha^L.",
              check_degree),
    ),
    report_table=True, doc=__doc__)
