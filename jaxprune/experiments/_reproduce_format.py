"""Markdown helpers of the `jaxprune reproduce` report (numbers formatted to 4 significant digits)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["fmt", "table", "failed", "fig", "num"]


def num(x) -> float:
    """`float(x)`, or NaN for what is not a number (e.g. `None`)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def fmt(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, str):
        return x
    return f"{float(x):.{digits}g}"


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |")
    return "\n".join(lines)


def failed(rec: dict | None, name: str) -> str | None:
    if rec is None:
        return f"*Part `{name}` was not run.*"
    if rec.get("status") != "ok":
        return f"**Part `{name}` failed**: `{rec.get('error', 'unknown error')}` (see `parts/{name}.json`)."
    return None


def fig(results, name, caption) -> str:
    p = results["figures"].get(name)
    if p is None or p.startswith("error"):
        return f"*(figure {name} not drawn: {p})*" if p else ""
    return f"![{caption}]({p})"


