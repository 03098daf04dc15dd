"""The design layer's optimiser loop, budgets and projection (jaxprune.design, docs/theory.md section 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune as jp
from _design_helpers import network


def test_projection_capped_simplex(rng):
    y = jnp.asarray(rng.normal(size=(7, 11)))
    for total in (1.0, 20.0, 76.0):
        m = jp.design.project_capped_simplex(y, total)
        assert float(jnp.sum(m)) == pytest.approx(total, abs=1e-9)
        assert float(jnp.min(m)) >= 0 and float(jnp.max(m)) <= 1
    # a feasible point is its own projection; the projection is the closest feasible point (vs. perturbations)
    m = jp.design.project_capped_simplex(y, 30.0)
    np.testing.assert_allclose(jp.design.project_capped_simplex(m, 30.0), m, atol=1e-10)
    d0 = float(jnp.sum((m - y) ** 2))
    for _ in range(20):
        z = jp.design.project_capped_simplex(m + 0.05 * jnp.asarray(rng.normal(size=m.shape)), 30.0)
        assert float(jnp.sum((z - y) ** 2)) >= d0 - 1e-9


def test_run_design_compiles_once_and_is_deterministic():
    traces = []

    def loss(p, hyp):
        traces.append(1)
        return jnp.sum((p - 3.0) ** 2, axis=-1) * hyp["scale"], None

    p0 = jnp.zeros((2, 3))
    out1, tr1 = jp.design.run_design(loss, p0, optimizer=optax.adam(0.1), steps=50,
                                     hyper=lambda t: {"scale": 1.0 + t})
    n = len(traces)
    out2, tr2 = jp.design.run_design(loss, p0, optimizer=optax.adam(0.1), steps=50,
                                     hyper=lambda t: {"scale": 1.0 + t})
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(tr1.loss, tr2.loss)
    assert n <= 3  # one trace of the step for 50 iterations (plus the final evaluation)
    assert tr1.loss.shape == (50,)
    # and it minimised: the quadratic's minimum is 3 in every coordinate
    np.testing.assert_allclose(out1, 3.0, atol=0.2)


def test_budget_objects_validate_and_match_strings(rng):
    with pytest.raises(ValueError, match="Penalty.start"):
        jp.design.Penalty(start=-1.0)
    with pytest.raises(ValueError, match="Penalty.end"):
        jp.design.Penalty(end=float("nan"))
    w, ws, v, vs = network(rng, K=3, N=20)
    a = jp.design.design_edge_mask(w, ws, v, vs, 0.5, budget=jp.design.Penalty(1.0, 100.0), steps=4, restarts=1,
                                   roundings=1)
    b = jp.design.design_edge_mask(w, ws, v, vs, 0.5, budget="penalty", penalty=(1.0, 100.0), steps=4, restarts=1,
                                   roundings=1)
    np.testing.assert_array_equal(a.trace.loss, b.trace.loss)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_validation_errors(rng):
    w, ws, v, vs = network(rng, K=3, N=20)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    with pytest.raises(ValueError, match="keep"):
        jp.design.design_edge_mask(w, ws, v, vs, 1.5)
    with pytest.raises(ValueError, match="keep"):
        jp.design.design_edge_rule(st, 0.0)
    with pytest.raises(ValueError, match=r"k \(units kept\) must"):
        jp.design.design_node_mask(st, 4)
    with pytest.raises(ValueError, match="learning_rate"):
        jp.design.design_node_mask(st, 2, learning_rate=-0.1)
    with pytest.raises(ValueError, match="restarts"):
        jp.design.design_node_mask(st, 2, restarts=0)
    with pytest.raises(ValueError, match="steps"):
        jp.design.design_node_mask(st, 2, steps=True)
    with pytest.raises(ValueError, match="budget"):
        jp.design.design_edge_mask(w, ws, v, vs, 0.5, budget="bogus")
    with pytest.raises(ValueError, match="family"):
        jp.design.design_subset_distribution(st, 2, family="bogus")
    with pytest.raises(ValueError, match="kernel"):
        jp.design.KDPPFamily(kernel="rbf")


def test_flat_draws_are_the_same_numbers():
    from jaxprune.design._loop import _draw

    key = jax.random.key(7)
    for sampler in (jax.random.normal, jax.random.uniform, jax.random.gumbel, jax.random.logistic):
        np.testing.assert_array_equal(_draw(sampler, key, (3, 4, 5), jnp.float64),
                                      sampler(key, (3, 4, 5), jnp.float64))


def test_top_mask_over_all_axes_with_traced_count(rng):
    from jaxprune.design._loop import _top_mask

    scores = jnp.asarray(rng.normal(size=(3, 5)))
    for count in (1, 7, 15):
        got = np.asarray(jax.jit(_top_mask)(scores, jnp.asarray(float(count))))
        flat = np.asarray(scores).ravel()
        ref = np.zeros(flat.size, bool)
        ref[np.argsort(-flat, kind="stable")[:count]] = True
        np.testing.assert_array_equal(got, ref.reshape(3, 5))
