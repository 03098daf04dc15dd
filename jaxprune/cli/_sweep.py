"""`jaxprune sweep SPEC --out DIR`: a resumable, sharded batch sweep over a grid (`jaxprune.experiments.run_sweep`).

Example spec (JSON; TOML works too), also in `benchmarks/phase_diagram.json`:

    {"kind": "fixed_point",
     "axes": {"eta": [0.1, 0.5, 1.0, 2.0], "sigma": [0.01, 0.1, 0.3]},
     "fixed": {"K": 2, "M": 2, "mode": "scm", "alpha": 200},
     "chunk_size": 16}

Several processes (on one host or several hosts sharing DIR) run one sweep together when each is started with
the same SPEC and DIR and its own process id:

    jaxprune sweep SPEC --out DIR --coordinator HOST0:1234 --num-processes 2 --process-id 0   # on HOST0
    jaxprune sweep SPEC --out DIR --coordinator HOST0:1234 --num-processes 2 --process-id 1   # on HOST1

(or with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID in the environment; under SLURM or Open
MPI, `--distributed` lets `jax.distributed.initialize()` find them). Each process claims chunks, process 0
writes results.csv and the figure. If a process dies, JAX stops the others; run the same commands again (or
one plain `jaxprune sweep SPEC --out DIR`): only the missing chunks are computed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from ._common import CLIError, positive_float, save_plot


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of ODE / fixed-point / simulation problems (resumable, sharded over devices, "
             "multi-process with jax.distributed)",
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
    g = p.add_argument_group("several processes (jax.distributed)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator (default $JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="number of processes (default $JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's id in 0..N-1 (default $JAX_PROCESS_ID)")
    g.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() even without the options above (SLURM, Open MPI, "
                        "Kubernetes and TPU environments supply them)")
    g.add_argument("--shutdown-timeout", type=positive_float, default=60.0, metavar="SECONDS",
                   help="after the sweep, wait this long for the other processes to finish; then exit anyway "
                        "(a process that died would otherwise stall JAX's shutdown; default 60)")
    g.add_argument("--claim-timeout", type=positive_float, default=3600.0, metavar="SECONDS",
                   help="take over a chunk whose claim nobody touched for this long (a process that died on "
                        "another host; default 3600)")
    p.set_defaults(func=run)


def _env_int(name: str):
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise CLIError(f"environment variable {name} must be an integer, got {text!r}") from None


def distributed_options(args) -> dict | None:
    """The `jax.distributed.initialize` arguments from the flags or the environment; `None` for one process."""
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    n = args.num_processes if args.num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    i = args.process_id if args.process_id is not None else _env_int("JAX_PROCESS_ID")
    if coordinator is None and n is None and i is None and not args.distributed:
        return None
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CLIError(f"--coordinator must be HOST:PORT with a port in 1..65535, got {coordinator!r}")
    if n is not None and n < 1:
        raise CLIError(f"--num-processes must be an integer >= 1, got {n}")
    if i is not None and (i < 0 or (n is not None and i >= n)):
        raise CLIError(f"--process-id must be an integer in [0, {'N-1' if n is None else n - 1}], got {i}")
    if not args.distributed and None in (coordinator, n, i):
        raise CLIError("several processes need --coordinator HOST:PORT, --num-processes N and --process-id I "
                       "(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or --distributed")
    return dict(coordinator_address=coordinator, num_processes=n, process_id=i)


def _shutdown(jax, timeout: float, code: int) -> None:
    """`jax.distributed.shutdown()` (a barrier of all processes), bounded by `timeout`: if a process died, its
    peers' results are on disk already and this process exits without waiting for the coordination service."""
    done = threading.Event()

    def target():
        try:
            jax.distributed.shutdown()
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    if not done.wait(timeout):
        print(f"jaxprune sweep: the other processes did not reach shutdown within {timeout:g} s (one died?); "
              "this process's results are saved, exiting", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(args) -> int:
    import jax

    import jaxprune as jp
    import jaxprune.experiments  # noqa: F401 - the experiments layer (sweeps)

    dist = distributed_options(args)
    code = 1  # if _run raises
    try:
        code = _run(args, jax, jp, dist)
    finally:
        if dist is not None and jax.distributed.is_initialized():
            _shutdown(jax, args.shutdown_timeout, code)
    return code


def _run(args, jax, jp, dist) -> int:
    try:
        spec = jp.experiments.load_spec(args.spec)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    if args.plot is not None and not 1 <= len(args.plot) <= 2:
        raise CLIError(f"--plot takes one or two axis names, got {len(args.plot)}")
    for a in args.plot or ():
        if a not in spec["axes"]:
            raise CLIError(f"--plot axis {a!r} is not a swept axis of the spec ({', '.join(spec['axes'])})")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out}: exists and is not a folder")
    if dist is not None:
        try:
            jax.distributed.initialize(**dist)
        except (RuntimeError, ValueError, TypeError) as e:
            raise CLIError(f"jax.distributed.initialize failed: {' '.join(str(e).split())[:300]}") from None
    try:
        rows = jp.experiments.run_sweep(spec, args.out, progress=args.progress, claim_timeout=args.claim_timeout)
    except ValueError as e:
        raise CLIError(str(e)) from None
    me, n_proc = jax.process_index(), jax.process_count()
    n_ok = sum(r["status"] == jp.Status.SUCCESS for r in rows)
    if me != 0:
        print(f"process {me} of {n_proc}: {len(rows)} configurations done, {n_ok} SUCCESS; process 0 writes "
              f"{args.out / 'results.csv'}")
        return 0
    print(f"{len(rows)} configurations, {n_ok} SUCCESS; table: {args.out / 'results.csv'}")
    if args.plot is not None:
        fig = jp.experiments.plot_results(args.out / "results.csv", args.plot, log=not args.linear)
        path = args.plot_path or (args.out / "plot.png")
        save_plot(fig, path)
        print(f"figure: {path}")
    return 0
