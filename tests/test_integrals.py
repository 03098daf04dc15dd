"""Gaussian integrals against Monte Carlo, Gauss-Hermite quadrature and finite differences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as np_erf

from conftest import random_covariance
from jaxprune import Erf, Linear, i2, i3, i4, j2
from jaxprune._integrals import i2_block, map_product


def g_erf(z):
    return np_erf(z / np.sqrt(2.0))


def dg_erf(z):
    return np.sqrt(2.0 / np.pi) * np.exp(-0.5 * z * z)


def gauss_hermite_expectation(fn, C, nodes=24):
    """E[fn(x)] for x ~ N(0, C) by a tensor Gauss-Hermite rule in whitened coordinates."""
    d = C.shape[0]
    t, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-t^2/2)
    w = w / np.sqrt(2 * np.pi)
    evals, evecs = np.linalg.eigh(C)
    root = evecs * np.sqrt(np.clip(evals, 0, None))
    grids = np.meshgrid(*([t] * d), indexing="ij")
    z = np.stack([g.ravel() for g in grids])  # (d, n^d)
    weight = np.prod(np.meshgrid(*([w] * d), indexing="ij"), axis=0).ravel()
    x = root @ z
    return float(np.sum(weight * fn(x)))


def _tuples(F):
    return {
        "i2": list(itertools.product(range(F), repeat=2)),
        "i3": [(0, 1, 2), (1, 1, 3), (2, 0, 0), (3, 2, 1), (0, 0, 0)],
        "i4": [(0, 1, 2, 3), (0, 0, 1, 1), (1, 2, 2, 2), (3, 1, 0, 2), (2, 2, 2, 2), (0, 1, 0, 1)],
    }


@pytest.mark.parametrize("near_singular", [False, True])
@pytest.mark.parametrize("scale", [0.3, 0.8])
def test_erf_integrals_against_quadrature(rng, near_singular, scale):
    F = 4
    C = random_covariance(rng, F, scale=scale, near_singular=near_singular)
    Cj = jnp.asarray(C)
    act = Erf()
    tol = 2e-6
    for a, b in _tuples(F)["i2"]:
        ref = gauss_hermite_expectation(lambda x: g_erf(x[0]) * g_erf(x[1]), C[np.ix_([a, b], [a, b])], 60)
        assert abs(float(i2(act, Cj, a, b)) - ref) < tol
        ref = gauss_hermite_expectation(lambda x: dg_erf(x[0]) * dg_erf(x[1]), C[np.ix_([a, b], [a, b])], 60)
        assert abs(float(j2(act, Cj, a, b)) - ref) < tol
    for a, b, c in _tuples(F)["i3"]:
        idx = [a, b, c]
        ref = gauss_hermite_expectation(lambda x: dg_erf(x[0]) * x[1] * g_erf(x[2]), C[np.ix_(idx, idx)], 40)
        assert abs(float(i3(act, Cj, a, b, c)) - ref) < tol
    for a, b, c, d in _tuples(F)["i4"]:
        idx = [a, b, c, d]
        ref = gauss_hermite_expectation(
            lambda x: dg_erf(x[0]) * dg_erf(x[1]) * g_erf(x[2]) * g_erf(x[3]), C[np.ix_(idx, idx)], 22
        )
        assert abs(float(i4(act, Cj, a, b, c, d)) - ref) < 1e-5


def test_erf_integrals_against_monte_carlo(rng):
    """Three digits against two million float64 samples (tolerance: 5 standard errors)."""
    F = 5
    C = random_covariance(rng, F, scale=1.5, near_singular=True)
    x = rng.multivariate_normal(np.zeros(F), C, size=2_000_000, method="eigh").T
    g, dg = g_erf(x), dg_erf(x)
    Cj = jnp.asarray(C)
    act = Erf()

    def check(value, samples):
        se = samples.std() / np.sqrt(samples.size)
        assert abs(float(value) - samples.mean()) < 5 * se + 1e-4

    check(i2(act, Cj, 0, 3), g[0] * g[3])
    check(j2(act, Cj, 1, 1), dg[1] * dg[1])
    check(i3(act, Cj, 0, 1, 4), dg[0] * x[1] * g[4])
    check(i3(act, Cj, 2, 2, 2), dg[2] * x[2] * g[2])
    check(i4(act, Cj, 0, 1, 2, 3), dg[0] * dg[1] * g[2] * g[3])
    check(i4(act, Cj, 0, 1, 0, 1), dg[0] * dg[1] * g[0] * g[1])
    check(i4(act, Cj, 4, 4, 4, 4), dg[4] ** 2 * g[4] ** 2)


def test_linear_integrals_are_covariances(rng):
    F = 4
    C = jnp.asarray(random_covariance(rng, F))
    act = Linear()
    for a, b, c, d in itertools.product(range(F), repeat=4):
        assert float(i4(act, C, a, b, c, d)) == pytest.approx(float(C[c, d]))
    assert float(i3(act, C, 0, 1, 2)) == pytest.approx(float(C[1, 2]))
    assert float(i2(act, C, 0, 3)) == pytest.approx(float(C[0, 3]))
    assert float(j2(act, C, 0, 3)) == 1.0


def test_block_lift_matches_scalar_kernel(rng):
    C = jnp.asarray(random_covariance(rng, 5))
    rows, cols = jnp.arange(3), jnp.arange(2, 5)
    block = i2_block(Erf(), C, rows, cols)
    for p, a in enumerate(rows):
        for q, b in enumerate(cols):
            assert float(block[p, q]) == pytest.approx(float(i2(Erf(), C, a, b)), abs=1e-15)
    prod = map_product(lambda a, b: a * 10 + b)(jnp.arange(2), jnp.arange(3))
    np.testing.assert_array_equal(np.asarray(prod), [[0, 1, 2], [10, 11, 12]])


def test_gradients_match_finite_differences(rng):
    C0 = random_covariance(rng, 4)
    direction = rng.normal(size=(4, 4))
    direction = direction + direction.T
    act = Erf()

    def f(t):
        C = jnp.asarray(C0) + t * jnp.asarray(direction) * 0.05
        return i4(act, C, 0, 1, 2, 3) + i3(act, C, 1, 2, 3) + j2(act, C, 0, 2) + i2(act, C, 1, 3)

    h = 1e-5
    fd = (f(h) - f(-h)) / (2 * h)
    assert float(jax.grad(f)(0.0)) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


def test_finite_values_and_gradients_when_student_copies_teacher():
    """A student field identical to a teacher field (correlation 1): values and gradients stay finite."""
    C = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    act = Erf()

    def total(C):
        return (
            i2(act, C, 0, 1) + j2(act, C, 0, 1) + i3(act, C, 0, 1, 1) + i4(act, C, 0, 1, 0, 1)
            + i4(act, C, 0, 0, 1, 1) + i4(act, C, 0, 1, 2, 2)
        )

    val, grad = jax.value_and_grad(total)(C)
    assert np.isfinite(float(val))
    assert np.all(np.isfinite(np.asarray(grad)))
    # zero-variance (inactive) fields too
    Z = jnp.zeros((3, 3))
    val, grad = jax.value_and_grad(total)(Z)
    assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(grad)))


def test_safe_arcsin_matches_numpy_on_a_dense_grid():
    """The polynomial arcsin against numpy (float64) on [-1, 1]: endpoints, the range-reduction seam at
    1/2, the approach to 1 and tiny arguments included."""
    from jaxprune._activations import safe_arcsin

    x = np.concatenate([
        np.linspace(-1.0, 1.0, 400_001),
        np.nextafter(1.0, 0.0) - np.arange(200) * 2.0**-52,
        np.linspace(0.5 - 1e-9, 0.5 + 1e-9, 2001),
        np.geomspace(1e-300, 1.0, 1000),
        [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, np.nextafter(0.5, 0), np.nextafter(0.5, 1)],
    ])
    x = np.concatenate([x, -x])
    got = np.asarray(jax.jit(safe_arcsin)(jnp.asarray(x)))
    assert np.max(np.abs(got - np.arcsin(x))) <= 1e-15
    tiny = np.abs(x) < 1e-8
    np.testing.assert_array_equal(got[tiny], x[tiny])  # asin(x) = x to the last bit there
    assert got[np.argmax(x)] == np.pi / 2 and got[np.argmin(x)] == -np.pi / 2
    # arguments past +-1 by rounding are clipped; NaN propagates
    out = np.asarray(safe_arcsin(jnp.asarray([1.0 + 1e-15, -1.0 - 1e-15, np.nan])))
    assert out[0] == np.pi / 2 and out[1] == -np.pi / 2 and np.isnan(out[2])


def test_safe_arcsin_gradient_is_analytic_and_finite():
    from jaxprune._activations import safe_arcsin

    x = np.concatenate([np.linspace(-0.999999, 0.999999, 20001), [0.5, -0.5, 1 - 1e-12]])
    grad = np.asarray(jax.vmap(jax.grad(safe_arcsin))(jnp.asarray(x)))
    np.testing.assert_allclose(grad, 1.0 / np.sqrt((1.0 - x) * (1.0 + x)), rtol=1e-13)
    edge = np.asarray(jax.vmap(jax.grad(safe_arcsin))(jnp.asarray([1.0, -1.0, 1.5, -2.0])))
    assert np.all(np.isfinite(edge)) and np.all(edge == 0.0)
    # second derivative (used by Newton on the vector field's Jacobian) is finite inside
    h = jax.vmap(jax.grad(jax.grad(safe_arcsin)))(jnp.asarray([0.3, -0.7]))
    np.testing.assert_allclose(np.asarray(h), [0.3 / (1 - 0.09) ** 1.5, -0.7 / (1 - 0.49) ** 1.5], rtol=1e-12)


@pytest.mark.parametrize("near_singular", [False, True])
@pytest.mark.parametrize("act", [Erf(), Linear()], ids=["erf", "linear"])
def test_block_integrals_match_scalar_kernels(rng, act, near_singular):
    """`i3_block` and the contracted `i4_pair_sums` (factorised for erf) against the scalar kernels."""
    from jaxprune._integrals import i3_block, i4_pair_sums, j2_block

    F = 6
    C = jnp.asarray(random_covariance(rng, F, scale=1.2, near_singular=near_singular))
    w = jnp.asarray(rng.normal(size=(F, F)))
    a, b = np.triu_indices(4)
    sums = np.asarray(i4_pair_sums(act, C, a, b, w))
    for p in range(a.size):
        ref = sum(float(w[c, d]) * float(i4(act, C, a[p], b[p], c, d)) for c in range(F) for d in range(F))
        assert sums[p] == pytest.approx(ref, rel=1e-12, abs=1e-13)
    block = np.asarray(i3_block(act, C, np.arange(3)))
    for i, bb, c in itertools.product(range(3), range(F), range(F)):
        assert block[i, bb, c] == pytest.approx(float(i3(act, C, i, bb, c)), rel=1e-13, abs=1e-14)
    j2b = np.asarray(j2_block(act, C, np.arange(3), np.arange(2, F)))
    assert j2b[1, 2] == pytest.approx(float(j2(act, C, 1, 4)), rel=1e-14)


# ---- issue 17: extreme overlaps, against the scale-invariant limits computed here ----

def _limit_large(C0, kind, idx):
    """The s -> inf limit of the erf integrals of s C0 (the '1 +' of I + C drops out): I2, I3 -> O(1),
    s J2 and s I4 -> O(1). Written from docs/theory.md section 2 with I + C replaced by C0."""
    C = C0
    if kind == "i2":
        a, b = idx
        return 2 / np.pi * np.arcsin(C[a, b] / np.sqrt(C[a, a] * C[b, b]))
    if kind == "j2":
        a, b = idx
        return 2 / np.pi / np.sqrt(C[a, a] * C[b, b] - C[a, b] ** 2)
    if kind == "i3":
        a, b, c = idx
        l3 = C[a, a] * C[c, c] - C[a, c] ** 2
        return 2 / np.pi * (C[b, c] * C[a, a] - C[a, b] * C[a, c]) / (C[a, a] * np.sqrt(l3))
    a, b, c, d = idx
    l4 = C[a, a] * C[b, b] - C[a, b] ** 2
    l0 = l4 * C[c, d] - C[b, c] * C[b, d] * C[a, a] - C[a, c] * C[a, d] * C[b, b] + C[a, b] * (
        C[a, c] * C[b, d] + C[a, d] * C[b, c])
    l1 = l4 * C[c, c] - C[b, c] ** 2 * C[a, a] - C[a, c] ** 2 * C[b, b] + 2 * C[a, b] * C[a, c] * C[b, c]
    l2 = l4 * C[d, d] - C[b, d] ** 2 * C[a, a] - C[a, d] ** 2 * C[b, b] + 2 * C[a, b] * C[a, d] * C[b, d]
    return 4 / np.pi**2 / np.sqrt(l4) * np.arcsin(l0 / np.sqrt(l1 * l2))


_EXTREME_TUPLES = {"i2": [(0, 1), (2, 3)], "j2": [(0, 1), (1, 3)], "i3": [(0, 1, 2), (3, 2, 1), (1, 1, 0)],
                   "i4": [(0, 1, 2, 3), (2, 0, 1, 3), (0, 1, 1, 2)]}


@pytest.mark.parametrize("scale", [1e300, 1e200, 1e-300])
def test_erf_integrals_at_extreme_scales_match_scale_invariant_limits(rng, scale):
    """Overlaps of 1e300 (products of variances would overflow) and 1e-300 (would underflow): every integral
    equals its scale-invariant limit, computed independently at O(1) scale; gradients stay finite."""
    F = 4
    C0 = random_covariance(rng, F)  # non-singular, O(1)
    C = jnp.asarray(C0 * scale)
    act = Erf()
    fns = {"i2": i2, "j2": j2, "i3": i3, "i4": i4}
    for kind, tuples in _EXTREME_TUPLES.items():
        for idx in tuples:
            got = float(fns[kind](act, C, *idx))
            if scale > 1:  # erf saturates: I2, I3 -> O(1); J2, I4 ~ 1/scale
                want = _limit_large(C0, kind, idx) / (scale if kind in ("j2", "i4") else 1.0)
            else:  # erf linearises: g(z) ~ sqrt(2/pi) z, g'(z) ~ sqrt(2/pi)
                want = {"i2": lambda: 2 / np.pi * C0[idx[0], idx[1]] * scale, "j2": lambda: 2 / np.pi,
                        "i3": lambda: 2 / np.pi * C0[idx[1], idx[2]] * scale,
                        "i4": lambda: 4 / np.pi**2 * C0[idx[2], idx[3]] * scale}[kind]()
            assert np.isfinite(got), (kind, idx)
            assert got == pytest.approx(want, rel=1e-9), (kind, idx, got, want)

    def total(C):
        return i2(act, C, 0, 1) + j2(act, C, 1, 3) + i3(act, C, 0, 1, 2) + i4(act, C, 0, 1, 2, 3)

    grad = np.asarray(jax.grad(total)(C))
    assert np.all(np.isfinite(grad))


def test_erf_integrals_mixed_scales_and_copies():
    """A student of norm 1e300 beside an O(1) teacher, and a student copying a teacher at 1e300: finite values
    (the old forms overflowed to 0 or NaN here) that match the closed limits."""
    act = Erf()
    C = jnp.asarray([[1e300, 0.0], [0.0, 1.0]])
    assert float(i2(act, C, 0, 0)) == pytest.approx(1.0, rel=1e-12)  # (2/pi) asin(1)
    assert float(i2(act, C, 1, 1)) == pytest.approx(1 / 3, rel=1e-12)  # (2/pi) asin(1/2)
    # J2(a, b) = (2/pi) / sqrt((1 + 1e300)(1 + 1)) for uncorrelated fields
    assert float(j2(act, C, 0, 1)) == pytest.approx(2 / np.pi / np.sqrt(2e300), rel=1e-12)
    copy = jnp.full((2, 2), 1e300)
    for val in (i2(act, copy, 0, 1), i3(act, copy, 0, 1, 1), i4(act, copy, 0, 1, 0, 1), j2(act, copy, 0, 1)):
        assert np.isfinite(float(val))
    assert float(i2(act, copy, 0, 1)) == pytest.approx(1.0, rel=1e-12)


def test_integrals_accept_activation_names(rng):
    C = jnp.asarray(random_covariance(rng, 4))
    assert float(i2("erf", C, 0, 1)) == float(i2(Erf(), C, 0, 1))
    assert float(i4("linear", C, 0, 1, 2, 3)) == float(C[2, 3])
    with pytest.raises(ValueError, match="activation must be one of"):
        j2("relu", C, 0, 1)
