"""Unit subsets designed through training (jaxprune.design, docs/theory.md 4, 6.1 and 7)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from _design_helpers import fd_check


def _trained_state(K=4, M=2, alpha=30.0):
    cfg = jp.SGDConfig(eta=0.5, eta_v=0.5, mode="two-layer")
    s0 = jp.Overlaps.reference(K, M, v_star=2.0, v=1.0)
    return jp.solve_ode(s0, cfg, np.array([0.0, alpha]), rtol=1e-6, atol=1e-9).final, cfg


@pytest.mark.slow  # compiles reverse mode through diffrax's checkpointed loop: minutes on the shared machine
def test_forward_and_reverse_mode_give_the_same_design_gradient():
    """The design step's gradient (forward mode behind a custom VJP, or reverse mode through diffrax's
    checkpointed loop) is one derivative of one discrete solve: both agree to rounding, and with finite
    differences; the default picks forward mode at small K and reverse mode above `FORWARD_MODE_MAX_K`."""
    from jaxprune.design._loop import _adam, _design_step
    from jaxprune.design._training import _MODE_NONE, _MODE_RELAXED, _default_adjoint, _training_problem

    st, cfg = _trained_state(K=3, alpha=10.0)
    m = jnp.asarray([[0.9, 0.4, 0.7], [0.5, 0.8, 0.7]])
    hyp = {"penalty": jnp.asarray(0.0), "binarise": jnp.asarray(0.0)}
    grads = {}
    for name, adj in (("forward", diffrax.ForwardMode()), ("reverse", diffrax.RecursiveCheckpointAdjoint())):
        prob = _training_problem(st, cfg, 2, 2.0, rows=2, rho=1.0, rtol=1e-9, atol=1e-12, adjoint=adj)
        prob = eqx.tree_at(lambda p: p.modes, prob, jnp.asarray([_MODE_RELAXED, _MODE_NONE]))
        grads[name] = jax.jit(jax.grad(lambda p, prob=prob: jnp.sum(prob(p, hyp)[0])))(m)
        # the compiled design step runs with this adjoint too
        new = _design_step(prob, _adam(0.05), prob.project, m, _adam(0.05).init(m), hyp)[0]
        np.testing.assert_allclose(jnp.sum(new, axis=1), 2.0, atol=1e-9)
    np.testing.assert_allclose(grads["forward"], grads["reverse"], rtol=1e-8, atol=1e-12)
    f = jax.jit(lambda x: jnp.sum(prob(x.reshape(2, 3), hyp)[0]))
    fd = [(f(m.reshape(-1).at[i].add(1e-5)) - f(m.reshape(-1).at[i].add(-1e-5))) / 2e-5 for i in range(6)]
    np.testing.assert_allclose(grads["reverse"].reshape(-1), fd, rtol=1e-4)
    assert isinstance(_default_adjoint(jp.design.FORWARD_MODE_MAX_K), diffrax.ForwardMode)
    assert isinstance(_default_adjoint(jp.design.FORWARD_MODE_MAX_K + 1), diffrax.RecursiveCheckpointAdjoint)
    with pytest.raises(ValueError, match="adjoint"):
        jp.design.design_through_training(st, cfg, 2, 1.0, adjoint="forward")


@pytest.mark.slow
def test_through_training_gradient_and_brute_force():
    from jaxprune.design._node import _relaxed_node_v
    from jaxprune.design._training import _MODE_NONE, _MODE_RELAXED, _training_problem

    K = 4
    st, cfg = _trained_state(K)
    m0 = jnp.asarray([0.9, 0.4, 0.6, 0.3])

    def start(m):
        return jp.Overlaps(Q=st.Q, R=st.R, T=st.T, v=_relaxed_node_v(st, m, "optimal", 1.0, cfg.activation),
                           v_star=st.v_star)

    # reverse mode through diffrax's checkpointed loop (retrain_pruned's default adjoint)
    f = jax.jit(lambda m: jp.generalisation_error(
        jp.design.retrain_pruned(start(m), m, cfg, 5.0, rtol=1e-9, atol=1e-12)))
    fd_check(f, m0, idx=range(4), eps=1e-5, rtol=1e-4)
    # the design's own loss: forward-mode derivatives (one tangent per unit) behind a custom VJP, both prune-time
    # reweightings; tight tolerances so that finite differences see the smooth ODE solution
    prob = _training_problem(st, cfg, 2, 5.0, rows=1, rho=1.0, rtol=1e-9, atol=1e-12)
    hyp = {"penalty": jnp.asarray(0.0), "binarise": jnp.asarray(0.0)}
    for mode in (_MODE_RELAXED, _MODE_NONE):
        g = jax.jit(lambda m, mode=mode: prob.one(m, jnp.asarray(mode), hyp)[1][0])
        fd_check(g, m0, idx=range(4), eps=1e-5, rtol=1e-4)
    # and it is the public retrain_pruned error of the same relaxed start
    np.testing.assert_allclose(jax.jit(lambda m: prob.one(m, jnp.asarray(_MODE_RELAXED), hyp)[1][0])(m0), f(m0),
                               rtol=1e-10)
    # exact evaluation through the compiled design step (retrain_subsets) == the independent forward program,
    # every subset (6 rows in batches of 4: the last call padded)
    masks = np.asarray(jp.pruning.enumerate_subsets(K, 2))
    refs = {}
    for rw in ("none", "optimal"):
        ref = refs[rw] = np.asarray(jp.design.training_subset_errors(st, cfg, jnp.asarray(masks), 5.0, reweight=rw))
        got, final = jp.design.retrain_subsets(st, cfg, masks, 5.0, reweight=rw, batch=4)
        np.testing.assert_allclose(got, ref, rtol=1e-9)
        assert final.Q.shape == (masks.shape[0], K, K)
    # one reweighting per row; the all-True row is the unpruned student trained on (a plain ODE solve)
    rows = np.concatenate([np.ones((1, K), bool), masks[:2]])
    got, final = jp.design.retrain_subsets(st, cfg, rows, 5.0, reweight=["none", "none", "optimal"], batch=4)
    trained = jp.solve_ode(st, cfg, np.array([0.0, 5.0]), rtol=1e-9, atol=1e-12).final
    np.testing.assert_allclose(final.Q[0], trained.Q, rtol=1e-4, atol=1e-6)
    assert float(got[0]) == pytest.approx(float(jp.generalisation_error(trained)), rel=1e-4)
    np.testing.assert_allclose(got[1:], [refs["none"][0], refs["optimal"][1]], rtol=1e-9)
    with pytest.raises(ValueError, match="reweight"):
        jp.design.retrain_subsets(st, cfg, rows, 5.0, reweight=["none"])
    best = float(np.min(np.asarray(jp.design.training_subset_errors(st, cfg, jnp.asarray(masks), 5.0))))
    d = jp.design.design_through_training(st, cfg, 2, 5.0, steps=40, restarts=2)
    assert float(d.error) == pytest.approx(best, rel=1e-6)


@pytest.mark.slow
def test_through_training_best_reweighting_reaches_brute_force():
    from jaxprune.design._node import _node_mask_init

    design_through_training, training_subset_errors = jp.design.design_through_training, jp.design.training_subset_errors
    K = 4
    st, cfg = _trained_state(K)
    masks = np.asarray(jp.pruning.enumerate_subsets(K, 2))
    table = {rw: np.asarray(training_subset_errors(st, cfg, jnp.asarray(masks), 3.0, reweight=rw))
             for rw in ("none", "optimal")}
    calls = []

    def lookup(ms, rw):
        calls.append(rw)
        return np.asarray([table[rw][np.flatnonzero(np.all(masks == np.asarray(m), axis=1))[0]] for m in ms])

    d = design_through_training(st, cfg, 2, 3.0, reweight="best", steps=20, restarts=2, exact_errors=lookup)
    best = min(table["none"].min(), table["optimal"].min())
    assert float(d.error) == pytest.approx(best, rel=1e-12)
    assert d.reweight in ("none", "optimal") and set(calls) == {"none", "optimal"}
    assert float(table[d.reweight][np.flatnonzero(np.all(masks == np.asarray(d.mask), axis=1))[0]]) == \
        pytest.approx(float(d.error), rel=1e-12)
    assert 0 < d.evaluations <= 2 * masks.shape[0]
    # without polish the result is the best candidate: never worse than the restarts' starting subsets, and a
    # given candidate that is the best subset of an arbitrary error table wins outright
    fake = {rw: np.random.default_rng(3).random(masks.shape[0]) + j for j, rw in enumerate(("none", "optimal"))}

    def lookup_fake(ms, rw):
        return np.asarray([fake[rw][np.flatnonzero(np.all(masks == np.asarray(m), axis=1))[0]] for m in ms])

    i_best = int(np.argmin(fake["none"]))
    e = design_through_training(st, cfg, 2, 3.0, reweight="best", steps=2, restarts=2, polish=False,
                                exact_errors=lookup_fake, candidates=masks[i_best][None])
    assert float(e.error) == pytest.approx(float(fake["none"].min()), rel=1e-15)
    assert e.reweight == "none" and np.array_equal(np.asarray(e.mask), masks[i_best])
    e2 = design_through_training(st, cfg, 2, 3.0, reweight="best", steps=2, restarts=2, polish=False,
                                 exact_errors=lookup_fake)
    starts = np.asarray(_node_mask_init(st, jax.random.key(0), jnp.asarray(2.0), restarts=2, logit=False))
    start_err = min(float(lookup_fake([np.isin(np.arange(K), np.argsort(-s, kind="stable")[:2])], "none")[0])
                    for s in starts)
    assert float(e2.error) <= start_err
