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
# # 3. Designing a pruning mask by gradient descent
#
# The generalisation error of a concrete network is an exact, smooth function of its overlaps, and the overlaps
# of a masked network `w'_i = c_i (m_i * w_i)` are dot products of the weights. Relax the 0/1 mask to
# `m in [0, 1]`, and pruning becomes an optimisation problem that gradient descent (optax) can attack directly
# on the exact error (docs/theory.md section 7): project onto the budget after each step, round to the best entries
# at the end, and evaluate the hard mask exactly.
#
# On a trained student at the seed paper's setting (`M = 2`, `K = 6`, two-layer, `v* = 4`, `eta = 0.5`) we
#
# 1. design an **edge mask** keeping half of the first-layer weights and compare it with random, magnitude and
#    DPP edge masks (each with its best per-unit rescale);
# 2. design a **node subset** of `k` units (optimal second layer) and compare it with random, importance and
#    DPP node pruning, and with the brute-force best subset;
# 3. plot the loss curves, and check the designed edge mask on fresh inputs.
#
# Set `JAXPRUNE_NOTEBOOK_SMALL=1` for a quick run (smaller network, fewer optimisation steps). Every error is
# the noise-free `eps_g`.

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
# ## A trained network to prune
#
# Finite-N online SGD, as in notebook 2. Any weights would do (`w`, `w*`, `v`, `v*`): the design only needs them.

# %%
N = 100 if SMALL else 400
K, M = 6, 2
ALPHA = 100.0 if SMALL else 400.0
config = jp.SGDConfig(eta=0.5, eta_v=0.5, sigma=0.0, mode="two-layer")
key_teacher, key_student, key_sgd, key_design = jax.random.split(jax.random.key(2), 4)
teacher = jp.make_teacher(key_teacher, N, M, v_star=4.0, dtype=jnp.float64)
student0 = jp.init_student(key_student, N, K, v0="random", v0_scale=0.1, dtype=jnp.float64)
steps = int(ALPHA * N)
t = clock()
train = jp.simulate(key_sgd, teacher, student0, config, steps=steps, record_every=steps, dtype=jnp.float64)
w, v, w_star, v_star = train.final.w, train.final.v, teacher.w_star, teacher.v_star
state = jp.overlaps_from_weights(w, w_star, v, v_star)
eps_full = float(jp.generalisation_error(state))
print(f"trained {steps} steps in {since(t)}: eps_g = {eps_full:.4g} (N = {N}, K = {K}, M = {M})")
assert int(train.status) == jp.Status.SUCCESS and eps_full < 0.1 * float(train.eps_g[0])

# %% [markdown]
# ## Design an edge mask
#
# `design_edge_mask` keeps `B = round(keep K N)` weights. The relaxed loss is the exact error of the *mean*
# overlaps of independent Bernoulli(`m`) masks (so a fractional mask cannot cheat by shrinking single weights),
# with learned per-unit rescales `c_i`; the mask is projected onto `{0 <= m <= 1, sum m = B}` after every Adam
# step, and a binarisation term ramps up in the second half. Restart 0 starts from the magnitude scores, the
# others from noise; every restart is rounded (top `B`, and a few randomised roundings), and the best hard mask,
# evaluated exactly with its best rescale, is returned.

# %%
KEEP = 0.5
STEPS = 60 if SMALL else 400
t = clock()
edge = jp.design.design_edge_mask(w, w_star, v, v_star, KEEP, steps=STEPS, restarts=2 if SMALL else 4,
                                  roundings=4 if SMALL else 8, key=key_design)
print(f"designed in {since(t)}: exact eps_g {float(edge.error):.5g} (relaxed {float(edge.relaxed_error):.5g}), "
      f"{int(edge.mask.sum())} of {K * N} weights kept")

# the reported error is the exact error of the hard-masked, rescaled network
B = round(KEEP * K * N)
check = jp.generalisation_error(jp.design.masked_network_overlaps(w, w_star, edge.v, v_star,
                                                                  edge.mask.astype(w.dtype), edge.scale))
assert int(edge.mask.sum()) == B
np.testing.assert_allclose(float(check), float(edge.error), rtol=1e-10)

# %% [markdown]
# Baselines at the same budget, each with its best per-unit rescale (`masked_network_error(..., rescale="optimal")`
# minimises over `c`, never worse than `c = 1`): random masks (mean over draws), the magnitude mask, and masks
# from the seed paper's edge k-DPP in its iid-input limit (diagonal kernel `w_ij^2`).

# %%
t = clock()
draws = 4 if SMALL else 16
keys = jax.random.split(jax.random.fold_in(key_design, 1), draws)


def exact_error(mask):
    return float(jp.design.masked_network_error(w, w_star, v, v_star, mask, rescale="optimal")[0])


baselines = {
    "random": np.mean([exact_error(jp.pruning.random_edge_mask(kk, w, KEEP)) for kk in keys]),
    "magnitude": exact_error(jp.pruning.magnitude_edge_mask(w, KEEP)),
    "dpp (diagonal kernel)": np.mean([exact_error(m) for m in jp.pruning.dpp_edge_mask(keys[0], w, KEEP, kernel="diagonal",
                                                                             num_samples=draws)]),
}
print(f"baselines in {since(t)}")
print(f"unpruned: {eps_full:.5g}")
for name, e in baselines.items():
    print(f"{name:22s} {e:.5g}")
