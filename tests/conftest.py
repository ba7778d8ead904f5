"""Test-wide settings: float64 available (dense references), shared data folder fixture, the
tiny runs every study makes once per suite (:func:`tiny`, shared by the contract test, the
science tests and the notebooks), and JAX's persistent compilation cache in ``.pytest_cache/jax-compilation`` (shared by the xdist
workers, the subprocesses and notebook kernels the tests start — they inherit the environment —
and by later runs), so that a program compiled by one test is loaded, not recompiled, by the
next. Compile counts are unaffected: ``jax.log_compiles`` reports cache hits as compilations.
XLA:CPU compiles the cheap way unless GZONE_TEST_FULL_OPT=1 (see below).

``jax_enable_x64`` only makes float64 *available*; tests that exercise float32 code pass float32
arrays explicitly, and the library takes its dtype from its inputs.
"""

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
for _name, _value in (("JAX_COMPILATION_CACHE_DIR", str(_CACHE)),
                      ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
                      ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")):
    os.environ.setdefault(_name, _value)
# XLA:CPU's compile options in the suite: its programs are tiny and compile-bound, so it compiles
# them the cheap way — LLVM at -O0 (about a third faster to compile) and the legacy LLVM-IR
# fusion emitters instead of the MLIR ones (a further third); HLO optimisations are unchanged.
# GZONE_TEST_FULL_OPT=1 tests with XLA's defaults instead. The miscompile guards of
# test_curvature.py and the dense references compile with FULL_OPT, XLA's defaults, per program.
#: flag -> (the suite's value, XLA's default), each set through XLA_FLAGS when this jaxlib knows it
FAST_COMPILE = {"xla_backend_optimization_level": ("0", 3),
                "xla_cpu_use_fusion_emitters": ("false", True)}


def _xla_knows(flags: str) -> bool:
    """Whether this jaxlib accepts ``flags`` (XLA aborts a process on an unknown flag): checked
    in a subprocess, once per suite (the xdist workers inherit the result in XLA_FLAGS)."""
    import subprocess
    import sys
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", "import jax.numpy as j; j.zeros(1).block_until_ready()"],
                          env=env, capture_output=True, timeout=300).returncode == 0


# GPU hosts (`pytest -n auto` there): every xdist worker allocates device memory as it needs it,
# instead of preallocating 75 % of the GPU each (the second worker would run out), and XLA:GPU
# runs its reductions deterministically (no atomics), so the exactness tests — a resumed or
# sharded run against an uninterrupted one, to 1e-10 in float64 — compare like with like. Both
# are no-ops on a CPU. gzone's own numerics are full float32 on every backend (gzone.precision),
# so the suite's float32 tolerances hold on a GPU too (TF32 is never used unless a test asks).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()

_flags = os.environ.get("XLA_FLAGS", "")
if os.environ.get("GZONE_TEST_FULL_OPT") != "1" and not any(f in _flags for f in FAST_COMPILE):
    _fast = " ".join(f"--{f}={v}" for f, (v, _) in FAST_COMPILE.items())
    if not _xla_knows(f"{_flags} {_fast}"):  # a jaxlib without the emitter switch: -O0 alone
        _fast = f"--xla_backend_optimization_level={FAST_COMPILE['xla_backend_optimization_level'][0]}"
    os.environ["XLA_FLAGS"] = f"{_flags} {_fast}".strip()

#: compiler options restoring XLA's defaults for one program, ``jax.jit(f, compiler_options=
#: FULL_OPT)``: the miscompile guards
FULL_OPT = {f: default for f, (_, default) in FAST_COMPILE.items()
            if f"--{f}=" in os.environ.get("XLA_FLAGS", "")}
#: compiler options of the suite's dense references (jax.hessian, explicit Jacobians), which run
#: longer at -O0 than they take to compile: LLVM optimised, the suite's emitters
FAST_RUN = {"xla_backend_optimization_level": 3}

import jax  # noqa: E402  (after the environment it reads)
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                  int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))


def tiny_root(config: pytest.Config) -> Path:
    """Where the tiny runs of this suite live: one folder shared by the xdist workers of one run
    (the parent of their base temporary folders), the base temporary folder otherwise."""
    base = config._tmp_path_factory.getbasetemp()
    return (base.parent if hasattr(config, "workerinput") else base) / "tiny-runs"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``$GZONE_RUNS`` (the root of the studies' default results folders) for every item,
    notebooks included: their kernels (started by the worker) read the tiny runs of this suite
    instead of computing them again."""
    os.environ["GZONE_RUNS"] = str(tiny_root(item.config))


@dataclasses.dataclass(frozen=True)
class TinyRun:
    """A study's ``tiny`` preset, run once per suite."""

    study: Any
    config: Any
    out: Path
    records: list


@pytest.fixture(scope="session")
def tiny():
    """``tiny(name) -> TinyRun``: the study's ``tiny`` preset run into the suite's shared folder
    (the engine's lock lets one process compute it while the others wait and then load it).
    Tests must not write into ``out``: copy it first."""
    from gzone import studies

    cache: dict[str, TinyRun] = {}

    def get(name: str) -> TinyRun:
        if name not in cache:
            config, records = studies.run(name, "tiny")
            cache[name] = TinyRun(studies.get(name), config, studies.default_out(name, "tiny"),
                                  records)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder named by GZONE_DATA_DIR; skips visibly when it is unset."""
    value = os.environ.get("GZONE_DATA_DIR")
    if not value:
        pytest.skip("GZONE_DATA_DIR is not set: real-data test skipped (set it to ../shared/data)")
    path = Path(value).resolve()
    if not path.is_dir():
        pytest.skip(f"GZONE_DATA_DIR={value} is not a directory: real-data test skipped")
    return path


class _CompileLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of "):
            self.names.append(message.removeprefix("Finished XLA compilation of ").split(" in ")[0])


@contextlib.contextmanager
def count_compilations():
    """Context manager yielding the list of XLA programs compiled inside it (``jax.log_compiles``,
    the public compile log), e.g. ``['jit(hessian_matvec)', ...]``."""
    handler = _CompileLog()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            yield handler.names
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def compilations():
    """:func:`count_compilations` as a fixture."""
    return count_compilations
