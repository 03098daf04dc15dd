"""Settings of every part of `jaxprune reproduce`, per mode (`quick`, `default`, `full`)."""

from __future__ import annotations

__all__ = ["MODES", "PARTS", "DESIGN_PARTS", "reproduce_settings"]

#: the sizes `jaxprune reproduce` runs at: a smoke run, under ten minutes, the seed paper's sizes
MODES = ("quick", "default", "full")
#: the parts of `jaxprune reproduce`, each written to `parts/<name>.json` and reused when its settings match
PARTS = ("ode_vs_sim", "fixed_points", "paper", "regime_5_20", "theory_claims", "winner_map", "design_network",
         "design_population", "design_training", "realdata")
DESIGN_PARTS = ("design_network", "design_population", "design_training")


def reproduce_settings(mode: str = "default") -> dict[str, dict]:
    """The settings of every part of [`reproduce`][jaxprune.experiments.reproduce] for one mode.

    A part's file is reused by a rerun only when its recorded settings equal these.

    **Arguments:**

    - `mode`: `"quick"` (a smoke run of about two minutes on two CPU cores; small networks), `"default"`
      (under ten minutes) or `"full"` (the seed paper's sizes: `N = 500`, 800 000 SGD steps, 1.5 million at
      `K = 20`, ten students per noise level; docs/theory.md 6.3).

    **Returns:** a dict `{part name: settings dict}` with one entry per name of
    [`PARTS`][jaxprune.experiments.PARTS] (plain JSON-able values: sizes, noise levels, seeds, budgets).

    **Example:**

    ```python
    jpx.reproduce_settings("full")["paper"]["steps"]   # 800000
    ```
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    q, f = mode == "quick", mode == "full"

    def pick(quick, default, full):
        return quick if q else (full if f else default)

    paper_net = dict(M=2, v_star=4.0, eta=0.5)
    ode = dict(K=2, M=2, eta=0.5, sigma=0.0, seed=0,
               Ns=pick([100, 400], [100, 400, 1600], [100, 400, 1600, 6400]),
               seeds=pick(3, 6, 10), alpha=pick(20.0, 30.0, 50.0), records=pick(40, 60, 100), early_alpha=5.0)
    fp = dict(K=2, M=2, mode="scm", v_star=1.0, alpha=pick(500.0, 1000.0, 2000.0), fd_step=1e-5,
              etas=pick([0.5, 1.0], [0.25, 0.5, 0.75, 1.0, 1.5], [0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0]),
              sigmas=pick([0.1, 0.3], [0.05, 0.1, 0.2, 0.3, 0.5], [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7]))
    # the seed paper's experiment under its protocol (docs/theory.md 6.3): rows normalised before pruning,
    # importance = the k largest v_i, v initialised N(0, 1), 800 000 SGD steps, >= 5 students per noise level
    paper = dict(**paper_net, N=pick(100, 500, 500), K=pick(4, 6, 6), steps=pick(20_000, 800_000, 800_000),
                 sigmas=[0.0, 0.25], seeds=pick(2, 5, 10), masks=pick(3, 10, 20), test_mse_masks=1,
                 test_samples=pick(2000, 10_000, 20_000), protocol="paper",
                 reweights=["none", "preactivation", "optimal"], rescales=["none", "optimal"], seed=0)
    # its second regime, K = 20, M = 5 (quick: K = 10, M = 5)
    regime = dict(N=pick(100, 500, 500), M=5, K=pick(10, 20, 20), v_star=4.0, eta=0.5,
                  steps=pick(20_000, 800_000, 1_500_000), sigmas=[0.0, 0.25], seeds=pick(2, 5, 10),
                  masks=pick(3, 10, 20), test_mse_masks=0, test_samples=2000, protocol="paper", seed=0)
    theory = dict(v_star=4.0, eta=0.5, regimes=pick([[6, 2]], [[6, 2], [20, 5]], [[6, 2], [20, 5]]),
                  ode_regimes=pick([[6, 2]], [[6, 2], [20, 5]], [[6, 2], [20, 5]]), sigmas=[0.0, 0.25],
                  alpha=pick(200.0, 1000.0, 2000.0), seed=0)
    wmap = dict(**paper_net, M_units=2, ratios=pick([2], [2, 3], [2, 3, 4]),
                sigmas=pick([0.0, 0.5], [0.0, 0.25, 0.5], [0.0, 0.1, 0.25, 0.5]),
                etas=pick([0.5], [0.5], [0.25, 0.5, 1.0]), alpha=pick(200.0, 1000.0, 2000.0), N=paper["N"],
                seed=0)
    del wmap["M"]
    net = dict(**paper_net, N=pick(100, 300, 500), K=pick(4, 6, 6), steps=pick(20_000, 60_000, 200_000),
               sigma=0.0, seed=0)
    K = net["K"]
    ks = pick([2], [3], [1, 2, 3, 4, 5])
    design_network = dict(network=net, keeps=[k / K for k in ks], steps=pick(100, 300, 400),
                          restarts=pick(2, 4, 4), learning_rate=0.05, seed=0)
    design_population = dict(network=net, keeps=[k / K for k in ks], steps=pick(100, 200, 300),
                             learning_rate=0.05, seed=0)
    design_training = dict(network=net, ks=pick([2], [3], [2, 3, 4]), duration=pick(10.0, 20.0, 20.0),
                           steps=pick(20, 40, 60), restarts=pick(1, 2, 2), learning_rate=0.05,
                           sim_seeds=pick(1, 2, 3), seed=0)
    realdata = dict(dataset="digits", quick=q, hidden=None if not q else [50],
                    budgets=pick([0.25, 0.5, 0.75], [0.2, 0.4, 0.6, 0.8], None),
                    seeds=pick(1, 2, 3), masks=pick(2, 3, 5))
    return {"ode_vs_sim": ode, "fixed_points": fp, "paper": paper, "regime_5_20": regime, "theory_claims": theory,
            "winner_map": wmap,
            "design_network": design_network, "design_population": design_population,
            "design_training": design_training, "realdata": realdata}

