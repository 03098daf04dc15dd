"""All pruning methods side by side on one student: expected errors at every budget (docs/theory.md 6).

Node methods keep `k` of `K` units; edge methods keep a fraction `p` of every unit's incoming weights. At
equal parameter count (docs/theory.md 6, "theory" rule) `p = k / K`; the seed paper's rule is offered too
([`matched_keep_fraction`][]). Every error is the noise-free `eps_g`.
"""

from __future__ import annotations

import math
from typing import Sequence

from .._activations import AbstractActivation, Erf, get_activation
from .._checks import check_choice, check_float, check_int
from ._edge import edge_params, matched_keep_fraction, node_params
from ._edge_theory import edge_prune_theory
from .._error import generalisation_error
from ._node import expected_node_error
from .._overlaps import Overlaps
from ._options import AbstractEdgeRule, AbstractNodeSelector, AbstractReweight, AbstractRescale, pruning_option

__all__ = [
    "NODE_METHODS",
    "EDGE_METHODS",
    "METHODS",
    "NODE_REWEIGHTS",
    "EDGE_RESCALES",
    "prune_expected",
    "compare_methods",
    "best_by_method",
    "format_compare_table",
]

#: node pruning methods of [`compare_methods`][] (selectors of docs/theory.md 6.1 with a `-node` suffix)
NODE_METHODS = ("random-node", "importance-node", "dpp-node")
#: edge pruning methods of [`compare_methods`][] (rules of docs/theory.md 6.2 with an `-edge` suffix)
EDGE_METHODS = ("random-edge", "magnitude-edge", "dpp-edge")
#: every method name [`prune_expected`][] and [`compare_methods`][] accept: node methods, then edge methods
METHODS = NODE_METHODS + EDGE_METHODS
#: node reweighting rules (docs/theory.md 6.1), the options of node methods in a comparison
NODE_REWEIGHTS = ("none", "preactivation", "activation", "optimal")
#: edge rescalings (docs/theory.md 6.2), the options of edge methods in a comparison
EDGE_RESCALES = ("none", "inverse-keep", "optimal")


def _keep_to_k_or_p(method: str, keep: float, K: int) -> tuple[int | None, float | None]:
    """Legacy `keep`: a number of units (integer >= 1) or a fraction in (0, 1]; return `(k, p)`."""
    if not math.isfinite(keep) or keep <= 0:
        raise ValueError(f"keep must be a unit count in 1..K={K} or a fraction in (0, 1], got {keep}")
    is_count = keep >= 1 and float(keep).is_integer() and not (keep == 1 and method in EDGE_METHODS)
    if method in NODE_METHODS:
        k = int(keep) if is_count else int(round(keep * K))
        if not 1 <= k <= K:
            raise ValueError(f"keep must give 1 <= k <= K={K} kept units, got keep={keep} (k={k})")
        return k, None
    p = keep / K if is_count else float(keep)
    if not 0 < p <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1] (or a unit count <= K={K}), got {keep}")
    return None, p


def _method_name(method) -> str:
    """`"random-node"`-style name of a method string or option object (node selector or edge rule)."""
    if isinstance(method, AbstractNodeSelector):
        return f"{method.name}-node"
    if isinstance(method, AbstractEdgeRule):
        return f"{method.name}-edge"
    return check_choice("method", method, METHODS)


def _budget(name: str, K: int, keep, k, p) -> tuple[int | None, float | None]:
    """`(k, p)` from exactly one of `keep` (legacy guess), `k` (units) and `p` (keep fraction)."""
    given = [x is not None for x in (keep, k, p)]
    if sum(given) != 1:
        raise ValueError("give exactly one budget: k (units kept) or p (keep fraction); got "
                         f"k={k!r}, p={p!r}, keep={keep!r}")
    if keep is not None:
        return _keep_to_k_or_p(name, float(keep), K)
    node = name in NODE_METHODS
    if k is not None:
        k = check_int("k (units kept)", k, 1, K)
        return (k, None) if node else (None, k / K)
    p = check_float("p (keep fraction)", p, 0.0, 1.0, lo_open=True)
    if not node:
        return None, p
    kk = round(p * K)
    if abs(p * K - kk) > 1e-9 or kk < 1:
        raise ValueError(f"p (keep fraction) must be a multiple of 1/K = 1/{K} for node methods, got {p}")
    return kk, None


