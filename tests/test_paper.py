"""The seed paper's experiment under its protocol (docs/theory.md 6.3): row normalisation before pruning, the
DPP kernel from the normalised weights, importance = the largest v_i, and the k = 1 tie it implies."""

from itertools import combinations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from jaxprune.experiments import PaperSetting, normalise_rows, simulation_check
from jaxprune.experiments._paper import importance_node_mask


def _eps_numpy(w, ws, v, vs):
    """eps_g of a concrete erf network from its overlaps, in NumPy (docs/theory.md 3)."""
    N = w.shape[1]
    Q, R, T = w @ w.T / N, w @ ws.T / N, ws @ ws.T / N
    a = lambda C, d1, d2: np.arcsin(C / np.sqrt(np.outer(1 + d1, 1 + d2)))
    return (v @ a(Q, np.diag(Q), np.diag(Q)) @ v + vs @ a(T, np.diag(T), np.diag(T)) @ vs
            - 2 * v @ a(R, np.diag(Q), np.diag(T)) @ vs) / np.pi


def test_normalise_rows_matches_normalise_student(rng):
    w = rng.normal(size=(4, 50)) * rng.uniform(0.3, 3.0, size=(4, 1))
    ws, v, vs = rng.normal(size=(2, 50)), rng.normal(size=4), np.full(2, 4.0)
    wn = np.asarray(normalise_rows(jnp.asarray(w)))
    np.testing.assert_allclose(np.sum(wn**2, axis=1) / 50, 1.0, rtol=1e-12)
    np.testing.assert_allclose(wn / w, (wn / w)[:, :1] * np.ones((1, 50)), rtol=1e-12)  # a rescale per row
    a = jp.overlaps_from_weights(jnp.asarray(wn), jnp.asarray(ws), jnp.asarray(v), jnp.asarray(vs))
    b = jp.normalise_student(jp.overlaps_from_weights(jnp.asarray(w), jnp.asarray(ws), jnp.asarray(v),
                                                      jnp.asarray(vs)))
    np.testing.assert_allclose(a.Q, b.Q, atol=1e-12)
    np.testing.assert_allclose(a.R, b.R, atol=1e-12)


def test_importance_keeps_the_largest_v():
    # unit 2 has the largest |v| sqrt(Q_ii) but a negative v: the paper's rule drops it
    Q = jnp.diag(jnp.asarray([1.0, 1.0, 4.0, 1.0]))
    state = jp.Overlaps(Q=Q, R=jnp.zeros((4, 1)), T=jnp.eye(1), v=jnp.asarray([0.5, 2.0, -3.0, 1.0]),
                        v_star=jnp.ones(1))
    assert importance_node_mask(state, 2, "v").tolist() == [False, True, False, True]
    assert importance_node_mask(state, 2, "magnitude").tolist() == [False, True, True, False]


def test_protocols():
    assert PaperSetting().protocol == "paper"
    assert PaperSetting().options == {"normalise": True, "importance": "v", "v0_scale": 1.0}
    assert PaperSetting(protocol="legacy").options["normalise"] is False
    with pytest.raises(ValueError, match="protocol"):
        PaperSetting(protocol="other")


@pytest.fixture(scope="module")
def tiny():
    setting = PaperSetting(N=40, K=3, M=1, v_star=2.0, steps=800)
    out = simulation_check(setting, sigmas=(0.0,), seeds=2, masks=4, test_mse_masks=0,
                           reweights=("none",), rescales=("none",))
    return setting, out


def test_theory_acts_on_the_normalised_student(tiny):
    """Independent: retrain the same students, normalise their rows in NumPy, enumerate every subset."""
    setting, out = tiny
    from jaxprune.experiments import train_students

    teachers, students, _ = train_students(setting, 0.0, 2, seed=0)
    rows = {(r["method"], r["option"], r["k"]): r for r in out["rows"]}
    for s in range(2):
        w = np.asarray(students.w[s], float)
        w = w / np.sqrt(np.mean(w**2, axis=1, keepdims=True))
        ws, v = np.asarray(teachers.w_star[s], float), np.asarray(students.v[s], float)
        vs = np.asarray(teachers.v_star[s], float)
        for k in (1, 2):
            errs = [_eps_numpy(w[list(S)], ws, v[list(S)], vs) for S in combinations(range(3), k)]
            assert rows[("random-node", "none", k)]["predicted_per_seed"][s] == pytest.approx(np.mean(errs),
                                                                                              rel=1e-9)
            keep = np.argsort(-v, kind="stable")[:k]  # the k largest v_i
            assert rows[("importance-node", "none", k)]["predicted_per_seed"][s] == pytest.approx(
                _eps_numpy(w[keep], ws, v[keep], vs), rel=1e-9)


def test_dpp_and_random_node_tie_at_k1_after_normalisation(tiny):
    """With Q_ii = 1 every unit is equally likely under a 1-DPP with kernel Q (+ jitter I): DPP node pruning
    equals random node pruning at k = 1, student by student, to rounding."""
    _, out = tiny
    rows = {(r["method"], r["option"], r["k"]): r for r in out["rows"]}
    a = np.asarray(rows[("dpp-node", "none", 1)]["predicted_per_seed"])
    b = np.asarray(rows[("random-node", "none", 1)]["predicted_per_seed"])
    np.testing.assert_allclose(a, b, rtol=1e-10)
    from jaxprune.experiments._paper_claims import cells_from_student_rows
    from jaxprune.experiments import claim_by_id, outcome

    (c,) = [c for c in cells_from_student_rows(claim_by_id("C4"), out["rows"], "predicted") if c["k"] == 1]
    assert outcome(c) == "tie"


def test_exact_node_expectation_as_measurement():
    """`node_masks=0`: node methods are measured by their exact expectation (the theory's, per student)."""
    setting = PaperSetting(N=40, K=3, M=1, v_star=2.0, steps=400)
    out = simulation_check(setting, sigmas=(0.0,), seeds=2, masks=3, test_mse_masks=0, reweights=("none",),
                           rescales=("none",), node_masks=0, node_theory="closed-form")
    for r in out["rows"]:
        if r["method"] in ("random-node", "dpp-node"):
            assert r["masks_per_seed"] == [0, 0]
            np.testing.assert_allclose(r["measured_mean_per_seed"], r["predicted_per_seed"], rtol=1e-12)
    # the closed form agrees with enumeration on the same students
    enum = simulation_check(setting, sigmas=(0.0,), seeds=2, masks=3, test_mse_masks=0, reweights=("none",),
                            rescales=("none",))
    a = {(r["method"], r["k"]): r["predicted_per_seed"] for r in out["rows"]}
    b = {(r["method"], r["k"]): r["predicted_per_seed"] for r in enum["rows"]}
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-8)
