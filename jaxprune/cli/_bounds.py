"""`jaxprune bounds`: closed-form pruning errors at the specialised fixed point against the general machinery."""

from __future__ import annotations

import argparse
import math

import jax.numpy as jnp
import numpy as np

from ..pruning import bounds_table, specialisation
from ._common import CLIError, add_output_options, parse_floats, positive_float, positive_int, write_json


def _ints(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return vals


def _unit_interval(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {text!r}") from None
    if not (math.isfinite(x) and -1.0 <= x <= 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {text!r}")
    return x


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bounds",
        help="closed-form pruning errors at the specialised fixed point, exact values and subset bounds",
        description=(
            "Specialised state: K student units in M groups, group n copies teacher unit n (second layer "
            "v*_n / K_n), optionally imperfect. For every budget k (edge keep fraction p = k/K) prints the "
            "closed-form eps_g (noise-free generalisation error) of each pruning method next to the exact "
            "value from the general node/edge machinery, and the best/worst subset and the optimal-reweighting "
            "lower bound."
        ),
    )
    g = p.add_argument_group("state")
    g.add_argument("--K", type=positive_int, default=6, help="student units (default 6)")
    g.add_argument("--M", type=positive_int, default=2, help="teacher units = groups (default 2)")
    g.add_argument("--v-star", type=parse_floats, default=None, help="teacher second layer: 1 or M values (default 1)")
    g.add_argument("--rho", type=_unit_interval, default=1.0, help="in-group overlap Q_ik / T_nn (default 1: copies)")
    g.add_argument("--alignment", type=_unit_interval, default=None,
                   help="R_in / T_nn of a unit with its own teacher (default sqrt(rho))")
    g.add_argument("--cross", type=_unit_interval, default=0.0,
                   help="correlation of the residuals of units in different groups (default 0)")
    g.add_argument("--group-sizes", type=_ints, default=None, help="K_n, comma-separated (default K/M each)")
    g.add_argument("--teacher-overlap", type=_unit_interval, default=0.0,
                   help="off-diagonal of T = (1 - t) I + t 11^T (default 0: T = I)")
    c = p.add_argument_group("table")
    c.add_argument("--k", type=_ints, default=None, help="budgets (units kept), comma-separated (default 1..K)")
    c.add_argument("--kernel", choices=("Q", "A", "rbf"), default="Q", help="k-DPP kernel of node pruning (default Q)")
    c.add_argument("--beta", type=positive_float, default=1.0, help="RBF kernel inverse width (default 1)")
    c.add_argument("--jitter", type=positive_float, default=1e-6,
                   help="ridge of the k-DPP kernel where its rank is < k (default 1e-6)")
    c.add_argument("--exact", choices=("classes", "full", "none"), default="classes",
                   help="how the general machinery is run: one subset per count class (default; exact by "
                        "symmetry), all C(K,k) subsets (slow), or not at all")
    add_output_options(p, plot=False)
    p.set_defaults(func=run)


def _spec_from_args(args):
    M = args.M
    vs = np.ones(M) if args.v_star is None else args.v_star
    if vs.size == 1:
        vs = np.full(M, float(vs[0]))
    if vs.size != M:
        raise CLIError(f"--v-star needs 1 or M={M} values, got {vs.size}")
    T = (1.0 - args.teacher_overlap) * np.eye(M) + args.teacher_overlap * np.ones((M, M))
    try:
        return specialisation(
            args.K, M, jnp.asarray(vs), rho=args.rho, alignment=args.alignment, cross=args.cross,
            group_sizes=None if args.group_sizes is None else tuple(args.group_sizes), T=jnp.asarray(T),
        )
    except ValueError as e:
        raise CLIError(str(e)) from None


def _f(x, width=10):
    if x is None:
        return f"{'-':>{width}}"
    return f"{(0.0 if abs(x) < 1e-12 else x):>{width}.6g}"  # rounding-level values (|x| < 1e-12) print as 0


def format_table(table: dict) -> str:
    """Plain-text rendering of [`bounds_table`][jaxprune.pruning.bounds_table]."""
    out = [
        f"specialised state: K={table['K']} M={table['M']} groups={table['group_sizes']} v*={table['v_star']} "
        f"rho={table['rho']:g} alignment={table['alignment']:g} cross={table['cross']:g}",
        f"errors: {table['error']}; exact = general machinery ({table['exact_mode']}); "
        f"k-DPP kernel {table['kernel']}",
        "",
        "NODE pruning (closed form; exact from prune_nodes/expected_node_error in the 'exact' columns)",
        "  dpp = k-DPP at the jitter shown (exact k-DPP: closed form == exact); dpp-lim = jitter -> 0 limit;",
        "  balanced = seed paper's balanced-choice idealisation; best/worst = best/worst subset of size k;",
        "  opt-LB = optimal-reweighting lower bound (best subset, optimal second layer);",
        "  P(bal) = probability of the balanced counts under the k-DPP limit; maxdiff = max |closed - exact|",
        "  over the exact closed forms (random, dpp, importance, best, worst).",
    ]
    head = (f"{'reweight':>13} {'k':>3} {'random':>10} {'rand-exact':>10} {'dpp':>10} {'dpp-exact':>10} "
            f"{'jitter':>7} {'dpp-lim':>10} {'balanced':>10} {'importance':>10} {'best':>10} {'worst':>10} "
            f"{'opt-LB':>10} {'P(bal)':>7} {'maxdiff':>8}")
    reweights = [b["reweight"] for b in table["rows"][0]["bounds"]]
    for r in reweights:
        out.append(head)
        for row in table["rows"]:
            node = {e["method"]: e for e in row["node"] if e["reweight"] == r}
            bnd = next(b for b in row["bounds"] if b["reweight"] == r)
            diffs = [node[m]["abs_diff"] for m in ("random", "dpp", "importance")] + [bnd["abs_diff"]]
            diffs = [d for d in diffs if d is not None]
            bal = row["dpp_limit_balanced_mass"]
            out.append(
                f"{r:>13} {row['k']:>3} {_f(node['random']['closed_form'])} {_f(node['random']['exact'])} "
                f"{_f(node['dpp']['closed_form'])} {_f(node['dpp']['exact'])} {row['dpp_jitter']:>7.0e} "
                f"{_f(node['dpp-limit']['closed_form'])} {_f(node['balanced']['closed_form'])} "
                f"{_f(node['importance']['closed_form'])} {_f(bnd['best'])} {_f(bnd['worst'])} "
                f"{_f(row['optimal_reweight_lower_bound'])} {bal:>7.3f} "
                f"{(f'{max(diffs):8.1e}' if diffs else '       -')}"
            )
        out.append("")
    out.append("EDGE pruning at equal parameter count p = k/K (closed form; maxdiff = max |closed - exact|, exact =")
    out.append("  edge_prune_theory; /p = rescaled by 1/p. Magnitude at correlation 1 (copies) differs by up to ~1e-6")
    out.append("  as jaxprune.pruning clips rho to 1 - 1e-15 in Rosenbaum's formula; the closed form is exact there)")
    methods = [(e["method"], e["rescale"]) for e in table["rows"][0]["edge"]]
    names = {"none": "", "inverse-keep": "/p"}
    out.append(f"{'k':>3} {'p':>6} " + " ".join(f"{m + names[rs]:>12}" for m, rs in methods) + f" {'maxdiff':>8}")
    for row in table["rows"]:
        diffs = [e["abs_diff"] for e in row["edge"] if e["abs_diff"] is not None]
        out.append(f"{row['k']:>3} {row['p']:>6.3f} " + " ".join(_f(e["closed_form"], 12) for e in row["edge"])
                   + f" {(f'{max(diffs):8.1e}' if diffs else '       -')}")
    return "\n".join(out)


def run(args) -> int:
    spec = _spec_from_args(args)
    try:
        table = bounds_table(spec, ks=args.k, jitter=args.jitter, kernel=args.kernel, beta=args.beta,
                             exact=args.exact)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if not args.quiet:
        print(format_table(table))
    write_json(args.json, table)
    return 0
