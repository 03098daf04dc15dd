"""`jaxprune realdata --out DIR`: train MLPs on a real dataset, prune the first hidden layer with every node
and edge method at every budget, and decide the seed paper's real-data claim C8 (random edge + least-squares
reweighting against DPP node + fusing, both reweighted, at equal first-layer parameters) beside our comparisons
(see `jaxprune.realdata` for the methods and `jaxprune.experiments.run_realdata` for the run).

Writes DIR/results.json (every number), DIR/table.md and DIR/test_error_vs_params.png; per (seed, method)
results under DIR/seed<s>/ are reused by a rerun with the same settings. MNIST and CIFAR-10 are read from
--data-dir (nothing is downloaded). Example:

    jaxprune realdata --out runs/realdata                 # digits, under 5 minutes on 2 cores
    jaxprune realdata --dataset mnist --data-dir ~/data/mnist --out runs/mnist
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ._common import CLIError, parse_floats, positive_float, positive_int


def _nonnegative_int(text: str) -> int:
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if x < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return x


def _widths(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return vals


def register(subparsers) -> None:
    from ..realdata import DATASET_NAMES

    p = subparsers.add_parser(
        "realdata",
        help="prune the first hidden layer of MLPs trained on real data with every method (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", choices=DATASET_NAMES, default="digits", help="dataset (default digits)")
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the MNIST / CIFAR-10 files")
    p.add_argument("--hidden", type=_widths, default=None, metavar="H[,H2,...]",
                   help="hidden widths (default: digits 100; mnist 500,500; cifar10 1000,1000,1000)")
    p.add_argument("--activation", choices=("sigmoid", "relu", "tanh", "erf"), default="sigmoid",
                   help="hidden nonlinearity (default sigmoid)")
    p.add_argument("--budgets", type=parse_floats, default=None, metavar="F1,F2,...",
                   help="fractions in (0, 1] of first-layer parameters kept (default 0.1,0.2,...,0.9)")
    p.add_argument("--seeds", type=positive_int, default=None, help="training seeds (default 3; --quick 2)")
    p.add_argument("--masks", type=positive_int, default=None,
                   help="masks per randomised method and budget (default 5; --quick 3)")
    p.add_argument("--finetune-epochs", type=_nonnegative_int, default=0,
                   help="epochs of masked fine-tuning after pruning, reported separately (default 0)")
    p.add_argument("--beta", type=positive_float, default=1.0,
                   help="RBF node-kernel inverse width, in units of the mean squared distance (default 1)")
    p.add_argument("--jitter", type=float, default=1e-6,
                   help="DPP kernel jitter, relative to the mean diagonal (default 1e-6)")
    p.add_argument("--ridge", type=positive_float, default=1e-6,
                   help="least-squares reweighting ridge, relative to the mean Gram diagonal (default 1e-6)")
    p.add_argument("--quick", action="store_true",
                   help="a < 1 minute version: hidden 50, budgets 0.25,0.5,0.75, 2 seeds, 3 masks")
    p.add_argument("--out", type=Path, default=Path("runs/realdata"), help="output folder (default runs/realdata)")
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    p.add_argument("--quiet", action="store_true", help="print only the verdicts")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..experiments import run_realdata, verdict_lines

    if args.budgets is not None:
        bad = [b for b in args.budgets if not (math.isfinite(b) and 0 < b <= 1)]
        if bad:
            raise CLIError(f"--budgets must be fractions in (0, 1], got {bad[0]:g}")
    if not (math.isfinite(args.jitter) and args.jitter >= 0):
        raise CLIError(f"--jitter must be a number >= 0, got {args.jitter}")
    if args.dataset != "digits" and args.data_dir is None:
        raise CLIError(f"--dataset {args.dataset} is read from local files: pass --data-dir (nothing is downloaded)")
    log = (lambda s: None) if args.quiet else print
    try:
        result = run_realdata(
            args.out,
            dataset=args.dataset,
            data_dir=args.data_dir,
            hidden=args.hidden,
            activation=args.activation,
            budgets=None if args.budgets is None else [float(b) for b in args.budgets],
            seeds=args.seeds,
            masks=args.masks,
            finetune_epochs=args.finetune_epochs,
            beta=args.beta,
            jitter=args.jitter,
            ridge=args.ridge,
            quick=args.quick,
            progress=args.progress,
            plot=not args.no_plot,
            log=log,
        )
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as e:
        raise CLIError(str(e)) from None
    if not args.quiet:
        print(result.table)
    else:
        for line in verdict_lines(result.verdicts):
            print(line.split(". ", 1)[0].removeprefix("- "))
    print(f"{result.computed} (seed, method) results computed, {result.reused} reused, "
          f"{result.seconds:.1f} s; wrote {', '.join(result.paths.values())}")
    return 0
