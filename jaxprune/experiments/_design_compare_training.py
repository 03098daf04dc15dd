"""The design comparison through training (docs/theory.md, sections 4, 6.1 and 7): the subset designed through the
ODE solve beside random / importance / DPP pruning at `alpha_p` followed by retraining, greedy pruning at
`alpha_p`, and pruning at the end of training, with finite-N SGD checks ([`compare_training`][])."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

import jaxprune as jp

from ._design_compare_common import (
    DPP_KERNELS,
    NODE_REWEIGHTS,
    FreshInputs,
    half_mse_batch,
    importance,
    node_baseline_details,
    node_halves,
    node_tables,
)

__all__ = ["compare_training"]


@functools.partial(jax.jit, static_argnames=("seeds", "repeats"))
def _training_sim_keys(key, *, seeds, repeats):
    """Input streams of the finite-N retraining: the unpruned student's (`fold_in(key, 7)`), every pruned
    student's (`fold_in(key, 5)`, shared by all subsets: common random numbers, tiled `repeats` times), and the
    fresh test inputs' key (`fold_in(key, 11)`)."""
    end = jax.random.split(jax.random.fold_in(key, 7), seeds)
    sub = jax.random.split(jax.random.fold_in(key, 5), seeds)
    return end, jnp.tile(sub, repeats), jax.random.fold_in(key, 11)


def _simulate_training(network, state, config, duration, seeds, key, test_samples, subsets: dict, reweights) -> dict:
    """Finite-N SGD for `duration N` steps of the unpruned concrete student and of the student pruned to every
    subset (`subsets[k]`, rows of `enumerate_subsets(K, k)`) with each reweighting, `seeds` input streams
    (shared by all subsets), as one vmapped simulation: the pruned students keep their `K` rows, the pruned ones
    zero (with `g(0) = 0`, as for erf and linear students, a unit with zero weights and `v_i = 0` gets zero
    updates and contributes nothing, so this is the `k`-unit simulation, up to rounding); other activations
    get one simulation per unit count.

    **Returns:** `{"end": (w, v, eps, half) per seed, (k, reweight): (mean final eps_g per subset, mean final
    half test MSE per subset), "fresh": the fresh inputs}`."""
    teacher, student = network
    act = config.activation
    K, N = student.w.shape
    S = int(seeds)
    steps = max(int(round(duration * N)), 1)
    dtype = student.w.dtype
    w0, v0 = np.asarray(student.w), np.asarray(student.v)
    members = [(None, None, w0[None], v0[None])]  # (k, reweight, W (C, units, N), V (C, units))
    for k, masks in subsets.items():
        vs = np.asarray(jp.design.node_subset_table(state, masks, activation=act)[1])
        for rw in reweights:
            V = vs[NODE_REWEIGHTS.index(rw)]
            members.append((k, rw, w0[None] * masks[:, :, None], V))
    n_sub = sum(m[2].shape[0] for m in members[1:])
    end_keys, sub_keys, fresh_key = _training_sim_keys(key, seeds=S, repeats=n_sub)
    keys = np.concatenate([np.asarray(jax.random.key_data(end_keys)), np.asarray(jax.random.key_data(sub_keys))])
    W = np.concatenate([np.repeat(m[2], S, axis=0) for m in members])
    V = np.concatenate([np.repeat(m[3], S, axis=0) for m in members])
    if isinstance(act, (jp.Erf, jp.Linear)):
        groups = [np.arange(W.shape[0])]
        shrink = [None]
    else:  # no padding: one simulation per number of kept units
        units = np.concatenate([np.repeat([K if m[0] is None else m[0] for m in members[:1]], S)] +
                               [np.full(m[2].shape[0] * S, m[0]) for m in members[1:]])
        groups = [np.flatnonzero(units == u) for u in np.unique(units)]
        shrink = [np.any(W[g] != 0, axis=2) for g in groups]
    final_w = [None] * W.shape[0]
    final_v = [None] * W.shape[0]
    eps = np.zeros(W.shape[0])
    impl = jax.random.key_impl(end_keys)
    for g, keep in zip(groups, shrink):
        Wg, Vg = W[g], V[g]
        if keep is not None:  # gather the kept rows of each member
            Wg = np.stack([Wg[i][keep[i]] for i in range(len(g))])
            Vg = np.stack([Vg[i][keep[i]] for i in range(len(g))])
        res = jp.simulate_seeds(jax.random.wrap_key_data(jnp.asarray(keys[g]), impl=impl), teacher,
                                jp.Student(w=jnp.asarray(Wg, dtype), v=jnp.asarray(Vg, dtype)), config, steps=steps,
                                record_every=steps, dtype=dtype)
        fw, fv = np.asarray(res.final.w), np.asarray(res.final.v)
        eps[g] = np.asarray(res.eps_g[:, -1])
        for j, i in enumerate(g):
            if keep is None:
                final_w[i], final_v[i] = fw[j], fv[j]
            else:  # back to K rows (zeros for pruned units), for the half test MSE
                final_w[i] = np.zeros((K, N), fw.dtype)
                final_v[i] = np.zeros((K,), fv.dtype)
                final_w[i][keep[j]], final_v[i][keep[j]] = fw[j], fv[j]
    fresh = FreshInputs(key=fresh_key, w_star=jnp.asarray(teacher.w_star), v_star=jnp.asarray(teacher.v_star),
                        samples=int(test_samples), activation=act)
    half = half_mse_batch(fresh, np.stack(final_w), np.stack(final_v))
    out = {"end": (np.stack(final_w[:S]), np.stack(final_v[:S]), eps[:S], half[:S]), "fresh": fresh}
    pos = S
    for k, rw, Wm, _ in members[1:]:
        C = Wm.shape[0]
        out[(k, rw)] = (eps[pos:pos + C * S].reshape(C, S).mean(-1), half[pos:pos + C * S].reshape(C, S).mean(-1))
        pos += C * S
    return out


