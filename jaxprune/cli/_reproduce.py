"""`jaxprune reproduce --out DIR [--quick | --full] [--force [PART ...]]`: every experiment, one report.

Runs the parts of `jaxprune.experiments.reproduce` (ODE vs simulation, fixed points and their gradients, the seed
paper's pruning comparison under its protocol in theory and simulation, its K = 20, M = 5 regime, the claims'
theory at the idealised states and on ODE-trained students, the theory winner map, designed pruning at three
levels, real data), then writes DIR/results.json (every number), DIR/figures/*.png and DIR/report.md. Finished parts are
kept in DIR/parts/<name>.json and reused by a rerun with the same settings. A failing part is reported and the
others still run; the exit code is then 1.

    jaxprune reproduce                                 # default sizes into runs/reproduce: under 10 minutes on 2 CPU cores
    jaxprune reproduce --out runs/smoke --quick        # a smoke run, about 2 minutes
    jaxprune reproduce --out runs/paper --full         # the seed paper's sizes (hours)
    jaxprune reproduce --out runs/reproduce --force paper   # recompute one part
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ._common import CLIError, positive_int


def register(subparsers) -> None:
    # the experiments load when the command runs, not when the CLI builds its parser (start-up time)
    from ..experiments._reproduce_settings import PARTS

    p = subparsers.add_parser(
        "reproduce",
        help="run every experiment (resumable) and write a report with tables and figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"),
                   help="output folder (default: runs/reproduce)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small smoke version (about 2 minutes)")
    size.add_argument("--full", action="store_true", help="the seed paper's full sizes (N=500, 800 000 steps, ...)")
    p.add_argument("--force", nargs="*", choices=PARTS, default=None, metavar="PART",
                   help="recompute instead of reusing finished parts: all of them, or only the parts named "
                        f"({', '.join(PARTS)})")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None, metavar="PART",
                   help="run only these parts (the report includes other finished parts with matching settings)")
    p.add_argument("--compile-cache", type=Path, default=None, metavar="DIR",
                   help="keep XLA compilations in DIR (JAX's persistent cache): later runs skip most compile time")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="worker processes running independent parts side by side (default: the number of CPU "
                        "cores, at most 4; 1 runs everything in this process)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import experiments

    mode = "quick" if args.quick else ("full" if args.full else "default")
    force = False if args.force is None else (True if len(args.force) == 0 else list(args.force))
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    jobs = args.jobs if args.jobs is not None else max(1, min(os.cpu_count() or 1, 4))
    log = None if args.quiet else (lambda m: print(m, flush=True))
    try:
        res = experiments.reproduce(args.out, mode=mode, force=force, parts=args.parts, jobs=jobs,
                        compile_cache=args.compile_cache, log=log)
    except ValueError as e:
        raise CLIError(str(e)) from None
    claims = res["claims"]
    if isinstance(claims, dict):  # the claims could not be decided
        print(f"claims: {claims.get('error', 'not decided')}")
    else:
        for e in claims:
            print(f"{'ours' if e['ours'] else 'claim'} {e['id']} ({e['source']}; {e['setting']}): {e['verdict']}")
    if not res.ok:
        print(f"jaxprune reproduce: {len(res['failed_parts'])} part(s) failed: {', '.join(res['failed_parts'])} "
              f"(see {res.paths['report']})")
        return 1
    print(f"report: {res.paths['report']}")
    return 0
