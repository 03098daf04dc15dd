"""Masks designed on a concrete network (jaxprune.design, docs/theory.md sections 6.2 and 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from _design_helpers import fd_check, network


def test_masked_overlaps_binary_and_bernoulli_mean(rng):
    w, ws, v, vs = network(rng, K=3, N=50)
    mask = jnp.asarray(rng.random(w.shape) < 0.5)
    c = jnp.asarray([0.5, 1.0, 2.0])
    st = jp.design.masked_network_overlaps(w, ws, v, vs, mask.astype(float), c, bernoulli=True)
    wn, wsn = np.asarray(w), np.asarray(ws)
    we = np.asarray(c)[:, None] * np.where(np.asarray(mask), wn, 0.0)  # NumPy reference
    np.testing.assert_allclose(st.Q, we @ we.T / 50, atol=1e-12)
    np.testing.assert_allclose(st.R, we @ wsn.T / 50, atol=1e-12)
    # the Bernoulli relaxation is the mean overlap of random masks
    p = jnp.asarray(rng.random(w.shape))
    draws = jax.random.uniform(jax.random.key(1), (20000,) + w.shape) < p[None]
    Qs = jnp.mean(jax.vmap(lambda m: (m * w) @ (m * w).T / w.shape[1])(draws.astype(float)), axis=0)
    st = jp.design.masked_network_overlaps(w, ws, v, vs, p, bernoulli=True)
    np.testing.assert_allclose(st.Q, Qs, atol=0.02)


def test_gradient_edge_relaxed_error(rng):
    w, ws, v, vs = network(rng, K=3, N=30)
    c = jnp.asarray([0.9, 1.1, 1.0])

    def f(m):
        return jp.generalisation_error(jp.design.masked_network_overlaps(w, ws, v, vs, m, c, bernoulli=True))

    m = jnp.asarray(rng.random(w.shape))
    fd_check(f, m, idx=range(0, 90, 7))


def test_masked_network_error_rescales(rng):
    w, ws, v, vs = network(rng, K=3, N=80)
    mask = jnp.asarray(rng.random(w.shape) < 0.5)
    e1, c1, _ = jp.design.masked_network_error(w, ws, v, vs, mask, rescale="none")
    ref = jp.generalisation_error(jp.overlaps_from_weights(jnp.where(mask, w, 0.0), ws, v, vs))
    assert float(e1) == pytest.approx(float(ref), rel=1e-12)
    e2, c2, _ = jp.design.masked_network_error(w, ws, v, vs, mask, rescale="inverse-keep")
    np.testing.assert_allclose(c2, 1.0 / np.mean(np.asarray(mask), axis=1), rtol=1e-12)
    e3, c3, _ = jp.design.masked_network_error(w, ws, v, vs, mask, rescale="optimal")
    assert float(e3) <= min(float(e1), float(e2)) + 1e-12
    ref3 = jp.generalisation_error(jp.overlaps_from_weights(c3[:, None] * jnp.where(mask, w, 0.0), ws, v, vs))
    assert float(e3) == pytest.approx(float(ref3), rel=1e-10)


def test_edge_mask_errors_match_concrete_networks(rng):
    w, ws, v, vs = network(rng, K=3, N=80)
    masks = np.asarray(rng.random((3,) + w.shape) < 0.5)
    c_fixed = 1.0 + 0.1 * rng.random((3, 3))
    e, cs = jp.design.edge_mask_errors(w, ws, v, vs, masks, scales=c_fixed)
    assert e.shape == (3, 4) and cs.shape == (3, 4, 3)
    e, cs = np.asarray(e), np.asarray(cs)
    for i, m in enumerate(masks):
        # every column is the exact error of the concrete network c (m * w) with its reported c
        for j in range(4):
            ref = jp.generalisation_error(jp.overlaps_from_weights(cs[i, j][:, None] * np.where(m, w, 0.0), ws, v, vs))
            assert e[i, j] == pytest.approx(float(ref), rel=1e-10)
        np.testing.assert_allclose(cs[i, 0], 1.0)
        np.testing.assert_allclose(cs[i, 1], 1.0 / m.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(cs[i, 3], c_fixed[i], rtol=1e-12)
        assert e[i, 2] <= min(e[i, 0], e[i, 1]) + 1e-12  # the optimal rescale is never worse
    # without the optimal rescale, column 2 is c = 1; without scales, column 3 too
    e2, cs2 = jp.design.edge_mask_errors(w, ws, v, vs, masks[:1], optimal=False)
    np.testing.assert_allclose(cs2[0, 2], 1.0)
    np.testing.assert_allclose(cs2[0, 3], 1.0)
    np.testing.assert_allclose(e2[0, 2], e[0, 0], rtol=1e-12)
    np.testing.assert_allclose(e2[0, 3], e[0, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="masks must have shape"):
        jp.design.edge_mask_errors(w, ws, v, vs, masks[0])
    with pytest.raises(ValueError, match="scales must have shape"):
        jp.design.edge_mask_errors(w, ws, v, vs, masks, scales=c_fixed[:2])


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_edge_design_beats_baselines_exactly(rng):
    w, ws, v, vs = network(rng, K=3, N=60)
    d = jp.design.design_edge_mask(w, ws, v, vs, 0.5, steps=100, restarts=1, roundings=2, key=jax.random.key(0))
    assert int(jnp.sum(d.mask)) == 90  # exactly the budget
    mag = jp.design.masked_network_error(w, ws, v, vs, jp.pruning.magnitude_edge_mask(w, 0.5))[0]
    rnd = jp.design.masked_network_error(w, ws, v, vs, jp.pruning.random_edge_mask(jax.random.key(1), w, 0.5))[0]
    assert float(d.error) < float(mag) and float(d.error) < float(rnd)
    # the reported error is the exact error of the hard mask with the reported rescale
    st = jp.design.masked_network_overlaps(w, ws, v, vs, d.mask.astype(float), d.scale)
    assert float(jp.generalisation_error(st)) == pytest.approx(float(d.error), rel=1e-10)


def test_rescale_objects_are_the_strings(rng):
    w, ws, v, vs = network(rng, K=3, N=40)
    mask = jnp.asarray(rng.random(w.shape) < 0.5)
    for obj, name in ((jp.pruning.NoRescale(), "none"), (jp.pruning.InverseKeepRescale(), "inverse-keep")):
        a = jp.design.masked_network_error(w, ws, v, vs, mask, rescale=obj)
        b = jp.design.masked_network_error(w, ws, v, vs, mask, rescale=name)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="rescale"):
        jp.design.masked_network_error(w, ws, v, vs, mask, rescale="bogus")
