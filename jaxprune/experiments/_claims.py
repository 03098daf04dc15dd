"""The seed paper's claims as data, and the rule that decides them (docs/theory.md, section 6.3).

Every claim compares two sides, `a` and `b`, each a `{"method", "option"}` pair spelled out as the paper
states it. A claim is decided on *cells* (one per noise level `sigma` and budget `k`, or per kept fraction
for real data), each a plain dict `{"sigma", "k", "a", "b", "diff", "stderr"}` with `diff = a - b` (paired:
the same trained student, network or state on both sides) and its standard error:

- measured values: over students (and masks, whose noise is inside each student's mean),
  `stderr = std_s(d_s) / sqrt(S)` of the per-student paired differences `d_s`;
- theory by Monte Carlo: its Monte Carlo standard error;
- exact theory: `0`.

Per cell the outcome is `better` (side `a` has the lower error), `tie` or `worse`, with

    tie  <=>  |diff| <= max(2 stderr, rtol * max(|a|, |b|)),   rtol = 1e-9,

so that differences at rounding level (1e-16 on numbers of order 1) are ties for exact theory and differences
within two standard errors are ties for noisy ones.

Verdict over the cells a claim covers:

- relation `less` (the paper says `a <= b`, strictly at the cells it names strict): `holds` when no cell is
  significantly worse and every strict cell is better; `does not hold` when some cell is significantly worse
  (the report names it); otherwise (a strict cell that is only a tie) `holds in part`;
- relation `equal` (the paper says `a = b`, e.g. DPP node error equals the balanced closed form): `holds` when
  every cell ties, `does not hold` when some cell differs significantly.

Findings that are ours (other options than the paper's, e.g. the optimal second layer) are the `OURS`
claims: decided by the same rule, reported in their own section, never in place of the paper's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "RTOL",
    "OUTCOMES",
    "VERDICTS",
    "Claim",
    "CLAIMS",
    "OURS",
    "claim_by_id",
    "cell",
    "paired_cell",
    "outcome",
    "verdict",
    "decide",
]

#: relative tolerance under which two exact values are equal (rounding, not a difference)
RTOL = 1e-9
OUTCOMES = ("better", "tie", "worse")
VERDICTS = ("holds", "holds in part", "does not hold")


def _always(K: int, k: int) -> bool:
    return True


def _never(K: int, k: int) -> bool:
    return False


def _intermediate(K: int, k: int) -> bool:
    """`2 <= k <= K - 2`: where a k-DPP can differ from uniform selection at the specialised state (at `k = 1`
    every unit is equally likely under both after row normalisation, at `k = K - 1` every subset has the same
    group counts up to symmetry)."""
    return 2 <= k <= K - 2


def _c5_claimed(K: int, k: int) -> bool:
    """The budgets where the paper shows random edge beating DPP node pruning: `k = 1` at K = 6 (its theory),
    `k = 1..4` at K = 20, M = 5 (its figures; it is unclear at `k = 5`, which is shown but not claimed)."""
    return k == 1 if K <= 6 else 1 <= k <= 4


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: `id`, the paper's wording, both sides, and where it applies.

    **Fields:** `id`; `statement` (the paper's claim in its terms); `a`, `b` (`{"method", "option"}`; the
    paper says `a` has the lower error, or that the two are equal); `relation` (`"less"` or `"equal"`);
    `strict(K, k)` (cells where the paper says strictly lower); `claimed(K, k)` (cells the claim covers; the
    others are shown, outside the verdict); `ours` (a finding of this project, not of the paper).
    """

    id: str
    statement: str
    a: dict
    b: dict
    relation: str = "less"
    strict: Callable[[int, int], bool] = _always
    claimed: Callable[[int, int], bool] = _always
    ours: bool = False

    def __post_init__(self):
        if self.relation not in ("less", "equal"):
            raise ValueError(f"relation must be one of ('less', 'equal'), got {self.relation!r}")
        for side, name in ((self.a, "a"), (self.b, "b")):
            if set(side) != {"method", "option"}:
                raise ValueError(f"{name} must be a dict with keys 'method' and 'option', got {side!r}")


