"""Time of one DPP edge mask for a 784-input unit (MNIST size), random data.

    python benchmarks/bench_realdata.py [--units 8] [--masks 4] [--repeats 3]

For `U` units with `D = 784` inputs and the seed paper's data kernel `L^(i) = diag(w_i) (X^T X / P) diag(w_i)`
(P = 2000 correlated Gaussian inputs), it reports, with compilation timed apart and `block_until_ready`:

- the eigendecomposition of every unit's kernel (`jaxprune.realdata.edge_dpp_eigen`, done ONCE per network);
- per-unit, per-mask sampling time of `jaxprune.realdata.sample_kdpp_masks` (the real-data route to the one k-DPP
  sampler `jaxprune.pruning.sample_kdpp_mask`: a traced size with one compilation for D <= 256, a static size,
  one unit after another, above) at keep fractions 0.1, 0.5 and 0.9, all units in one call;
- the same sampler with a static size (`jaxprune.pruning.sample_kdpp_mask(key, eig, int)`, one compilation per
  size), one unit, the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from jaxprune.pruning import sample_kdpp_mask  # noqa: E402
from jaxprune.realdata import edge_dpp_eigen, sample_kdpp_masks  # noqa: E402


def _timed(fn, repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t)
    return first, statistics.median(runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--masks", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--inputs", type=int, default=784)
    ap.add_argument("--samples", type=int, default=2000)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    D, U, S = a.inputs, a.units, a.masks
    z = rng.normal(size=(a.samples, 1))
    x = jnp.asarray(0.5 * z + rng.normal(size=(a.samples, D)))
    W = jnp.asarray(rng.normal(size=(U, D)) / np.sqrt(D))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, D={D}, units={U}, masks={S}, P={a.samples}")

    first, med = _timed(lambda: edge_dpp_eigen(W, x, jitter=1e-6).eigenvalues, a.repeats)
    print(f"eigendecomposition (once per network): {med / U * 1e3:.1f} ms per unit (first call {first:.2f} s)")
    eig = edge_dpp_eigen(W, x, jitter=1e-6)
    key = jax.random.key(0)
    for p in (0.1, 0.5, 0.9):
        c = int(round(p * D))
        first, med = _timed(lambda: sample_kdpp_masks(key, eig, c, S), a.repeats)
        route = "traced size, one compilation for all k" if D <= 256 else "static size, compiles per k"
        print(f"realdata.sample_kdpp_masks ({route}), p={p}, k={c}: {med / (U * S) * 1e3:.1f} ms per unit-mask; "
              f"first call {first:.2f} s")
        one = jax.tree.map(lambda t: t[0], eig)
        keys = jax.random.split(key, S)
        base = jax.vmap(sample_kdpp_mask, in_axes=(0, None, None))
        first_b, med_b = _timed(lambda: base(keys, one, c), a.repeats)
        print(f"  baseline pruning.sample_kdpp_mask (static k), one unit: {med_b / S * 1e3:.1f} ms per unit-mask; "
              f"first call {first_b:.2f} s (compiles per k)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
