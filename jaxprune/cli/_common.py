"""Shared pieces of the command line: problem options, argument errors, input/output path checks, output,
progress.

Exit codes: 0 success; 1 the command ran but its numerical result failed (a solver's status, a non-finite
error): the results are still printed and written, with their status, and one line on stderr says why; 2 a bad
argument, input file or output path: one line on stderr naming it, and nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import Overlaps, SGDConfig, load_state, validate_overlaps
from .._io import atomic_write_bytes, atomic_write_json

__all__ = [
    "CLIError",
    "CommandFailed",
    "PLOT_FORMATS",
    "check_input_file",
    "check_output_file",
    "check_output_dir",
    "load_state_file",
    "add_problem_options",
    "add_output_options",
    "problem_from_args",
    "parse_floats",
    "positive_float",
    "nonnegative_float",
    "positive_int",
    "nonnegative_int",
    "fraction",
    "write_json",
    "save_plot",
    "Progress",
]


class CLIError(Exception):
    """A bad argument or input: printed as one line, exit code 2."""


class CommandFailed(Exception):
    """The command ran but its numerical result failed (outputs already written): one line, exit code 1."""


#: figure formats `--plot` accepts (matplotlib's raster and vector back ends that need no extra software)
PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def _first_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path(".")


def _check_folder_for(path: Path, what: str) -> None:
    """The folder that will hold `path` is (or can be made) a writable folder."""
    anc = _first_existing(path.parent)
    if not anc.is_dir():
        raise CLIError(f"{what} {path}: {anc} is not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise CLIError(f"{what} {path}: folder {anc} is not writable")


def check_output_file(path: Path | None, what: str, *, plot: bool = False) -> None:
    """Check before any work that an output file can be written: not a folder, below a writable folder, and
    for a figure a known format (`PLOT_FORMATS`; no extension means png)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{what} {path}: is a folder, expected a file path")
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise CLIError(f"{what} {path}: file is not writable")
    _check_folder_for(path, what)
    if plot:
        ext = path.suffix.lstrip(".").lower()
        if ext and ext not in PLOT_FORMATS:
            raise CLIError(f"{what} {path}: unknown figure format {ext!r}, expected one of {', '.join(PLOT_FORMATS)}")


