"""Shared pieces of the command line: problem options, argument errors, output, progress."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = [
    "CLIError",
    "add_problem_options",
    "add_output_options",
    "problem_from_args",
    "parse_floats",
    "positive_float",
    "nonnegative_float",
    "positive_int",
    "fraction",
    "write_json",
    "save_plot",
    "Progress",
]


class CLIError(Exception):
    """A bad argument or input: printed as one line, exit code 2."""


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
    """Build `(state0, config)` from the problem options."""
    import jax.numpy as jnp

    from .._dynamics import SGDConfig
    from .._overlaps import Overlaps, load_state

    if args.init is not None:
        try:
            state = load_state(args.init)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from None
    else:
        K, M = args.K, args.M
        vs = np.ones(M) if args.v_star is None else args.v_star
        if vs.size == 1:
            vs = np.full(M, float(vs[0]))
        if vs.size != M:
            raise CLIError(f"--v-star needs 1 or M={M} values, got {vs.size}")
        i, n = np.arange(K)[:, None], np.arange(M)[None, :]
        state = Overlaps(
            Q=jnp.eye(K) * args.init_scale**2,
            R=jnp.asarray(1e-3 * np.sin(1.0 + i * M + n)),
            T=jnp.eye(M),
            v=jnp.ones(K),
            v_star=jnp.asarray(vs),
        )
    eta_v = args.eta if args.eta_v is None else args.eta_v
    try:
        config = SGDConfig(
            eta=args.eta, eta_v=eta_v, sigma=args.sigma, weight_decay=args.weight_decay,
            mode=args.mode, activation=args.activation,
        )
    except ValueError as e:
        raise CLIError(str(e)) from None
    return state, config


def write_json(path: Path | None, payload: dict) -> None:
    if path is None:
        return
    from .._io import atomic_write_json

    atomic_write_json(path, payload)


def save_plot(fig, path: Path | None) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .._io import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
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
