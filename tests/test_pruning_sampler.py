"""The one k-DPP sampler (`jp.pruning.sample_kdpp_mask`) with a static and with a traced size, one kernel or a
batch of kernels: subset frequencies against exact enumeration of det(L_S) / e_k (chi-square)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxprune as jp


def _kernel(rng, K):
    a = rng.normal(size=(K, K + 1))
    return a @ a.T / K


def _exact_probs(L, k):
    """P(S) = det(L_S) / sum_T det(L_T) by brute force (NumPy determinants, independent of the code)."""
    subsets = list(itertools.combinations(range(L.shape[0]), k))
    dets = np.array([np.linalg.det(L[np.ix_(s, s)]) for s in subsets])
    return subsets, dets / dets.sum()


def _chi2_pvalue(masks, subsets, probs):
    index = {s: i for i, s in enumerate(subsets)}
    counts = np.zeros(len(subsets))
    for m in np.asarray(masks):
        counts[index[tuple(np.flatnonzero(m))]] += 1
    expected = probs * counts.sum()
    return scipy.stats.chisquare(counts, expected).pvalue


@pytest.mark.parametrize("k", [2, 3])
def test_traced_size_matches_exact_probabilities(rng, k):
    K, S = 6, 6000
    L = _kernel(rng, K)
    eig = jp.pruning.kdpp_eigen(jnp.asarray(L))
    keys = jax.random.split(jax.random.key(7), S)
    sampler = jax.jit(jax.vmap(jp.pruning.sample_kdpp_mask, in_axes=(0, None, None)))
    masks = sampler(keys, eig, jnp.asarray(k))  # k is traced: one compilation for every size
    assert np.all(np.asarray(masks).sum(axis=1) == k)
    subsets, probs = _exact_probs(L, k)
    assert _chi2_pvalue(masks, subsets, probs) > 1e-3


def test_static_and_traced_give_the_same_subset(rng):
    K = 7
    eig = jp.pruning.kdpp_eigen(jnp.asarray(_kernel(rng, K)))
    for i in range(5):
        key = jax.random.key(100 + i)
        for k in (1, 3, 6):
            static = jp.pruning.sample_kdpp_mask(key, eig, k)
            traced = jp.pruning.sample_kdpp_mask(key, eig, jnp.asarray(k))
            bounded = jp.pruning.sample_kdpp_mask(key, eig, jnp.asarray(k), k_max=6)
            idx = jp.pruning.sample_kdpp(key, eig, k)
            np.testing.assert_array_equal(np.asarray(static), np.asarray(traced))
            np.testing.assert_array_equal(np.asarray(static), np.asarray(bounded))
            np.testing.assert_array_equal(np.flatnonzero(np.asarray(static)), np.asarray(idx))


def test_batch_of_kernels_and_sizes(rng):
    """vmap over kernels (decomposed one by one by `kdpp_eigen`) with one traced size per kernel."""
    K, S = 5, 4000
    Ls = np.stack([_kernel(rng, K) for _ in range(2)])
    ks = jnp.asarray([2, 3])
    eigs = jp.pruning.kdpp_eigen(jnp.asarray(Ls))
    assert eigs.eigenvalues.shape == (2, K)
    keys = jax.random.split(jax.random.key(3), (S, 2))
    per_kernel = jax.vmap(jp.pruning.sample_kdpp_mask, in_axes=(0, 0, 0))
    masks = jax.jit(jax.vmap(per_kernel, in_axes=(0, None, None)))(keys, eigs, ks)  # (S, 2, K)
    for u in range(2):
        subsets, probs = _exact_probs(Ls[u], int(ks[u]))
        assert _chi2_pvalue(masks[:, u], subsets, probs) > 1e-3


def test_traced_size_zero_and_bad_sizes(rng):
    eig = jp.pruning.kdpp_eigen(jnp.asarray(_kernel(rng, 4)))
    key = jax.random.key(0)
    assert not np.any(np.asarray(jp.pruning.sample_kdpp_mask(key, eig, jnp.asarray(0))))
    with pytest.raises(ValueError, match="k_max"):
        jp.pruning.sample_kdpp_mask(key, eig, jnp.asarray(4), k_max=3)
    with pytest.raises(ValueError, match="k"):
        jp.pruning.sample_kdpp_mask(key, eig, 5)
