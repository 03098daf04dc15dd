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
# # 1. Integrating and sweeping the dynamics of online SGD
#
# A two-layer student learns from a two-layer teacher by online SGD. As the input dimension `N` grows, the
# overlaps `Q = w w^T / N`, `R = w w*^T / N` (and the second layer `v` in two-layer mode) follow deterministic
# ODEs in the time `alpha = steps / N` (docs/theory.md section 4). This notebook
#
# 1. builds an initial state and integrates the ODEs with an adaptive solver (`tsit5`) and with fixed-step Euler;
# 2. checks the ODE against a finite-N simulation of the same SGD started from the same overlaps;
# 3. finds the stationary point reached with label noise and differentiates its error by the implicit
#    function theorem;
# 4. sweeps the learning rate, once with `jax.vmap` and once with `run_sweep`, and plots the result.
#
# Set `JAXPRUNE_NOTEBOOK_SMALL=1` for a quick run with tiny sizes (what the tests do). Every error is the
# noise-free generalisation error `eps_g = 1/2 E[(phi(x) - y_clean)^2]`.

# %%
import os
import sys
import tempfile
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
import jaxprune.experiments  # the experiments layer is imported explicitly

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
# ## The problem
#
# The reference problem: a soft committee machine (`v = v* = 1` fixed) with `K = M = 2`, learning rate
# `eta = 0.5`, label noise `sigma = 0.1`. We draw a concrete teacher and student of dimension `N`, and take the
# ODE's initial state from their actual overlaps, so that ODE and simulation start from the same point.

# %%
K, M = 2, 2
N = 300 if SMALL else 1000
ALPHA = 20.0 if SMALL else 60.0
SIGMA = 0.1
config = jp.SGDConfig(eta=0.5, sigma=SIGMA, mode="scm")

key_teacher, key_student, key_sgd = jax.random.split(jax.random.key(0), 3)
teacher = jp.make_teacher(key_teacher, N, M, dtype=jnp.float64)
student = jp.init_student(key_student, N, K, scale=1.0, dtype=jnp.float64)
state0 = jp.overlaps_from_weights(student.w, teacher.w_star, student.v, teacher.v_star)
jp.validate_overlaps(state0)
print("Q0 =\n", np.round(np.asarray(state0.Q), 3))
print("R0 =\n", np.round(np.asarray(state0.R), 3))
print(f"eps_g at alpha = 0: {float(jp.generalisation_error(state0)):.4f}")

# %% [markdown]
# ## ODE: adaptive Runge-Kutta versus Euler
#
# `solve_ode` returns the trajectory on the requested output grid, the error at every output time and a status
# code. Euler with step `dt = 0.01` is what the reference C++ tool does; `tsit5` adapts its step to a tolerance.

# %%
RECORDS = 20
ALPHA_FP = 200.0 if SMALL else 1000.0
alphas = jp.alpha_grid(ALPHA, RECORDS + 1, spacing="linear")  # also the simulation's record times below
t = clock()
# tsit5 also runs on to ALPHA_FP (cheap: adaptive steps grow on the plateau), for the fixed point further down
sol_long = jp.solve_ode(state0, config, np.append(alphas, ALPHA_FP), integrator="tsit5")
sol = jax.tree.map(lambda x: x[:-1] if getattr(x, "ndim", 0) else x, sol_long)  # the outputs on `alphas`
sol_euler = jp.solve_ode(state0, config, alphas, integrator="euler", dt=0.01)
print(f"solved in {since(t)}; tsit5 took {int(sol_long.num_steps)} steps to alpha = {ALPHA_FP:g}, "
      f"Euler {int(sol_euler.num_steps)} to alpha = {ALPHA:g}")
print("status:", jp.describe(sol.status), "/", jp.describe(sol_euler.status))
gap = np.max(np.abs(np.asarray(sol.eps_g) - np.asarray(sol_euler.eps_g)) / np.asarray(sol.eps_g))
print(f"max relative gap |eps_g(tsit5) - eps_g(Euler)| / eps_g(tsit5) = {gap:.2e}")

assert int(sol.status) == jp.Status.SUCCESS and int(sol_euler.status) == jp.Status.SUCCESS
assert np.all(np.asarray(sol_long.eps_g) >= 0)
assert gap < 2e-2, gap  # Euler at dt = 0.01 is first order: close, not identical
assert float(sol.eps_g[-1]) < float(sol.eps_g[0])  # learning happened