def prune_expected(
    state: Overlaps,
    method: str | AbstractNodeSelector | AbstractEdgeRule,
    keep: int | float | None = None,
    *,
    k: int | None = None,
    p: float | None = None,
    reweight: str | AbstractReweight = "none",
    rescale: str | AbstractRescale = "none",
    kernel: str = "Q",
    beta: float = 1.0,
    jitter: float = 0.0,
    samples: int | None = None,
    key=None,
    N: int = 500,
    activation: AbstractActivation | str = Erf(),
) -> dict:
    """Expected `eps_g` after pruning `state` by `method` at a budget of `k` units or a keep fraction `p`.

    `method`: a node selector ([`RandomNodes`][], ...) or edge rule ([`RandomEdges`][], ...), or a name of
    `METHODS` (`"random-node"`, ..., `"dpp-edge"`). Budget: exactly one of `k` (units; an edge method keeps the
    matched fraction `p = k/K`), `p` (keep fraction; a node method needs `p K` integral) and the older `keep`
    (a unit count if it is an integer >= 1, else a fraction). `reweight` applies to node methods only and
    `rescale` to edge methods only (a `ValueError` otherwise).

    Node methods use [`expected_node_error`][] (exact enumeration, or Monte Carlo with a standard error);
    edge methods the Gaussian-equivalent map [`edge_prune_theory`][] (deterministic in the large-N limit).
    `params_kept` counts `k N + k` (node) or `p K N + K` (edge) for input dimension `N`.

    **Arguments:**

    - `state`: the student's [`Overlaps`][] (concrete).
    - `method`: the method, an object or a name of `METHODS`, as above.
    - `keep`: the older budget argument, as above (give exactly one of `keep`, `k`, `p`).
    - `k`: units kept, `1 <= k <= K`.
    - `p`: keep fraction in `(0, 1]`.
    - `reweight`: node reweighting rule (object or name; node methods only).
    - `rescale`: edge rescaling (object or name; edge methods only).
    - `kernel`, `beta`, `jitter`: the node k-DPP kernel (see [`kernel_matrix`][]).
    - `samples`, `key`: Monte Carlo sample count and PRNG key, as in [`expected_node_error`][].
    - `N`: input dimension for the parameter count.
    - `activation`: an [`AbstractActivation`][] or its name (`Erf()` by default).

    **Returns:**

    A dict row `{method, option, k, p, params_kept, mean, std, stderr, min, max, exact, status}`: `option`
    is the reweighting or rescaling name, `mean` the expected `eps_g` (`std`, `min`, `max` over subsets;
    `stderr` of Monte Carlo), `status` an int [`Status`][] code.

    Example: `prune_expected(state, "dpp-node", k=3, reweight="activation")["mean"]`.
    """
    name = _method_name(method)
    activation = get_activation(activation)
    K = state.K
    k, p = _budget(name, K, keep, k, p)
    if name in NODE_METHODS:
        if pruning_option("rescale", rescale, name="rescale").name != "none":
            raise ValueError(f"rescale applies to edge methods only; got rescale={rescale!r} for {name}")
        selector = method if isinstance(method, AbstractNodeSelector) else name.removesuffix("-node")
        rw = pruning_option("reweight", reweight, name="reweight").name
        r = expected_node_error(state, k, method=selector, reweight=rw, kernel=kernel, beta=beta, jitter=jitter,
                                samples=samples, key=key, activation=activation)
        return {"method": name, "option": rw, "k": k, "p": k / K, "params_kept": node_params(K, N, k),
                "mean": float(r.mean), "std": float(r.std), "stderr": float(r.stderr), "min": float(r.min),
                "max": float(r.max), "exact": bool(r.exact), "status": int(r.status)}
    if pruning_option("reweight", reweight, name="reweight").name != "none":
        raise ValueError(f"reweight applies to node methods only; got reweight={reweight!r} for {name}")
    rs = pruning_option("rescale", rescale, name="rescale").name
    r = edge_prune_theory(state, p, method=name.removesuffix("-edge"), rescale=rs, activation=activation)
    eps = float(r.eps_g)
    return {"method": name, "option": rs, "k": None, "p": p, "params_kept": edge_params(K, N, p),
            "mean": eps, "std": 0.0, "stderr": 0.0, "min": eps, "max": eps, "exact": True,
            "status": int(r.status)}


