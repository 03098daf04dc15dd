# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Comparing pruning methods on a trained student
#
# A pruned student is again a student: its error is `eps_g` of its new overlaps (docs/theory.md section 6). So once a
# student is trained, every pruning method at every budget is a cheap map on its order parameters:
#
# - **node pruning** keeps `k` of the `K` units (random, importance `|v_i| sqrt(Q_ii)`, or a k-DPP on the
#   units), with four rules for the new second layer (`none`, `preactivation`, `activation`, `optimal`); its
#   expected error over the subset distribution is computed exactly by enumerating all `C(K, k)` subsets;
# - **edge pruning** keeps a fraction `p` of each unit's incoming weights (random, magnitude, or the large-N DPP
#   rule) with a per-unit rescale (`none`, `1/p`, `optimal`), through the Gaussian-equivalent model.
#
# We train a student at the seed paper's setting (Acharyya et al., UAI 2021: `M = 2`, `K = 6`, two-layer,
# `v* = 4`, `eta = 0.5`) by finite-N online SGD, compare all methods at equal numbers of first-layer weights
# (`p = k / K`), and check the predictions against the concrete pruned network.
#
# Set `JAXPRUNE_NOTEBOOK_SMALL=1` for a quick run (smaller network, shorter training, fewer budgets and options).
# Every error is the noise-free `eps_g`.

# %%
import os
import sys
import time

import matplotlib

if "ipykernel" not in sys.modules:  # running as a script: no display
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxprune as jp

jp.enable_compile_cache()  # keep compiled programs between runs (~/.cache/jaxprune; JAXPRUNE_CACHE_DIR=off disables)
from jaxprune.pruning import best_by_method, format_compare_table

SMALL = os.environ.get("JAXPRUNE_NOTEBOOK_SMALL", "0") not in ("", "0")
IN_JUPYTER = "ipykernel" in sys.modules


def show(fig):
    """Display in Jupyter; as a script, render the figure in memory (so plotting is checked) and close it."""
    if IN_JUPYTER:
        plt.show()
    else:
        import io

        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)


def clock():
    return time.perf_counter(), time.process_time()


def since(c):
    """Wall and CPU seconds since `c = clock()` (compilation included)."""
    return f"{time.perf_counter() - c[0]:.1f} s (CPU {time.process_time() - c[1]:.1f} s)"


START = clock()
print(f"jaxprune {jp.__version__}, jax {jax.__version__}, small mode: {SMALL}")

# %% [markdown]
# ## Train a student
#
# The seed paper's simulations use `N = 500` and 800 000 samples (`alpha = 1600`); we train for less. The second
# layer starts small and random, so that the units can specialise. The overlaps of the trained weights describe
# the trained network exactly (its local fields are jointly Gaussian at any `N`).

# %%
N = 200 if SMALL else 500
K, M = 6, 2
ALPHA = 100.0 if SMALL else 800.0
SIGMA = 0.0
config = jp.SGDConfig(eta=0.5, eta_v=0.5, sigma=SIGMA, mode="two-layer")

