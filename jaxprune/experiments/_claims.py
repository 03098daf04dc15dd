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
VERDICTS = ("holds", "holds in part", "does not hold", "undecided", "not tested")


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
    `k = 1..4` at K = 20, M = 5 (its figures; it is unclear at `k = 5`, which is shown but not claimed). The
    paper says nothing at other sizes (for example the quick mode's K = 10): no cell is claimed there and the
    verdict is "not tested" (the cells are still shown)."""
    if K <= 6:
        return k == 1
    return K == 20 and 1 <= k <= 4


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the seed paper (or one of ours): its id, its wording, its two sides and the cells it covers
    (docs/theory.md section 6.3, table of claims).

    A frozen dataclass; the constructor checks `relation` and the keys of both sides (`ValueError`).

    **Arguments:**

    - `id`: the claim's id as in docs/theory.md 6.3 (`"C3"`, `"C4"`, `"C4-rw"`, `"C4-imp"`, `"C5"`, `"C6"`,
      `"C7"`, `"C8"`; ours `"O1"`, `"O2"`, `"O3"`).
    - `statement`: the claim in the paper's terms (for the report).
    - `a`, `b`: the two sides, each a dict with exactly the keys `"method"` (e.g. `"dpp-node"`, `"random-edge"`,
      `"balanced-node (closed form)"`) and `"option"` (the node reweighting or edge rescale, e.g. `"none"`,
      `"preactivation"`, `"optimal"`): the names of the rows the cells are built from. The paper says side `a`
      has the lower error (`relation="less"`) or that both are equal (`relation="equal"`).
    - `relation`: `"less"` (`a <= b`) or `"equal"` (`a = b`).
    - `strict`: a predicate `strict(K, k) -> bool`, whether the paper says *strictly* lower at budget `k` of a
      student with `K` units (default: everywhere).
    - `claimed`: a predicate `claimed(K, k) -> bool`, whether the claim covers that cell (default: everywhere;
      the other cells are reported beside the verdict, outside it).
    - `ours`: `True` for a finding of this project rather than of the paper (reported in its own section).

    **Example:**

    ```python
    c4 = jpx.claim_by_id("C4")
    c4.a, c4.b              # ({'method': 'dpp-node', 'option': 'none'}, {'method': 'random-node', ...})
    c4.strict(6, 3)         # True: strict for intermediate k, 2 <= k <= K - 2
    ```
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
    # Ours: "beats" means strictly lower at every cell (a tie is "holds in part"). O1 is not like for like and
    # says so: the node side refits the whole second layer with the teacher's overlaps, the edge side only
    # rescales each unit's kept weights and keeps its second layer.
    Claim("O1", "DPP node pruning with the optimal second layer (least squares against the teacher, docs/theory.md "
          "6.1) beats magnitude edge pruning with its optimal per-unit rescale (second layer kept); the sides "
          "differ in what they may refit",
          _side("dpp-node", "optimal"), _side("magnitude-edge", "optimal"), strict=_always, ours=True),
    Claim("O2", "importance node pruning beats DPP node pruning on trained students (without reweighting)",
          _side("importance-node", "none"), _DPP_NODE, strict=_always, ours=True),
    Claim("O3", "with the optimal second layer, importance node pruning beats DPP node pruning",
          _side("importance-node", "optimal"), _side("dpp-node", "optimal"), strict=_always, ours=True),
)


def claim_by_id(cid: str) -> Claim:
    """The claim with id `cid`, searched in [`CLAIMS`][jaxprune.experiments.CLAIMS] (the paper's) and
    [`OURS`][jaxprune.experiments.OURS] (this project's findings).

    **Arguments:**

    - `cid`: a claim id, e.g. `"C4"` or `"O1"` (docs/theory.md 6.3).

    **Returns:** the [`Claim`][jaxprune.experiments.Claim]; a `ValueError` listing the valid ids when there is
    none.
    """
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
    """The outcome of one claim cell for side `a` (lower error is better; docs/theory.md 6.3, "How jaxprune
    decides a claim").

    The cell is a tie when `|diff| <= max(2 stderr, rtol max(|a|, |b|))`, else `better` (`diff < 0`) or
    `worse` (`diff > 0`). A cell without a standard error (`stderr` is `None`: no estimate) is a tie; an
    exact cell has `stderr == 0`, so only the relative tolerance absorbs rounding. A cell whose `diff`, `a`,
    `b` or `stderr` is not finite is `invalid` (a failed computation is never counted as a tie).

    **Arguments:**

    - `c`: a cell dict with at least `"a"`, `"b"` (the two sides' errors), `"diff"` (the paired mean of
      `a - b`) and `"stderr"` (its standard error, `0` for exact theory, or `None`).
    - `rtol`: relative tolerance for exact values, `>= 0` (default `RTOL = 1e-9`).

    **Returns:** one of `"better"`, `"tie"`, `"worse"`, `"invalid"`.

    **Example:**

    ```python
    jpx.outcome({"a": 0.10, "b": 0.12, "diff": -0.02, "stderr": 0.005})  # 'better' (|diff| > 2 stderr)
    jpx.outcome({"a": 0.10, "b": 0.12, "diff": -0.02, "stderr": 0.02})   # 'tie'
    ```
    """
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    diff, se = float(c["diff"]), c.get("stderr")
    values = [diff, float(c["a"]), float(c["b"])] + ([] if se is None else [float(se)])
    if not all(math.isfinite(x) for x in values):
        return "invalid"
    if se is None:
        return "tie"
    tol = max(2.0 * float(se), rtol * max(abs(float(c["a"])), abs(float(c["b"]))))
    if abs(diff) <= tol:
        return "tie"
    return "better" if diff < 0 else "worse"


def verdict(claim: Claim, cells: Sequence[dict]) -> tuple[str, str]:
    """The verdict on `claim` from cells that already carry their outcome (docs/theory.md 6.3).

    For `relation="less"`: `"does not hold"` when some counted cell is `worse`; else `"holds in part"` when a
    cell the paper calls strict is only a tie; else `"holds"`. For `relation="equal"`: `"holds"` when every
    counted cell ties, else `"does not hold"`. Only cells whose `"claimed"` is true (default true) count; with
    none, the verdict is `"not tested"`; with an `invalid` (non-finite) counted cell it is `"undecided"`.
    [`decide`][jaxprune.experiments.decide] adds the outcomes and flags and calls this.

    **Arguments:**

    - `claim`: the [`Claim`][jaxprune.experiments.Claim].
    - `cells`: cell dicts (`sigma`, `k`, `diff`, `stderr`) each with `"outcome"` (from
      [`outcome`][jaxprune.experiments.outcome]), optional `"strict"` (whether the paper says strictly better
      there; default false) and `"claimed"` (whether the claim covers the cell; default true).

    **Returns:** `(verdict, reason)`: the verdict (one of `VERDICTS`: `"holds"`, `"holds in part"`,
    `"does not hold"`, `"undecided"` or `"not tested"`) and one line naming the cells that decided it.
    """
    counted = [c for c in cells if c.get("claimed", True)]
    if not counted:
        return "not tested", "the claim covers no cell of this setting (the cells are shown for reference)"
    invalid = [c for c in counted if c["outcome"] == "invalid"]
    if invalid:
        return "undecided", "non-finite result at " + "; ".join(
            ("" if c.get("sigma") is None else f"sigma = {c['sigma']:g}, ") + f"k = {c['k']:g}" for c in invalid)

    def where(c):
        s = "" if c.get("sigma") is None else f"sigma = {c['sigma']:g}, "
        se = "n/a" if c["stderr"] is None else format(c["stderr"], ".2g")
        return f"{s}k = {c['k']:g} (diff {c['diff']:+.4g} ± {se})"

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
        who = "our finding says" if claim.ours else "the paper says"
        return "holds in part", (f"no significantly worse cell, but only a tie where {who} strictly "
                                 "better: " + "; ".join(where(c) for c in missing))
    n_better = sum(c["outcome"] == "better" for c in counted)
    return "holds", f"no significantly worse cell; better at {n_better} of {len(counted)}"


def decide(claim: Claim, cells: Sequence[dict], *, source: str, K: int | None = None, setting: str = "",
           rtol: float = RTOL) -> dict:
    """Decide `claim` over `cells`: one entry of `results["claims"]` (docs/theory.md 6.3).

    Every cell gets its `outcome` ([`outcome`][jaxprune.experiments.outcome] with `rtol`), `claimed` (whether
    the claim covers it: `claim.claimed(K, k)`) and `strict` (whether the paper says strictly better there:
    `claim.strict(K, k)`); without `K`, as for real-data budgets that are kept fractions, every cell is claimed
    and strict exactly when the claim is strict at every level. Then [`verdict`][jaxprune.experiments.verdict]
    decides.

    **Arguments:**

    - `claim`: the [`Claim`][jaxprune.experiments.Claim] to decide.
    - `cells`: cell dicts `{"sigma", "k", "a", "b", "diff", "stderr"}` (`diff` the paired mean of `a - b`;
      `stderr` its standard error, `0` for exact theory, `None` when unknown), one per noise level `sigma` and
      budget `k`.
    - `source`: where the numbers come from, e.g. `"theory (idealised state)"` or `"measured (concrete pruned
      networks)"` (shown in the report).
    - `K`: the number of student units, which the claim's `strict` and `claimed` predicates need (`None` for
      real data).
    - `setting`: one line describing the setting (shown in the report).
    - `rtol`: relative tolerance under which exact values tie (default `1e-9`).

    **Returns:** a dict `{id, statement, a, b, relation, source, setting, ours, cells, verdict, reason}`, the
    cells with their `outcome`, `claimed` and `strict` added.

    **Example:**

    ```python
    c = {"sigma": 0.0, "k": 2, "a": 0.10, "b": 0.12, "diff": -0.02, "stderr": 0.005}
    jpx.decide(jpx.claim_by_id("C4"), [c], source="demo", K=6)["verdict"]  # 'holds'
    ```
    """
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