def compare_methods(
    state: Overlaps,
    *,
    budgets: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    reweights: Sequence[str] = NODE_REWEIGHTS,
    rescales: Sequence[str] = EDGE_RESCALES,
    kernel: str = "Q",
    jitter: float = 1e-6,
    N: int = 500,
    match: str = "theory",
    activation: AbstractActivation | str = Erf(),
) -> list[dict]:
    """Every method, option and budget side by side (docs/theory.md section 6): one [`prune_expected`][] row each.

    Edge methods are evaluated at the keep fraction matched to each budget ([`matched_keep_fraction`][]).

    **Arguments:**

    - `state`: the student's [`Overlaps`][] (concrete).
    - `budgets`: kept unit counts `k` in `1..K` (default `1..K-1`).
    - `methods`: method names, a subset of `METHODS` (default all).
    - `reweights`: node reweighting rules to try (default `NODE_REWEIGHTS`).
    - `rescales`: edge rescalings to try (default `EDGE_RESCALES`).
    - `kernel`, `jitter`: the node k-DPP kernel and its ridge (see [`kernel_matrix`][]).
    - `N`: input dimension for the parameter counts and the seed-paper match.
    - `match`: `"theory"` (`p = k/K`, default) or `"seed-paper"` (`p = (kN + k - K)/(KN)`).
    - `activation`: an [`AbstractActivation`][] or its name (`Erf()` by default).

    **Returns:**

    A list of dict rows as returned by [`prune_expected`][], each with an extra `budget_k`, preceded by the
    unpruned error as a row with method `"none"`.
    """
    activation = get_activation(activation)
    K = state.K
    budgets = list(range(1, K)) if budgets is None else [int(b) for b in budgets]
    for b in budgets:
        if not 1 <= b <= K:
            raise ValueError(f"budgets must be unit counts in 1..K={K}, got {b}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; allowed {METHODS}")
    base = float(generalisation_error(state, activation))
    rows = [{"method": "none", "option": "", "k": K, "p": 1.0, "params_kept": node_params(K, N, K),
             "mean": base, "std": 0.0, "stderr": 0.0, "min": base, "max": base, "exact": True, "status": 0}]
    for k in budgets:
        p = matched_keep_fraction(K, N, k, rule=match)
        for m in methods:
            if m in NODE_METHODS:
                for rw in reweights:
                    row = prune_expected(state, m, k=k, reweight=rw, kernel=kernel, jitter=jitter, N=N,
                                         activation=activation)
                    rows.append(row | {"budget_k": k})
            else:
                for rs in rescales:
                    row = prune_expected(state, m, p=p, rescale=rs, N=N, activation=activation)
                    rows.append(row | {"budget_k": k})
    return rows


def best_by_method(rows: Sequence[dict]) -> dict[tuple[str, int], dict]:
    """For each `(method, budget_k)`, the row with the lowest mean over its options (reweight/rescale).

    **Arguments:**

    - `rows`: rows of [`compare_methods`][] (the `"none"` row is skipped).

    **Returns:**

    A dict from `(method, budget_k)` to the best row.
    """
    best: dict[tuple[str, int], dict] = {}
    for r in rows:
        if r["method"] == "none":
            continue
        key = (r["method"], r["budget_k"])
        if key not in best or r["mean"] < best[key]["mean"]:
            best[key] = r
    return best


def format_compare_table(rows: Sequence[dict], *, digits: int = 4) -> str:
    """A markdown table: one row per method/option, one column per budget `k` (mean +- std over subsets).

    **Arguments:**

    - `rows`: rows of [`compare_methods`][].
    - `digits`: significant digits of the means.

    **Returns:**

    The table as one string, followed by the unpruned `eps_g` when a `"none"` row is present.
    """
    budgets = sorted({r["budget_k"] for r in rows if "budget_k" in r})
    lines = ["| method | option | " + " | ".join(f"k={k}" for k in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    by = {}
    for r in rows:
        if "budget_k" in r:
            by.setdefault((r["method"], r["option"]), {})[r["budget_k"]] = r
    for (m, o), cells in by.items():
        vals = []
        for k in budgets:
            r = cells.get(k)
            if r is None:
                vals.append("")
            elif r["std"] > 0:
                vals.append(f"{r['mean']:.{digits}g} ± {r['std']:.2g}")
            else:
                vals.append(f"{r['mean']:.{digits}g}")
        lines.append(f"| {m} | {o} | " + " | ".join(vals) + " |")
    base = [r for r in rows if r["method"] == "none"]
    if base:
        lines.append(f"\nunpruned eps_g = {base[0]['mean']:.{digits}g}")
    return "\n".join(lines)
