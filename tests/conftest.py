"""Strict test configuration: float64, strict dtype promotion, rank-promotion errors, jaxtyping run-time checks
of every annotated jaxprune function (beartype); a persistent compilation cache; XLA backend optimisation
level 0 (see below)."""

import os

# --- jaxtyping run-time checks ----------------------------------------------------------------------------------
# Every function and equinox Module of the modules listed below has its jaxtyping annotations (shapes named
# "K K", "K M", ... and dtypes) checked at call time by beartype, so a wrong shape or a wrong annotation fails a
# test. The list is the whole library: the core, jaxprune.pruning, jaxprune.design and jaxprune.realdata (the
# experiments and the CLI are applications on top of it and are not hooked). Public boundaries accept ArrayLike and
# validate inside, so bad input still meets the library's own one-line ValueError; tests of a precise
# annotation's rejection use the `no_typecheck` fixture. JAXPRUNE_TEST_TYPECHECK=0 turns it off.
# This must run before jaxprune is imported.
TYPECHECKED_MODULES = [
    "jaxprune._activations", "jaxprune._integrals", "jaxprune._overlaps", "jaxprune._error", "jaxprune._config",
    "jaxprune._vector_field", "jaxprune._ode", "jaxprune._fixed_point", "jaxprune._simulate", "jaxprune._networks",
    "jaxprune._checks", "jaxprune._status", "jaxprune._io", "jaxprune._cache", "jaxprune._program_store",
    "jaxprune.pruning", "jaxprune.design", "jaxprune.realdata",
]
# More modules (comma-separated package or module names, e.g. "jaxprune.pruning") for a trial run.
TYPECHECKED_MODULES += [m for m in os.environ.get("JAXPRUNE_TEST_TYPECHECK_EXTRA", "").split(",") if m.strip()]
if os.environ.get("JAXPRUNE_TEST_TYPECHECK", "1") not in ("", "0"):
    from jaxtyping import install_import_hook

    install_import_hook(TYPECHECKED_MODULES, "beartype.beartype")
# --- end jaxtyping ---------------------------------------------------------------------------------------------

# --- compile cache (jaxprune._cache) ------------------------------------------------------------------------
# The suite's programs are kept in the per-user persistent compilation cache (as the CLI does), so a second run
# skips most XLA compilation; JAXPRUNE_CACHE_DIR moves it, JAXPRUNE_CACHE_DIR=off disables it. The XLA flags
# below are part of each entry's key, so level-0 entries never serve a default-level run. Exported to
# subprocesses (notebooks, reproduce workers, CLI runs). xdist workers share the folder (see tests/test_cache.py).
from jaxprune._cache import enable_compile_cache  # noqa: E402

enable_compile_cache()
# --- end compile cache ----------------------------------------------------------------------------------------

# The suite's time is mostly XLA compilation of many small programs. At backend optimisation level 0 XLA CPU
# compiles about a fifth faster, and its float64 results agree with the default level to rounding (elementwise
# functions and float64 random normals agree to 1e-16). Set JAXPRUNE_TEST_XLA_DEFAULT=1 to test at the default
# level. The one check that needs bit-identical float32 input draws across separately compiled programs
# (`test_simulate_matches_numpy_loop`) reruns itself at the default level. This must run before JAX starts its
# backend; subprocesses (notebooks, reproduce workers) inherit it.
XLA_LEVEL0 = "--xla_backend_optimization_level=0"
if os.environ.get("JAXPRUNE_TEST_XLA_DEFAULT", "0") in ("", "0") and "xla_backend_optimization_level" not in \
        os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_LEVEL0).strip()
import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_covariance(rng, n, *, scale=1.0, near_singular=False):
    """A random symmetric positive (semi-)definite matrix, optionally with a nearly duplicated field."""
    a = rng.normal(size=(n, n + 2)) * scale / np.sqrt(n + 2)
    if near_singular and n >= 2:
        a[1] = a[0] + 1e-6 * rng.normal(size=a.shape[1])
    return a @ a.T


@pytest.fixture
def no_typecheck():
    """Switch the jaxtyping run-time checks off for one test: for tests of the library's own one-line
    `ValueError`s, which the checks would otherwise pre-empt with a `TypeCheckError` on a wrong shape."""
    import jaxtyping

    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", False)
