"""The design comparison on a concrete network (docs/theory.md, sections 6 and 7): the designed edge mask and node
subset beside random / magnitude / DPP edge masks and random / importance / DPP node pruning, all exact for the
network, with the half test MSE on fresh inputs ([`compare_network`][])."""

from __future__ import annotations

import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, PRNGKeyArray

import jaxprune as jp

from ._design_compare_common import (
    FreshInputs,
    baseline_edge_masks,
    dpp_edge_masks,
    edge_report,
    fresh_inputs,
    node_baseline_details,
    node_half_table,
    node_k,
    node_tables,
)

__all__ = ["compare_network"]


@eqx.filter_jit
def _refit_report(w, w_star, v, v_star, masks, fresh: FreshInputs | None, activation):
    """Exact error with the optimal rescale and second layer, and half test MSE, of every mask (`refit`)."""

    def one(mask):
        e, c, vv = jp.design.masked_network_error(w, w_star, v, v_star, mask, rescale="optimal", refit=True,
                                                  activation=activation)
        return e, (fresh.half_mse(c[:, None] * jnp.where(mask, w, 0.0), vv) if fresh is not None else jnp.nan)

    return jax.vmap(one)(masks)


@eqx.filter_jit
def _network_setup(w, w_star, v, v_star, key, activation, samples: int, n: int, draws: int):
    """The random keys of a network table (as split one by one before), the network's overlaps and error, the
    fresh inputs and the network's half test MSE on them."""
    key, kx = jax.random.split(key)
    per_keep = []
    for _ in range(n):
        key, k1, k2, k3 = jax.random.split(key, 4)
        per_keep.append((k1, jax.random.split(k2, draws), tuple(jax.random.split(k3, 2))))
    state = jp.overlaps_from_weights(w, w_star, v, v_star)
    fresh = fresh_inputs(kx, w_star, v_star, activation, samples)
    return (per_keep, state, jp.generalisation_error(state, activation), fresh,
            None if fresh is None else fresh.half_mse(w, v))


def compare_network(
    w: Float[ArrayLike, "K N"],
    w_star: Float[ArrayLike, "M N"],
    v: Float[ArrayLike, " K"],
    v_star: Float[ArrayLike, " M"],
    keeps: tuple[float, ...],
    *,
    key: PRNGKeyArray | None = None,
    steps: int = 400,
    learning_rate: float = 0.05,
    restarts: int = 4,
    budget: Any = "projection",
    refit: bool = False,
    random_draws: int = 4,
    test_samples: int = 10_000,
    activation: jp.AbstractActivation | str = jp.Erf(),
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Rows `{keep, k, kind, method, role, error, half_mse, setting}` for each keep fraction: the designed edge
    mask and (when `keep K` is an integer `k`) the designed node subset, beside random / magnitude / DPP edge
    masks (best rescale) and random / importance / DPP node pruning (best reweighting and kernel), all exact for
    this network; `half_mse` the half test MSE on `test_samples` fresh inputs (0: none). Edge errors use the
    per-unit optimal rescale `c` for every row alike (with `refit`, also the optimal second layer).

    **Arguments:**

    - `w`, `w_star`, `v`, `v_star`: the concrete student (`Float[K, N]`, `Float[K]`) and teacher
      (`Float[M, N]`, `Float[M]`).
    - `keeps`: keep fractions in `(0, 1]`, one table block each.
    - `key`: the PRNG key of the whole table (designs, random masks, fresh inputs); default `jax.random.key(0)`.
    - `steps`, `learning_rate`, `restarts`, `budget`: options of [`jaxprune.design.design_edge_mask`][] (the node
      design runs `steps // 2` steps).
    - `refit`: also refit the second layer (edge rows).
    - `random_draws`: random masks averaged per keep fraction.
    - `test_samples`: fresh inputs of the half test MSE (0: no `half_mse`).
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).
    - `progress`: called with the number of design steps done, as they finish.

    **Returns:** the rows, the unpruned network first (`role="reference"`).
    """
    activation = jp.get_activation(activation)
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    v, v_star = jnp.asarray(v, w.dtype), jnp.asarray(v_star, w.dtype)
    K, N = w.shape
    key = jax.random.key(0) if key is None else key
    per_keep, state, full, fresh, half = _network_setup(w, w_star, v, v_star, key, activation, int(test_samples),
                                                        len(keeps), int(random_draws))
    rows = [dict(keep=1.0, k=K, kind="-", method="unpruned", role="reference", error=float(full), setting="",
                 half_mse=float(half) if fresh is not None else None)]
    rescale_txt = "optimal c and second layer" if refit else "optimal c"
    D = int(random_draws)
    for keep, (k1, k2s, k3s) in zip(keeps, per_keep):
        kk = node_k(keep, K)
        d = jp.design.design_edge_mask(w, w_star, v, v_star, keep, budget=budget, refit=refit, steps=steps,
                                       learning_rate=learning_rate, restarts=restarts, key=k1, activation=activation,
                                       progress=progress)
        rnd, mag = baseline_edge_masks(k2s, w, keep)
        masks = np.concatenate([np.asarray(d.mask)[None], rnd, mag[None], dpp_edge_masks(k3s, w, keep)])
        if refit:
            e, h = (np.asarray(x) for x in _refit_report(w, w_star, v, v_star, jnp.asarray(masks), fresh, activation))
        else:
            es, hs = edge_report(w, w_star, v, v_star, masks, activation, fresh=fresh)
            e, h = es[:, 2], hs[:, 2]

        def cell(x, sl):
            return float(np.mean(x[sl]))

        def hcell(sl):
            return cell(h, sl) if fresh is not None else None  # noqa: B023

        rows.append(dict(keep=keep, k=kk, kind="edge", method="designed", role="designed", error=cell(e, [0]),
                         half_mse=hcell([0]), setting=f"{rescale_txt}; relaxed {float(d.relaxed_error):.4g}",
                         mask=d.mask, loss_curve=d.trace.loss))
        sl = slice(1, 1 + D)
        rows.append(dict(keep=keep, k=kk, kind="edge", method="random", role="baseline", error=cell(e, sl),
                         half_mse=hcell(sl), setting=f"{rescale_txt}, mean of {D} masks"))
        rows.append(dict(keep=keep, k=kk, kind="edge", method="magnitude", role="baseline", error=cell(e, [1 + D]),
                         half_mse=hcell([1 + D]), setting=rescale_txt))
        sl = slice(2 + D, 4 + D)
        rows.append(dict(keep=keep, k=kk, kind="edge", method="dpp", role="baseline", error=cell(e, sl),
                         half_mse=hcell(sl), setting=f"diagonal kernel, {rescale_txt}, mean of 2 masks"))
        if kk is not None and math.comb(K, kk) <= 200_000:
            nd = jp.design.design_node_mask(state, kk, activation=activation, key=k1, steps=max(steps // 2, 1),
                                            progress=progress)
            tab = node_tables(state, kk, activation)
            hm = node_half_table(fresh, w, tab)
            row = np.all(tab["masks"] == np.asarray(nd.mask), axis=1)
            rows.append(dict(keep=keep, k=kk, kind="node", method="designed", role="designed",
                             error=float(nd.error), half_mse=float(row @ hm["optimal"]) if hm else None,
                             setting="optimal reweighting", mask=nd.mask, loss_curve=nd.trace.loss))
            for m, (e, setting, probs, rw) in node_baseline_details(state, kk, activation, tab).items():
                rows.append(dict(keep=keep, k=kk, kind="node", method=m, role="baseline", error=e,
                                 half_mse=float(probs @ hm[rw]) if hm else None, setting=setting))
    return rows
