"""Shared pieces of the design comparison tables (docs/theory.md, section 7): node pruning by enumeration (the
exact error of every subset with every reweighting, and the random / importance / DPP baselines at their best
setting), the concrete baseline edge masks with their exact errors, and the half test MSE of pruned networks on
fresh inputs.

Half test MSE: [`jaxprune.fresh_test_mse`][]` / 2` with `sigma = 0` (noise-free labels), an unbiased Monte Carlo
estimate of the pruned network's `eps_g`. A table draws its inputs from one key, so every row of the table (every
method, mask, rescale, seed) is scored on the same inputs and differences between rows are paired; inside one
compiled program the inputs are drawn once and shared by all the students it scores (the draw does not depend
on the batched weights).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import jaxprune as jp

RESCALE_LABEL = {"none": "c = 1", "inverse-keep": "c = 1/keep", "optimal": "optimal c"}
DPP_KERNELS = ("Q", "A", "rbf")
NODE_REWEIGHTS = jp.pruning.NODE_REWEIGHTS  # the rows of jaxprune.design.node_subset_table
_HALF_BATCH = 64  # students scored per compiled call of `half_mse_batch` (bounded memory, one program)


# --------------------------------------------------------------------------------------------------
# Half test MSE on fresh inputs
# --------------------------------------------------------------------------------------------------


class FreshInputs(eqx.Module):
    """The fresh inputs of a table, as the key of [`jaxprune.fresh_test_mse`][] (its inputs are a function of the
    key), and the teacher that labels them."""

    key: PRNGKeyArray
    w_star: Float[Array, "M N"]
    v_star: Float[Array, " M"]
    samples: int = eqx.field(static=True)
    activation: jp.AbstractActivation = eqx.field(static=True)

    def half_mse(self, w: Float[Array, "K N"], v: Float[Array, " K"]) -> Float[Array, ""]:
        """Half the noise-free test MSE of the concrete student `(w, v)` on these inputs."""
        return 0.5 * jp.fresh_test_mse(self.key, w, v, self.w_star, self.v_star, 0.0, samples=self.samples,
                                       activation=self.activation)


def fresh_inputs(key, w_star, v_star, activation, samples: int) -> FreshInputs | None:
    """The table's [`FreshInputs`][] (`None` when `samples` is 0: no half test MSE)."""
    if not samples:
        return None
    return FreshInputs(key=key, w_star=jnp.asarray(w_star), v_star=jnp.asarray(v_star, jnp.asarray(w_star).dtype),
                       samples=int(samples), activation=activation)


@eqx.filter_jit
def edge_halves(fresh: FreshInputs, w, v, mask, cs):
    """Half test MSE of `c (m * w)` (second layer `v`) for every row `c` of `cs`."""
    return jax.vmap(lambda c: fresh.half_mse(c[:, None] * jnp.where(mask, w, 0.0), v))(cs)


@eqx.filter_jit
def node_halves(fresh: FreshInputs, w, vs):
    """Half test MSE of the unpruned first layer `w` with each pruned second layer, `vs (R, C, K) -> (R, C)`
    (pruned units have `v_i = 0`, which equals removing them)."""
    return jax.vmap(jax.vmap(lambda v: fresh.half_mse(w, v)))(vs)


@eqx.filter_jit
def _half_mse_chunk(fresh: FreshInputs, ws, vs):
    return jax.vmap(fresh.half_mse)(ws, vs)


def half_mse_batch(fresh: FreshInputs, ws, vs) -> np.ndarray:
    """Half test MSE of a batch of concrete students `(ws (n, K, N), vs (n, K))`, in padded chunks of one size."""
    ws, vs = np.asarray(ws), np.asarray(vs)
    n, B = ws.shape[0], _HALF_BATCH
    pad = (-n) % B
    ws = np.concatenate([ws, np.repeat(ws[-1:], pad, axis=0)])
    vs = np.concatenate([vs, np.repeat(vs[-1:], pad, axis=0)])
    got = jax.device_get([_half_mse_chunk(fresh, jnp.asarray(ws[s:s + B]), jnp.asarray(vs[s:s + B]))
                          for s in range(0, ws.shape[0], B)])
    return np.concatenate(got)[:n]


# --------------------------------------------------------------------------------------------------
# Node pruning by enumeration
# --------------------------------------------------------------------------------------------------


def node_k(keep: float, K: int) -> int | None:
    """The unit count `keep K` when it is an integer `>= 1`, else `None` (no node rows at this budget)."""
    k = keep * K
    return int(round(k)) if abs(k - round(k)) < 1e-9 and round(k) >= 1 else None


