"""Test-wide settings: float64 available (dense references), shared data folder fixture, and
JAX's persistent compilation cache in ``.pytest_cache/jax-compilation`` (shared by the xdist
workers, the subprocesses and notebook kernels the tests start — they inherit the environment —
and by later runs), so that a program compiled by one test is loaded, not recompiled, by the
next. Compile counts are unaffected: ``jax.log_compiles`` reports cache hits as compilations.
XLA:CPU compiles at LLVM -O0 unless GZONE_TEST_FULL_OPT=1 (see below).

``jax_enable_x64`` only makes float64 *available*; tests that exercise float32 code pass float32
arrays explicitly, and the library takes its dtype from its inputs.
"""

import contextlib
import logging
import os
from pathlib import Path

_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
for _name, _value in (("JAX_COMPILATION_CACHE_DIR", str(_CACHE)),
                      ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
                      ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")):
    os.environ.setdefault(_name, _value)
# XLA:CPU's LLVM back end at -O0 (HLO optimisations, fusion included, are unchanged): the suite's
# programs are tiny and compile-bound, and -O0 compiles them about a third faster. Set
# GZONE_TEST_FULL_OPT=1 to test at the default level; the miscompile guards of test_curvature.py
# also run that way, in a subprocess (test_miscompile_guards_hold_at_full_optimisation).
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
if os.environ.get("GZONE_TEST_FULL_OPT") != "1" and "xla_backend_optimization_level" not in \
        os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAG}".strip()

import jax  # noqa: E402  (after the environment it reads)
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                  int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))


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
