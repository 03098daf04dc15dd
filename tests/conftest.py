"""Strict test configuration: float64, strict dtype promotion, rank-promotion errors; XLA backend optimisation
level 0 (see below)."""

import os

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
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


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
