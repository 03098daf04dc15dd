"""Every command end to end on its defaults (small sizes through its own flags): the numbers it prints and
writes (`--json`, result files) are checked against the library called directly and against independent NumPy
references (the closed-form erf error, brute-force subset enumeration), not only the exit code.

`reproduce` is run end to end (quick mode, through `jaxprune.cli.main`) by tests/test_reproduce.py, whose
module fixture this file does not repeat. The slow tier holds the commands whose smallest run takes a minute
(`paper`, `design`, `realdata`) and the gradient check of `fixed-point --grad`.
"""

import csv
import itertools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from jaxprune.cli import main


# --------------------------------------------------------------------------------------- independent references


def erf_eps_g(Q, R, T, v, v_star):
    """Noise-free generalisation error of an erf committee (docs/theory.md, section 2), written in NumPy."""
    Q, R, T, v, v_star = (np.asarray(a, float) for a in (Q, R, T, v, v_star))
    dq, dt = np.diag(Q), np.diag(T)
    a = np.arcsin(Q / np.sqrt(np.outer(1 + dq, 1 + dq)))
    b = np.arcsin(T / np.sqrt(np.outer(1 + dt, 1 + dt)))
    c = np.arcsin(R / np.sqrt(np.outer(1 + dq, 1 + dt)))
    return float((v @ a @ v + v_star @ b @ v_star - 2 * v @ c @ v_star) / np.pi)


def random_state(rng, K, M, *, align=0.6):
    """A valid state: overlaps of concrete random weights (student partly aligned with the teacher)."""
    N = 400
    ws = rng.normal(size=(M, N))
    w = align * ws[rng.integers(0, M, K)] + rng.normal(size=(K, N)) * 0.7
    return {"Q": w @ w.T / N, "R": w @ ws.T / N, "T": ws @ ws.T / N, "v": rng.uniform(0.5, 1.5, K),
            "v_star": rng.uniform(0.5, 1.5, M)}


def write_state(path, state):
    path.write_text(json.dumps({k: np.asarray(x).tolist() for k, x in state.items()}))
    return path


def numbers_after(text, label):
    """The first number printed after `label` on its line."""
    m = re.search(re.escape(label) + r"\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?|inf|nan)", text)
    assert m, f"{label!r} not in output:\n{text}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def state3(tmp_path_factory):
    """A K=3, M=2 state file and its arrays."""
    st = random_state(np.random.default_rng(7), 3, 2)
    path = write_state(tmp_path_factory.mktemp("state") / "s.json", st)
    return path, st


# ------------------------------------------------------------------------------------------------- error


