"""Bad input to every command, table-driven (issue 17): malformed files, paths and values each give exit code 2
and exactly one line on stderr that names the argument or file (and, for values, the allowed range), before
any work: nothing is written, earlier results stay untouched.

Every case runs in-process through `jaxprune.cli.main` (argparse errors arrive as `SystemExit(2)`). Paths in
the table are relative to a scratch folder prepared by `scene`: `s.json` a valid K=M=2 state, `k1.json` a
K=1 state, `d/` a folder, `f` a regular file (so `f/x.json` lies below a file), `bin.json` random bytes,
`nul.json` NUL bytes, `trunc.json` truncated JSON, `list.json` a JSON list, `nan.json` a NaN entry,
`shape.json` wrong shapes, `str.json` a number string, `nonpsd.json` an overlap matrix that is not positive
semi-definite, `spec.json` a valid sweep spec, `badspec.json` an unknown sweep kind, `old/` an earlier
output folder holding `results.json`.
"""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from jaxprune.cli import main

STATE = {"Q": [[1.0, 0.1], [0.1, 1.0]], "R": [[0.5, 0.0], [0.0, 0.5]], "T": [[1.0, 0.0], [0.0, 1.0]],
         "v": [1.0, 1.0], "v_star": [1.0, 1.0]}


@pytest.fixture
def scene(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.json").write_text(json.dumps(STATE))
    (tmp_path / "k1.json").write_text(json.dumps({"Q": [[1.0]], "R": [[0.5]], "T": [[1.0]], "v": [1.0],
                                                  "v_star": [1.0]}))
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("a regular file\n")
    (tmp_path / "bin.json").write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 300, dtype=np.uint8)))
    (tmp_path / "nul.json").write_bytes(b"{\x00\x00}")
    (tmp_path / "trunc.json").write_text('{"Q": [[1.0, 0.1], ')
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "nan.json").write_text(json.dumps(STATE).replace("0.5", "NaN", 1))
    (tmp_path / "shape.json").write_text(json.dumps({**STATE, "R": [[0.5, 0.0, 0.0]]}))
    (tmp_path / "str.json").write_text(json.dumps({**STATE, "v": ["1", 1.0]}))
    (tmp_path / "nonpsd.json").write_text(json.dumps({**STATE, "R": [[2.0, 0.0], [0.0, 0.5]]}))
    (tmp_path / "spec.json").write_text(json.dumps({"kind": "ode", "axes": {"eta": [0.5]}, "fixed": {"alpha": 1}}))
    (tmp_path / "badspec.json").write_text(json.dumps({"kind": "nonsense", "axes": {"eta": [0.5]}}))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text('{"earlier": true}\n')
    np.savez(tmp_path / "net.npz", w=np.ones((6, 4)))  # lacks w_star, v, v_star
    return tmp_path


