"""Strict test configuration: float64, strict dtype promotion, rank-promotion errors."""

import os

os.environ.setdefault("XLA_FLAGS", "")
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
