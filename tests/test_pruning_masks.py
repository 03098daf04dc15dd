"""`jaxprune.pruning.top_k_mask`, the one top-k of the project, against a NumPy reference (stable order, lower
index first among ties), with one compilation for every budget `k`."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp


def _numpy_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    flat = np.atleast_2d(scores)
    ks = np.broadcast_to(np.asarray(k), flat.shape[:1])
    out = np.zeros(flat.shape, bool)
    for i, (row, kk) in enumerate(zip(flat, ks)):
        keep = sorted(range(row.size), key=lambda j: (-row[j], j))[: int(kk)]
        out[i, keep] = True
    return out.reshape(scores.shape) if scores.ndim > 1 else out[0]


@pytest.mark.parametrize("seed", range(5))
def test_top_k_mask_matches_a_stable_numpy_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(6, 9)).astype(float)  # many ties
    ks = rng.integers(0, 10, size=6)
    got = np.asarray(jp.pruning.top_k_mask(jnp.asarray(scores), jnp.asarray(ks)))
    np.testing.assert_array_equal(got, _numpy_top_k(scores, ks))
    np.testing.assert_array_equal(got.sum(axis=1), ks)
    for k in (0, 3, 9):  # a scalar k for every row
        np.testing.assert_array_equal(np.asarray(jp.pruning.top_k_mask(jnp.asarray(scores), k)),
                                      _numpy_top_k(scores, np.full(6, k)))


def test_top_k_mask_compiles_once_for_every_k():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def masks(scores, k):
        return jp.pruning.top_k_mask(scores, k)

    scores = jnp.asarray(np.random.default_rng(0).normal(size=12))
    for k in range(13):
        assert int(masks(scores, jnp.asarray(k)).sum()) == k
