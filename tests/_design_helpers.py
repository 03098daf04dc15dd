"""Shared helpers of the design tests (not a test module)."""

import jax
import jax.numpy as jnp
import numpy as np


def network(rng, K=4, M=2, N=200, noise=0.6):
    """A 'trained-like' student: groups of units aligned with teacher units plus noise."""
    ws = rng.normal(size=(M, N))
    assign = np.arange(K) % M
    w = (1.0 + 0.2 * rng.random((K, 1))) * ws[assign] + noise * rng.normal(size=(K, N))
    v = 1.0 + 0.5 * rng.random(K)
    vs = np.full(M, 2.0)
    return jnp.asarray(w), jnp.asarray(ws), jnp.asarray(v), jnp.asarray(vs)


def fd_check(f, x, idx, eps=1e-6, rtol=1e-4, atol=1e-8):
    """Gradient of `f` at `x` against central finite differences on the flat coordinates `idx`."""
    g = jax.grad(f)(x)
    flat = x.reshape(-1)
    for i in idx:
        e = jnp.zeros_like(flat).at[i].set(eps).reshape(x.shape)
        fd = (f(x + e) - f(x - e)) / (2 * eps)
        np.testing.assert_allclose(g.reshape(-1)[i], fd, rtol=rtol, atol=atol)
