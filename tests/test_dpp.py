"""Tests of the k-DPP algebra in `jaxprune.pruning._dpp`.

Every expected value comes from an independent computation in the test itself: exact integer
arithmetic, NumPy brute force over all subsets (`det(L_S)` or the Cauchy-Binet mixture over eigenvector
sets), the deletion identity `P(i not in S) = e_k(L without i) / e_k(L)`, or Monte Carlo.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from jaxprune.pruning import (
    KDPPEigen,
    check_kdpp_kernel,
    enumerate_subsets,
    kdpp_eigen,
    kdpp_enumerate,
    kdpp_log_prob,
    kdpp_marginals,
    log_elementary_symmetric,
    sample_kdpp,
    sample_kdpp_mask,
    sample_uniform_subset,
    sample_uniform_subset_mask,
    uniform_marginals,
)

sample_many = jax.jit(jax.vmap(sample_kdpp, in_axes=(0, None, None)), static_argnums=2)


# --------------------------------------------------------------------------------------------------
# NumPy / exact references (independent of the code under test)
# --------------------------------------------------------------------------------------------------


def brute_esp(values, j):
    return sum(math.prod(c) for c in itertools.combinations(values, j))


def brute_kdpp(L, k):
    """All size-k subsets (lexicographic) and det(L_S) / sum_T det(L_T), by NumPy determinants."""
    subsets = list(itertools.combinations(range(L.shape[0]), k))
    dets = np.array([np.linalg.det(L[np.ix_(s, s)]) for s in subsets])
    return subsets, dets / dets.sum()


def cauchy_binet_kdpp(lam, vec, k):
    """P(S) = sum_{|J|=k} prod(lam_J) det(V_{S,J})^2 / e_k: accurate for any spread of eigenvalues."""
    K = lam.shape[0]
    subsets = list(itertools.combinations(range(K), k))
    weights = np.array([math.prod(lam[list(J)]) for J in subsets])
    probs = np.array(
        [sum(w * np.linalg.det(vec[np.ix_(S, J)]) ** 2 for w, J in zip(weights, subsets)) for S in subsets]
    )
    return subsets, probs / weights.sum()


def brute_marginals(subsets, probs, K):
    masks = np.zeros((len(subsets), K))
    for row, s in enumerate(subsets):
        masks[row, list(s)] = 1
    return masks.T @ probs, (masks.T * probs) @ masks


def np_log_esp(values, k):
    """log e_0..log e_k by the log-space recursion, in NumPy (reference for large K)."""
    log_e = np.full(k + 1, -np.inf)
    log_e[0] = 0.0
    with np.errstate(divide="ignore"):
        for lv in np.log(np.clip(values, 0, None)):
            log_e[1:] = np.logaddexp(log_e[1:], log_e[:-1] + lv)
    return log_e


def kernel(rng, K, *, rank=None, ridge=0.0):
    rank = K + 2 if rank is None else rank
    a = rng.normal(size=(K, rank)) / np.sqrt(rank)
    return a @ a.T + ridge * np.eye(K)


def spectrum_kernel(rng, lam):
    q, _ = np.linalg.qr(rng.normal(size=(lam.size, lam.size)))
    return (q * lam) @ q.T


# --------------------------------------------------------------------------------------------------
# Elementary symmetric polynomials
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 3, 8])
def test_log_esp_brute_force(rng, K):
    values = rng.uniform(0.1, 3.0, size=K)
    values[rng.integers(K)] = 0.0  # a zero eigenvalue
    out = np.asarray(log_elementary_symmetric(jnp.asarray(values), K + 1))
    assert out.shape == (K + 2,)
    assert out[0] == 0.0
    for j in range(K + 2):
        expected = brute_esp(values, j)
        if expected == 0:
            assert out[j] == -np.inf
        else:
            np.testing.assert_allclose(np.exp(out[j]), expected, rtol=1e-13)


@pytest.mark.parametrize(("K", "max_exp"), [(200, 100), (120, 600)])
def test_log_esp_exact_integers_wide_range(K, max_exp):
    # Eigenvalues m 2^e are exact in float64; scaled by 2^max_exp they are integers, so the exact
    # polynomials follow from integer arithmetic. With max_exp = 600 the values e_j leave the
    # float64 range: only log space can represent them.
    rng = np.random.default_rng(7)
    mant = rng.integers(1, 2**20, size=K)
    expo = rng.integers(-max_exp, max_exp + 1, size=K)
    mant[:3] = 0  # zeros too
    values = np.array([math.ldexp(int(m), int(e)) for m, e in zip(mant, expo)])
    scaled = [int(m) << int(e + max_exp) for m, e in zip(mant, expo)]
    exact = [1] + [0] * K
    for v in scaled:
        for j in range(K, 0, -1):
            exact[j] += v * exact[j - 1]
    out = np.asarray(log_elementary_symmetric(jnp.asarray(values), K))
    for j in range(K + 1):
        if exact[j] == 0:
            assert out[j] == -np.inf, j
        else:
            expected = math.log(exact[j]) - j * max_exp * math.log(2.0)
            assert abs(out[j] - expected) <= 1e-13 * max(1.0, abs(expected)), (j, out[j], expected)


def test_log_esp_rejects_bad_arguments(no_typecheck):  # a wrong shape: the library's ValueError
    with pytest.raises(ValueError, match="eigenvalues"):
        log_elementary_symmetric(jnp.ones((2, 2)), 1)
    with pytest.raises(ValueError, match="`k`"):
        log_elementary_symmetric(jnp.ones(3), -1)


# --------------------------------------------------------------------------------------------------
# Enumeration and log-probabilities
# --------------------------------------------------------------------------------------------------


def test_enumerate_subsets_lexicographic():
    masks = enumerate_subsets(5, 2)
    expected = [set(c) for c in itertools.combinations(range(5), 2)]
    assert masks.shape == (10, 5) and masks.dtype == bool
    assert [set(np.flatnonzero(m)) for m in masks] == expected
    assert enumerate_subsets(4, 0).shape == (1, 4)


def test_kdpp_enumerate_matches_brute_force(rng):
    K = 6
    L = kernel(rng, K)
    all_masks, all_expected = [], []
    for k in range(1, K + 1):
        masks, probs = kdpp_enumerate(jnp.asarray(L), k)
        subsets, expected = brute_kdpp(L, k)
        assert isinstance(masks, np.ndarray)
        assert [tuple(np.flatnonzero(m)) for m in masks] == subsets
        np.testing.assert_allclose(float(jnp.sum(probs)), 1.0, rtol=1e-13)
        np.testing.assert_allclose(probs, expected, rtol=1e-10, atol=1e-15)
        all_masks.append(masks)
        all_expected.append(expected)
    # kdpp_log_prob takes subsets of every size in one batch (the size is not static)
    logp = jax.vmap(kdpp_log_prob, in_axes=(None, 0))(jnp.asarray(L), jnp.asarray(np.concatenate(all_masks)))
    np.testing.assert_allclose(np.exp(logp), np.concatenate(all_expected), rtol=1e-10, atol=1e-15)


def test_kdpp_log_prob_size_is_not_static(rng):
    L = jnp.asarray(kernel(rng, 5))
    traces = []

    @jax.jit
    def f(mask):
        traces.append(None)
        return kdpp_log_prob(L, mask)

    for k in (1, 2, 4):
        mask = jnp.arange(5) < k
        _, expected = brute_kdpp(np.asarray(L), k)
        np.testing.assert_allclose(np.exp(f(mask)), expected[0], rtol=1e-10)
    assert len(traces) == 1


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


def pooled_chisquare(counts, expected, min_expected=5.0):
    """Pearson chi-square test, with the bins expecting fewer than `min_expected` counts pooled."""
    small = expected < min_expected
    counts = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0:
        counts, expected = counts[:-1], expected[:-1]
    return scipy.stats.chisquare(counts, expected)


def subset_counts(samples, subsets):
    index = {s: i for i, s in enumerate(subsets)}
    counts = np.zeros(len(subsets))
    for row in np.asarray(samples):
        counts[index[tuple(row)]] += 1
    return counts


def to_masks(samples, K):
    masks = np.zeros((samples.shape[0], K))
    np.put_along_axis(masks, np.asarray(samples), 1.0, axis=1)
    return masks


# All small sampler tests share K = 7, k = 3 and 20 000 keys (one compilation; 20 000 is not a
# multiple of the block size of the batching rule).
K_SMALL, k_SMALL, N_SMALL = 7, 3, 20_000


@pytest.mark.parametrize("case", ["generic", "rank_equals_k", "identity"])
def test_sampler_chi_square(rng, key, case):
    K, k, n = K_SMALL, k_SMALL, N_SMALL
    if case == "generic":
        L = kernel(rng, K, ridge=0.3)
    elif case == "rank_equals_k":
        L = kernel(rng, K, rank=k)  # e_k > 0 but every selected J must be the 3 nonzero eigenvectors
    else:
        L = np.eye(K)  # degenerate eigenvalues: uniform over subsets
    subsets, probs = brute_kdpp(L, k)
    keep = probs > 1e-12
    samples = np.asarray(sample_many(jax.random.split(key, n), kdpp_eigen(jnp.asarray(L)), k))
    assert samples.shape == (n, k)
    assert np.all(np.diff(samples, axis=1) > 0)  # sorted and distinct
    counts = subset_counts(samples, subsets)
    assert counts[~keep].sum() == 0
    assert (n * probs[keep] >= 5).sum() >= 10  # enough bins for the test to bite
    result = pooled_chisquare(counts[keep], n * probs[keep])
    assert result.pvalue > 1e-3, result


def test_sampler_inclusion_frequencies(rng, key):
    K, k, n = K_SMALL, k_SMALL, N_SMALL
    L = kernel(rng, K)
    p1, p2 = brute_marginals(*brute_kdpp(L, k), K)
    masks = to_masks(sample_many(jax.random.split(key, n), kdpp_eigen(jnp.asarray(L)), k), K)
    f1, f2 = masks.mean(axis=0), masks.T @ masks / n
    np.testing.assert_array_less(np.abs(f1 - p1), 5 * np.sqrt(p1 * (1 - p1) / n) + 1e-12)
    np.testing.assert_array_less(np.abs(f2 - p2), 5 * np.sqrt(p2 * (1 - p2) / n) + 1e-12)


def test_sampler_vmap_equals_loop(rng, key):
    K, k, n = K_SMALL, k_SMALL, N_SMALL
    L = jnp.asarray(kernel(rng, K))
    keys = jax.random.split(key, n)
    batched = sample_many(keys, kdpp_eigen(L), k)
    # one key at a time, from the kernel itself, as masks
    for i in (0, 1, n - 1):
        mask = sample_kdpp_mask(keys[i], L, k)
        np.testing.assert_array_equal(np.flatnonzero(mask), batched[i])
    # vmapped over kernels as well (a plain vmap inside the batching rule)
    two = jax.tree.map(lambda *a: jnp.stack(a), kdpp_eigen(L), kdpp_eigen(L + jnp.eye(K)))
    nested = jax.vmap(sample_many, in_axes=(None, 0, None))(keys[:3], two, k)
    assert nested.shape == (2, 3, k)
    np.testing.assert_array_equal(nested[0], batched[:3])
    assert np.all(np.diff(nested[1], axis=1) > 0)


def test_sampler_static_errors(rng, key, no_typecheck):  # a wrong shape: the library's ValueError
    L = jnp.asarray(kernel(rng, 4))
    with pytest.raises(ValueError, match="`k`"):
        sample_kdpp(key, L, 5)
    with pytest.raises(ValueError, match="`k`"):
        sample_kdpp(key, L, 0)
    with pytest.raises(ValueError, match="`L`"):
        sample_kdpp(key, jnp.ones((3, 4)), 2)


def test_uniform_subset(key):
    K, k, n = 5, 2, 10_000
    draw = jax.vmap(sample_uniform_subset, in_axes=(0, None, None))
    samples = np.asarray(draw(jax.random.split(key, n), K, k))
    assert np.all(np.diff(samples, axis=1) > 0)
    subsets = list(itertools.combinations(range(K), k))
    assert scipy.stats.chisquare(subset_counts(samples, subsets)).pvalue > 1e-3
    p1, p2 = uniform_marginals(K, k)
    e1, e2 = brute_marginals(subsets, np.full(len(subsets), 1 / len(subsets)), K)
    np.testing.assert_allclose(p1, e1, rtol=1e-14)
    np.testing.assert_allclose(p2, e2, rtol=1e-14)


def test_uniform_subset_mask_is_the_same_subset_for_every_k(key):
    """The mask sampler draws exactly `sample_uniform_subset`'s subset for the same key, at every `k`, also
    with `k` traced (one compiled program for every size); `k` outside `0..K` is refused."""
    K, n = 5, 2000
    keys = jax.random.split(key, n)
    by_mask = jax.jit(jax.vmap(sample_uniform_subset_mask, in_axes=(0, None, None)), static_argnums=1)
    for k in range(K + 1):
        masks = np.asarray(by_mask(keys, K, k))
        idx = np.asarray(jax.vmap(sample_uniform_subset, in_axes=(0, None, None))(keys, K, k))
        expected = np.zeros((n, K), bool)
        expected[np.arange(n)[:, None], idx] = True
        np.testing.assert_array_equal(masks, expected)
    assert by_mask._cache_size() == 1
    with pytest.raises(ValueError, match="`k`"):
        sample_uniform_subset_mask(key, K, K + 1)


# --------------------------------------------------------------------------------------------------
# Inclusion probabilities
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(1, 8))
def test_marginals_match_enumeration(rng, k):
    K = 7
    L = kernel(rng, K)
    subsets, probs = brute_kdpp(L, k)
    e1, e2 = brute_marginals(subsets, probs, K)
    p1, p2 = kdpp_marginals(jnp.asarray(L), k)
    np.testing.assert_allclose(p1, e1, atol=1e-12)
    np.testing.assert_allclose(p2, e2, atol=1e-12)
    np.testing.assert_allclose(jnp.sum(p1), k, rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(p2, axis=1), k * p1, atol=1e-12)
    np.testing.assert_array_equal(p2, p2.T)


@pytest.mark.parametrize("k", [2, 5])
def test_marginals_wide_and_degenerate_spectra(rng, k):
    # Eigenvalues over 16 decades, repeated values and zeros (rank 5 >= k): compared with the
    # Cauchy-Binet mixture, which is accurate where determinants of L_S are not.
    lam = np.array([1e8, 1e8, 3.0, 1e-4, 1e-8, 0.0, 0.0])
    L = spectrum_kernel(rng, lam)
    q = np.linalg.eigh(L)[1]
    eig = KDPPEigen(eigenvalues=jnp.asarray(np.sort(lam)), eigenvectors=jnp.asarray(q))
    subsets, probs = cauchy_binet_kdpp(np.sort(lam), q, k)
    e1, e2 = brute_marginals(subsets, probs, lam.size)
    p1, p2 = kdpp_marginals(eig, k)
    np.testing.assert_allclose(p1, e1, atol=1e-12)
    np.testing.assert_allclose(p2, e2, atol=1e-12)


def large_kernel():
    K, k, jitter = 300, 150, 1e-2
    rng = np.random.default_rng(3)
    L = kernel(rng, K, rank=20) * 10  # rank 20 < k: a valid k-DPP only thanks to the jitter
    return L, k, jitter


def test_marginals_large_kernel():
    L, k, jitter = large_kernel()
    K = L.shape[0]
    p1, p2 = kdpp_marginals(kdpp_eigen(jnp.asarray(L), jitter=jitter), k)
    p1, p2 = np.asarray(p1), np.asarray(p2)
    assert np.all(np.isfinite(p1)) and np.all(np.isfinite(p2))
    assert np.all((p1 >= 0) & (p1 <= 1)) and np.all((p2 >= 0) & (p2 <= 1))
    np.testing.assert_allclose(p1.sum(), k, rtol=1e-11)
    np.testing.assert_allclose(p2.sum(axis=1), k * p1, atol=1e-9)
    np.testing.assert_allclose(np.diag(p2), p1)

    # Deletion identity: P(none of D in S) = e_k(L without the rows/columns D) / e_k(L).
    Lj = L + jitter * np.eye(K)
    with threadpool_limits(1):  # a threaded BLAS only spins on a busy 2-core machine
        log_ek = np_log_esp(np.linalg.eigvalsh(Lj), k)[k]

        def p_excluded(drop):
            keep = np.setdiff1d(np.arange(K), drop)
            return np.exp(np_log_esp(np.linalg.eigvalsh(Lj[np.ix_(keep, keep)]), k)[k] - log_ek)

        for i, j in [(0, 1), (17, 250), (123, 124)]:
            np.testing.assert_allclose(p1[i], 1 - p_excluded([i]), atol=1e-10)
            np.testing.assert_allclose(p2[i, j], p1[i] + p1[j] - 1 + p_excluded([i, j]), atol=1e-10)


@pytest.mark.slow
def test_marginals_large_kernel_monte_carlo(key):
    L, k, jitter = large_kernel()
    K = L.shape[0]
    eig = kdpp_eigen(jnp.asarray(L), jitter=jitter)
    p1, p2 = (np.asarray(p) for p in kdpp_marginals(eig, k))
    n = 2000
    masks = to_masks(sample_many(jax.random.split(key, n), eig, k), K)
    idx = np.array([0, 5, 17, 123, 299])
    f1 = masks[:, idx].mean(axis=0)
    f2 = masks[:, idx].T @ masks[:, idx] / n
    e2 = p2[np.ix_(idx, idx)]
    np.testing.assert_array_less(np.abs(f1 - p1[idx]), 5 * np.sqrt(p1[idx] * (1 - p1[idx]) / n) + 1e-9)
    np.testing.assert_array_less(np.abs(f2 - e2), 5 * np.sqrt(e2 * (1 - e2) / n) + 1e-9)


def test_marginals_float32_dtype(rng):
    L = jnp.asarray(kernel(rng, 7), dtype=jnp.float32)
    p1, p2 = kdpp_marginals(L, 3)
    assert p1.dtype == jnp.float32 and p2.dtype == jnp.float32
    e1, _ = brute_marginals(*brute_kdpp(np.asarray(L, dtype=np.float64), 3), 7)
    np.testing.assert_allclose(p1, e1, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 7),
    perm=st.permutations(range(7)),
)
def test_marginals_permutation_equivariant(seed, k, perm):
    L = kernel(np.random.default_rng(seed), 7)
    perm = np.asarray(perm)
    p1, p2 = kdpp_marginals(jnp.asarray(L), k)
    q1, q2 = kdpp_marginals(jnp.asarray(L[np.ix_(perm, perm)]), k)
    np.testing.assert_allclose(q1, np.asarray(p1)[perm], atol=1e-11)
    np.testing.assert_allclose(q2, np.asarray(p2)[np.ix_(perm, perm)], atol=1e-11)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def test_rank_deficient_kernel_needs_jitter(rng):
    K, k = 7, 5
    L = kernel(rng, K, rank=3)
    with pytest.raises(ValueError, match="jitter") as info:
        check_kdpp_kernel(L, k)
    assert "rank r = 3 < k = 5" in str(info.value) and "does not exist" in str(info.value)
    check_kdpp_kernel(L, 3)  # rank 3 is enough for k = 3
    jitter = 1e-3
    check_kdpp_kernel(L, k, jitter=jitter)
    p1, p2 = kdpp_marginals(kdpp_eigen(jnp.asarray(L), jitter=jitter), k)
    e1, e2 = brute_marginals(*brute_kdpp(L + jitter * np.eye(K), k), K)
    np.testing.assert_allclose(p1, e1, atol=1e-10)
    np.testing.assert_allclose(p2, e2, atol=1e-10)


@pytest.mark.parametrize(
    ("L", "k", "kwargs", "match"),
    [
        (np.ones((3, 4)), 2, {}, "square"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), 1, {}, "symmetric"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), 1, {}, "finite"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), 1, {}, "positive semidefinite"),
        (np.eye(3), 0, {}, "`k`"),
        (np.eye(3), 4, {}, "`k`"),
        (np.eye(3), 2.0, {}, "`k`"),
        (np.eye(3), 2, {"jitter": -1.0}, "jitter"),
    ],
)
def test_check_kernel_errors(L, k, kwargs, match, no_typecheck):  # k = 2.0: the library's ValueError
    with pytest.raises(ValueError, match=match):
        check_kdpp_kernel(L, k, **kwargs)


def test_check_kernel_accepts_valid(rng):
    check_kdpp_kernel(kernel(rng, 5), 5)
    check_kdpp_kernel(jnp.asarray(kernel(rng, 5)), 3)
