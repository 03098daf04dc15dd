"""`jaxprune reproduce`: one quick run (module fixture), then its report, results, resumability and failures."""

import json
import re
import shutil
import time

import numpy as np
import pytest

from jaxprune.experiments import _reproduce
from jaxprune.cli import main

_NUM = re.compile(r"(?<![A-Za-z_\d.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One cold quick run (two worker processes, as the CLI runs it on two cores)."""
    out = tmp_path_factory.mktemp("reproduce")
    t = time.perf_counter()
    code = main(["reproduce", "--out", str(out), "--quick", "--quiet", "--jobs", "2"])
    return {"out": out, "code": code, "seconds": time.perf_counter() - t}


def _results(out):
    return json.loads((out / "results.json").read_text())


def _mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.json")}


def _copy(quick, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(quick["out"], dst)
    return dst


def _replay_parts(quick, monkeypatch, names):
    """Replace the named parts by functions that return the quick run's own results (the recomputation logic is
    under test, not the parts); returns the list of parts actually called (in-process runs: `--jobs 1`)."""
    calls = []
    for name in names:
        result = json.loads((quick["out"] / "parts" / f"{name}.json").read_text())["result"]

        def replay(s, work, log, _name=name, _result=result):
            calls.append(_name)
            return _result

        monkeypatch.setitem(_reproduce._PART_FUNCTIONS, name, replay)
    return calls


def _tables(md: str) -> list[list[str]]:
    """Markdown tables as lists of body lines (header and separator dropped)."""
    tables, cur = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            if cur is None:
                cur = []  # header line
                tables.append(cur)
            elif not re.fullmatch(r"\|(-+\|)+", line.strip()):
                cur.append(line)
        else:
            cur = None
    return tables


def _tolerance(token: str) -> float:
    """Half a unit in the last printed digit of `token`."""
    mant, _, exp = token.lower().partition("e")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return 0.5 * 10.0 ** (-decimals + (int(exp) if exp else 0))


def _all_numbers(obj, acc):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        acc.append(float(obj))
    elif isinstance(obj, str):
        acc.extend(float(t) for t in _NUM.findall(obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _all_numbers(k, acc)
            _all_numbers(v, acc)
    elif isinstance(obj, list):
        for v in obj:
            _all_numbers(v, acc)


@pytest.mark.xdist_group("reproduce_quick")
def test_quick_run_succeeds(quick):
    assert quick["code"] == 0
    res = _results(quick["out"])
    assert res["ok"] and res["mode"] == "quick" and res["failed_parts"] == []
    assert set(res["parts"]) == set(_reproduce.PARTS)
    for name, part in res["parts"].items():
        assert part["status"] == "ok", (name, part.get("error"))
        assert part["reused"] is False
        assert part["settings"] == json.loads(json.dumps(_reproduce.reproduce_settings("quick")[name]))
    # a few physics sanity checks on the numbers themselves
    ode = res["parts"]["ode_vs_sim"]["result"]
    assert all(r["rms_deviation"] < 0.2 for r in ode["runs"])
    fp = res["parts"]["fixed_points"]["result"]
    assert fp["converged"] >= 1
    for p in fp["points"]:
        if p["status"] == 0:  # implicit gradient agrees with finite differences
            assert p["d_eps_d_eta"] == pytest.approx(p["fd_d_eps_d_eta"], rel=1e-3, abs=1e-7)
            assert p["d_eps_d_sigma"] == pytest.approx(p["fd_d_eps_d_sigma"], rel=1e-3, abs=1e-7)
            assert p["d_eps_d_sigma"] > 0  # more label noise, larger error


@pytest.mark.xdist_group("reproduce_quick")
def test_report_references_existing_figures(quick):
    out = quick["out"]
    md = (out / "report.md").read_text()
    figs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(figs) >= 5
    for f in figs:
        path = out / f
        assert path.is_file(), f
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    assert "failed" not in md.lower().split("all parts succeeded")[0]


@pytest.mark.xdist_group("reproduce_quick")
def test_figures_drawn_early_are_not_drawn_again(quick, tmp_path):
    """While workers run, the figures of finished parts are drawn (`ready`); the final call draws only the rest."""
    records = {n: json.loads((quick["out"] / "parts" / f"{n}.json").read_text()) for n in _reproduce.PARTS}
    fig_dir, made = tmp_path / "figures", {}
    early = {"ode_vs_sim", "design_network", "design_population"}  # the design figure needs all three levels
    _reproduce._figures({n: records[n] for n in early}, fig_dir, made, ready=early)
    assert set(made) == {"ode_vs_sim"} and [p.name for p in fig_dir.iterdir()] == ["ode_vs_sim.png"]
    stamp = (fig_dir / "ode_vs_sim.png").stat().st_mtime_ns
    final = _reproduce._figures(records, fig_dir, made)
    assert final is made and set(made) == set(_results(quick["out"])["figures"])
    assert all(v.startswith("figures/") for v in made.values())
    assert (fig_dir / "ode_vs_sim.png").stat().st_mtime_ns == stamp  # not drawn twice


@pytest.mark.xdist_group("reproduce_quick")
def test_every_table_number_comes_from_results(quick):
    out = quick["out"]
    md = (out / "report.md").read_text()
    acc = []
    _all_numbers(_results(out), acc)
    known = np.sort(np.asarray(acc, float))
    checked = 0
    for table in _tables(md):
        for line in table:
            for token in _NUM.findall(line):
                x, tol = float(token), _tolerance(token)
                i = np.searchsorted(known, x)
                near = known[max(i - 1, 0): i + 1]
                assert near.size and np.min(np.abs(near - x)) <= 1.01 * tol + 1e-300, (token, line)
                checked += 1
    assert checked > 200


@pytest.mark.xdist_group("reproduce_quick")
def test_table_values_match_their_rows(quick):
    out = quick["out"]
    md = (out / "report.md").read_text()
    res = _results(out)
    rows = res["parts"]["paper"]["result"]["rows"]
    by = {(r["sigma"], r["method"], r["option"], r["k"]): r for r in rows}
    section = md.split("### Theory against measurement")[1]
    table = _tables(section)[0]
    assert len(table) == len(rows)
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        r = by[(float(cells[0]), cells[1], cells[2], int(cells[3]))]
        assert float(cells[4]) == pytest.approx(r["predicted"], rel=1e-3)
        assert float(cells[5]) == pytest.approx(r["measured"], rel=1e-3)
    # every claim cell from the students' rows is recomputed here from the per-student values (paired by
    # student, standard error over students), independently of the claims code
    claims = [e for e in res["claims"] if e["source"].startswith(("measured", "theory on the trained"))
              and e["setting"].startswith("paper:")]
    assert claims
    field = {"measured": "measured_mean_per_seed", "theory": "predicted_per_seed"}
    for e in claims:
        f = field[e["source"].split()[0]]
        for c in e["cells"]:
            ra = by[(c["sigma"], e["a"]["method"], e["a"]["option"], c["k"])]
            rb = by[(c["sigma"], e["b"]["method"], e["b"]["option"], c["k"])]
            d = np.asarray(ra[f]) - np.asarray(rb[f])
            assert c["diff"] == pytest.approx(d.mean(), rel=1e-9, abs=1e-12)
            assert c["stderr"] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size), rel=1e-9, abs=1e-12)
            tie = abs(d.mean()) <= max(2 * c["stderr"], 1e-9 * max(abs(c["a"]), abs(c["b"])))
            assert c["outcome"] == ("tie" if tie else "better" if d.mean() < 0 else "worse")


@pytest.mark.xdist_group("reproduce_quick")
def test_results_hold_the_claims_and_the_report_states_them(quick):
    res = _results(quick["out"])
    md = (quick["out"] / "report.md").read_text()
    claims = res["claims"]
    assert isinstance(claims, list) and claims
    ids = {e["id"] for e in claims}
    assert {"C3", "C4", "C4-rw", "C4-imp", "C5", "C6", "C7", "C8"} <= ids
    sources = {e["source"] for e in claims}
    assert {"theory (idealised state)", "theory (ODE-trained students)", "theory on the trained students",
            "measured (concrete pruned networks)", "real data"} <= sources
    for e in claims:
        assert set(e) >= {"id", "statement", "a", "b", "cells", "verdict"}
        assert set(e["a"]) == set(e["b"]) == {"method", "option"}
        # "not tested": the claim covers no cell of this setting (C5 at the quick mode's K = 10)
        assert e["verdict"] in ("holds", "holds in part", "does not hold") or (
            e["verdict"] == "not tested" and not any(c["claimed"] for c in e["cells"]))
        for c in e["cells"]:
            assert set(c) >= {"sigma", "k", "a", "b", "diff", "stderr", "outcome"}
            assert c["outcome"] in ("better", "tie", "worse")
        assert f"#### {e['id']} — {e['source']}: **{e['verdict'].upper()}**" in md
        if e["verdict"] == "does not hold" and not e["ours"]:
            assert "significantly worse at" in e["reason"] or "significant difference at" in e["reason"]
    # ours in their own section, after the paper's
    head, _, tail = md.partition("### Our findings beyond the paper")
    assert tail and all(f"#### {e['id']} " not in head for e in claims if e["ours"])
    # exact theory at the idealised K = 6 state: k = 1 is an exact tie for C4, as the paper's theory says
    (c4,) = [e for e in claims if e["id"] == "C4" and e["source"] == "theory (idealised state)"]
    assert {c["k"]: c["outcome"] for c in c4["cells"]}[1] == "tie" and c4["verdict"] == "holds"
    wm = res["parts"]["winner_map"]["result"]
    assert wm["cells"] == len(wm["rows"]) > 0


@pytest.mark.xdist_group("reproduce_quick")
def test_rerun_reuses_every_part(quick, tmp_path):
    out = _copy(quick, tmp_path)
    before = _mtimes(out)
    t = time.perf_counter()
    assert main(["reproduce", "--out", str(out), "--quick", "--quiet"]) == 0
    seconds = time.perf_counter() - t
    assert _mtimes(out) == before
    res = _results(out)
    assert all(p["reused"] for p in res["parts"].values())
    assert seconds < max(30.0, 0.5 * quick["seconds"])
    assert "reused" in (out / "report.md").read_text()


@pytest.mark.xdist_group("reproduce_quick")
def test_force_recomputes_only_the_named_part(quick, tmp_path, monkeypatch):
    out = _copy(quick, tmp_path)
    before = _mtimes(out)
    calls = _replay_parts(quick, monkeypatch, _reproduce.PARTS)
    assert main(["reproduce", "--out", str(out), "--quick", "--quiet", "--force", "ode_vs_sim", "--jobs", "1"]) == 0
    assert calls == ["ode_vs_sim"]  # the named part only, though every part could have been run
    after = _mtimes(out)
    assert after["ode_vs_sim.json"] != before["ode_vs_sim.json"]
    assert {k: v for k, v in after.items() if k != "ode_vs_sim.json"} == \
        {k: v for k, v in before.items() if k != "ode_vs_sim.json"}
    res = _results(out)
    assert res["parts"]["ode_vs_sim"]["reused"] is False
    assert all(p["reused"] for n, p in res["parts"].items() if n != "ode_vs_sim")


@pytest.mark.xdist_group("reproduce_quick")
def test_corrupted_or_stale_parts_are_recomputed(quick, tmp_path, monkeypatch):
    out = _copy(quick, tmp_path)
    p = out / "parts" / "fixed_points.json"
    text = p.read_text()
    p.write_text(text[: len(text) // 2])  # a partial write
    q = out / "parts" / "ode_vs_sim.json"
    rec = json.loads(q.read_text())
    rec["settings"]["seeds"] = 99  # settings of another run
    q.write_text(json.dumps(rec))
    before = _mtimes(out)
    calls = _replay_parts(quick, monkeypatch, ["fixed_points", "ode_vs_sim"])
    assert main(["reproduce", "--out", str(out), "--quick", "--quiet", "--jobs", "1"]) == 0
    assert sorted(calls) == ["fixed_points", "ode_vs_sim"]  # exactly the two bad parts were recomputed
    res = _results(out)
    assert not res["parts"]["fixed_points"]["reused"] and not res["parts"]["ode_vs_sim"]["reused"]
    assert json.loads(p.read_text())["status"] == "ok"
    after = _mtimes(out)
    assert after["paper.json"] == before["paper.json"]
    assert res["parts"]["paper"]["reused"]


@pytest.mark.xdist_group("reproduce_quick")
def test_failing_part_is_recorded_and_others_go_on(quick, tmp_path, monkeypatch):
    out = _copy(quick, tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setitem(_reproduce._PART_FUNCTIONS, "winner_map", boom)
    code = main(["reproduce", "--out", str(out), "--quick", "--quiet", "--force", "winner_map"])
    assert code == 1
    res = _results(out)
    assert res["failed_parts"] == ["winner_map"] and not res["ok"]
    assert "injected failure" in res["parts"]["winner_map"]["error"]
    assert all(p["status"] == "ok" for n, p in res["parts"].items() if n != "winner_map")
    md = (out / "report.md").read_text()
    assert "Part `winner_map` failed" in md and "injected failure" in md
    assert "## 3. Pruning" in md and "## 6. Real data" in md
    # the failure is not reused: the next run recomputes the part (and only it)
    monkeypatch.undo()
    calls = _replay_parts(quick, monkeypatch, ["winner_map"])
    assert main(["reproduce", "--out", str(out), "--quick", "--quiet", "--jobs", "1"]) == 0
    assert calls == ["winner_map"]
    res = _results(out)
    assert res["ok"] and res["parts"]["winner_map"]["reused"] is False


@pytest.mark.parametrize("argv", [
    ["reproduce", "--out", "x", "--quick", "--full"],
    ["reproduce", "--out", "x", "--jobs", "0"],
    ["reproduce", "--out", "x", "--force", "no-such-part"],
    ["reproduce", "--out", "x", "--parts"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["reproduce", "--out", str(f), "--quick"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_settings_per_mode():
    q, d, f = (_reproduce.reproduce_settings(m) for m in _reproduce.MODES)
    # the seed paper's protocol and sizes in the default run (docs/theory.md 6.3)
    for m in (d, f):
        assert m["paper"]["N"] == 500 and m["paper"]["steps"] == 800_000 and m["paper"]["seeds"] >= 5
        assert m["paper"]["protocol"] == "paper" and m["regime_5_20"]["protocol"] == "paper"
        assert (m["regime_5_20"]["K"], m["regime_5_20"]["M"], m["regime_5_20"]["N"]) == (20, 5, 500)
        assert [20, 5] in m["theory_claims"]["regimes"] and [20, 5] in m["theory_claims"]["ode_regimes"]
    assert d["paper"]["K"] == 6 and d["paper"]["M"] == 2 and d["paper"]["sigmas"] == [0.0, 0.25]
    assert q["paper"]["steps"] < d["paper"]["steps"] and d["regime_5_20"]["steps"] < f["regime_5_20"]["steps"]
    assert q["paper"]["seeds"] >= 2  # a standard error exists even in the smoke run
    with pytest.raises(ValueError, match="mode"):
        _reproduce.reproduce_settings("huge")
