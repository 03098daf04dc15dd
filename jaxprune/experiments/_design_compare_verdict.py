"""The verdict of a design comparison table (docs/theory.md, section 7): per budget, whether the best designed row
beats the best baseline, exactly and in the finite-N checks ([`design_verdict`][], [`format_verdict`][])."""

from __future__ import annotations

__all__ = ["design_verdict", "format_verdict"]


def design_verdict(rows: list[dict]) -> list[dict]:
    """Per budget (`keep`, else `k`) and kind (edge / node): the best designed row against the best baseline,
    exactly (`error`) and, where the rows have them, in the finite-N check (`sim`) and on fresh inputs
    (`half_mse`). Reference rows (brute force, unpruned) are no competitors.

    **Arguments:**

    - `rows`: the rows of [`compare_network`][], [`compare_population`][] or [`compare_training`][].

    **Returns:** dicts `{budget, kind, designed, designed_error, baseline, baseline_setting, baseline_error,
    beats, margin, ...}` (with `designed_sim`, `baseline_sim`, `beats_sim` and the same for `half_mse` where
    available); `beats` is True only when the designed error is strictly lower (by more than `1e-9` relative).
    """
    out = []
    groups = []
    for r in rows:
        if r.get("role") in ("designed", "baseline"):
            g = (r.get("keep", r.get("k")), r.get("kind"))
            if g not in groups:
                groups.append(g)
    for budget, kind in groups:
        sel = [r for r in rows if (r.get("keep", r.get("k")), r.get("kind")) == (budget, kind)]
        des = [r for r in sel if r["role"] == "designed"]
        base = [r for r in sel if r["role"] == "baseline"]
        if not des or not base:
            continue
        d = min(des, key=lambda r: r["error"])
        b = min(base, key=lambda r: r["error"])
        v = dict(budget=budget, kind=kind, designed=d["method"], designed_error=d["error"], baseline=b["method"],
                 baseline_setting=b.get("setting", ""), baseline_error=b["error"], beats=bool(d["error"] < b["error"]),
                 margin=b["error"] - d["error"])
        v["beats"] = bool(v["beats"] and v["margin"] > 1e-9 * abs(b["error"]))
        for col in ("sim", "half_mse"):
            if d.get(col) is not None and any(r.get(col) is not None for r in base):
                bb = min((r for r in base if r.get(col) is not None), key=lambda r: r[col])
                v[f"designed_{col}"] = d[col]
                v[f"baseline_{col}"] = bb[col]
                v[f"baseline_{col}_method"] = bb["method"]
                v[f"beats_{col}"] = bool(d[col] < bb[col] - 1e-9 * abs(bb[col]))
        out.append(v)
    return out


def format_verdict(v: dict, budget_name: str = "keep") -> str:
    """One line: whether the designed row beats the best baseline, exactly and in the finite-N checks.

    **Arguments:**

    - `v`: one verdict of [`design_verdict`][].
    - `budget_name`: the budget's label in the line (`"keep"` or `"k"`).

    **Returns:** the line (`BEATS`, `TIES with` or `does NOT beat`, with the relative margin).
    """
    tie = abs(v["margin"]) <= 1e-9 * max(abs(v["baseline_error"]), 1e-300)
    word = "BEATS" if v["beats"] and not tie else ("TIES with (does not beat)" if tie else "does NOT beat")
    rel = v["margin"] / v["baseline_error"] if v["baseline_error"] else float("nan")
    s = (f"{budget_name}={v['budget']:.4g} {v['kind']}: {v['designed']} {v['designed_error']:.4g} {word} best baseline "
         f"{v['baseline']} ({v['baseline_setting']}) {v['baseline_error']:.4g} [{-100 * rel:+.1f}%]")
    for col, name in (("sim", "finite-N"), ("half_mse", "fresh-input MSE/2")):
        if f"beats_{col}" in v:
            s += (f"; {name}: {v[f'designed_{col}']:.4g} vs {v[f'baseline_{col}']:.4g} "
                  f"({v[f'baseline_{col}_method']}) -> {'beats' if v[f'beats_{col}'] else 'does not beat'}")
    return s


