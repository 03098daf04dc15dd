"""Generalisation error and the overlap state: Monte Carlo, invariants, validation, file format."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf as np_erf

from jaxprune import (
    Erf,
    Linear,
    Overlaps,
    generalisation_error,
    load_state,
    overlaps_from_weights,
    save_state,
    test_mse,
    validate_overlaps,
)

eps_jit = jax.jit(generalisation_error)
grad_jit = jax.jit(jax.grad(generalisation_error))


def random_network(rng, K, M, N):
    w = rng.normal(size=(K, N))
    w_star = rng.normal(size=(M, N))
    v = rng.normal(size=K)
    v_star = rng.normal(size=M) + 1.0
    return w, w_star, v, v_star


def erf_error_closed_form_numpy(Q, R, T, v, vs):
    """docs/theory.md section 3, written out in numpy with explicit sums."""
    def asin_term(C, d1, d2):
        return np.arcsin(C / np.sqrt(np.outer(1 + d1, 1 + d2)))

    return (1 / np.pi) * (
        v @ asin_term(Q, np.diag(Q), np.diag(Q)) @ v
        + vs @ asin_term(T, np.diag(T), np.diag(T)) @ vs
        - 2 * v @ asin_term(R, np.diag(Q), np.diag(T)) @ vs
    )


def test_error_matches_monte_carlo_of_concrete_network(rng):
    K, M, N = 3, 2, 40
    w, w_star, v, v_star = random_network(rng, K, M, N)
    state = overlaps_from_weights(w, w_star, v, v_star)
    x = rng.normal(size=(1_000_000, N))
    g = lambda z: np_erf(z / np.sqrt(2))
    phi = g(x @ w.T / np.sqrt(N)) @ v
    y = g(x @ w_star.T / np.sqrt(N)) @ v_star
    sq = 0.5 * (phi - y) ** 2
    se = sq.std() / np.sqrt(sq.size)
    assert abs(float(generalisation_error(state)) - sq.mean()) < 5 * se
    # the noisy test MSE adds the label noise variance
    sigma = 0.3
    noisy = (phi - y - sigma * rng.normal(size=phi.shape)) ** 2
    assert abs(float(test_mse(state, sigma)) - noisy.mean()) < 5 * noisy.std() / np.sqrt(noisy.size)


def test_error_equals_theory_closed_form(rng):
    w, w_star, v, v_star = random_network(rng, 4, 3, 30)
    s = overlaps_from_weights(w, w_star, v, v_star)
    ref = erf_error_closed_form_numpy(*(np.asarray(a) for a in (s.Q, s.R, s.T, s.v, s.v_star)))
    assert float(generalisation_error(s)) == pytest.approx(ref, rel=1e-12)


def test_linear_error_is_quadratic_form(rng):
    w, w_star, v, v_star = random_network(rng, 3, 2, 20)
    s = overlaps_from_weights(w, w_star, v, v_star)
    # linear network: phi - y = (v w - v* w*) x / sqrt N, so eps = |v w - v* w*|^2 / (2N)
    diff = v @ w - v_star @ w_star
    assert float(generalisation_error(s, Linear())) == pytest.approx(diff @ diff / (2 * 20), rel=1e-12)


@st.composite
def states(draw):
    K = draw(st.sampled_from([1, 2, 5]))
    M = draw(st.sampled_from([1, 3]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.floats(0.01, 10.0))
    w, w_star, v, v_star = random_network(rng, K, M, K + M + 2)
    return overlaps_from_weights(w * scale, w_star, v, v_star), rng


@settings(max_examples=30, deadline=None)
@given(states())
def test_error_nonnegative_and_permutation_invariant(sr):
    state, rng = sr
    eps = float(eps_jit(state))
    assert eps >= -1e-12
    perm = rng.permutation(state.K)
    permuted = Overlaps(
        Q=state.Q[perm][:, perm], R=state.R[perm], T=state.T, v=state.v[perm], v_star=state.v_star
    )
    assert float(eps_jit(permuted)) == pytest.approx(eps, rel=1e-10, abs=1e-12)
    tperm = rng.permutation(state.M)
    tpermuted = Overlaps(
        Q=state.Q, R=state.R[:, tperm], T=state.T[tperm][:, tperm], v=state.v, v_star=state.v_star[tperm]
    )
    assert float(eps_jit(tpermuted)) == pytest.approx(eps, rel=1e-10, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(states())
def test_error_zero_when_student_is_teacher(sr):
    state, _ = sr
    copy = Overlaps(Q=state.T, R=state.T, T=state.T, v=state.v_star, v_star=state.v_star)
    assert abs(float(eps_jit(copy))) < 1e-12
    grad = grad_jit(copy)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(grad))


def test_jacfwd_equals_jacrev(rng):
    w, w_star, v, v_star = random_network(rng, 3, 2, 10)
    s = overlaps_from_weights(w, w_star, v, v_star)
    f = lambda s: generalisation_error(s)
    fwd, rev = jax.jit(jax.jacfwd(f))(s), jax.jit(jax.jacrev(f))(s)
    for a, b in zip(jax.tree.leaves(fwd), jax.tree.leaves(rev)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def _state(K=2, M=2):
    return Overlaps(Q=jnp.eye(K), R=jnp.zeros((K, M)), T=jnp.eye(M), v=jnp.ones(K), v_star=jnp.ones(M))


def test_shape_errors_name_the_field(no_typecheck):
    with pytest.raises(ValueError, match="Q must have shape"):
        Overlaps(Q=jnp.eye(3), R=jnp.zeros((2, 2)), T=jnp.eye(2), v=jnp.ones(2), v_star=jnp.ones(2))
    with pytest.raises(ValueError, match="R must have shape"):
        Overlaps(Q=jnp.eye(2), R=jnp.zeros((2, 3)), T=jnp.eye(2), v=jnp.ones(2), v_star=jnp.ones(2))
    with pytest.raises(ValueError, match="v_star must be a vector"):
        Overlaps(Q=jnp.eye(2), R=jnp.zeros((2, 2)), T=jnp.eye(2), v=jnp.ones(2), v_star=jnp.ones((2, 1)))
    with pytest.raises(ValueError, match="same N"):
        overlaps_from_weights(np.ones((2, 3)), np.ones((2, 4)), np.ones(2), np.ones(2))


def test_overlaps_from_weights_checks_its_arguments():
    """NumPy arrays are accepted, wrong shapes give the library's one-line ValueError (with the type checks on)."""
    state = overlaps_from_weights(np.asarray([[1.0, 0.0], [0.0, 2.0]]), np.asarray([[1.0, 1.0]]),
                                  np.asarray([1.0, 0.5]), np.asarray([2.0]))
    np.testing.assert_array_equal(state.Q, [[0.5, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(state.R, [[0.5], [1.0]])
    np.testing.assert_array_equal(state.T, [[1.0]])
    with pytest.raises(ValueError, match="same N"):
        overlaps_from_weights(np.ones((2, 3)), np.ones((2, 4)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="v must have shape"):
        overlaps_from_weights(np.ones((2, 3)), np.ones((1, 3)), np.ones(3), np.ones(1))
    with pytest.raises(ValueError, match="v_star shape"):
        overlaps_from_weights(np.ones((2, 3)), np.ones((1, 3)), np.ones(2), np.ones((1, 1)))


def test_value_validation():
    s = _state()
    validate_overlaps(s)
    with pytest.raises(ValueError, match="symmetric"):
        validate_overlaps(eqx_replace(s, Q=jnp.asarray([[1.0, 0.5], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="positive semi-definite"):
        validate_overlaps(eqx_replace(s, R=jnp.asarray([[2.0, 0.0], [0.0, 0.0]])))
    with pytest.raises(ValueError, match="non-finite"):
        validate_overlaps(eqx_replace(s, v=jnp.asarray([1.0, jnp.nan])))


def eqx_replace(s, **kw):
    d = dict(Q=s.Q, R=s.R, T=s.T, v=s.v, v_star=s.v_star)
    d.update(kw)
    return Overlaps(**d)


def test_json_round_trip_and_errors(tmp_path, rng):
    w, w_star, v, v_star = random_network(rng, 3, 2, 10)
    s = overlaps_from_weights(w, w_star, v, v_star)
    path = save_state(tmp_path / "state.json", s, note="hello")
    data = json.loads(path.read_text())
    assert set(data) >= {"Q", "R", "T", "v", "v_star", "note"}
    back = load_state(path)
    for name in ("Q", "R", "T", "v", "v_star"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)), np.asarray(getattr(s, name)))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_state(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"Q": [[1]]}')
    with pytest.raises(ValueError, match="lacks the keys"):
        load_state(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_state(tmp_path / "broken.json")


# ---- issue 17: extreme overlaps and second layers, activation names ----

def test_error_at_huge_and_tiny_overlaps():
    """Q = 1e300 I, R = 0, T = I (K = M = 2, v = v* = 1): the students saturate, I2 -> identity on them, so
    eps_g = 1/2 (2 + 2 * (2/pi) asin(1/2)) = 4/3 (the old form overflowed and gave 1/3). At 1e-300 erf is linear:
    eps_g = 1/2 (2/pi) (tr Q + tr T) to first order."""
    big = Overlaps(Q=1e300 * jnp.eye(2), R=jnp.zeros((2, 2)), T=jnp.eye(2), v=jnp.ones(2), v_star=jnp.ones(2))
    want = 0.5 * (2.0 + 2.0 * (2 / np.pi) * np.arcsin(0.5))
    # rel 1e-7: the saturated diagonal I2 = (2/pi) asin(C/(1+C)) has its argument at 1 to one ulp, and asin
    # turns one ulp below 1 into sqrt(2 ulp) ~ 1.5e-8 (the conditioning of asin at 1, any scale)
    assert float(generalisation_error(big)) == pytest.approx(want, rel=1e-7)
    assert want == pytest.approx(4 / 3)
    tiny = Overlaps(Q=1e-300 * jnp.eye(2), R=jnp.zeros((2, 2)), T=1e-300 * jnp.eye(2), v=jnp.ones(2),
                    v_star=jnp.ones(2))
    assert float(generalisation_error(tiny)) == pytest.approx(0.5 * (2 / np.pi) * 4e-300, rel=1e-12)
    g = jax.grad(lambda s: generalisation_error(s))(big)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_error_with_huge_second_layers():
    """v = v* = 1e200 with the student equal to the teacher: eps_g = 0 exactly (the old u u^T form gave
    inf - inf = NaN); the same second layers with an orthogonal student: 1e400 * ..., beyond float64, so inf
    (and validate_overlaps refuses such states); 1e150 gives the finite 1e300 * (the O(1) error)."""
    Q = jnp.eye(2)
    copy = Overlaps(Q=Q, R=Q, T=Q, v=jnp.full(2, 1e200), v_star=jnp.full(2, 1e200))
    assert float(generalisation_error(copy)) == 0.0
    unit = Overlaps(Q=Q, R=jnp.zeros((2, 2)), T=Q, v=jnp.ones(2), v_star=jnp.ones(2))
    e1 = float(generalisation_error(unit))
    scaled = Overlaps(Q=Q, R=jnp.zeros((2, 2)), T=Q, v=jnp.full(2, 1e150), v_star=jnp.full(2, 1e150))
    assert float(generalisation_error(scaled)) == pytest.approx(1e300 * e1, rel=1e-13)
    huge = Overlaps(Q=Q, R=jnp.zeros((2, 2)), T=Q, v=jnp.full(2, 1e300), v_star=jnp.ones(2))
    assert float(generalisation_error(huge)) == np.inf
    with pytest.raises(ValueError, match=r"state\.v entries must lie in \[-.*\] \(else eps_g overflows\), got max \|v\| = 1e\+300"):
        validate_overlaps(huge)


def test_error_accepts_activation_names(rng):
    w, w_star, v, v_star = random_network(rng, 3, 2, 20)
    s = overlaps_from_weights(w, w_star, v, v_star)
    assert float(generalisation_error(s, "linear")) == float(generalisation_error(s, Linear()))
    assert float(generalisation_error(s, activation="erf")) == float(generalisation_error(s, Erf()))
    assert float(test_mse(s, 0.5, "linear")) == pytest.approx(2 * float(generalisation_error(s, Linear())) + 0.25)
    with pytest.raises(ValueError, match="activation must be one of"):
        generalisation_error(s, "relu")
