"""The command line: theory commands, one-line errors with exit code 2, JSON and plot outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxprune.cli import main


def test_error_command(tmp_path, capsys):
    state = {"Q": [[1.0, 0.0], [0.0, 1.0]], "R": [[1.0, 0.0], [0.0, 1.0]], "T": [[1.0, 0.0], [0.0, 1.0]],
             "v": [1.0, 1.0], "v_star": [1.0, 1.0]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(state))
    assert main(["error", str(path), "--sigma", "0.5", "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert abs(out["eps_g"]) < 1e-12  # student equals teacher
    assert out["test_mse"] == pytest.approx(0.25)
    assert "noise-free" in capsys.readouterr().out


def test_ode_command_reproduces_reference_and_writes_outputs(tmp_path, capsys):
    code = main(["ode", "--K", "2", "--M", "2", "--eta", "0.5", "--alpha", "10", "--integrator", "euler",
                 "--json", str(tmp_path / "o.json"), "--plot", str(tmp_path / "o.png"), "--quiet"])
    assert code == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["status"] == 0 and out["eps_g"][0] == pytest.approx(0.666305, abs=1e-6)
    assert np.asarray(out["final_state"]["Q"]).shape == (2, 2)
    assert (tmp_path / "o.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, words",
    [
        (["ode", "--eta", "-1"], "--eta"),
        (["ode", "--K", "0"], "--K"),
        (["ode", "--sigma", "nan"], "--sigma"),
        (["ode", "--v-star", "1,2,3", "--M", "2"], "v-star"),
        (["ode", "--integrator", "rk99"], "--integrator"),
        (["error", "/nonexistent/state.json"], "does not exist"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, words, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert words in err and len(err.splitlines()) == 1


def test_non_psd_state_file_is_rejected(tmp_path, capsys):
    bad = {"Q": [[1.0]], "R": [[2.0]], "T": [[1.0]], "v": [1.0], "v_star": [1.0]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["error", str(path)]) == 2
    assert "positive semi-definite" in capsys.readouterr().err


def test_console_entry_point_exit_codes(tmp_path):
    """`python -m jaxprune.cli` as a process: bad input is exit code 2 with one stderr line; --help states the
    exit-code convention."""
    import subprocess
    import sys

    (tmp_path / "d").mkdir()
    proc = subprocess.run([sys.executable, "-m", "jaxprune.cli", "error", str(tmp_path / "d")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "is a folder" in proc.stderr
    from jaxprune.cli._main import build_parser

    assert "Exit codes: 0 success; 1" in " ".join(build_parser().format_help().split())


def test_plot_format_follows_the_extension(tmp_path):
    """`save_plot` writes the format its extension names and refuses an unknown one, listing the allowed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxprune.cli._common import CLIError, save_plot

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_plot(fig, tmp_path / "a.svg")
    save_plot(fig, tmp_path / "a.pdf")
    save_plot(fig, tmp_path / "a")  # no extension: png
    assert (tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "a").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CLIError, match="png, pdf, svg"):
        save_plot(fig, tmp_path / "a.xyz")
    assert not (tmp_path / "a.xyz").exists()
    plt.close(fig)


def test_command_word_skips_global_options():
    from jaxprune.cli._main import command_word

    assert command_word(["ode", "--K", "3"]) == "ode"
    assert command_word(["--float32", "--compile-cache", "ode", "simulate"]) == "simulate"
    assert command_word(["--no-compile-cache", "bounds"]) == "bounds"
    assert command_word(["--help"]) is None


def test_ode_command_imports_only_what_it_needs(tmp_path):
    """Start-up (issue 18): `jaxprune ode` loads neither the experiments, nor matplotlib, nor the other
    commands' modules."""
    code = ("import sys; from jaxprune.cli._main import main; "
            "rc = main(['--no-compile-cache', 'ode', '--K', '2', '--M', '1', '--alpha', '1', '--quiet']); "
            "print(rc, sorted(m for m in sys.modules if m.startswith(('jaxprune.experiments', 'matplotlib', "
            "'jaxprune.cli._', 'jaxprune.design', 'jaxprune.realdata'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "0 ['jaxprune.cli._common', 'jaxprune.cli._main', 'jaxprune.cli._theory']", out