# %% [markdown]
# ## ODE versus a finite-N simulation
#
# `simulate` runs the same SGD at dimension `N`, one fresh Gaussian input per step, and records the overlaps
# read off the weights. Its error should follow the ODE up to fluctuations of order `1/sqrt(N)`. We average a
# few independent input streams (`simulate_seeds` vmaps over keys).

# %%
steps = int(ALPHA * N)
record_every = steps // RECORDS
seeds = 2 if SMALL else 4
t = clock()
sim = jp.simulate_seeds(jax.random.split(key_sgd, seeds), teacher, student, config, steps=steps,
                        record_every=record_every, dtype=jnp.float64)
print(f"{seeds} x {steps} SGD steps in {since(t)}")
np.testing.assert_allclose(np.asarray(sim.alphas[0]), alphas)  # same grid as the ODE above
sim_mean = np.asarray(sim.eps_g).mean(axis=0)
ode_on_grid = np.asarray(sol.eps_g)
rel = np.max(np.abs(sim_mean - ode_on_grid) / ode_on_grid)
print(f"max relative gap, mean simulation vs ODE: {rel:.3f}  (1/sqrt(N) = {1 / np.sqrt(N):.3f})")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(sol.alphas, sol.eps_g, label="ODE, tsit5")
ax.plot(sol_euler.alphas, sol_euler.eps_g, "--", label="ODE, Euler dt=0.01")
for s in range(seeds):
    ax.plot(sim.alphas[s], sim.eps_g[s], ".", color="gray", alpha=0.6, label=f"simulation N={N}" if s == 0 else None)
ax.set_yscale("log")
ax.set_xlabel(r"$\alpha$ = steps / N")
ax.set_ylabel(r"$\epsilon_g$ (noise-free)")
ax.set_title(f"K = M = 2, eta = 0.5, sigma = {SIGMA}")
ax.legend()
show(fig)

assert np.all(np.asarray(sim.status) == jp.Status.SUCCESS)
assert rel < 0.2, rel  # agreement to O(1/sqrt N) (seen: about 1/sqrt N); catches a wrong ODE

# %% [markdown]
# ## The fixed point and its implicit gradient
#
# With label noise, SGD at constant `eta` stops short of zero error: the ODEs settle at a stationary point.
# `solve_fixed_point` polishes a guess (here the ODE state at `alpha = ALPHA_FP`) by Newton's method;
# `fixed_point_from_ode` does both steps in one call. The result carries the status, the Jacobian's eigenvalues
# (the slowest is the asymptotic rate) and an `eps_g` that is differentiable in the configuration and the
# teacher by the implicit function theorem (no differentiation through the iterations).

# %%
guess = jax.tree.map(lambda x: x[-1], sol_long.states)


def fixed_point(eta, sigma):
    """The stationary state near `guess` at learning rate `eta` and noise `sigma`."""
    # the guess is close, so Newton alone (`fallback=False` compiles about 3x faster than the default, which
    # falls back on Levenberg-Marquardt when Newton fails); a failure shows in `fp.status`
    fp = jp.solve_fixed_point(guess, jp.SGDConfig(eta=eta, sigma=sigma, mode="scm"), throw=False, fallback=False)
    return fp.eps_g, fp


# one compiled program gives the fixed point, its error and the gradient of the error in (eta, sigma)
fixed_point_and_grad = jax.jit(jax.value_and_grad(fixed_point, argnums=(0, 1), has_aux=True))
t = clock()
(_, fp), (grad_eta, grad_sigma) = fixed_point_and_grad(0.5, SIGMA)
print(f"fixed point and gradient in {since(t)}")
print(f"fixed point: eps_g* = {float(fp.eps_g):.6g} (ODE at alpha = {ALPHA_FP:g}: {float(sol_long.eps_g[-1]):.6g}), "
      f"status {jp.describe(fp.status)}, slowest eigenvalue {complex(fp.slowest_eigenvalue):.4g}, "
      f"residual {float(fp.residual_norm):.1e}")
print("R* =\n", np.round(np.asarray(fp.state.R), 4))

# central finite differences, reusing the compiled program
h = 1e-5
eps_at = lambda eta, sigma: float(fixed_point_and_grad(eta, sigma)[0][0])  # noqa: E731
fd_eta = (eps_at(0.5 + h, SIGMA) - eps_at(0.5 - h, SIGMA)) / (2 * h)
fd_sigma = (eps_at(0.5, SIGMA + h) - eps_at(0.5, SIGMA - h)) / (2 * h)
print(f"d eps*/d eta   = {float(grad_eta):.6g} (finite difference {fd_eta:.6g})")
print(f"d eps*/d sigma = {float(grad_sigma):.6g} (finite difference {fd_sigma:.6g})")

