"""Distributions over unit subsets designed by gradient (docs/theory.md, sections 6.1 and 7): a k-DPP with quality
weights, `L = diag(q) L0 diag(q)`, or conditional Bernoulli, whose exact expected error `sum_S P_theta(S) eps(S)`
is differentiated by enumeration of all `C(K, k)` subsets.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._activations import AbstractActivation, Erf, get_activation
from .._overlaps import Overlaps
from .._checks import check_choice, check_count
from ..pruning import AbstractReweight, enumerate_subsets, kdpp_enumerate, kernel_matrix
from ._loop import DesignTrace, _adam, _check_positive, _check_steps, run_design
from ._node import node_subset_errors

__all__ = ["subset_log_probs", "SubsetDesign", "KDPPFamily", "BernoulliFamily", "design_subset_distribution"]


def subset_log_probs(
    theta: Float[Array, " K"], masks: Bool[Array, "C K"], base_logdet: Float[Array, " C"]
) -> Float[Array, " C"]:
    """Log-probabilities of the subsets of a designed distribution (docs/theory.md 7):
    `log P(S) = base_S + 2 theta . 1_S - logsumexp_S'(base_S' + 2 theta . 1_S')` over the given subsets. A k-DPP
    with `L = diag(q) L0 diag(q)`, `q = exp(theta)`, has `base_S = log det L0_S`; conditional Bernoulli has
    `base = 0` (logits `2 theta`).

    **Arguments:**

    - `theta`: log-qualities (k-DPP) or half-logits (Bernoulli), `Float[K]`.
    - `masks`: the `C` subsets of the support, `Bool[C, K]` (e.g. every subset of size `k`).
    - `base_logdet`: `base_S` of each subset, `Float[C]` (`-inf`-like values exclude a subset).

    **Returns:** `log P(S)` of each subset, `Float[C]` (normalised over the `C` subsets).
    """
    logits = base_logdet + 2.0 * masks.astype(theta.dtype) @ theta
    return logits - jax.scipy.special.logsumexp(logits)


class SubsetDesign(eqx.Module):
    """A subset distribution designed by [`design_subset_distribution`][].

    **Fields:**

    - `theta`: the designed log-qualities (k-DPP) or half-logits (Bernoulli), `Float[K]`.
    - `expected_error`: the exact expected error `sum_S P(S) eps(S)`.
    - `mode`: the most likely subset, `Bool[K]`, and `mode_error` its exact error.
    - `best_error`: the brute-force minimum of `eps(S)` over all subsets.
    - `probs`: `P(S)` of every subset, `Float[C]`, in the order of `masks`.
    - `masks`: every subset of size `k`, `Bool[C, K]` ([`jaxprune.pruning.enumerate_subsets`][] order).
    - `trace`: the [`DesignTrace`][] of the run.
    """

    theta: Float[Array, " K"]
    expected_error: Float[Array, ""]
    mode: Bool[Array, " K"]
    mode_error: Float[Array, ""]
    best_error: Float[Array, ""]
    probs: Float[Array, " C"]
    masks: Bool[Array, "C K"]
    trace: DesignTrace


class KDPPFamily(eqx.Module):
    """Subset distribution family: the k-DPP with quality weights, `L = diag(q) L0 diag(q)`, `q = exp(theta)`.

    **Arguments:**

    - `kernel`: the node kernel `L0`, `"Q"` (default) or `"A"` of [`jaxprune.pruning.kernel_matrix`][].
    """

    kernel: str = "Q"
    name: ClassVar[str] = "kdpp"

    def __check_init__(self):
        check_choice("kernel", self.kernel, ("Q", "A"))


class BernoulliFamily(eqx.Module):
    """Subset distribution family: conditional Bernoulli (independent inclusions with logits `2 theta`,
    conditioned on `|S| = k`). No arguments: `BernoulliFamily()`."""

    name: ClassVar[str] = "bernoulli"


def _as_family(family, kernel) -> KDPPFamily | BernoulliFamily:
    if isinstance(family, (KDPPFamily, BernoulliFamily)):
        return family
    if family == "kdpp":
        return KDPPFamily(kernel)
    if family == "bernoulli":
        return BernoulliFamily()
    raise ValueError(f"family must be KDPPFamily(...), BernoulliFamily(), 'kdpp' or 'bernoulli', got {family!r}")


def _kdpp_base(state: Overlaps, k: int, kernel: str, activation) -> Float[Array, " C"]:
    """`log P_L0(S)` of every subset (`enumerate_subsets(K, k)` order) under the k-DPP with kernel `L0`
    ([`jaxprune.pruning.kdpp_enumerate`][]; `log det L0_S` up to a constant, which the normalisation of
    [`subset_log_probs`][] cancels); `-1e30` where the minor is not positive."""
    _, probs = kdpp_enumerate(kernel_matrix(state, kernel, activation=activation), k)
    return jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -1e30)


class _SubsetLoss(eqx.Module):
    """Exact expected error of a subset distribution (both families share one compiled step)."""

    masks: Bool[Array, "C K"]
    base: Float[Array, " C"]
    errors: Float[Array, " C"]

    def __call__(self, theta, hyp):
        probs = jnp.exp(subset_log_probs(theta, self.masks, self.base))
        e = probs @ self.errors
        return e[None], probs


def design_subset_distribution(
    state: Overlaps,
    k: int,
    *,
    family: KDPPFamily | BernoulliFamily | str = KDPPFamily(),
    kernel: str = "Q",
    reweight: AbstractReweight | str = "optimal",
    steps: int = 300,
    learning_rate: float = 0.1,
    subset_errors: Float[ArrayLike, " C"] | None = None,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> SubsetDesign:
    """Design a distribution over subsets of `k` units: minimise the exact expected error
    `sum_S P_theta(S) eps(S)` over quality weights (k-DPP) or logits (conditional Bernoulli), by enumeration of
    all `C(K, k)` subsets (at most 2e5) (docs/theory.md 6.1 and 7).

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][].
    - `k`: the subset size, in `[1, K]`.
    - `family`: [`KDPPFamily`][]`(kernel)` or [`BernoulliFamily`][]`()` (or the strings `"kdpp"`, with
      `kernel`, and `"bernoulli"`).
    - `kernel`: the k-DPP's base kernel `"Q"` or `"A"` when `family` is the string `"kdpp"`.
    - `reweight`: the reweighting rule of each subset's error ([`node_subset_errors`][]).
    - `steps`: optimisation steps, an integer `>= 1`.
    - `learning_rate`: the Adam learning rate, `> 0`.
    - `subset_errors`: the errors `eps(S)` of every subset, `Float[C]` in
      [`jaxprune.pruning.enumerate_subsets`][] order, if already computed (then `reweight` is not used).
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).
    - `progress`: `progress(n)` called after every step ([`run_design`][]).

    **Returns:** a [`SubsetDesign`][].
    """
    activation = get_activation(activation)
    K = state.K
    check_count(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    if math.comb(K, k) > 200_000:
        raise ValueError(f"C(K={K}, k={k}) = {math.comb(K, k)} subsets exceeds 2e5; choose k closer to 0 or K")
    family = _as_family(family, kernel)
    masks_np = enumerate_subsets(K, k)
    masks = jnp.asarray(masks_np)
    errs = node_subset_errors(state, masks, reweight=reweight, activation=activation) if subset_errors is None \
        else jnp.asarray(subset_errors)
    if isinstance(family, KDPPFamily):
        base = _kdpp_base(state, k, family.kernel, activation)
    else:
        base = jnp.zeros(masks.shape[0], state.Q.dtype)
    theta0 = jnp.zeros(K, state.Q.dtype)
    theta, trace = run_design(_SubsetLoss(masks=masks, base=base, errors=errs), theta0,
                              optimizer=_adam(learning_rate), steps=steps, progress=progress)
    probs, errs_np = np.asarray(trace.final_aux), np.asarray(errs)
    mode = int(np.argmax(probs))
    return SubsetDesign(theta=theta, expected_error=jnp.asarray(probs @ errs_np), mode=jnp.asarray(masks_np[mode]),
                        mode_error=jnp.asarray(errs_np[mode]), best_error=jnp.asarray(errs_np.min()),
                        probs=jnp.asarray(probs), masks=masks, trace=trace)

