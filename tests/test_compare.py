"""Method comparison tables, the seed-paper claims logic, and the prune/compare/paper commands."""

import itertools
import json

import numpy as np
import pytest

from jaxprune.pruning import best_by_method, compare_methods, format_compare_table, prune_expected
from jaxprune import overlaps_from_weights, save_state
from jaxprune.experiments._paper import claims_from_rows
from jaxprune.cli import main


def np_eps(Q, R, T, v, vs):
    a = lambda C, d1, d2: np.arcsin(C / np.sqrt(np.outer(1 + d1, 1 + d2)))
    return (v @ a(Q, np.diag(Q), np.diag(Q)) @ v + vs @ a(T, np.diag(T), np.diag(T)) @ vs
            - 2 * v @ a(R, np.diag(Q), np.diag(T)) @ vs) / np.pi


@pytest.fixture
def state(rng):
    w, ws = rng.normal(size=(4, 50)), rng.normal(size=(2, 50))
    return overlaps_from_weights(w, ws, rng.normal(size=4), np.array([1.5, 1.0]))


def test_prune_expected_random_node_matches_brute_force(state):
    Q, R, T, v, vs = (np.asarray(a, float) for a in (state.Q, state.R, state.T, state.v, state.v_star))
    errs = [np_eps(Q[np.ix_(S, S)], R[list(S)], T, v[list(S)], vs) for S in itertools.combinations(range(4), 2)]
    row = prune_expected(state, "random-node", 2)
    assert row["mean"] == pytest.approx(np.mean(errs), rel=1e-10)
    assert row["std"] == pytest.approx(np.std(errs), rel=1e-8)
    assert row["params_kept"] == 2 * 500 + 2
    # a fraction is converted to a unit count: 0.5 of K = 4 is k = 2
    assert prune_expected(state, "random-node", 0.5)["mean"] == pytest.approx(row["mean"])


def test_random_edge_row_matches_its_closed_form(state):
    Q, R, T, v, vs = (np.asarray(a, float) for a in (state.Q, state.R, state.T, state.v, state.v_star))
    p = 0.3
    Qp = p * p * Q + (p - p * p) * np.diag(np.diag(Q))
    row = prune_expected(state, "random-edge", p)
    assert row["mean"] == pytest.approx(np_eps(Qp, p * R, T, v, vs), rel=1e-10)
    # a unit count for an edge method means the matched fraction k/K
    assert prune_expected(state, "random-edge", 2)["p"] == pytest.approx(0.5)


def test_compare_table_and_best(state):
    rows = compare_methods(state, budgets=[2], reweights=("none", "optimal"), rescales=("none", "optimal"))
    best = best_by_method(rows)
    assert set(m for m, _ in best) == {"random-node", "importance-node", "dpp-node", "random-edge",
                                       "magnitude-edge", "dpp-edge"}
    for (m, k), r in best.items():
        assert r["mean"] == min(x["mean"] for x in rows if x["method"] == m and x.get("budget_k") == k)
    table = format_compare_table(rows)
    assert "dpp-node" in table and "unpruned" in table


def test_bad_keep_values(state):
    with pytest.raises(ValueError, match="keep"):
        prune_expected(state, "random-node", 7)
    with pytest.raises(ValueError, match="keep"):
        prune_expected(state, "random-edge", -0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        prune_expected(state, "lottery", 0.5)


def test_claims_logic_on_constructed_rows():
    def row(method, option, value):
        return {"sigma": 0.0, "k": 2, "method": method, "option": option, "predicted": value}

    rows = [row("dpp-node", "none", 2.0), row("dpp-node", "optimal", 0.5), row("random-node", "none", 3.0),
            row("random-node", "optimal", 0.9), row("importance-node", "none", 1.0),
            row("importance-node", "optimal", 0.4), row("random-edge", "none", 0.8), row("random-edge", "optimal", 0.45)]
    (c,) = claims_from_rows(rows)
    assert c["claim1_dpp_beats_random"] and not c["claim1_dpp_beats_importance"]
    assert c["claim1_plain_dpp_beats_random"] and not c["claim1_plain_dpp_beats_importance"]
    assert c["claim2_random_edge_beats_dpp_node"]


def test_prune_and_compare_commands(tmp_path, state, capsys):
    path = save_state(tmp_path / "s.json", state)
    assert main(["prune", str(path), "--method", "dpp-node", "--keep", "2", "--reweight", "optimal",
                 "--jitter", "1e-6", "--json", str(tmp_path / "p.json")]) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["k"] == 2 and out["exact"] and out["mean"] >= 0
    assert main(["compare", str(path), "--json", str(tmp_path / "c.json"), "--plot", str(tmp_path / "c.png")]) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["rows"]) > 10
    assert main(["prune", str(path), "--method", "random-node", "--keep", "9"]) == 2
    assert "keep" in capsys.readouterr().err


