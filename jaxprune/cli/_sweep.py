"""`jaxprune sweep SPEC --out DIR`: a resumable, sharded batch sweep over a grid (see `jaxprune._sweep`).

Example spec (JSON; TOML works too), also in `benchmarks/phase_diagram.json`:

    {"kind": "fixed_point",
     "axes": {"eta": [0.1, 0.5, 1.0, 2.0], "sigma": [0.01, 0.1, 0.3]},
     "fixed": {"K": 2, "M": 2, "mode": "scm", "alpha": 200},
     "chunk_size": 16}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import CLIError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of ODE / fixed-point / simulation problems (resumable, sharded over devices)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", type=Path, help="grid spec file (.json or .toml)")
    p.add_argument("--out", type=Path, required=True, help="output directory (chunks/, results.csv)")
    p.add_argument("--plot", nargs="+", default=None, metavar="AXIS",
                   help="plot eps_g over one axis (line) or two axes (heat map) into OUT/plot.png")
    p.add_argument("--plot-path", type=Path, default=None, help="figure path (default OUT/plot.png)")
    p.add_argument("--linear", action="store_true", help="linear colour/y scale in the plot (default log)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from .._status import Status
    from ..experiments._sweep import load_spec, plot_results, run_sweep
    from ._common import save_plot

    try:
        spec = load_spec(args.spec)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    if args.plot is not None and not 1 <= len(args.plot) <= 2:
        raise CLIError(f"--plot takes one or two axis names, got {len(args.plot)}")
    if args.plot is not None:
        for a in args.plot:
            if a not in spec["axes"]:
                raise CLIError(f"--plot axis {a!r} is not a swept axis of the spec ({', '.join(spec['axes'])})")
    try:
        rows = run_sweep(spec, args.out, progress=args.progress)
    except ValueError as e:
        raise CLIError(str(e)) from None
    n_ok = sum(r["status"] == Status.SUCCESS for r in rows)
    print(f"{len(rows)} configurations, {n_ok} SUCCESS; table: {args.out / 'results.csv'}")
    if args.plot is not None:
        fig = plot_results(args.out / "results.csv", args.plot, log=not args.linear)
        path = args.plot_path or (args.out / "plot.png")
        save_plot(fig, path)
        print(f"figure: {path}")
    return 0
