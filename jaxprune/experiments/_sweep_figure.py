"""The sweep's figure: a heat map over two swept axes or a line over one, from `results.csv`."""

from __future__ import annotations

import os

import numpy as np

import jaxprune as jp

from ._sweep_spec import AXES
from ._sweep_store import read_results

__all__ = ["plot_results"]


def plot_results(path: str | os.PathLike, axes: list[str], *, value: str = "eps_g", log: bool = True):
    """Heat map of `value` over two swept axes, or a line plot over one, from a sweep's `results.csv`.

    Only configurations whose status is `SUCCESS` are drawn; the others are marked in red by status (heat map:
    `o` unstable, `s` singular, `x` diverged, `+` not converged, `^` step budget, `d` invalid; line plot: `x`
    on the lowest value). Every other swept axis is fixed at its value in the first row. matplotlib (Agg
    backend) is imported here only.

    **Arguments:**

    - `path`: the `results.csv` of [`run_sweep`][jaxprune.experiments.run_sweep].
    - `axes`: one or two column names, `[x]` or `[x, y]` (e.g. `["eta", "sigma"]`).
    - `value`: the column drawn (default `"eps_g"`, the noise-free generalisation error).
    - `log`: draw `log10(value)` (heat map) or a logarithmic y axis (line plot).

    **Returns:** the matplotlib `Figure` (not saved; `fig.savefig(...)`). An axis or value that is not a column
    is a `ValueError`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_results(path)
    if not 1 <= len(axes) <= 2:
        raise ValueError(f"axes must name one or two columns, got {axes}")
    for a in axes:
        if a not in cols:
            raise ValueError(f"axis {a!r} is not a column of {path} (columns: {', '.join(cols)})")
    if value not in cols:
        raise ValueError(f"value {value!r} is not a column of {path}")
    # fix every other swept axis at its first value
    sel = np.ones(cols["index"].shape, bool)
    for k in cols:
        if k in AXES and k not in axes and cols[k].dtype.kind == "f":
            first = cols[k][0]
            sel &= (cols[k] == first) | (np.isnan(cols[k]) & np.isnan(first))
    status = cols["status"][sel]
    z = np.where(status == jp.Status.SUCCESS, cols[value][sel], np.nan)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if len(axes) == 1:
        x = cols[axes[0]][sel]
        order = np.argsort(x)
        ax.plot(x[order], z[order], "o-")
        bad = status != jp.Status.SUCCESS
        ax.plot(x[bad], np.full(bad.sum(), np.nanmin(z) if np.any(np.isfinite(z)) else 0), "rx", label="not SUCCESS")
        ax.set_xlabel(axes[0])
        ax.set_ylabel(value)
        if log:
            ax.set_yscale("log")
    else:
        xs, ys = np.unique(cols[axes[0]][sel]), np.unique(cols[axes[1]][sel])
        grid = np.full((ys.size, xs.size), np.nan)
        st = np.full((ys.size, xs.size), -1)
        ix = np.searchsorted(xs, cols[axes[0]][sel])
        iy = np.searchsorted(ys, cols[axes[1]][sel])
        grid[iy, ix] = z
        st[iy, ix] = status
        data = np.log10(grid) if log else grid
        mesh = ax.pcolormesh(np.arange(xs.size + 1) - 0.5, np.arange(ys.size + 1) - 0.5, data, shading="flat")
        fig.colorbar(mesh, ax=ax, label=f"log10 {value}" if log else value)
        for code, marker, label in ((jp.Status.UNSTABLE, "o", "unstable"), (jp.Status.SINGULAR, "s", "singular"),
                                    (jp.Status.DIVERGED, "x", "diverged"), (jp.Status.NOT_CONVERGED, "+", "not converged"),
                                    (jp.Status.MAX_STEPS, "^", "step budget"), (jp.Status.INVALID, "d", "invalid")):
            yy, xx = np.nonzero(st == code)
            if yy.size:
                ax.scatter(xx, yy, marker=marker, c="red", label=label)
        ax.set_xticks(np.arange(xs.size), [f"{t:.3g}" for t in xs], rotation=45)
        ax.set_yticks(np.arange(ys.size), [f"{t:.3g}" for t in ys])
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{value} (noise-free generalisation error)" if value == "eps_g" else value)
    fig.tight_layout()
    return fig
