"""Subset distributions designed by enumeration (jaxprune.design, docs/theory.md 6.1 and 7)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from _design_helpers import fd_check, network


def test_gradient_subset_distribution(rng):
    K, k = 5, 2
    masks = jnp.asarray(jp.pruning.enumerate_subsets(K, k))
    errs = jnp.asarray(rng.random(masks.shape[0]))
    base = jnp.asarray(rng.normal(size=masks.shape[0]))
    f = lambda th: jnp.exp(jp.design.subset_log_probs(th, masks, base)) @ errs  # noqa: E731
    fd_check(f, jnp.asarray(rng.normal(size=K)), idx=range(K))


def test_kdpp_family_probabilities_are_quality_weighted_determinants(rng):
    """At the designed `theta`, the reported probabilities are `det(L_S) / sum_T det(L_T)` with
    `L = diag(q) Q diag(q)`, `q = exp(theta)`: brute-force determinants in NumPy."""
    w, ws, v, vs = network(rng, K=5, N=100)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    d = jp.design.design_subset_distribution(st, 2, family=jp.design.KDPPFamily("Q"), steps=5)
    q = np.exp(np.asarray(d.theta))
    L = q[:, None] * np.asarray(st.Q) * q[None, :]
    dets = np.asarray([np.linalg.det(L[np.ix_(S, S)]) for S in itertools.combinations(range(5), 2)])
    np.testing.assert_allclose(d.probs, dets / dets.sum(), rtol=1e-9)
    # the string form is the same family
    e = jp.design.design_subset_distribution(st, 2, family="kdpp", kernel="Q", steps=5)
    np.testing.assert_allclose(e.probs, d.probs, rtol=1e-14)


def test_subset_distribution_reaches_brute_force(rng):
    w, ws, v, vs = network(rng, K=6, N=150)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    for fam in (jp.design.KDPPFamily(), jp.design.BernoulliFamily()):
        d = jp.design.design_subset_distribution(st, 3, family=fam, steps=300, learning_rate=0.2)
        assert float(d.mode_error) == pytest.approx(float(d.best_error), rel=1e-12)
        assert float(d.expected_error) < float(d.best_error) * 1.01
        # and it beats every baseline distribution (random, importance, DPP), exactly
        for method in ("random", "importance", "dpp"):
            base = jp.pruning.expected_node_error(st, 3, method=method, reweight="optimal").mean
            assert float(d.expected_error) <= float(base) + 1e-12