def test_error_command_matches_closed_form(state3, tmp_path, capsys):
    path, st = state3
    assert main(["error", str(path), "--sigma", "0.3", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    ref = erf_eps_g(**st)
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["eps_g"] == pytest.approx(ref, rel=1e-12)
    assert res["test_mse"] == pytest.approx(2 * ref + 0.09, rel=1e-12)
    assert numbers_after(out, "eps_g (noise-free generalisation error) =") == pytest.approx(ref, rel=1e-9)
    assert res["status"] == "success" and (res["K"], res["M"]) == (3, 2)


def test_error_command_linear_activation(state3, capsys):
    path, st = state3
    assert main(["error", str(path), "--activation", "linear"]) == 0
    # linear student and teacher: eps_g = 1/2 (v Q v + v* T v* - 2 v R v*)
    v, vs = st["v"], st["v_star"]
    ref = 0.5 * (v @ st["Q"] @ v + vs @ st["T"] @ vs - 2 * v @ st["R"] @ vs)
    assert numbers_after(capsys.readouterr().out, "eps_g (noise-free generalisation error) =") == \
        pytest.approx(ref, rel=1e-9)


# --------------------------------------------------------------------------------------------------- ode


def test_ode_command_matches_solve_ode(tmp_path, capsys):
    assert main(["ode", "--alpha", "5", "--points", "6", "--json", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "o.json").read_text())
    state0 = jp.Overlaps.reference(2, 2)
    # the reference initial state: Q = I, R = 1e-3 sin(1 + i M + n), T = I, v = v* = 1
    assert res["eps_g"][0] == pytest.approx(
        erf_eps_g(np.eye(2), 1e-3 * np.sin(1.0 + np.array([[0, 1], [2, 3]])), np.eye(2), np.ones(2), np.ones(2)),
        rel=1e-12)
    sol = jp.solve_ode(state0, jp.SGDConfig(eta=0.5), np.asarray(res["alpha"]), throw=False)
    np.testing.assert_allclose(res["eps_g"], np.asarray(sol.eps_g), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res["final_state"]["Q"], np.asarray(sol.final.Q), rtol=1e-9, atol=1e-12)
    assert res["alpha"][-1] == pytest.approx(5.0) and res["alpha_end"] == pytest.approx(5.0)
    assert res["status"] == 0 and res["ok"] is True
    # the error printed at the end is the final state's, by the closed form
    f = res["final_state"]
    assert numbers_after(out, "final eps_g =") == pytest.approx(
        erf_eps_g(f["Q"], f["R"], f["T"], f["v"], f["v_star"]), rel=1e-8)
    assert "status: success" in out


def test_ode_euler_that_takes_no_step_is_refused(tmp_path, capsys):
    """Issue 17 item 3: `ode --integrator euler --dt 100 --alpha 10` reported success with no step taken."""
    code = main(["ode", "--integrator", "euler", "--dt", "100", "--alpha", "10", "--quiet",
                 "--json", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--dt" in err
    assert not (tmp_path / "o.json").exists()


def test_ode_failure_is_never_success():
    """Whatever the solver's status says, no step, an early stop or a non-finite error is a failure."""
    from jaxprune.cli._theory import _ode_failure

    fine = np.array([0.5, 0.4])
    assert _ode_failure(0, 10.0, 12, fine, 10.0) is None
    assert "no step" in _ode_failure(0, 0.0, 0, fine, 10.0)
    assert "before the final" in _ode_failure(0, 5.0, 12, fine, 10.0)
    assert "non-finite" in _ode_failure(0, 10.0, 12, np.array([0.5, np.nan]), 10.0)
    assert "diverged" in _ode_failure(int(jp.Status.DIVERGED), 10.0, 12, fine, 10.0)


# ---------------------------------------------------------------------------------------------- simulate


def _cli_simulation(N, K, M, steps, record_every, seed=0, seeds=1, dtype=jnp.float32):
    """The runs `jaxprune simulate` defines: per seed key, (teacher, student, SGD) keys from one split."""
    out = []
    for key in jax.random.split(jax.random.key(seed), seeds):
        kt, ks, kr = jax.random.split(key, 3)
        teacher = jp.make_teacher(kt, N, M, v_star=1.0, dtype=dtype)
        student = jp.init_student(ks, N, K, scale=1.0, dtype=dtype)
        res = jp.simulate(kr, teacher, student, jp.SGDConfig(eta=0.5), steps=steps, record_every=record_every)
        out.append((teacher, student, res))
    return out


def test_simulate_command_on_defaults_with_ode(tmp_path, capsys):
    """Issue 17 item 1: `jaxprune simulate --N 50 --alpha 2` (ODE comparison on) crashed with IndexError."""
    assert main(["simulate", "--N", "50", "--alpha", "2", "--records", "4",
                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["steps"] == 100 and res["N"] == 50
    np.testing.assert_allclose(res["alpha"], np.linspace(0, 2, 5), rtol=1e-12)
    key = jax.random.split(jax.random.key(0), 1)[0]  # the weights `jaxprune simulate` draws for seed 0
    kt, ks, _ = jax.random.split(key, 3)
    teacher = jp.make_teacher(kt, 50, 2, v_star=1.0, dtype=jnp.float32)
    student = jp.init_student(ks, 50, 2, scale=1.0, dtype=jnp.float32)
    # the first record is the closed-form error of the initial weights' overlaps
    w, ws = np.asarray(student.w, float), np.asarray(teacher.w_star, float)
    Q, R, T = w @ w.T / 50, w @ ws.T / 50, ws @ ws.T / 50
    assert res["eps_g"][0][0] == pytest.approx(erf_eps_g(Q, R, T, np.ones(2), np.ones(2)), rel=1e-4)
    # the ODE column starts from the same overlaps, in float64
    s0 = jp.Overlaps(Q=jnp.asarray(Q), R=jnp.asarray(R), T=jnp.asarray(T), v=jnp.ones(2), v_star=jnp.ones(2))
    ode = jp.solve_ode(s0, jp.SGDConfig(eta=0.5), np.asarray(res["alpha"]), throw=False)
    np.testing.assert_allclose(res["ode_eps_g"], np.asarray(ode.eps_g), rtol=1e-6)
    assert res["ode_status_words"] == "success"
    assert numbers_after(out, "final eps_g (mean over seeds) =") == pytest.approx(res["eps_g"][0][-1], rel=1e-6)


@pytest.mark.slow
def test_simulate_command_matches_simulate_per_seed(tmp_path, capsys):
    assert main(["simulate", "--N", "40", "--steps", "80", "--records", "2", "--seeds", "2", "--no-ode",
                 "--test-samples", "20000", "--quiet", "--json", str(tmp_path / "s.json")]) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    eps = np.asarray(res["eps_g"])
    assert eps.shape == (2, 3) and "ode_eps_g" not in res
    np.testing.assert_allclose(res["eps_g_mean"], eps.mean(axis=0), rtol=1e-6)  # float32 simulation
    runs = _cli_simulation(40, 2, 2, steps=80, record_every=40, seeds=2)
    for s, (_, _, sim) in enumerate(runs):
        np.testing.assert_allclose(eps[s], np.asarray(sim.eps_g), rtol=1e-5, atol=1e-7)
    # noise-free labels: the empirical test MSE estimates 2 eps_g (20 000 samples: a few percent)
    np.testing.assert_allclose(np.asarray(res["test_mse"]), 2 * eps, rtol=0.1)


# ------------------------------------------------------------------------------------------- fixed-point


def test_fixed_point_command_is_a_stationary_state(tmp_path, capsys):
    assert main(["fixed-point", "--alpha", "300", "--sigma", "0.1", "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "f.json").read_text())
    assert res["ok"] is True and res["status"] == 0 and res["stable"] is True
    st = {k: np.asarray(v) for k, v in res["state"].items()}
    # independent: the closed-form error of the written state, and a vanishing vector field there
    assert res["eps_g"] == pytest.approx(erf_eps_g(**st), rel=1e-9, abs=1e-14)
    assert numbers_after(out, "eps_g* =") == pytest.approx(res["eps_g"], rel=1e-8, abs=1e-14)
    field = jp.vector_field(jp.Overlaps(**{k: jnp.asarray(v) for k, v in st.items()}),
                            jp.SGDConfig(eta=0.5, sigma=0.1))
    assert max(float(jnp.max(jnp.abs(x))) for x in (field.Q, field.R, field.v)) < 1e-9
    # every eigenvalue printed in the JSON is in the left half-plane, the slowest is the largest real part
    assert max(res["eigenvalues"]["real"]) == pytest.approx(res["slowest_eigenvalue"]["real"])
    assert res["slowest_eigenvalue"]["real"] < 0


def test_fixed_point_diverged_prints_no_value_and_writes_json(tmp_path, capsys):
    """Issue 17 item 8: `--eta 1e9 --alpha 10` printed a finite eps_g* beside DIVERGED; `--grad --json` wrote
    no JSON."""
    # (at --alpha 300 as the test above, so that the jitted solver compiles once for both)
    code = main(["fixed-point", "--eta", "1e9", "--alpha", "300", "--grad", "--json", str(tmp_path / "f.json")])
    cap = capsys.readouterr()
    assert code == 1
    assert cap.out.splitlines()[0].startswith("status: FAILED: diverged")
    assert re.search(r"eps_g\* = not available", cap.out)
    assert not re.search(r"eps_g\* = [-+\d]", cap.out)
    assert len(cap.err.strip().splitlines()) == 1 and "diverged" in cap.err
    res = json.loads((tmp_path / "f.json").read_text())
    assert res["ok"] is False and res["eps_g"] is None and res["gradients"] is None


@pytest.mark.slow
def test_fixed_point_grad_matches_finite_differences(tmp_path, capsys):
    base = ["fixed-point", "--alpha", "300", "--quiet"]
    assert main(base + ["--sigma", "0.2", "--grad", "--json", str(tmp_path / "g.json")]) == 0
    g = json.loads((tmp_path / "g.json").read_text())
    h = 1e-4
    vals = []
    for s in (0.2 - h, 0.2 + h):
        assert main(base + ["--sigma", f"{s!r}", "--json", str(tmp_path / "v.json")]) == 0
        vals.append(json.loads((tmp_path / "v.json").read_text())["eps_g"])
    assert g["gradients"]["sigma"] == pytest.approx((vals[1] - vals[0]) / (2 * h), rel=1e-4)


# -------------------------------------------------------------------------------------------------- sweep


def test_sweep_command_matches_solve_ode(tmp_path, capsys):
    spec = {"kind": "ode", "axes": {"eta": [0.5, 1.0], "sigma": [0.0, 0.2]},
            "fixed": {"K": 2, "M": 2, "alpha": 10}, "chunk_size": 4}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "spec.json"), "--out", str(out), "--no-progress"]) == 0
    assert "4 configurations, 4 SUCCESS" in capsys.readouterr().out
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    state0 = jp.Overlaps.reference(2, 2)
    for r in rows:
        eta, sigma = float(r["eta"]), float(r["sigma"])
        sol = jp.solve_ode(state0, jp.SGDConfig(eta=eta, sigma=sigma), np.array([0.0, 10.0]))
        assert float(r["eps_g"]) == pytest.approx(float(sol.eps_g[-1]), rel=1e-5)
        assert int(r["status"]) == 0 and float(r["alpha_end"]) == pytest.approx(10.0)
    assert {(float(r["eta"]), float(r["sigma"])) for r in rows} == set(itertools.product((0.5, 1.0), (0.0, 0.2)))


# ------------------------------------------------------------------------------------------ prune, compare


def _sub_eps(st, keep):
    keep = list(keep)
    return erf_eps_g(st["Q"][np.ix_(keep, keep)], st["R"][keep], st["T"], st["v"][keep], st["v_star"])


def _random_edge_eps(st, p):
    """docs/theory.md section 6.2, random(p) without rescale: Q'_ii = p Q_ii, Q'_ik = p^2 Q_ik, R' = p R."""
    Q = np.asarray(st["Q"], float)
    Qp = p * p * Q + (p - p * p) * np.diag(np.diag(Q))
    return erf_eps_g(Qp, p * np.asarray(st["R"]), st["T"], st["v"], st["v_star"])


def test_prune_command_random_node_is_the_subset_average(state3, tmp_path, capsys):
    path, st = state3
    assert main(["prune", str(path), "--method", "random-node", "--keep", "2",
                 "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    row = json.loads((tmp_path / "p.json").read_text())
    errs = [_sub_eps(st, s) for s in itertools.combinations(range(3), 2)]  # brute force over the 3 subsets
    assert row["mean"] == pytest.approx(np.mean(errs), rel=1e-10)
    assert row["min"] == pytest.approx(min(errs), rel=1e-10) and row["max"] == pytest.approx(max(errs), rel=1e-10)
    assert row["std"] == pytest.approx(np.std(errs), rel=1e-6)
    assert row["exact"] is True and row["k"] == 2
    assert numbers_after(out, "expected eps_g =") == pytest.approx(np.mean(errs), rel=1e-7)


def test_prune_command_importance_and_edge(state3, tmp_path, capsys):
    path, st = state3
    assert main(["prune", str(path), "--method", "importance-node", "--keep", "1",
                 "--json", str(tmp_path / "i.json")]) == 0
    row = json.loads((tmp_path / "i.json").read_text())
    lib = jp.pruning.prune_expected(jp.load_state(path), "importance-node", 1, N=500)
    assert row["mean"] == pytest.approx(float(lib["mean"]), rel=1e-12)
    assert row["mean"] in [pytest.approx(_sub_eps(st, [i]), rel=1e-10) for i in range(3)]  # one kept unit
    assert main(["prune", str(path), "--method", "random-edge", "--keep", "0.5",
                 "--json", str(tmp_path / "e.json")]) == 0
    row = json.loads((tmp_path / "e.json").read_text())
    assert row["mean"] == pytest.approx(_random_edge_eps(st, 0.5), rel=1e-10)
    assert row["p"] == pytest.approx(0.5)


def test_compare_command_matches_enumeration(state3, tmp_path, capsys):
    path, st = state3
    assert main(["compare", str(path), "--json", str(tmp_path / "c.json"),
                 "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    L = np.asarray(st["Q"]) + 1e-6 * np.eye(3)  # the k-DPP kernel: Q plus the default jitter

    def find(method, option, k):
        return next(r for r in rows if r["method"] == method and r["option"] == option and r["budget_k"] == k)

    for k in (1, 2):
        subsets = list(itertools.combinations(range(3), k))
        errs = np.array([_sub_eps(st, s) for s in subsets])
        assert find("random-node", "none", k)["mean"] == pytest.approx(errs.mean(), rel=1e-10)
        dets = np.array([np.linalg.det(L[np.ix_(s, s)]) for s in subsets])  # P(S) proportional to det L_S
        assert find("dpp-node", "none", k)["mean"] == pytest.approx(dets @ errs / dets.sum(), rel=1e-8)
        assert find("random-edge", "none", k)["mean"] == pytest.approx(_random_edge_eps(st, k / 3), rel=1e-10)
        # reweighting that minimises the error never loses to no reweighting
        assert find("random-node", "optimal", k)["mean"] <= find("random-node", "none", k)["mean"] + 1e-12
    assert rows[0]["method"] == "none" and rows[0]["mean"] == pytest.approx(erf_eps_g(**st), rel=1e-10)
    assert "random-node" in out and (tmp_path / "c.png").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("exact", [pytest.param("none", id="closed-forms"),
                                   pytest.param("classes", id="with-general-machinery", marks=pytest.mark.slow)])
def test_bounds_command_matches_enumeration(exact, tmp_path, capsys):
    assert main(["bounds", "--K", "4", "--M", "2", "--exact", exact, "--json", str(tmp_path / "b.json")]) == 0
    table = json.loads((tmp_path / "b.json").read_text())
    # the specialised state: units 0,1 copy teacher 0 and units 2,3 teacher 1, each with v = v*/2
    st = {"Q": np.kron(np.eye(2), np.ones((2, 2))), "R": np.kron(np.eye(2), np.ones((2, 1))), "T": np.eye(2),
          "v": np.full(4, 0.5), "v_star": np.ones(2)}
    assert erf_eps_g(**st) == pytest.approx(0.0, abs=1e-14)
    assert [r["k"] for r in table["rows"]] == [1, 2, 3, 4]
    for row in table["rows"]:
        k = row["k"]
        errs = [_sub_eps(st, s) for s in itertools.combinations(range(4), k)]
        node = {(e["method"], e["reweight"]): e for e in row["node"]}
        assert node[("random", "none")]["closed_form"] == pytest.approx(np.mean(errs), rel=1e-9, abs=1e-12)
        if exact != "none":  # the default: the general node machinery beside the closed forms
            assert node[("random", "none")]["exact"] == pytest.approx(np.mean(errs), rel=1e-9, abs=1e-12)
        bnd = next(b for b in row["bounds"] if b["reweight"] == "none")
        assert bnd["best"] == pytest.approx(min(errs), abs=1e-10)
        assert bnd["worst"] == pytest.approx(max(errs), rel=1e-9)
        edge = next(e for e in row["edge"] if e["method"] == "random" and e["rescale"] == "none")
        assert edge["closed_form"] == pytest.approx(_random_edge_eps(st, k / 4), rel=1e-9, abs=1e-12)
    assert "NODE pruning" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- slow: paper, design


@pytest.mark.slow
def test_paper_command_small_run(tmp_path, capsys):
    assert main(["paper", "--N", "40", "--K", "4", "--M", "2", "--steps", "2000", "--seeds", "1", "--masks", "2",
                 "--sigmas", "0", "--no-map", "--test-mse-masks", "0", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "p.json").read_text())
    rows = res["simulation"]["rows"]
    assert {r["k"] for r in rows} == {1, 2, 3}
    # importance pruning is deterministic: the order-parameter prediction is exact on the concrete network
    imp = [r for r in rows if r["method"] == "importance-node"]
    assert imp and all(r["predicted"] == pytest.approx(r["measured"], rel=1e-6) for r in imp)
    # the claims tables are decided from these rows
    for c in res["claims"]["predicted"]:
        dpp = next(r for r in rows if r["method"] == "dpp-node" and r["k"] == c["k"] and r["option"] != "none"
                   and r["predicted"] == pytest.approx(c["dpp_node_reweighted"]))
        assert dpp is not None
    assert "claims decided from the measured errors" in out


@pytest.mark.slow
def test_design_command_on_given_weights(tmp_path, capsys):
    rng = np.random.default_rng(3)
    N, K, M = 40, 6, 2
    w_star = rng.normal(size=(M, N))
    w = w_star[np.arange(K) % M] + 0.5 * rng.normal(size=(K, N))
    v, v_star = np.full(K, 4.0 / 3), np.full(M, 4.0)
    np.savez(tmp_path / "net.npz", w=w, w_star=w_star, v=v, v_star=v_star)
    assert main(["design", "--weights", str(tmp_path / "net.npz"), "--N", str(N), "--steps", "3",
                 "--restarts", "1", "--quiet", "--json", str(tmp_path / "d.json")]) == 0
    res = json.loads((tmp_path / "d.json").read_text())
    rows = res["tables"]["network"]["rows"]
    unpruned = next(r for r in rows if r["method"] == "unpruned")
    Q, R, T = w @ w.T / N, w @ w_star.T / N, w_star @ w_star.T / N
    assert unpruned["error"] == pytest.approx(erf_eps_g(Q, R, T, v, v_star), rel=1e-9)
    for verdict in res["tables"]["network"]["verdict"]:
        assert verdict["beats"] == (verdict["designed_error"] < verdict["baseline_error"])
        assert verdict["margin"] == pytest.approx(verdict["baseline_error"] - verdict["designed_error"], rel=1e-9)


@pytest.mark.slow
def test_realdata_command_quick_and_resumed(tmp_path, capsys):
    out = tmp_path / "rd"
    argv = ["realdata", "--quick", "--seeds", "1", "--masks", "1", "--budgets", "0.5", "--hidden", "8",
            "--out", str(out), "--no-plot", "--no-progress", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    D = 64  # digits: 8x8 inputs
    for r in res["rows"]:
        assert 0.0 <= r["mean"] <= 1.0
        if r["kind"] == "node":
            assert r["params_kept"] == r["k"] * (D + 1)  # the parameter rule written in the config
    table = (out / "table.md").read_text()
    for r in res["rows"]:
        assert f"| {r['variant']} | {100 * r['mean']:.2f} ±" in table
    assert re.search(r"(\d+) \(seed, method\) results computed, 0 reused", first)
    assert main(argv) == 0  # a rerun reuses every (seed, method) result and writes the same numbers
    assert re.search(r"(?m)^0 \(seed, method\) results computed, [1-9]\d* reused", capsys.readouterr().out)
    assert json.loads((out / "results.json").read_text())["rows"] == res["rows"]


def test_every_command_has_an_end_to_end_test():
    """Each registered command is run by a test here (or by tests/test_reproduce.py for `reproduce`)."""
    from jaxprune.cli._main import _COMMANDS

    src = open(__file__).read()
    for name in _COMMANDS:
        assert name == "reproduce" or re.search(rf'\["{name}", ', src), name