@pytest.mark.slow
def test_paper_quick_runs(tmp_path, capsys):
    assert main(["paper", "--quick", "--sigmas", "0", "--no-map", "--json", str(tmp_path / "paper.json")]) == 0
    out = json.loads((tmp_path / "paper.json").read_text())
    rows = out["simulation"]["rows"]
    # node pruning: predicted and measured come from the same overlaps, so they agree up to mask sampling
    imp = [r for r in rows if r["method"] == "importance-node"]
    assert all(abs(r["predicted"] - r["measured"]) < 1e-9 for r in imp)
    assert out["claims"]["predicted"]


def test_gap_vs_N_tiny_run(tmp_path, capsys):
    """Two input sizes at the same alpha through the library: structure, finiteness, and the importance-node
    gap checked against an independent NumPy evaluation of the same trained student and mask."""
    from jaxprune.experiments._paper import PaperSetting, gap_vs_N, train_students
    from jaxprune.cli._prune import _gap_figure, _gap_markdown

    # the earlier protocol (no row normalisation, importance |v_i| sqrt(Q_ii)), which the NumPy check below rebuilds
    base = PaperSetting(K=2, M=1, v_star=2.0, protocol="legacy")
    out = gap_vs_N(base, Ns=(30, 120), alpha=10, seeds=1, masks=3, reweights=("none",), rescales=("none",))
    assert out["Ns"] == [30, 120] and out["alpha"] == 10
    assert [(s["N"], s["steps"]) for s in out["summary"]] == [(30, 300), (120, 1200)]
    methods = {"random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"}
    fields = ("predicted", "measured", "abs_gap", "rel_gap", "signed_rel_gap", "spread", "rel_spread", "rms_rel_gap")
    for N in (30, 120):
        rows = [r for r in out["rows"] if r["N"] == N]
        assert {r["method"] for r in rows} == methods and len(rows) == 6  # one budget (k=1), one option each
        for r in rows:
            assert all(np.isfinite(r[f]) for f in fields), r
            assert r["abs_gap"] >= 0 and r["rel_gap"] >= 0 and r["spread"] >= 0
            # the gap is recomputed from the per-seed numbers of the underlying simulation check
            (src,) = [c for c in out["checks"][str(N)]["rows"] if (c["method"], c["option"]) == (r["method"], r["option"])]
            assert r["abs_gap"] == pytest.approx(abs(src["measured_mean_per_seed"][0] - src["predicted_per_seed"][0]))
        s = next(s for s in out["summary"] if s["N"] == N)
        for f in ("node_median_rel_gap", "edge_median_rel_gap", "edge_median_rel_spread", "edge_median_rms_rel_gap"):
            assert np.isfinite(s[f])
        assert s["importance_node_max_abs_gap"] < 1e-6
    assert np.isfinite(out["slopes"]["edge_median_rel_gap"])

    # independent: retrain the N=30 student (same seed, deterministic), keep its unit with the largest
    # |v_i| sqrt(Q_ii), and evaluate eps_g of the concrete pruned network from NumPy overlaps
    setting = PaperSetting(N=30, K=2, M=1, v_star=2.0, steps=300, protocol="legacy")
    teachers, students, _ = train_students(setting, 0.0, 1, seed=0)
    w, v = np.asarray(students.w[0], float), np.asarray(students.v[0], float)
    ws, vs = np.asarray(teachers.w_star[0], float), np.asarray(teachers.v_star[0], float)
    Q = w @ w.T / 30
    keep = int(np.argmax(np.abs(v) * np.sqrt(np.diag(Q))))
    wk = w[[keep]]
    eps = np_eps(wk @ wk.T / 30, wk @ ws.T / 30, ws @ ws.T / 30, v[[keep]], vs)
    (imp,) = [r for r in out["rows"] if r["N"] == 30 and r["method"] == "importance-node"]
    assert imp["measured"] == pytest.approx(eps, rel=1e-6, abs=1e-9)
    assert imp["predicted"] == pytest.approx(eps, rel=1e-6, abs=1e-9)

    assert "magnitude-edge" in _gap_markdown(out)
    _gap_figure(out, tmp_path / "gap.png")
    assert (tmp_path / "gap.png").stat().st_size > 1000
    # --plot belongs to the gap-vs-N mode
    assert main(["paper", "--plot", str(tmp_path / "x.png")]) == 2
    assert "--N-list" in capsys.readouterr().err

