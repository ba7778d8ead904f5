"""Shared pieces of the Section-4 study tests (tests/test_inside*.py): tiny configurations
(digits, small MLPs, d = 10), a once-per-module runner and the record-field check."""

from gzone.experiments import inside

TINY = {
    "fig3": {"widths": (16, 16), "n_samples": 100, "dim": 10, "seeds": 1, "num_points": 3,
             "alpha_min": 0.1, "alpha_max": 5.0},
    "fig4-right": {"widths": (16, 16), "n_sets": 6, "num_points": 21},
    "fig5-left": {"widths": (16, 16), "n_samples": 100, "inits": 2,
                  "datasets": ("digits", "gaussian")},
    "fig5-right": {"subset_size": 100, "n_priors": 30},
    "fig6": {"widths": (16, 16, 16), "n_samples": 100, "dim": 10, "n_inits": 20,
             "seeds_per_chunk": 16},
    "fig10": {"widths": (32, 16), "n_samples": 100, "dim": 10, "num_points": 61,
              "curvature_points": 0, "lanczos_iters": 15, "share_levels": (0.9,)},
}


def tiny_config(study, **extra):
    """The tiny config of ``study`` with ``extra`` field overrides."""
    return inside.make_config(study, "default", **{**TINY[study], **extra})


def runner(tmp_path_factory):
    """study -> (config, out_dir, records), each tiny study run once (for a module fixture)."""
    cache = {}

    def get(study):
        if study not in cache:
            config = tiny_config(study)
            out = tmp_path_factory.mktemp(study.replace("-", "_"))
            cache[study] = (config, out, inside.run_study(config, out))
        return cache[study]

    return get


def check_fields(study, records):
    """Every record names its study, carries flags and has the required fields of its kind."""
    for record in records:
        assert record["study"] == study and "flags" in record
        missing = set(inside.RECORD_FIELDS[study][record["kind"]]) - set(record)
        assert not missing, (record["kind"], missing)


def stop_before_first_point(iterator, total):
    """A progress wrapper that stops the run before its first point (an interrupted run that
    left only its config.json)."""
    raise KeyboardInterrupt
    yield  # pragma: no cover - makes this a generator