# (argv, words that the one stderr line must contain)
CASES = [
    # error
    (["error", "d"], ["d", "folder"]),
    (["error", "missing.json"], ["missing.json", "does not exist"]),
    (["error", "bin.json"], ["bin.json", "UTF-8"]),
    (["error", "nul.json"], ["nul.json", "NUL"]),
    (["error", "trunc.json"], ["trunc.json", "JSON"]),
    (["error", "list.json"], ["list.json", "object"]),
    (["error", "nan.json"], ["nan.json", "finite"]),
    (["error", "shape.json"], ["shape.json", "shape"]),
    (["error", "str.json"], ["str.json", "number"]),
    (["error", "nonpsd.json"], ["nonpsd.json", "positive semi-definite"]),
    (["error", "s.json", "--json", "d"], ["--json", "d", "folder"]),
    (["error", "s.json", "--json", "f/x.json"], ["--json", "f/x.json", "not a folder"]),
    (["error", "s.json", "--json", "old"], ["--json", "folder"]),
    (["error", "s.json", "--sigma", "nan"], ["--sigma", ">= 0"]),
    (["error", "s.json", "--sigma", "-1"], ["--sigma", ">= 0"]),
    (["error", "s.json", "--activation", "relu"], ["--activation", "erf"]),
    # ode
    (["ode", "--eta", "-1"], ["--eta", "> 0"]),
    (["ode", "--eta", "abc"], ["--eta", "> 0"]),
    (["ode", "--eta", "inf"], ["--eta", "> 0"]),
    (["ode", "--K", "0"], ["--K", ">= 1"]),
    (["ode", "--K", "1.5"], ["--K", "integer"]),
    (["ode", "--sigma", "nan"], ["--sigma", ">= 0"]),
    (["ode", "--alpha", "0"], ["--alpha", "> 0"]),
    (["ode", "--points", "0"], ["--points", ">= 1"]),
    (["ode", "--v-star", "1,2,3", "--M", "2"], ["--v-star", "M=2"]),
    (["ode", "--v-star", "1,nan"], ["--v-star", "finite"]),
    (["ode", "--integrator", "rk99"], ["--integrator", "tsit5"]),
    (["ode", "--spacing", "cubic"], ["--spacing", "log"]),
    (["ode", "--integrator", "euler", "--dt", "100", "--alpha", "10"], ["--dt", "(0, 20)"]),
    (["ode", "--plot", "x.xyz"], ["--plot", "x.xyz", "png"]),
    (["ode", "--plot", "d"], ["--plot", "folder"]),
    (["ode", "--plot", "f/x.png"], ["--plot", "not a folder"]),
    (["ode", "--json", "f/x.json"], ["--json", "not a folder"]),
    (["ode", "--init", "d"], ["--init", "folder"]),
    (["ode", "--init", "bin.json"], ["--init", "bin.json", "UTF-8"]),
    (["ode", "--init", "missing.json"], ["--init", "missing.json", "does not exist"]),
    (["ode", "--init", "nonpsd.json"], ["nonpsd.json", "positive semi-definite"]),
    (["ode", "--init-scale", "0"], ["--init-scale", "> 0"]),
    (["ode", "--init-scale", "1e200"], ["--init-scale", "(0, 1e154)"]),
    (["ode", "--v-star", "1e300"], ["--v-star", "3.35e+153"]),
    (["ode", "--mode", "three-layer"], ["--mode", "scm"]),
    # simulate
    (["simulate", "--N", "0"], ["--N", ">= 1"]),
    (["simulate", "--seeds", "0"], ["--seeds", ">= 1"]),
    (["simulate", "--test-samples", "-1"], ["--test-samples", ">= 0"]),
    (["simulate", "--records", "x"], ["--records", ">= 1"]),
    (["simulate", "--init", "s.json"], ["--init", "not supported"]),
    (["simulate", "--json", "d"], ["--json", "folder"]),
    (["simulate", "--plot", "out.bmpx"], ["--plot", "png"]),
    # fixed-point
    (["fixed-point", "--max-steps", "0"], ["--max-steps", ">= 1"]),
    (["fixed-point", "--eta", "nan"], ["--eta", "> 0"]),
    (["fixed-point", "--v-star", "1,1e300"], ["--v-star", "3.35e+153"]),
    (["fixed-point", "--init", "trunc.json"], ["trunc.json", "JSON"]),
    (["fixed-point", "--json", "f/x.json"], ["--json", "not a folder"]),
    # sweep
    (["sweep", "missing.json", "--out", "o"], ["missing.json", "does not exist"]),
    (["sweep", "d", "--out", "o"], ["spec file", "folder"]),
    (["sweep", "bin.json", "--out", "o"], ["bin.json", "UTF-8"]),
    (["sweep", "badspec.json", "--out", "o"], ["kind", "ode"]),
    (["sweep", "spec.json", "--out", "f"], ["--out", "f", "not a folder"]),
    (["sweep", "spec.json", "--out", "f/sub"], ["--out", "not a folder"]),
    (["sweep", "spec.json", "--out", "o", "--plot", "gamma"], ["--plot", "gamma", "eta"]),
    (["sweep", "spec.json", "--out", "o", "--plot", "eta", "--plot-path", "p.xyz"], ["--plot-path", "png"]),
    # prune
    (["prune", "d", "--method", "random-node", "--keep", "1"], ["state file", "folder"]),
    (["prune", "bin.json", "--method", "random-node", "--keep", "1"], ["bin.json", "UTF-8"]),
    (["prune", "s.json", "--method", "bogus-node", "--keep", "1"], ["--method", "random-node"]),
    (["prune", "s.json", "--method", "random-node", "--keep", "0"], ["--keep", "> 0"]),
    (["prune", "s.json", "--method", "random-node", "--keep", "nan"], ["--keep", "> 0"]),
    (["prune", "s.json", "--method", "random-node", "--keep", "5"], ["keep"]),
    (["prune", "s.json", "--method", "random-node", "--keep", "1", "--samples", "0"], ["--samples", ">= 1"]),
    (["prune", "s.json", "--method", "random-node", "--keep", "1", "--json", "d"], ["--json", "folder"]),
    # compare
    (["compare", "k1.json"], ["K >= 2"]),
    (["compare", "s.json", "--kernel", "X"], ["--kernel", "Q"]),
    (["compare", "s.json", "--jitter", "-1"], ["--jitter", ">= 0"]),
    (["compare", "s.json", "--plot", "c.xyz"], ["--plot", "png"]),
    (["compare", "nul.json"], ["nul.json", "NUL"]),
    # paper
    (["paper", "--sigmas", "a,b"], ["--sigmas"]),
    (["paper", "--sigmas", "-1"], ["--sigmas", ">= 0"]),
    (["paper", "--K", "1"], ["K"]),
    (["paper", "--N-list", "x"], ["--N-list", "integers"]),
    (["paper", "--plot", "g.png"], ["--plot", "--N-list"]),
    (["paper", "--json", "d"], ["--json", "folder"]),
    (["paper", "--steps", "0"], ["--steps", ">= 1"]),
    # bounds
    (["bounds", "--rho", "2"], ["--rho", "[-1, 1]"]),
    (["bounds", "--K", "0"], ["--K", ">= 1"]),
    (["bounds", "--group-sizes", "1,x"], ["--group-sizes", "integers"]),
    (["bounds", "--kernel", "Z"], ["--kernel", "Q"]),
    (["bounds", "--v-star", "1,2,3"], ["--v-star", "M=2"]),
    (["bounds", "--json", "f/b.json"], ["--json", "not a folder"]),
    # design
    (["design", "--level", "everything"], ["--level", "network"]),
    (["design", "--lr", "-1"], ["--lr", "> 0"]),
    (["design", "--weights", "missing.npz"], ["--weights", "missing.npz", "does not exist"]),
    (["design", "--weights", "d"], ["--weights", "folder"]),
    (["design", "--weights", "net.npz"], ["--weights", "net.npz"]),
    (["design", "--json", "d"], ["--json", "folder"]),
    (["design", "--plot", "x.xyz"], ["--plot", "png"]),
    (["design", "--budget", "x"], ["--budget"]),
    # reproduce
    (["reproduce", "--out", "f"], ["--out", "f", "not a folder"]),
    (["reproduce", "--out", "f/sub"], ["--out", "not a folder"]),
    (["reproduce", "--out", "old", "--jobs", "0"], ["--jobs", ">= 1"]),
    (["reproduce", "--out", "old", "--force", "nothing"], ["--force", "nothing"]),
    # realdata
    (["realdata", "--out", "f"], ["--out", "not a folder"]),
    (["realdata", "--out", "old", "--budgets", "0"], ["--budgets", "(0, 1]"]),
    (["realdata", "--out", "old", "--budgets", "1.5"], ["--budgets", "(0, 1]"]),
    (["realdata", "--out", "old", "--hidden", "0"], ["--hidden", "positive"]),
    (["realdata", "--out", "old", "--dataset", "mnist"], ["--data-dir"]),
    (["realdata", "--out", "old", "--dataset", "mnist", "--data-dir", "missing"], ["--data-dir", "does not exist"]),
    (["realdata", "--out", "old", "--jitter", "-1"], ["--jitter", ">= 0"]),
    (["realdata", "--out", "old", "--activation", "gelu"], ["--activation", "sigmoid"]),
    # no command, unknown command
    ([], ["COMMAND"]),
    (["prunes"], ["invalid choice"]),
]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(root.rglob("*"))}


