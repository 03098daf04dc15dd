"""Figures. matplotlib is imported lazily inside each function; nothing in the library imports this module."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["error_curve_figure", "new_figure"]


def new_figure(width: float = 5.5, height: float = 3.8):
    """A (figure, axes) pair on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


def error_curve_figure(
    curves: Sequence[tuple[np.ndarray, np.ndarray, str]],
    *,
    title: str = "",
    ylabel: str = r"$\epsilon_g$ (noise-free)",
    bands: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None] | None = None,
):
    """Error versus `alpha` on log axes; `curves` holds `(alpha, error, label)` triples, `bands` optional
    `(alpha, low, high)` shaded ranges (e.g. simulation spread)."""
    fig, ax = new_figure()
    for j, (alpha, err, label) in enumerate(curves):
        alpha, err = np.asarray(alpha, float), np.asarray(err, float)
        keep = (alpha > 0) & np.isfinite(err) & (err > 0)
        line, = ax.plot(alpha[keep], err[keep], label=label)
        if bands is not None and j < len(bands) and bands[j] is not None:
            a, lo, hi = (np.asarray(b, float) for b in bands[j])
            k = (a > 0) & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
            ax.fill_between(a[k], lo[k], hi[k], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\alpha$ = steps / N")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
