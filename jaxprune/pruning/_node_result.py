"""The result of an expected node-pruning error (docs/theory.md, section 6.1): exact (enumeration, a point mass,
closed form) or Monte Carlo with a standard error, with the per-subset masks, probabilities and errors on request.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._status import Status

__all__ = ["NodePruningResult"]


class NodePruningResult(eqx.Module):
    """Expected `eps_g` of node pruning to `k` units under a subset distribution.

    **Fields:**

    - `mean`: `E_S[eps_g(S)]` (exact, or the Monte Carlo estimate).
    - `std`: spread of `eps_g(S)` over subsets (probability-weighted when exact; sample std for Monte Carlo;
      NaN from the closed form).
    - `stderr`: standard error of `mean` (0 when exact).
    - `min`, `max`: extreme errors over the support (or the samples); NaN from the closed form.
    - `exact`: `True` for enumeration, a point mass or the closed form; `False` for Monte Carlo.
    - `num_subsets`: subsets enumerated (`C(K, k)`), samples drawn, or 1 for a point mass.
    - `status`: `Status.SINGULAR` if any solve hit a singular block, else `Status.SUCCESS`.
    - `num_singular`: number of subsets (or samples) whose solve was singular.
    - `method`, `reweight`: what was computed.
    - `masks`, `probs`, `errors`: per-subset masks `(C, K)`, probabilities `(C,)` and errors `(C,)`, only when
      requested (`return_errors=True`), else `None`.
    """

    mean: Float[Array, ""]
    std: Float[Array, ""]
    stderr: Float[Array, ""]
    min: Float[Array, ""]
    max: Float[Array, ""]
    status: Int[Array, ""]
    num_singular: Int[Array, ""]
    exact: bool = eqx.field(static=True)
    num_subsets: int = eqx.field(static=True)
    method: str = eqx.field(static=True)
    reweight: str = eqx.field(static=True)
    masks: Bool[ArrayLike, "C K"] | None = None
    probs: Float[Array, " C"] | None = None
    errors: Float[Array, " C"] | None = None

    def summary(self) -> str:
        """One line for logs and the CLI."""
        kind = "exact" if self.exact else "Monte Carlo"
        return (
            f"{self.method}/{self.reweight}: eps_g = {float(self.mean):.6g} +- {float(self.stderr):.2g} "
            f"(std over subsets {float(self.std):.3g}, min {float(self.min):.4g}, max {float(self.max):.4g}; "
            f"{kind}, {self.num_subsets} subsets, {int(self.num_singular)} singular)"
        )


def _status_of(singular) -> tuple[Array, Array]:
    n = jnp.sum(singular).astype(jnp.int32)
    return jnp.where(n > 0, Status.SINGULAR, Status.SUCCESS).astype(jnp.int32), n


def _weighted_result(errors, probs, singular, *, method, reweight, masks, return_errors) -> NodePruningResult:
    mean = jnp.sum(probs * errors)
    var = jnp.sum(probs * jnp.square(errors - mean))
    support = probs > 0
    status, n_sing = _status_of(singular & support)
    return NodePruningResult(
        mean=mean,
        std=jnp.sqrt(jnp.maximum(var, 0.0)),
        stderr=jnp.zeros_like(mean),
        min=jnp.min(jnp.where(support, errors, jnp.inf)),
        max=jnp.max(jnp.where(support, errors, -jnp.inf)),
        status=status,
        num_singular=n_sing,
        exact=True,
        num_subsets=int(errors.shape[0]),
        method=method,
        reweight=reweight,
        masks=masks if return_errors else None,
        probs=probs if return_errors else None,
        errors=errors if return_errors else None,
    )


def _sampled_result(errors, singular, idx, K, *, method, reweight, return_errors) -> NodePruningResult:
    n = errors.shape[0]
    mean = jnp.mean(errors)
    std = jnp.std(errors, ddof=1) if n > 1 else jnp.zeros_like(mean)
    status, n_sing = _status_of(singular)
    masks = None
    if return_errors:
        masks = np.zeros((n, K), bool)
        masks[np.arange(n)[:, None], np.asarray(idx)] = True
    return NodePruningResult(
        mean=mean,
        std=std,
        stderr=std / math.sqrt(n),
        min=jnp.min(errors),
        max=jnp.max(errors),
        status=status,
        num_singular=n_sing,
        exact=False,
        num_subsets=int(n),
        method=method,
        reweight=reweight,
        masks=masks,
        probs=jnp.full((n,), 1.0 / n, errors.dtype) if return_errors else None,
        errors=errors if return_errors else None,
    )