def _end_sim_tables(ws, vs, w_star, v_star, masks, fresh: FreshInputs, activation):
    """For the finite-N students trained to the end (`ws (S, K, N)`): exact errors `(S, 4, C)` of every subset
    with every reweighting, from the concrete overlaps, and their half test MSEs."""
    errs, halves = [], []
    for w, v in zip(ws, vs):
        st = jp.overlaps_from_weights(jnp.asarray(w), w_star, jnp.asarray(v), v_star)
        e, V = (np.asarray(x) for x in jp.design.node_subset_table(st, masks, activation=activation))
        errs.append(e)
        halves.append(np.asarray(node_halves(fresh, jnp.asarray(w), jnp.asarray(V))))
    return np.stack(errs), np.stack(halves)


def _end_baselines(end: jp.Overlaps, k: int, activation, tables: dict | None = None) -> dict:
    """Pruning at the end of training: the best subset (optimal reweighting) and the random / importance / DPP
    baselines with their best reweighting and kernel, `{name: (eps_g, setting, probs, reweight)}`."""
    tables = node_tables(end, k, activation) if tables is None else tables
    errs = tables["errs"]["optimal"]
    i = int(np.argmin(errs))
    out = {"best subset": (float(errs[i]), "optimal reweighting", np.eye(errs.shape[0])[i], "optimal")}
    out.update(node_baseline_details(end, k, activation, tables))
    return out