def _side(method: str, option: str) -> dict:
    return {"method": method, "option": option}


_DPP_NODE = _side("dpp-node", "none")
_RANDOM_NODE = _side("random-node", "none")

#: the seed paper's claims (docs/theory.md 6.3), in the paper's terms
CLAIMS: tuple[Claim, ...] = (
    Claim("C3", "DPP node pruning without reweighting has the error of the balanced closed form "
          "(v*^2/6) sum_n (1 - m_n/z)^2 at the specialised state",
          _DPP_NODE, _side("balanced-node (closed form)", "none"), relation="equal", strict=_never),
    Claim("C4", "DPP node pruning has expected error <= random node pruning, strictly for intermediate k, "
          "without reweighting (the paper's theorem and teacher-student figures)",
          _DPP_NODE, _RANDOM_NODE, strict=_intermediate),
    Claim("C4-rw", "DPP node pruning has expected error <= random node pruning with reweighting too "
          "(both sides with the paper's least-squares reweighting of pre-activations)",
          _side("dpp-node", "preactivation"), _side("random-node", "preactivation"), strict=_never),
    Claim("C4-imp", "DPP node pruning is no worse than importance node pruning (importance keeps the k largest "
          "v_i), without reweighting",
          _DPP_NODE, _side("importance-node", "none"), strict=_never),
    Claim("C5", "at matched parameter count random edge pruning has lower error than DPP node pruning without "
          "reweighting (K = 6, M = 2: k = 1; K = 20, M = 5: k = 1..4)",
          _side("random-edge", "none"), _DPP_NODE, claimed=_c5_claimed),
    Claim("C6", "DPP edge pruning has lower error than random edge pruning at every level, with and without "
          "label noise", _side("dpp-edge", "none"), _side("random-edge", "none")),
    Claim("C7", "DPP edge pruning has lower error than DPP node pruning at every level, with and without label "
          "noise", _side("dpp-edge", "none"), _DPP_NODE),
    Claim("C8", "real data (first layer pruned, no fine-tuning): random edge pruning with least-squares "
          "reweighting beats DPP node pruning with reweighting (DIVNET) at every level",
          _side("random-edge", "least-squares reweighting"),
          _side("dpp-node (RBF kernel, DIVNET)", "fusing (least-squares reweighting)")),
)

#: findings of this project beyond the paper (other options than the paper's), decided by the same rule
OURS: tuple[Claim, ...] = (
    Claim("O1", "with the optimal second layer, DPP node pruning beats the best edge method (magnitude edge "
          "pruning with its optimal rescale)",
          _side("dpp-node", "optimal"), _side("magnitude-edge", "optimal"), strict=_never, ours=True),
    Claim("O2", "importance node pruning beats DPP node pruning on trained students (without reweighting)",
          _side("importance-node", "none"), _DPP_NODE, strict=_never, ours=True),
    Claim("O3", "with the optimal second layer, importance node pruning beats DPP node pruning",
          _side("importance-node", "optimal"), _side("dpp-node", "optimal"), strict=_never, ours=True),
)


def claim_by_id(cid: str) -> Claim:
    """The claim (of the paper or ours) with id `cid`."""
    for c in CLAIMS + OURS:
        if c.id == cid:
            return c
    raise ValueError(f"claim id must be one of {[c.id for c in CLAIMS + OURS]}, got {cid!r}")


def cell(sigma, k, a: float, b: float, stderr: float | None = 0.0, diff: float | None = None) -> dict:
    """A claim cell `{"sigma", "k", "a", "b", "diff", "stderr"}` (`diff = a - b` unless given: pass the mean
    paired difference when it is not the difference of the means)."""
    a, b = float(a), float(b)
    return {"sigma": sigma, "k": k, "a": a, "b": b, "diff": float(a - b if diff is None else diff),
            "stderr": None if stderr is None else float(stderr)}