def check_output_dir(path: Path | None, what: str) -> None:
    """Check before any work that an output folder exists as a writable folder or can be created."""
    if path is None:
        return
    path = Path(path)
    if os.path.lexists(path):
        if not path.is_dir():
            raise CLIError(f"{what} {path}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise CLIError(f"{what} {path}: folder is not writable")
        return
    _check_folder_for(path, what)


def check_input_file(path: Path | str | None, what: str, *, text: bool = True) -> None:
    """Check before any work that an input file exists, is a readable regular file and (text files) UTF-8."""
    if path is None:
        return
    path = Path(path)
    if not path.exists():
        raise CLIError(f"{what} {path} does not exist")
    if path.is_dir():
        raise CLIError(f"{what} {path} is a folder, expected a file")
    if not os.access(path, os.R_OK):
        raise CLIError(f"{what} {path} is not readable")
    if text:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise CLIError(f"{what} {path} cannot be read: {e.strerror}") from None
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CLIError(f"{what} {path} is not UTF-8 text (byte {e.start}); expected a JSON/TOML file") from None
        if "\x00" in decoded:
            raise CLIError(f"{what} {path} holds NUL bytes (a binary file?); expected a JSON/TOML file")


def load_state_file(path, what: str = "state file"):
    """Read a JSON state file {Q, R, T, v, v_star} for a command: every problem is a one-line `CLIError`."""
    check_input_file(path, what)
    try:
        return load_state(path)
    except (OSError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise CLIError(msg if str(path) in msg else f"{what} {path}: {msg}") from None


def _typed(kind, test, allowed):
    def convert(text: str):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if not test(x):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return x

    convert.__name__ = allowed
    return convert


positive_float = _typed(float, lambda x: math.isfinite(x) and x > 0, "a number > 0")
nonnegative_float = _typed(float, lambda x: math.isfinite(x) and x >= 0, "a number >= 0")
positive_int = _typed(int, lambda x: x >= 1, "an integer >= 1")
nonnegative_int = _typed(int, lambda x: x >= 0, "an integer >= 0")
fraction = _typed(float, lambda x: math.isfinite(x) and 0 < x <= 1, "a fraction in (0, 1]")


def parse_floats(text: str) -> np.ndarray:
    """A comma-separated list of finite numbers (a single number is a list of one)."""
    try:
        vals = np.asarray([float(t) for t in text.split(",") if t.strip()], dtype=float)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if vals.size == 0 or not np.all(np.isfinite(vals)):
        raise argparse.ArgumentTypeError(f"expected finite comma-separated numbers, got {text!r}")
    return vals


def add_problem_options(p: argparse.ArgumentParser, *, K: int = 2, M: int = 2, eta: float = 0.5) -> None:
    """The teacher-student problem: sizes, learning rates, noise, mode, initial state."""
    g = p.add_argument_group("problem")
    g.add_argument("--K", type=positive_int, default=K, help=f"student hidden units (default {K})")
    g.add_argument("--M", type=positive_int, default=M, help=f"teacher hidden units (default {M})")
    g.add_argument("--eta", type=positive_float, default=eta, help=f"first-layer learning rate (default {eta})")
    g.add_argument("--eta-v", type=nonnegative_float, default=None,
                   help="second-layer learning rate (two-layer mode; default eta)")
    g.add_argument("--sigma", type=nonnegative_float, default=0.0,
                   help="label-noise standard deviation (default 0)")
    g.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="weight decay lambda (default 0)")
    g.add_argument("--v-star", type=parse_floats, default=None,
                   help="teacher second layer: one number or M comma-separated (default 1)")
    g.add_argument("--mode", choices=("scm", "two-layer"), default="scm",
                   help="soft committee machine (v fixed) or two-layer (v trained); default scm")
    g.add_argument("--activation", choices=("erf", "linear"), default="erf")
    g.add_argument("--init", type=Path, default=None,
                   help="initial state JSON (overrides --K, --M, --v-star); default: Q0 = I, T = I, "
                        "R0[i,n] = 1e-3 sin(1 + i M + n), v = 1 (the reference tool's initial condition)")
    g.add_argument("--init-scale", type=positive_float, default=1.0,
                   help="Q0 = scale^2 I for the built-in initial state (default 1)")


def add_output_options(p: argparse.ArgumentParser, *, plot: bool = True) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON")
    if plot:
        g.add_argument("--plot", type=Path, default=None, metavar="PATH.png", help="write a figure")
    g.add_argument("--quiet", action="store_true", help="print less")


def problem_from_args(args):
    """Build `(state0, config)` from the problem options (built-in state: `Overlaps.reference`)."""
    if args.init is not None:
        state = load_state_file(args.init, "--init")
    else:
        M = args.M
        vs = np.ones(M) if args.v_star is None else args.v_star
        if vs.size not in (1, M):
            raise CLIError(f"--v-star needs 1 or M={M} values, got {vs.size}")
        q_scale = args.init_scale * args.init_scale
        if not math.isfinite(q_scale):
            raise CLIError(f"--init-scale must be in (0, 1e154) (its square is Q0's diagonal), got {args.init_scale:g}")
        state = Overlaps.reference(args.K, M, v_star=vs if vs.size == M else float(vs[0]), v=1.0, q_scale=q_scale)
        try:  # the range checks of a state file, spelt with the options that set the built-in state
            validate_overlaps(state, name="initial")
        except ValueError as e:
            msg = str(e).replace("initial.v_star", "--v-star").replace("initial.Q", "--init-scale (Q0)")
            raise CLIError(msg.replace("initial", "the built-in initial state")) from None
    eta_v = args.eta if args.eta_v is None else args.eta_v
    try:
        config = SGDConfig(
            eta=args.eta, eta_v=eta_v, sigma=args.sigma, weight_decay=args.weight_decay,
            mode=args.mode, activation=args.activation,
        )
    except ValueError as e:
        raise CLIError(_flag_message(str(e))) from None
    return state, config


def _flag_message(message: str) -> str:
    """A library message that starts with a field name (`eta must be ...`), spelt as its option (`--eta`)."""
    for field in ("weight_decay", "eta_v", "eta", "sigma"):
        if message.startswith(field + " "):
            return "--" + field.replace("_", "-") + message[len(field):]
    return message


def write_json(path: Path | None, payload: dict) -> None:
    """Write a command's results atomically (strict JSON; arrays as lists; no-op without a path)."""
    if path is None:
        return
    atomic_write_json(path, payload)


def save_plot(fig, path: Path | None) -> None:
    """Write a matplotlib figure atomically in the format its extension names (`PLOT_FORMATS`; none: png)."""
    if path is None:
        return
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in PLOT_FORMATS:
        raise CLIError(f"--plot {path}: unknown figure format {fmt!r}, expected one of {', '.join(PLOT_FORMATS)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


class Progress:
    """A tqdm bar that appears only when the work lasts longer than a few seconds (or when forced)."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True, delay: float = 2.0):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, delay=delay, disable=not enabled, file=sys.stderr,
                         leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def timed() -> Iterator[dict]:
    info = {}
    t = time.perf_counter()
    try:
        yield info
    finally:
        info["seconds"] = time.perf_counter() - t
