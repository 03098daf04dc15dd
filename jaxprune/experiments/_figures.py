"""Figures. matplotlib is imported lazily inside each function; nothing in the library imports this module."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["error_curve_figure", "new_figure"]


def new_figure(width: float = 5.5, height: float = 3.8):
    """A `(figure, axes)` pair of `width` by `height` inches on the non-interactive Agg backend (matplotlib is
    imported here)."""
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
    """Error versus `alpha` on log axes; returns the matplotlib `Figure`.

    `curves` holds `(alpha, error, label)` triples (1-d arrays of equal length; points with `alpha <= 0` or a
    non-positive or non-finite error are skipped), `bands` optional `(alpha, low, high)` shaded ranges per
    curve (e.g. simulation spread; `None` for none), `title` the axes title and `ylabel` the y label."""
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


# --------------------------------------------------------------------------------------------------
# Figures of `jaxprune reproduce` (each takes plain numbers from the results, returns a Figure)
# --------------------------------------------------------------------------------------------------


def _panels(n: int, *, width: float = 5.0, height: float = 3.8):
    """A figure with `n` side-by-side axes on the Agg backend (matplotlib imported lazily)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def ode_vs_simulation_figure(runs: Sequence[dict]):
    """Left: noise-free `eps_g` against `alpha`, the finite-N simulation (mean over seeds, shaded min..max)
    beside the ODE from the same initial overlaps, one colour per `N`. Right: the simulation-ODE deviation
    (root mean square over `alpha`, mean over seeds) against `N`, with an `N^-1/2` guide.

    `runs`: dicts with `N`, `alpha`, `sim_mean`, `sim_min`, `sim_max`, `ode_mean`, `rms_deviation`."""
    fig, (a1, a2) = _panels(2)
    for r in runs:
        al = np.asarray(r["alpha"], float)
        line, = a1.plot(al, np.asarray(r["sim_mean"], float), label=f"simulation N={r['N']}")
        a1.fill_between(al, np.asarray(r["sim_min"], float), np.asarray(r["sim_max"], float),
                        color=line.get_color(), alpha=0.15, linewidth=0)
        a1.plot(al, np.asarray(r["ode_mean"], float), "--", color=line.get_color(), label=f"ODE (N={r['N']} starts)")
    a1.set_yscale("log")
    a1.set_xlabel(r"$\alpha$ = steps / N")
    a1.set_ylabel(r"$\epsilon_g$ (noise-free)")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    Ns = np.asarray([r["N"] for r in runs], float)
    dev = np.asarray([r["rms_deviation"] for r in runs], float)
    a2.loglog(Ns, dev, "o-", label="simulation - ODE (rms over alpha)")
    if len(Ns) and np.isfinite(dev[0]) and dev[0] > 0:
        a2.loglog(Ns, dev[0] * np.sqrt(Ns[0] / Ns), "k:", label=r"$\propto N^{-1/2}$")
    a2.set_xlabel("N")
    a2.set_ylabel(r"deviation of $\epsilon_g$")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def fixed_point_figure(etas: Sequence[float], sigmas: Sequence[float], eps, d_eta, d_sigma):
    """Three panels against `eta`, one line per `sigma`: the fixed-point error `eps_g*` and its implicit
    derivatives `d eps_g*/d eta`, `d eps_g*/d sigma`. Arrays are `(len(sigmas), len(etas))`; NaN is skipped."""
    fig, axes = _panels(3, width=4.2)
    etas = np.asarray(etas, float)
    for ax, vals, name in zip(axes, (eps, d_eta, d_sigma),
                              (r"$\epsilon_g^*$", r"$d\epsilon_g^*/d\eta$", r"$d\epsilon_g^*/d\sigma$")):
        vals = np.asarray(vals, float)
        for j, s in enumerate(sigmas):
            ok = np.isfinite(vals[j])
            ax.plot(etas[ok], vals[j][ok], "o-", ms=3, label=f"sigma={s:g}")
        ax.set_xlabel(r"$\eta$")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if name == r"$\epsilon_g^*$":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def pruning_methods_figure(panels: Sequence[dict]):
    """One panel per label-noise level: expected error against the kept budget `k` for every method (best
    option), theory (lines) and measured on the concrete pruned networks (markers).

    `panels`: dicts with `title`, `k` (budgets) and `methods`: `{name: {"predicted": [...], "measured": [...]}}`."""
    fig, axes = _panels(max(len(panels), 1))
    for ax, p in zip(axes, panels):
        ks = np.asarray(p["k"], float)
        for name, d in p["methods"].items():
            line, = ax.plot(ks, np.asarray(d["predicted"], float), "-", label=f"{name}")
            if d.get("measured") is not None:
                ax.plot(ks, np.asarray(d["measured"], float), "o", color=line.get_color(), ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("budget k (node: units kept; edge: p = k/K)")
        ax.set_ylabel(r"$\epsilon_g$ after pruning (line: theory, dots: measured)")
        ax.set_title(p.get("title", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def design_comparison_figure(levels: Sequence[dict]):
    """Grouped bars, one panel per design level: the designed error beside each baseline at every budget.

    `levels`: dicts with `title`, `budgets` (labels) and `bars`: `{name: [error per budget]}` (NaN = absent)."""
    fig, axes = _panels(max(len(levels), 1), width=4.8)
    for ax, lv in zip(axes, levels):
        names = list(lv["bars"])
        nb = len(lv["budgets"])
        width = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            ax.bar(np.arange(nb) + j * width, np.asarray(lv["bars"][name], float), width, label=name)
        ax.set_xticks(np.arange(nb) + 0.4 - width / 2)
        ax.set_xticklabels([str(b) for b in lv["budgets"]])
        ax.set_yscale("log")
        ax.set_ylabel(r"$\epsilon_g$ (exact)")
        ax.set_title(lv.get("title", ""))
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


__all__ += ["ode_vs_simulation_figure", "fixed_point_figure", "pruning_methods_figure", "design_comparison_figure"]
