"""Unit masks designed by gradient and exact subset errors (jaxprune.design, docs/theory.md 6.1 and 7)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from _design_helpers import fd_check, network


def _reference_v(st, mask, rule):
    """The reweighting rules of docs/theory.md 6.1 with NumPy solves on the kept block."""
    K = st.K
    A_full = np.asarray(jp.activation_covariance(st, jp.Erf()))
    A, B = A_full[:K, :K], A_full[:K, K:]
    S, Sc = np.flatnonzero(mask), np.flatnonzero(~mask)
    v = np.asarray(st.v)
    out = np.zeros(K)
    if rule == "none":
        out[S] = v[S]
    elif rule == "optimal":
        out[S] = np.linalg.solve(A[np.ix_(S, S)], B[S] @ np.asarray(st.v_star))
    else:
        G = np.asarray(st.Q) if rule == "preactivation" else A
        out[S] = v[S] + np.linalg.solve(G[np.ix_(S, S)], G[np.ix_(S, Sc)] @ v[Sc])
    return out


def test_node_subset_errors_match_numpy_reweighting(rng):
    w, ws, v, vs = network(rng, K=4, N=100)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    masks = jp.pruning.enumerate_subsets(4, 2)
    for rw in ("none", "preactivation", "activation", "optimal"):
        mine = jp.design.node_subset_errors(st, masks, reweight=rw)
        ref = [float(jp.generalisation_error(eqx.tree_at(lambda s: s.v, st, jnp.asarray(_reference_v(st, m, rw)))))
               for m in masks]
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-12)


def test_node_subset_errors_gradient_in_the_state(rng):
    """The reweighting is the pruning layer's (pivot-skipping solve): derivatives through it are finite and
    agree with finite differences (here in a scale of the teacher overlaps `R`)."""
    w, ws, v, vs = network(rng, K=4, N=100)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    masks = jnp.asarray(jp.pruning.enumerate_subsets(4, 2))
    for rw in ("preactivation", "activation", "optimal"):
        f = lambda t, rw=rw: jnp.sum(jp.design.node_subset_errors(  # noqa: E731
            eqx.tree_at(lambda s: s.R, st, t * st.R), masks, reweight=rw))
        fd_check(f, jnp.asarray(1.1), idx=[0], eps=1e-6, rtol=1e-5)


def test_gradient_node_relaxed_error(rng):
    from jaxprune.design._node import _relaxed_node_v

    w, ws, v, vs = network(rng, K=5, N=100)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    m = jnp.asarray([0.9, 0.3, 0.6, 0.2, 0.5])
    for rw in ("none", "optimal"):
        f = lambda m, rw=rw: jp.generalisation_error(  # noqa: E731
            eqx.tree_at(lambda s: s.v, st, _relaxed_node_v(st, m, rw, 1.0, jp.Erf())))
        fd_check(f, m, idx=range(5), rtol=1e-5)


def test_node_subset_table_matches_every_rule(rng):
    w, ws, v, vs = network(rng, K=6, N=100)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    masks = jp.pruning.enumerate_subsets(6, 3)  # 20 rows: two chunks, the second padded
    errs, vps = jp.design.node_subset_table(st, masks)
    assert errs.shape == (4, 20) and vps.shape == (4, 20, 6)
    errs, vps = np.asarray(errs), np.asarray(vps)
    for j, rw in enumerate(jp.pruning.NODE_REWEIGHTS):
        np.testing.assert_allclose(errs[j], jp.design.node_subset_errors(st, masks, reweight=rw), rtol=1e-12)
        assert np.all(vps[j][~masks] == 0)
        # the second layer is the one the pruning layer's reweighting rule gives (its error, recomputed)
        i = 7
        ref_v = jp.pruning.reweighted_output_weights(st, jnp.asarray(masks[i]), reweight=rw)[0]
        np.testing.assert_allclose(vps[j, i], ref_v, rtol=1e-10, atol=1e-14)
        ref_e = jp.generalisation_error(jp.Overlaps(Q=st.Q, R=st.R, T=st.T, v=jnp.asarray(vps[j, i]), v_star=st.v_star))
        assert errs[j, i] == pytest.approx(float(ref_e), rel=1e-12)
    with pytest.raises(ValueError, match="masks must have shape"):
        jp.design.node_subset_table(st, masks[:, :5])


def test_blocked_node_subset_errors_match_one_batch(rng, monkeypatch):
    """Beyond `_NODE_EVAL_BATCH` rows the subsets run in sequential padded blocks: same numbers, same order."""
    from jaxprune.design import _node as N

    w, ws, v, vs = network(rng, K=5, N=70)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    masks = jnp.asarray(jp.pruning.enumerate_subsets(5, 2))  # 10 rows
    ref_e, ref_v = N._node_eval_traced(st, masks, "optimal", jp.Erf())  # one vmap (10 <= 4096)
    monkeypatch.setattr(N, "_NODE_EVAL_BATCH", 4)  # 3 blocks of 4, the last padded with 2 copies
    got_e, got_v = jax.jit(lambda s, m: N._node_eval_traced(s, m, "optimal", jp.Erf()))(st, masks)
    assert got_e.shape == (10,) and got_v.shape == (10, 5)
    np.testing.assert_allclose(got_e, ref_e, rtol=1e-12)
    np.testing.assert_allclose(got_v, ref_v, rtol=1e-12, atol=1e-15)
    assert len(set(np.round(np.asarray(got_e), 12))) > 1  # distinct subsets, not one row repeated


@pytest.mark.slow  # > 20 s on the shared 2-core machine
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_node_design_reaches_brute_force(seed):
    rng = np.random.default_rng(seed)
    w, ws, v, vs = network(rng, K=6, N=150)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    for k in (2, 3):
        masks = jp.pruning.enumerate_subsets(6, k)
        ref = [float(jp.generalisation_error(eqx.tree_at(lambda s: s.v, st, jnp.asarray(_reference_v(st, m, "optimal")))))
               for m in masks]
        d = jp.design.design_node_mask(st, k, steps=200, key=jax.random.key(seed))
        assert int(jnp.sum(d.mask)) == k
        assert float(d.error) == pytest.approx(min(ref), rel=1e-9)


def test_reweight_objects_are_the_strings(rng):
    w, ws, v, vs = network(rng, K=4, N=60)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    masks = jp.pruning.enumerate_subsets(4, 2)
    for obj, name in ((jp.pruning.OptimalReweight(), "optimal"), (jp.pruning.ActivationReweight(), "activation")):
        np.testing.assert_array_equal(jp.design.node_subset_errors(st, masks, reweight=obj),
                                      jp.design.node_subset_errors(st, masks, reweight=name))
    with pytest.raises(ValueError, match="reweight"):
        jp.design.design_node_mask(st, 2, reweight=jp.pruning.ActivationReweight())
    with pytest.raises(ValueError, match="reweight"):
        jp.design.node_subset_errors(st, masks, reweight="bogus")
