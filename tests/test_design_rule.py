"""Population-level keep rules (jaxprune.design, docs/theory.md 6.2 and 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from _design_helpers import fd_check, network

EdgeRule = jp.design.EdgeRule
edge_rule_moments = jp.design.edge_rule_moments
sample_edge_rule_mask = jp.design.sample_edge_rule_mask
masked_network_overlaps = jp.design.masked_network_overlaps
overlaps_from_weights = jp.overlaps_from_weights
generalisation_error = jp.generalisation_error
Overlaps = jp.Overlaps


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_gradient_edge_rule_with_budget_shift(rng):
    w, ws, v, vs = network(rng, K=3, N=100)
    st = overlaps_from_weights(w, ws, v, vs)
    base = EdgeRule(a=jnp.asarray([0.1, -0.2, 0.3]), log_slope=jnp.log(jnp.asarray([0.7, 1.5, 3.0])),
                    log_scale=jnp.asarray([0.05, -0.1, 0.0]))
    for alloc in ("uniform", "free"):
        def f(x):
            r = EdgeRule(a=x[:3], log_slope=x[3:6], log_scale=x[6:])
            return generalisation_error(Overlaps(*edge_rule_moments(st, r, 0.4, allocation=alloc)[:2],
                                                 st.T, st.v, st.v_star))

        x = jnp.concatenate([base.a, base.log_slope, base.log_scale])
        fd_check(f, x, idx=range(9), eps=1e-5, rtol=1e-4, atol=1e-9)


def test_edge_rule_moments_special_cases(rng):
    dpp_moments, magnitude_moments = jp.pruning.dpp_moments, jp.pruning.magnitude_moments

    w, ws, v, vs = network(rng, K=3, N=100)
    st = overlaps_from_weights(w, ws, v, vs)
    p = 0.4
    # slope 0: random pruning, Q'_ii = p Q_ii, Q'_ik = p^2 Q_ik, R' = p R
    r0 = EdgeRule(a=jnp.zeros(3), log_slope=jnp.full(3, -40.0), log_scale=jnp.zeros(3))
    Qp, Rp, kap = edge_rule_moments(st, r0, p)
    np.testing.assert_allclose(kap, p, atol=1e-9)
    np.testing.assert_allclose(jnp.diag(Qp), p * jnp.diag(st.Q), rtol=1e-6)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(np.asarray(Qp)[off], p * p * np.asarray(st.Q)[off], rtol=1e-4)
    np.testing.assert_allclose(Rp, p * st.R, rtol=1e-6)
    # slope 1: the large-N DPP edge rule of _edge.py
    r1 = EdgeRule(a=jnp.zeros(3), log_slope=jnp.zeros(3), log_scale=jnp.zeros(3))
    Qp, Rp, _ = edge_rule_moments(st, r1, p)
    ref = dpp_moments(st, p)
    np.testing.assert_allclose(Qp, ref.Q, rtol=2e-3, atol=1e-4)
    # the steepest slope is close to magnitude pruning
    r2 = EdgeRule(a=jnp.zeros(3), log_slope=jnp.full(3, 5.0), log_scale=jnp.zeros(3))
    Qp, Rp, _ = edge_rule_moments(st, r2, p)
    ref = magnitude_moments(st, p)
    np.testing.assert_allclose(Qp, ref.Q, rtol=2e-2, atol=2e-3)


def test_edge_rule_moments_against_sampled_masks(rng):
    """Gaussian-equivalent moments against concrete masks on a wide network (N = 40000)."""
    w, ws, v, vs = network(rng, K=3, N=40000)
    st = overlaps_from_weights(w, ws, v, vs)
    rule = EdgeRule(a=jnp.zeros(3), log_slope=jnp.log(jnp.asarray([0.5, 2.0, 6.0])), log_scale=jnp.zeros(3))
    Qp, Rp, _ = edge_rule_moments(st, rule, 0.5)
    # both the independent Bernoulli draw and the exact-budget draw (top-k of logit + logistic noise) have the
    # rule's marginals; a Gumbel-top-k (successive sampling) draw was off by ~0.12 on Q'_00 here
    for exact in (True, False):
        mask = sample_edge_rule_mask(jax.random.key(3), w, rule, 0.5, exact_budget=exact)
        if exact:
            np.testing.assert_array_equal(jnp.sum(mask, axis=1), 20000)
        emp = masked_network_overlaps(w, ws, v, vs, mask.astype(float))
        np.testing.assert_allclose(emp.Q, Qp, atol=0.03)
        np.testing.assert_allclose(emp.R, Rp, atol=0.03)


def test_sample_edge_rule_mask_batch_of_keys_is_each_key_alone(rng):
    w, ws, v, vs = network(rng, K=3, N=50)
    rule = EdgeRule(a=jnp.asarray([0.0, 0.5, -0.5]), log_slope=jnp.log(jnp.asarray([0.5, 2.0, 6.0])),
                    log_scale=jnp.zeros(3))
    keys = jax.random.split(jax.random.key(4), 3)
    for alloc in ("uniform", "free"):
        batch = sample_edge_rule_mask(keys, w, rule, 0.4, allocation=alloc)
        assert batch.shape == (3, 3, 50)
        for d in range(3):
            np.testing.assert_array_equal(batch[d], sample_edge_rule_mask(keys[d], w, rule, 0.4, allocation=alloc))
        if alloc == "uniform":
            np.testing.assert_array_equal(jnp.sum(batch, axis=2), 20)
        else:
            np.testing.assert_array_equal(jnp.sum(batch, axis=(1, 2)), 60)
    legacy = jax.random.PRNGKey(2)  # a legacy uint32 key, alone and as a batch
    one = sample_edge_rule_mask(legacy, w, rule, 0.4)
    assert one.shape == (3, 50)
    np.testing.assert_array_equal(sample_edge_rule_mask(jnp.stack([legacy, legacy]), w, rule, 0.4)[1], one)


def test_conditional_kernels_fit_up_to_twenty_units():
    assert jp.design.conditional_kernels_fit(20) and not jp.design.conditional_kernels_fit(21)
    assert jp.design.conditional_kernels_fit(1)


def _reference_rule_moments(st, rule, tau):
    """The keep rule's moments from the definitions, unbatched and unsymmetrised: the conditional density of
    `z_2 | z_1` row-normalised on the grid, `(i, k)` and `(k, i)` quadratures averaged."""
    from jaxprune.design._rule import _GRID_W, _GRID_Z

    z, wz = np.asarray(_GRID_Z), np.asarray(_GRID_W)
    Q = np.asarray(st.Q)
    K = Q.shape[0]
    d = np.sqrt(np.diag(Q))
    p = np.asarray(rule.keep_prob(jnp.asarray(z), tau))
    f = p * z[None]
    m2 = (p * z * z) @ wz
    cross = np.zeros((K, K))
    for i in range(K):
        for k in range(K):
            rho = np.clip(Q[i, k] / (d[i] * d[k]), -1, 1)
            sq = max(np.sqrt(max(1 - rho * rho, 0.0)), 1e-3)
            dens = np.exp(-0.5 * ((z[None, :] - rho * z[:, None]) / sq) ** 2)
            dens /= dens.sum(axis=1, keepdims=True)
            cross[i, k] = (wz * f[i]) @ dens @ f[k]
    c = np.exp(np.asarray(rule.log_scale))
    Qp = np.outer(d, d) * 0.5 * (cross + cross.T)
    Qp[np.diag_indices(K)] = d * d * m2
    return np.outer(c, c) * Qp, (c * m2)[:, None] * np.asarray(st.R)


def test_edge_rule_pair_kernels_match_definition(rng):
    """Precomputed pair kernels and the chunked on-the-fly path give the definition's moments and the same
    gradients (the kernels carry no gradient: a function of the state only)."""
    from jaxprune.design._rule import _solve_shift, conditional_kernels

    w, ws, v, vs = network(rng, K=4, N=100)
    st = overlaps_from_weights(w, ws, v, vs)
    rule = EdgeRule(a=jnp.asarray([0.1, -0.2, 0.3, 0.0]), log_slope=jnp.log(jnp.asarray([0.7, 1.5, 3.0, 1.0])),
                    log_scale=jnp.asarray([0.05, -0.1, 0.0, 0.2]))
    kern = conditional_kernels(st)
    assert kern.shape == (6, 400, 400)
    np.testing.assert_allclose(kern, jnp.swapaxes(kern, 1, 2), rtol=1e-14, atol=0)  # symmetric
    for alloc in ("uniform", "free"):
        tau = _solve_shift(rule, 0.4, alloc == "free")
        Qr, Rr = _reference_rule_moments(st, rule, tau)
        for k in (None, kern):
            Qp, Rp, _ = edge_rule_moments(st, rule, 0.4, allocation=alloc, kernels=k)
            np.testing.assert_allclose(Qp, Qr, rtol=1e-11, atol=1e-13)
            np.testing.assert_allclose(Rp, Rr, rtol=1e-11, atol=1e-13)
        loss = lambda r, k: jnp.sum(jnp.sin(edge_rule_moments(st, r, 0.4, allocation=alloc, kernels=k)[0]))  # noqa: E731
        g1, g2 = jax.grad(loss)(rule, None), jax.grad(loss)(rule, kern)
        for x, y in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-13)


def test_design_step_compiled_once_across_budgets_and_allocations(rng, monkeypatch):
    """Both allocations and two budgets of the keep-rule design share one traced step (the options that vary
    are arrays), and so do the two subset-distribution families."""
    from jaxprune.design import _rule as D
    from jaxprune.design import _subsets as DS

    w, ws, v, vs = network(rng, K=3, N=50)
    st = overlaps_from_weights(w, ws, v, vs)
    traces = {"rule": 0, "subset": 0}
    rule_call, subset_call = D._RuleLoss.__call__, DS._SubsetLoss.__call__

    def counted(name, fn):
        def call(self, p, hyp):
            traces[name] += 1
            return fn(self, p, hyp)
        return call

    monkeypatch.setattr(D._RuleLoss, "__call__", counted("rule", rule_call))
    monkeypatch.setattr(DS._SubsetLoss, "__call__", counted("subset", subset_call))
    for keep, alloc in ((0.5, "uniform"), (0.3, "free")):
        jp.design.design_edge_rule(st, keep, allocation=alloc, steps=3, learning_rate=0.0123)
    for fam in ("kdpp", "bernoulli"):
        jp.design.design_subset_distribution(st, 2, family=fam, steps=3, learning_rate=0.0123)
    assert traces == {"rule": 1, "subset": 1}


def test_allocation_objects_are_the_strings(rng):
    w, ws, v, vs = network(rng, K=3, N=50)
    st = overlaps_from_weights(w, ws, v, vs)
    rule = EdgeRule(a=jnp.asarray([0.1, -0.2, 0.3]), log_slope=jnp.zeros(3), log_scale=jnp.zeros(3))
    for obj, name in ((jp.design.UniformAllocation(), "uniform"), (jp.design.FreeAllocation(), "free")):
        for x, y in zip(edge_rule_moments(st, rule, 0.4, allocation=obj),
                        edge_rule_moments(st, rule, 0.4, allocation=name)):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="allocation"):
        edge_rule_moments(st, rule, 0.4, allocation="bogus")