def _run(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return e.code


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(a) or "(none)" for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(scene, argv, words, capsys):
    before = _snapshot(scene)
    code = _run(argv)
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert code == 2, f"exit code {code}; stderr: {err}"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
    assert _snapshot(scene) == before  # nothing written, nothing removed, earlier results untouched
    assert (scene / "old" / "results.json").read_text() == '{"earlier": true}\n'


def test_every_command_has_bad_input_cases():
    from jaxprune.cli._main import _COMMANDS

    covered = {a[0] for a, _ in CASES if a}
    assert set(_COMMANDS) <= covered


# ----------------------------------------------------------------------------- unwritable output folders


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the cases below a regular "
                                              "file (f/x.json) in the table stand in for them")
@pytest.mark.parametrize("argv", [
    ["error", "s.json", "--json", "ro/e.json"],
    ["sweep", "spec.json", "--out", "ro/sweep"],
    ["reproduce", "--out", "ro/rep", "--quick"],
    ["realdata", "--out", "ro/rd", "--quick"],
])
def test_unwritable_output_folder_is_one_line(scene, argv, capsys):
    ro = scene / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code = _run(argv)
    finally:
        ro.chmod(stat.S_IRWXU)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not writable" in err
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["error", "s.json", "--json", "ro/e.json"],
    ["sweep", "spec.json", "--out", "ro/sweep"],
    ["sweep", "spec.json", "--out", "ro"],
    ["reproduce", "--out", "ro/rep", "--quick"],
    ["realdata", "--out", "ro/rd", "--quick"],
    ["ode", "--plot", "ro/p.png"],
])
def test_unwritable_output_folder_as_the_checks_see_it(scene, argv, capsys, monkeypatch):
    """The same cases for any user, root included: the folder `ro` is reported unwritable by `os.access`."""
    from jaxprune.cli import _common

    (scene / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(_common.os, "access",
                        lambda p, mode: False if Path(p).name == "ro" and mode & os.W_OK else real(p, mode))
    before = _snapshot(scene)
    code = _run(argv)
    monkeypatch.setattr(_common.os, "access", real)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not writable" in err and "ro" in err
    assert _snapshot(scene) == before


def test_write_failure_after_the_work_is_one_line(scene, capsys, monkeypatch):
    """A write that fails after the checks (disk full, a folder removed meanwhile) is one line naming the
    file, exit code 2, and leaves no temporary file."""
    from jaxprune import _io

    real = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(_io.os, "replace", full_disk)
    code = _run(["error", "s.json", "--json", "e.json"])
    monkeypatch.setattr(_io.os, "replace", real)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "e.json" in err and "No space left on device" in err
    assert not any(p.name.startswith(".e.json") for p in scene.iterdir())
    assert not (scene / "e.json").exists()


def test_overflowing_state_is_refused(scene, capsys):
    """Issue 17 item 10: v = 1e300 gave eps_g = inf with exit code 0; such a state is refused, naming v."""
    (scene / "huge.json").write_text(json.dumps({**STATE, "v": [1e300, 1.0]}))
    code = _run(["error", "huge.json", "--json", "e.json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "huge.json" in err and "v" in err
    assert not (scene / "e.json").exists()


def test_numerical_failure_is_exit_1_with_one_line_and_a_record(scene, capsys, monkeypatch):
    """A non-finite error that gets past the state checks is reported: exit 1, one line on stderr, FAILED on
    stdout, and the JSON record marked non-finite (never a silent inf with exit code 0)."""
    from jaxprune.cli import _theory

    monkeypatch.setattr(_theory, "generalisation_error", lambda state, act: float("inf"))
    code = _run(["error", "s.json", "--json", "e.json"])
    cap = capsys.readouterr()
    assert code == 1
    assert len(cap.err.strip().splitlines()) == 1 and "not finite" in cap.err
    assert "FAILED" in cap.out
    rec = json.loads((scene / "e.json").read_text())
    assert rec["status"] == "non-finite" and rec["eps_g"] == "inf"