assert int(fp.status) == jp.Status.SUCCESS and bool(fp.stable)
assert float(fp.eps_g) > 0 and float(fp.slowest_eigenvalue.real) < 0
assert float(fp.eps_g) <= 1.01 * float(sol_long.eps_g[-1])  # the ODE is on its way down to it
np.testing.assert_allclose(float(grad_eta), fd_eta, rtol=1e-4)
np.testing.assert_allclose(float(grad_sigma), fd_sigma, rtol=1e-4)
assert float(grad_eta) > 0 and float(grad_sigma) > 0  # more noise or a larger step: a higher plateau

# %% [markdown]
# ## Sweeping the learning rate
#
# Everything above is a pure function of arrays, so a sweep over `eta` is one `jax.vmap` (pass `throw=False` so
# that a diverging configuration returns a status code instead of raising). `run_sweep` does the same from a
# declarative grid spec, chunked, sharded over devices and resumable on disk (here into a temporary directory);
# its initial state is the reference condition `Q0 = I`, `R0 = 1e-3 sin(1 + i M + n)`, `T = I`, which `jp.Overlaps.reference` builds
# for the vmapped version so that the two can be compared. (The small mode skips the vmapped sweep: each
# program costs a compilation.)

# %%
etas = np.array([0.25, 0.5, 1.0, 2.0]) if SMALL else np.array([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
ALPHA_SWEEP = 300.0
spec = {"kind": "ode", "axes": {"eta": [float(e) for e in etas]},
        "fixed": {"K": K, "M": M, "sigma": SIGMA, "alpha": ALPHA_SWEEP, "mode": "scm"}, "chunk_size": len(etas)}
with tempfile.TemporaryDirectory() as out_dir:
    t = clock()
    rows = jp.experiments.run_sweep(spec, out_dir, progress=False)
    print(f"run_sweep over {len(rows)} configurations in {since(t)}")
sweep_final = np.array([r["eps_g"] for r in rows])
sweep_ok = np.array([r["status"] == jp.Status.SUCCESS for r in rows])
for eta, r in zip(etas, rows):
    print(f"eta = {eta:4.2f}: eps_g(alpha = {ALPHA_SWEEP:g}) = {r['eps_g']:.5g}, {r['status_words']}")
assert sweep_ok.any() and np.all(sweep_final[sweep_ok] >= 0)

if not SMALL:
    grid = jp.alpha_grid(ALPHA_SWEEP, 60, first=0.1)
    ref_state = jp.Overlaps.reference(K, M)

    @jax.jit
    def sweep_eta(etas):
        def one(eta):
            return jp.solve_ode(ref_state, jp.SGDConfig(eta=eta, sigma=SIGMA), grid, throw=False)

        return jax.vmap(one)(etas)

    t = clock()
    batch = sweep_eta(jnp.asarray(etas))
    print(f"vmapped sweep over {len(etas)} learning rates in {since(t)}")
    ok = np.asarray(batch.status) == jp.Status.SUCCESS
    np.testing.assert_array_equal(ok, sweep_ok)
    np.testing.assert_allclose(sweep_final[ok], np.asarray(batch.eps_g[:, -1])[ok], rtol=1e-6)

fig, axes = plt.subplots(1, 1 if SMALL else 2, figsize=(5.5 if SMALL else 11, 4), squeeze=False)
if not SMALL:
    a1 = axes[0, 1]
    for j, eta in enumerate(etas):
        a1.plot(grid[1:], np.asarray(batch.eps_g[j])[1:], label=f"eta = {eta:g}")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel(r"$\alpha$")
    a1.set_ylabel(r"$\epsilon_g$")
    a1.legend(fontsize=8)
    a1.set_title("learning curves (vmap over eta)")
a2 = axes[0, 0]
a2.plot(etas[sweep_ok], sweep_final[sweep_ok], "o-")
a2.set_xlabel("eta")
a2.set_ylabel(rf"$\epsilon_g(\alpha = {ALPHA_SWEEP:g})$")
a2.set_yscale("log")
a2.set_title(f"error after training (run_sweep), sigma = {SIGMA}")
show(fig)

print(f"notebook ran in {since(START)}")