def compare_training(
    state: jp.Overlaps,
    config: jp.SGDConfig,
    ks: tuple[int, ...],
    duration: float,
    *,
    steps: int = 60,
    learning_rate: float = 0.05,
    restarts: int = 2,
    key: PRNGKeyArray | None = None,
    network: tuple[Any, Any] | None = None,
    seeds: int = 2,
    test_samples: int = 4_000,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Rows `{k, kind, method, role, error, ...}`: prune at the time of `state` (`alpha_p`) and retrain for
    `duration` with the ODEs. Designed: the subset and reweighting (none / optimal) designed through the ODE
    solve ([`jaxprune.design.design_through_training`][] with `reweight="best"`; its candidates include the
    restarts' starting subsets, the subset best at prune time and the subset best at the end of training, each
    pruned at `alpha_p` and retrained, so it is never worse than those). Baselines: random / importance / DPP
    (L = Q) subsets at `alpha_p` then retraining (exact expected final error by enumeration, better of no and
    optimal reweighting), the subset best at prune time (greedy), and pruning at the end of training instead (the
    full student trained for `duration`, then pruned by the best subset / random / importance / DPP with their
    best reweighting and kernel, no retraining). Reference: the brute-force best subset.

    With `network = (teacher, student)` (finite-N networks, [`jaxprune.Teacher`][] and [`jaxprune.Student`][],
    whose overlaps are `state`), rows also get `sim`: every subset (with each reweighting) of the concrete
    student is trained on by the finite-N simulation for `duration N` steps, `seeds` input streams shared by all
    subsets; a row's `sim` is its exact final error (mean over seeds, weighted by the row's subset
    distribution), `half_mse` the same on `test_samples` fresh inputs. End-of-training rows: the full concrete
    student trained on for `duration N` steps, then pruned.

    Compiled programs: the design step (also used for every exact retraining error, of all `ks` at once, by
    [`jaxprune.design.retrain_subsets`][]), one finite-N simulation of all subsets, and the small enumeration
    programs.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] at prune time `alpha_p`.
    - `config`: the [`jaxprune.SGDConfig`][] of the retraining (and of the finite-N simulation).
    - `ks`: unit counts to prune to, each in `[1, K]`.
    - `duration`: the retraining time `alpha - alpha_p > 0`.
    - `steps`, `learning_rate`, `restarts`: options of [`jaxprune.design.design_through_training`][].
    - `key`: the PRNG key of the table (design restarts, finite-N input streams, fresh inputs); default
      `jax.random.key(0)`.
    - `network`: `(teacher, student)`, the concrete networks whose overlaps are `state`, for the finite-N
      checks, or `None`.
    - `seeds`: finite-N input streams per student.
    - `test_samples`: fresh inputs of the half test MSE.
    - `progress`: called with the number of design steps done, as they finish.

    **Returns:** the rows, the unpruned student trained on first (`role="reference"`)."""
    act = config.activation
    K = state.K
    key = jax.random.key(0) if key is None else key
    rws = ("none", "optimal")
    subsets = {k: jp.pruning.enumerate_subsets(K, k) for k in ks}
    # exact final errors of the unpruned student (row 0) and of every subset with each rule, through the compiled
    # step of the designs below (`batch` = their rows: one program for the table and the designs)
    rows_m = [np.ones((1, K), bool)] + [subsets[k] for k in ks for _ in rws]
    names = ["none"] + [rw for k in ks for rw in rws for _ in range(len(subsets[k]))]
    errs, finals = jp.design.retrain_subsets(state, config, np.concatenate(rows_m), duration, reweight=names,
                                             batch=len(rws) * restarts, learning_rate=learning_rate)
    errs = np.asarray(errs)
    end = jax.tree.map(lambda x: jnp.asarray(x[0]), finals)
    table, pos = {}, 1
    for k in ks:
        for rw in rws:
            table[(k, rw)] = errs[pos:pos + len(subsets[k])]
            pos += len(subsets[k])
    rows = [dict(k=K, kind="-", method="unpruned, trained on", role="reference", error=float(errs[0]), setting="")]
    sims = None
    if network is not None:
        sims = _simulate_training(network, state, config, duration, seeds, key, test_samples, subsets, rws)
        rows[0]["sim"] = float(np.mean(sims["end"][2]))
        rows[0]["half_mse"] = float(np.mean(sims["end"][3]))
    for k in ks:
        masks = subsets[k]
        final = {rw: table[(k, rw)] for rw in rws}
        index = {tuple(m): i for i, m in enumerate(masks.astype(bool))}

        def lookup(ms, rw, final=final, index=index):
            return np.asarray([final[rw][index[tuple(np.asarray(m, bool))]] for m in ms])

        at_tab = node_tables(state, k, act)
        at_prune = at_tab["errs"]["optimal"]
        g = int(np.argmin(at_prune))
        end_tab = node_tables(end, k, act)
        end_base = _end_baselines(end, k, act, end_tab)
        e_best = masks[int(np.argmin(end_tab["errs"]["optimal"]))]
        d = jp.design.design_through_training(state, config, k, duration, reweight="best", steps=steps,
                                    learning_rate=learning_rate, restarts=restarts, key=key, exact_errors=lookup,
                                    candidates=np.stack([masks[g], e_best]), progress=progress)
        one = lambda m: np.all(masks == np.asarray(m, bool), axis=1).astype(float)  # noqa: E731
        origin = {"optimised": "an optimised restart", "start": "a restart's starting subset",
                  "candidate 0": "the subset best at alpha_p", "candidate 1": "the subset best at the end"}[d.origin]
        new = []
        new.append(dict(k=k, kind="node", method="designed (through ODE)", role="designed", error=float(d.error),
                        setting=f"{d.reweight} reweighting; from {origin} (pruned at alpha_p, retrained), "
                                f"exchange-polished; {d.evaluations} of {2 * masks.shape[0]} (subset, reweighting) "
                                f"pairs evaluated",
                        mask=d.mask, loss_curve=d.trace.loss, _probs=one(d.mask), _rw=d.reweight))
        bi = min(((final[rw].min(), rw) for rw in rws))
        bm = masks[int(np.argmin(final[bi[1]]))]
        new.append(dict(k=k, kind="node", method="brute force best", role="reference", error=float(bi[0]),
                        setting=f"{bi[1]} reweighting", mask=bm, _probs=one(bm), _rw=bi[1]))
        rw = min(rws, key=lambda r: final[r][g])
        new.append(dict(k=k, kind="node", method="greedy at alpha_p (best subset then)", role="baseline",
                        error=float(final[rw][g]), setting=f"{rw} reweighting; error at prune time {at_prune[g]:.4g}",
                        mask=masks[g], _probs=one(masks[g]), _rw=rw))
        imp = importance(state, k)
        pdpp = at_tab["kernel_probs"][DPP_KERNELS.index("Q")]  # the k-DPP with L = Q at alpha_p
        for name, probs in (("random", np.full(masks.shape[0], 1.0 / masks.shape[0])), ("importance", one(imp)),
                            ("dpp", pdpp)):
            e, rw = min((float(probs @ final[r]), r) for r in rws)
            new.append(dict(k=k, kind="node", method=f"{name} at alpha_p", role="baseline", error=e,
                            setting=f"{rw} reweighting" + (", L=Q" if name == "dpp" else ""), _probs=probs, _rw=rw))
        if sims is not None:
            for r in new:
                r["sim"] = float(r["_probs"] @ sims[(k, r["_rw"])][0])
                r["half_mse"] = float(r["_probs"] @ sims[(k, r["_rw"])][1])
            ws, vs = sims["end"][0], sims["end"][1]
            teacher = network[0]
            e_end, h_end = _end_sim_tables(ws, vs, teacher.w_star, teacher.v_star, masks, sims["fresh"], act)
        # prune at the end of training instead (no retraining after pruning)
        for name, (e, setting, probs, rw) in end_base.items():
            r = dict(k=k, kind="node", method=f"{name} at end (no retraining)", role="baseline", error=e,
                     setting=setting)
            if sims is not None:
                j = NODE_REWEIGHTS.index(rw)
                r["sim"] = float(np.mean(e_end[:, j] @ probs))
                r["half_mse"] = float(np.mean(h_end[:, j] @ probs))
            new.append(r)
        for r in new:
            r.pop("_probs", None)
            r.pop("_rw", None)
        rows += new
    return rows