print(f"{'designed':22s} {float(edge.error):.5g}")

# the design started from the magnitude scores: it must not end worse than the magnitude mask
assert float(edge.error) <= baselines["magnitude"] * (1 + 1e-9), (float(edge.error), baselines)
assert float(edge.error) <= min(baselines.values()) * (1 + 1e-9)
assert float(edge.error) >= 0

# %% [markdown]
# ## Design a node subset
#
# `design_node_mask` relaxes the unit mask with the ridge-regularised optimal second layer
# `v'(m) = (A + rho diag(1/m - 1))^{-1} B v*`, which at a 0/1 mask is the optimal reweighting of the kept units,
# rounds every restart to its top `k` and polishes the best by exact one-unit exchanges. With `K = 6` all
# `C(6, k)` subsets can be enumerated, so we also know the true optimum.

# %%
k = 3
t = clock()
node = jp.design.design_node_mask(state, k, steps=STEPS, restarts=4 if SMALL else 16, key=key_design)
print(f"designed in {since(t)}: units {np.flatnonzero(np.asarray(node.mask)).tolist()}, exact eps_g "
      f"{float(node.error):.5g}")
all_masks = jp.pruning.expected_node_error(state, k, method="random", reweight="optimal", return_errors=True)
brute = float(jnp.min(all_masks.errors))
node_baselines = {m: float(jp.pruning.expected_node_error(state, k, method=m, reweight="optimal", jitter=1e-6).mean)
                  for m in ("random", "importance", "dpp")}
for name, e in node_baselines.items():
    print(f"{name:12s} (optimal reweighting, expected) {e:.5g}")
print(f"brute-force best of {all_masks.num_subsets} subsets: {brute:.5g}")

assert float(node.error) <= min(node_baselines.values()) * (1 + 1e-9)
np.testing.assert_allclose(float(node.error), brute, rtol=1e-8)  # the design found the best subset
# equal budget of first-layer weights: the best subset against the designed edge mask at keep = k / K
print(f"k/K = {k / K:g}: designed node subset {float(node.error):.5g}, designed edge mask {float(edge.error):.5g}")

# %% [markdown]
# ## Loss curves

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
a1.plot(np.asarray(edge.trace.loss), label="edge mask")
a1.plot(np.asarray(node.trace.loss), label=f"node subset (k = {k})")
a1.set_yscale("log")
a1.set_xlabel("Adam step")
a1.set_ylabel("relaxed loss (summed over restarts)")
a1.legend()
a1.set_title("design loss curves")
names = list(baselines) + ["designed"]
vals = list(baselines.values()) + [float(edge.error)]
a2.bar(range(len(vals)), vals, color=["C7"] * len(baselines) + ["C3"])
a2.axhline(eps_full, color="k", lw=0.8, label="unpruned")
a2.set_xticks(range(len(vals)))
a2.set_xticklabels(names, rotation=20, fontsize=8)
a2.set_ylabel(r"exact $\epsilon_g$, best rescale")
a2.set_title(f"edge masks keeping {KEEP:.0%} of the weights")
a2.legend()
fig.tight_layout()
show(fig)

# %% [markdown]
# ## Check on fresh inputs
#
# The error is exact given the weights, so a Monte Carlo estimate on fresh Gaussian inputs must agree with it,
# for the designed mask and for the magnitude mask alike.

# %%
def monte_carlo_error(key, w, v, samples, chunk=10_000):
    """`1/2 mean (phi(x) - y_clean(x))^2` over fresh Gaussian inputs, and its standard error."""
    g = lambda z: jax.scipy.special.erf(z / np.sqrt(2.0))  # noqa: E731
    sq = []
    for kk in jax.random.split(key, samples // chunk):
        x = jax.random.normal(kk, (chunk, N), jnp.float64) / np.sqrt(N)
        sq.append(0.5 * np.asarray(g(x @ w.T) @ v - g(x @ w_star.T) @ v_star) ** 2)
    sq = np.concatenate(sq)
    return sq.mean(), sq.std() / np.sqrt(sq.size)


P = 100_000 if SMALL else 200_000
mag_mask = jp.pruning.magnitude_edge_mask(w, KEEP)
eps_mag, c_mag, v_mag = jp.design.masked_network_error(w, w_star, v, v_star, mag_mask)
for name, (mask, c, vv, exact) in {
    "designed": (edge.mask, edge.scale, edge.v, edge.error),
    "magnitude": (mag_mask, c_mag, v_mag, eps_mag),
}.items():
    mc, se = monte_carlo_error(jax.random.fold_in(key_design, 2), jp.pruning.apply_edge_mask(w, mask, c), vv, P)
    print(f"{name:10s}: exact {float(exact):.5g}, Monte Carlo {mc:.5g} +- {se:.2g} ({P} inputs)")
    assert abs(mc - float(exact)) < 4 * se

print(f"notebook ran in {since(START)}")