key_teacher, key_student, key_sgd, key_check = jax.random.split(jax.random.key(1), 4)
teacher = jp.make_teacher(key_teacher, N, M, v_star=4.0, dtype=jnp.float64)
student0 = jp.init_student(key_student, N, K, v0="random", v0_scale=0.1, dtype=jnp.float64)
steps = int(ALPHA * N)
t = clock()
train = jp.simulate(key_sgd, teacher, student0, config, steps=steps, record_every=steps // 20, dtype=jnp.float64)
print(f"{steps} SGD steps in {since(t)}; status {jp.describe(train.status)}")
w, v = train.final.w, train.final.v
w_star, v_star = teacher.w_star, teacher.v_star
state = jp.overlaps_from_weights(w, w_star, v, v_star)
eps_full = float(jp.generalisation_error(state))
print(f"eps_g: {float(train.eps_g[0]):.4g} at alpha = 0, {eps_full:.4g} at alpha = {ALPHA:g}")
print("R (rows: student units, columns: teacher units) =\n", np.round(np.asarray(state.R), 2))
print("v =", np.round(np.asarray(state.v), 2))

assert int(train.status) == jp.Status.SUCCESS
assert eps_full < 0.1 * float(train.eps_g[0])  # the student learned

fig, ax = plt.subplots(figsize=(5.5, 3.8))
ax.plot(train.alphas[1:], train.eps_g[1:], "o-")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel(r"$\alpha$ = steps / N")
ax.set_ylabel(r"$\epsilon_g$")
ax.set_title(f"training, N = {N}, K = {K}, M = {M}, v* = 4")
show(fig)

# %% [markdown]
# ## Every method at every budget
#
# `compare_methods` returns one row per method, option (reweighting or rescale) and budget `k`; edge methods are
# evaluated at the matched keep fraction `p = k / K`. The DPP kernel is `L = Q` (the seed paper's linear kernel on
# pre-activations) with a small jitter. `format_compare_table` prints them (mean +- spread over subsets).

# %%
budgets = [2, 4] if SMALL else list(range(1, K))
reweights = ("none", "optimal") if SMALL else ("none", "preactivation", "activation", "optimal")
rescales = ("none",) if SMALL else ("none", "inverse-keep", "optimal")
t = clock()
rows = jp.pruning.compare_methods(state, budgets=budgets, reweights=reweights, rescales=rescales, N=N, jitter=1e-6)
print(f"{len(rows)} rows in {since(t)}\n")
print(format_compare_table(rows))

assert all(r["mean"] >= 0 and r["status"] in (jp.Status.SUCCESS, jp.Status.SINGULAR) for r in rows)
by = {(r["method"], r["option"], r.get("budget_k")): r["mean"] for r in rows}
for k in budgets:
    for m in ("random-node", "importance-node", "dpp-node"):
        # the optimal second layer is a lower bound for every reweighting, subset by subset
        assert all(by[(m, "optimal", k)] <= by[(m, rw, k)] + 1e-10 for rw in reweights), (m, k)
    for m in ("random-edge", "magnitude-edge", "dpp-edge"):
        assert all(by[(m, rs, k)] >= 0 for rs in rescales)
        if "optimal" in rescales:
            assert all(by[(m, "optimal", k)] <= by[(m, rs, k)] + 1e-10 for rs in rescales), (m, k)

# %% [markdown]
# The best option of each method against the budget (fraction of first-layer weights kept):

# %%
best = best_by_method(rows)
methods = ["random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"]
fig, ax = plt.subplots(figsize=(6.5, 4.2))
for m in methods:
    ks = sorted(k for (mm, k) in best if mm == m)
    ax.plot(np.array(ks) / K, [best[(m, k)]["mean"] for k in ks], "o-" if m.endswith("node") else "s--",
            label=f"{m} ({best[(m, ks[-1])]['option']})")
ax.axhline(eps_full, color="k", lw=0.8, label="unpruned")
ax.set_yscale("log")
ax.set_xlabel("fraction of first-layer weights kept (k / K = p)")
ax.set_ylabel(r"expected $\epsilon_g$ after pruning")
ax.set_title("best reweighting / rescale of each method")
ax.legend(fontsize=7)
show(fig)
for k in budgets:
    winner = min(methods, key=lambda m: best[(m, k)]["mean"])
    print(f"k = {k}: best method {winner} ({best[(winner, k)]['option']}), eps_g = {best[(winner, k)]['mean']:.4g}")

# %% [markdown]
# ## Check a prediction on the concrete pruned network
#
# **Node pruning.** Importance pruning to `k` units with the optimal second layer is deterministic. Build the
# concrete smaller network (the kept rows of `w` and the reweighted second layer from `prune_nodes`) and measure
# its error by Monte Carlo on fresh Gaussian inputs, independently of the closed-form error.

# %%
k = budgets[len(budgets) // 2]
# choices are objects (names such as "importance" / "optimal" work too): keep the k largest |v_i| sqrt(Q_ii)
node = jp.pruning.expected_node_error(state, k, method=jp.pruning.ImportanceNodes(score="magnitude"),
                                      reweight=jp.pruning.OptimalReweight(), return_errors=True)
mask = np.asarray(node.masks[0])
pruned, status = jp.pruning.prune_nodes(state, jnp.asarray(mask), reweight=jp.pruning.OptimalReweight())
w_kept, v_kept = w[mask], pruned.v[mask]


def monte_carlo_error(key, w, v, samples, chunk=10_000):
    """`1/2 mean (phi(x) - y_clean(x))^2` over fresh Gaussian inputs, and its standard error."""
    g = lambda z: jax.scipy.special.erf(z / np.sqrt(2.0))  # noqa: E731
    sq = []
    for kk in jax.random.split(key, samples // chunk):
        x = jax.random.normal(kk, (chunk, N), jnp.float64) / np.sqrt(N)
        sq.append(0.5 * np.asarray(g(x @ w.T) @ v - g(x @ w_star.T) @ v_star) ** 2)
    sq = np.concatenate(sq)
    return sq.mean(), sq.std() / np.sqrt(sq.size)


P = 50_000 if SMALL else 200_000
eps_mc, se_mc = monte_carlo_error(key_check, w_kept, v_kept, P)
eps_exact = float(jp.generalisation_error(jp.overlaps_from_weights(w_kept, w_star, v_kept, v_star)))
predicted = by[("importance-node", "optimal", k)]
print(f"importance node pruning to k = {k} (units {np.flatnonzero(mask).tolist()}), optimal second layer:")
print(f"  predicted {predicted:.5g}; concrete network: {eps_exact:.5g} from its overlaps, "
      f"{eps_mc:.5g} +- {se_mc:.2g} by Monte Carlo on {P} inputs")

assert int(status) == jp.Status.SUCCESS
np.testing.assert_allclose(eps_exact, predicted, rtol=1e-8)
assert abs(eps_mc - predicted) < 4 * se_mc, (eps_mc, predicted, se_mc)

# %% [markdown]
# **Edge pruning.** The edge predictions come from the Gaussian-equivalent model (`N -> infinity`, per-coordinate
# weights Gaussian). For random masks the model is exact up to finite-`N` fluctuations; magnitude and DPP masks
# also test how Gaussian the trained weights are. Draw concrete masks with the same keep fraction and compute the
# masked network's exact error from its overlaps.

# %%
p = k / K
draws = 8 if SMALL else 32
keys = jax.random.split(jax.random.fold_in(key_check, 1), draws)
masks = {
    "random-edge": jax.vmap(lambda kk: jp.pruning.random_edge_mask(kk, w, p))(keys),
    "magnitude-edge": jp.pruning.magnitude_edge_mask(w, p)[None],
    "dpp-edge": jp.pruning.dpp_edge_mask(keys[0], w, p, kernel="diagonal", num_samples=draws),
}


@jax.jit
def masked_errors(masks):
    return jax.vmap(lambda m: jp.generalisation_error(jp.overlaps_from_weights(jnp.where(m, w, 0.0), w_star, v,
                                                                               v_star)))(masks)


gaps = {}
for m, mk in masks.items():
    errs = np.asarray(masked_errors(mk))
    pred = by[(m, "none", k)]
    gaps[m] = abs(errs.mean() - pred) / pred
    print(f"{m:15s} p = {p:.3f}: predicted {pred:.4g}, concrete {errs.mean():.4g} +- {errs.std():.2g} over "
          f"{len(errs)} mask(s); relative gap {gaps[m]:.3f}")

assert gaps["random-edge"] < 0.15, gaps  # random masks: exact up to O(1/sqrt N) and the spread of the draws
assert max(gaps.values()) < 0.5, gaps  # the others also test the Gaussian model of the trained weights

print(f"notebook ran in {since(START)}")