def paired_cell(sigma, k, a_per_student: Sequence[float], b_per_student: Sequence[float],
                mask_stderr: float = 0.0) -> dict:
    """A cell from per-student values of both sides (paired by student): `diff` the mean of `a_s - b_s`,
    `stderr = std(a_s - b_s) / sqrt(S)` (ddof 1), or `mask_stderr` for one student."""
    a = np.asarray(a_per_student, float)
    b = np.asarray(b_per_student, float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 1:
        raise ValueError(f"a_per_student and b_per_student must be equal-length 1-d sequences, got shapes "
                         f"{a.shape} and {b.shape}")
    d = a - b
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float(mask_stderr)
    return cell(sigma, k, a.mean(), b.mean(), se, diff=d.mean())


def outcome(c: dict, *, rtol: float = RTOL) -> str:
    """`better` / `tie` / `worse` for side `a` (lower error is better): tie when
    `|diff| <= max(2 stderr, rtol max(|a|, |b|))`; a missing `stderr` (no estimate) is a tie unless the
    difference is exact (`stderr == 0`)."""
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    diff, se = float(c["diff"]), c.get("stderr")
    if not math.isfinite(diff):
        return "tie"
    if se is None:
        return "tie"
    tol = max(2.0 * float(se), rtol * max(abs(float(c["a"])), abs(float(c["b"]))))
    if abs(diff) <= tol:
        return "tie"
    return "better" if diff < 0 else "worse"


def verdict(claim: Claim, cells: Sequence[dict]) -> tuple[str, str]:
    """`(verdict, reason)` for `claim` over `cells` (each with an `outcome`, see [`outcome`][], and `strict`,
    whether the paper says strictly better there; only cells with `claimed` true count)."""
    counted = [c for c in cells if c.get("claimed", True)]
    if not counted:
        return "not tested", "no cell"

    def where(c):
        s = "" if c.get("sigma") is None else f"sigma = {c['sigma']:g}, "
        return f"{s}k = {c['k']:g} (diff {c['diff']:+.4g} ± {c['stderr'] if c['stderr'] is not None else 'n/a'})"

    if claim.relation == "equal":
        off = [c for c in counted if c["outcome"] != "tie"]
        if off:
            return "does not hold", "significant difference at " + "; ".join(where(c) for c in off)
        return "holds", f"tie at all {len(counted)} cells"
    worse = [c for c in counted if c["outcome"] == "worse"]
    if worse:
        return "does not hold", "significantly worse at " + "; ".join(where(c) for c in worse)
    strict = [c for c in counted if c.get("strict", False)]
    missing = [c for c in strict if c["outcome"] != "better"]
    if missing:
        return "holds in part", ("no significantly worse cell, but only a tie where the paper says strictly "
                                 "better: " + "; ".join(where(c) for c in missing))
    n_better = sum(c["outcome"] == "better" for c in counted)
    return "holds", f"no significantly worse cell; better at {n_better} of {len(counted)}"


def decide(claim: Claim, cells: Sequence[dict], *, source: str, K: int | None = None, setting: str = "",
           rtol: float = RTOL) -> dict:
    """The `results["claims"]` entry: `{id, statement, a, b, source, setting, ours, cells, verdict, reason}`;
    every cell gets its `outcome`, `claimed` (whether the claim covers it) and `strict` (whether the paper says
    strictly better there; decided from the student size `K` and the cell's `k`; without `K`, as for real-data
    budgets, strict everywhere for a claim stated at every level)."""
    out_cells = []
    for c in cells:
        k = c["k"]
        kk = int(round(k)) if K is not None and k is not None else None
        d = dict(c, outcome=outcome(c, rtol=rtol),
                 claimed=bool(claim.claimed(K, kk)) if kk is not None else True,
                 strict=bool(claim.strict(K, kk)) if kk is not None else claim.strict is _always)
        out_cells.append(d)
    word, reason = verdict(claim, out_cells)
    return {"id": claim.id, "statement": claim.statement, "a": dict(claim.a), "b": dict(claim.b),
            "relation": claim.relation, "source": source, "setting": setting, "ours": claim.ours,
            "cells": out_cells, "verdict": word, "reason": reason}