def importance(state: jp.Overlaps, k: int) -> np.ndarray:
    """The `k` units of largest importance `|v_i| sqrt(Q_ii)`, ties to the lower index (host)."""
    return np.asarray(jp.pruning.importance_mask(state, k))


def node_tables(state: jp.Overlaps, k: int, activation) -> dict:
    """Everything node pruning to `k` units needs, by enumeration: `masks` (`enumerate_subsets(K, k)`),
    `errs[reweight]` (exact eps_g per subset), `vs` (second layers, `(4, C, K)` in `NODE_REWEIGHTS` order),
    the k-DPP kernels `L = Q, A, rbf` and their exact subset probabilities."""
    masks = jp.pruning.enumerate_subsets(state.K, k)
    errs, vs = (np.asarray(x) for x in jp.design.node_subset_table(state, masks, activation=activation))
    Ls = [jp.pruning.kernel_matrix(state, ker, activation=activation) for ker in DPP_KERNELS]
    probs = np.stack([np.asarray(jp.pruning.kdpp_enumerate(L, k)[1]) for L in Ls])
    return dict(masks=masks, errs={rw: errs[j] for j, rw in enumerate(NODE_REWEIGHTS)}, vs=vs,
                kernels=np.stack([np.asarray(L) for L in Ls]), kernel_probs=probs)


def node_baseline_details(state: jp.Overlaps, k: int, activation, tables: dict | None = None) -> dict:
    """`{method: (eps_g, setting, probs over enumerate_subsets(K, k), reweight)}` of the best setting of random /
    importance / DPP node pruning (exact, by enumeration)."""
    tables = node_tables(state, k, activation) if tables is None else tables
    masks, errs = tables["masks"], tables["errs"]
    imp = importance(state, k)
    dists = {"random": [(None, np.full(masks.shape[0], 1.0 / masks.shape[0]))],
             "importance": [(None, np.all(masks == imp, axis=1).astype(float))], "dpp": []}
    for ker, L, probs in zip(DPP_KERNELS, tables["kernels"], tables["kernel_probs"]):
        try:  # a k-DPP needs rank >= k
            jp.pruning.check_kdpp_kernel(L, k)
        except ValueError:
            continue
        dists["dpp"].append((ker, probs))
    out = {}
    for method, options in dists.items():
        best = (math.inf, "", None, None)
        for ker, probs in options:
            for rw in NODE_REWEIGHTS:
                e = float(probs @ errs[rw])
                if e < best[0]:
                    best = (e, rw if ker is None else f"{rw}, L={ker}", probs, rw)
        if best[2] is not None:
            out[method] = best
    return out


def node_half_table(fresh: FreshInputs | None, w, tables: dict) -> dict | None:
    """`{reweight: half test MSE per subset}` of the concrete network `w` pruned to every subset of `tables`."""
    if fresh is None:
        return None
    hm = np.asarray(node_halves(fresh, jnp.asarray(w), jnp.asarray(tables["vs"])))
    return {rw: hm[j] for j, rw in enumerate(NODE_REWEIGHTS)}


# --------------------------------------------------------------------------------------------------
# Concrete edge masks
# --------------------------------------------------------------------------------------------------


def baseline_edge_masks(keys, w, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Random masks (one per key of `keys`, [`jaxprune.pruning.random_edge_mask`][]) and the magnitude mask
    ([`jaxprune.pruning.magnitude_edge_mask`][]), `round(keep N)` weights per unit."""
    rnd = jax.vmap(lambda kd: jp.pruning.random_edge_mask(kd, w, keep))(keys)
    return np.asarray(rnd), np.asarray(jp.pruning.magnitude_edge_mask(w, keep))


def dpp_edge_masks(keys, w, keep: float) -> np.ndarray:
    """One diagonal-kernel DPP edge mask ([`jaxprune.pruning.dpp_edge_mask`][]) per key."""
    return np.stack([np.asarray(jp.pruning.dpp_edge_mask(kd, w, keep, kernel="diagonal")) for kd in keys])


def edge_report(w, w_star, v, v_star, masks, activation, *, scales=None, fresh: FreshInputs | None = None):
    """[`jaxprune.design.edge_mask_errors`][] of every mask (`(n, 4)`: `c = 1`, `1/keep`, optimal `c`, `scales`)
    and the half test MSE `(n, 4)` of each mask with each of its four rescales (NaN without fresh inputs)."""
    es, cs = (np.asarray(x) for x in jp.design.edge_mask_errors(w, w_star, v, v_star, masks, scales=scales,
                                                                 activation=activation))
    if fresh is None:
        return es, np.full_like(es, np.nan)
    hs = [edge_halves(fresh, w, v, jnp.asarray(m), jnp.asarray(c)) for m, c in zip(np.asarray(masks, bool), cs)]
    return es, np.stack(jax.device_get(hs))
