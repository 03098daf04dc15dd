"""The seed paper's teacher-student experiment, in theory and in finite-N simulation (docs/theory.md 6.3).

Students are trained by online SGD (`jp.simulate_seeds`) at the seed paper's settings (N = 500, M = 2, K = 6,
two-layer mode, `v* = 4`, eta = 0.5, 800 000 samples) and pruned under its protocol (`PROTOCOLS["paper"]`):
first-layer rows normalised to `|w_i|^2 / N = 1` before pruning, the node k-DPP kernel `L = Q` from the
normalised weights, importance keeping the `k` largest `v_i`, `v` initialised `N(0, 1)`. Each trained network
is pruned by every method at every budget, and two numbers are set side by side:

- *predicted*: the order-parameter theory applied to the (normalised) student's overlaps (exact expectation
  over subsets for node methods; the Gaussian-equivalent large-N map for edge methods);
- *measured*: the concrete pruned network (masks applied to the actual weights; random and DPP masks drawn
  many times), its exact error from its own overlaps, and its empirical noisy test MSE on fresh inputs.

For node pruning the pruned network's overlaps are exactly the theory's `Q_SS, R_S`, so predicted and
measured differ only by mask sampling; for edge pruning they differ because trained weights are not exactly
Gaussian per coordinate and `N` is finite: that gap is the test of docs/theory.md 6.2 (`_paper_gap`). Every
error is the noise-free `eps_g` unless a column says "test MSE" (noisy labels: `2 eps_g + sigma^2`). The
claims are decided from these rows in `_paper_claims`; the theory-only comparisons live in `_paper_theory`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxprune as jp
from jaxprune import pruning

__all__ = [
    "PaperSetting",
    "PROTOCOLS",
    "train_students",
    "normalise_rows",
    "simulation_check",
    "NODE_METHODS",
    "EDGE_METHODS",
]

#: the pruning protocols: the seed paper's (rows normalised to |w_i|^2 / N = 1 before pruning, the DPP kernel
#: from the normalised weights, importance = the k largest v_i, v initialised N(0, 1)) and this project's
#: earlier one (no normalisation, importance |v_i| sqrt(Q_ii), v initialised 0.1 N(0, 1))
PROTOCOLS = {
    "paper": {"normalise": True, "importance": "v", "v0_scale": 1.0},
    "legacy": {"normalise": False, "importance": "magnitude", "v0_scale": 0.1},
}
NODE_METHODS = ("random-node", "importance-node", "dpp-node")
EDGE_METHODS = ("random-edge", "magnitude-edge", "dpp-edge")


@dataclasses.dataclass(frozen=True)
class PaperSetting:
    """The seed paper's teacher-student setting and pruning protocol (docs/theory.md section 6.3).

    The defaults are the paper's simulations: `N = 500`, `M = 2`, `K = 6`, `v* = 4`, `eta = eta_v = 0.5`, two-layer
    mode, 800 000 online SGD samples. A frozen dataclass; an unknown `protocol` is a `ValueError`.

    **Arguments:**

    - `N`: input dimension, `>= 1`.
    - `M`: teacher units.
    - `K`: student units (`K > M` is the over-parameterised case the paper prunes).
    - `v_star`: the teacher's second-layer weight, the same for every teacher unit.
    - `eta`: SGD learning rate of both layers (`eta_v = eta`, docs/theory.md section 4), `> 0`.
    - `steps`: online SGD samples (`alpha = steps / N`; the paper: 800 000, i.e. `alpha = 1600`).
    - `init_scale`: standard deviation of the student's initial first-layer weights (`Q0 ~ init_scale^2 I`).
    - `protocol`: a key of [`PROTOCOLS`][jaxprune.experiments.PROTOCOLS]: `"paper"` (rows normalised before
      pruning, importance = the `k` largest `v_i`, `v` initialised `N(0, 1)`) or `"legacy"`.

    **Example:**

    ```python
    small = jpx.PaperSetting(N=100, K=4, steps=20_000)
    small.options          # {'normalise': True, 'importance': 'v', 'v0_scale': 1.0}
    small.config(0.25)     # the SGDConfig of one noise level
    ```
    """

    N: int = 500
    M: int = 2
    K: int = 6
    v_star: float = 4.0
    eta: float = 0.5
    steps: int = 800_000
    init_scale: float = 1.0
    protocol: str = "paper"

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {self.protocol!r}")

    @property
    def options(self) -> dict:
        """The protocol's options: `normalise`, `importance` (`"v"` or `"magnitude"`), `v0_scale`."""
        return PROTOCOLS[self.protocol]

    def config(self, sigma: float) -> jp.SGDConfig:
        """The [`SGDConfig`][jaxprune.SGDConfig] of this setting at label-noise standard deviation `sigma`
        (two-layer mode, `eta_v = eta`, erf activation)."""
        return jp.SGDConfig(eta=self.eta, eta_v=self.eta, sigma=sigma, mode="two-layer")


def train_students(setting: PaperSetting, sigma: float, seeds: int, *, seed: int = 0, records: int = 20):
    """Train `seeds` students by online SGD, each with its own random teacher, in float32
    ([`simulate_seeds`][jaxprune.simulate_seeds]; docs/theory.md section 4).

    Teachers come from [`make_teacher`][jaxprune.make_teacher] (`v* = setting.v_star`); students from
    [`init_student`][jaxprune.init_student] with first-layer scale `setting.init_scale` and second layer
    `v_k ~ v0_scale N(0, 1)` (`v0_scale` of the protocol; the paper: `N(0, 1)`). The run takes
    `records * (setting.steps // records)` steps (at most `records - 1` fewer than `setting.steps`).

    **Arguments:**

    - `setting`: the [`PaperSetting`][jaxprune.experiments.PaperSetting] (`N`, `M`, `K`, `v_star`, `eta`,
      `steps`, protocol).
    - `sigma`: label-noise standard deviation `sigma >= 0`.
    - `seeds`: number of independent teacher-student pairs `S`.
    - `seed`: the integer the PRNG keys of teachers, students and samples are split from.
    - `records`: number of records of the error curve after the initial one.

    **Returns:** `(teachers, students, result)`: the [`Teacher`][jaxprune.Teacher] with `w_star` of shape
    `(S, M, N)`, the final [`Student`][jaxprune.Student] with `w` of shape `(S, K, N)` and `v` of shape
    `(S, K)`, and the [`SimulationResult`][jaxprune.SimulationResult] with a leading seed axis (`eps_g` of shape
    `(S, records + 1)`, `status` of shape `(S,)`).
    """
    key = jax.random.key(seed)
    kt, ks, kr = jax.random.split(key, 3)
    teachers = jax.vmap(lambda k: jp.make_teacher(k, setting.N, setting.M, v_star=setting.v_star))(
        jax.random.split(kt, seeds))
    v0_scale = setting.options["v0_scale"]
    students = jax.vmap(lambda k: jp.init_student(k, setting.N, setting.K, scale=setting.init_scale,
                                                  v0="random", v0_scale=v0_scale))(jax.random.split(ks, seeds))
    record_every = setting.steps // records
    steps = record_every * records
    res = jp.simulate_seeds(jax.random.split(kr, seeds), teachers, students, setting.config(sigma), steps=steps,
                         record_every=record_every)
    return teachers, res.final, res


def normalise_rows(w):
    """The first-layer rows rescaled to `|w_i|^2 / N = 1`, i.e. `Q_ii = 1` (the seed paper's normalisation
    before pruning, docs/theory.md section 6.3; on overlaps it is
    [`normalise_student`][jaxprune.normalise_student]).

    **Arguments:**

    - `w`: student first-layer weights, `Float[ArrayLike, "K N"]`; every row must be nonzero.

    **Returns:** `Float[Array, "K N"]`, `w_i / sqrt(mean_j w_ij^2)` row by row (same dtype).
    """
    w = jnp.asarray(w)
    return w / jnp.sqrt(jnp.mean(jnp.square(w), axis=1, keepdims=True))


def importance_node_mask(state: jp.Overlaps, k: int, score: str) -> np.ndarray:
    """The importance mask: the `k` largest `v_i` (`score="v"`, the seed paper's rule) or the `k` largest
    `|v_i| sqrt(Q_ii)` (`"magnitude"`, `pruning.importance_mask`); ties to the lower index."""
    if score == "v":
        return np.asarray(pruning.top_k_mask(state.v, k))
    return np.asarray(pruning.importance_mask(state, k))


def _importance_rows(state: jp.Overlaps, score: str, reweights, K: int, N: int) -> list[dict]:
    """Theory rows of importance node pruning with the protocol's score (a point mass: the error of one
    subset), in the format of `pruning.compare_methods`."""
    rows = []
    for k in range(1, K):
        mask = jnp.asarray(importance_node_mask(state, k, score))
        for rw in reweights:
            eps = float(jp.generalisation_error(pruning.prune_nodes(state, mask, reweight=rw)[0]))
            rows.append({"method": "importance-node", "option": rw, "k": k, "p": k / K,
                         "params_kept": pruning.node_params(K, N, k), "mean": eps, "std": 0.0, "stderr": 0.0,
                         "min": eps, "max": eps, "exact": True, "status": 0, "budget_k": k})
    return rows


def _node_masks(key, state, method, k, n_masks, kernel, jitter, score):
    K = state.K
    if method == "importance-node":
        return importance_node_mask(state, k, score)[None, :]
    keys = jax.random.split(key, n_masks)
    if method == "random-node":  # k traced: one compilation for every budget
        return np.asarray(jax.vmap(pruning.sample_uniform_subset_mask, in_axes=(0, None, None))(keys, K, k))
    eig = pruning.kdpp_eigen(pruning.kernel_matrix(state, kernel, jitter=jitter))
    return np.asarray(jax.vmap(pruning.sample_kdpp_mask, in_axes=(0, None, None))(keys, eig, k))


@jax.jit
def _masked_network_errors(w, vs, w_star, v_star, masks):
    """Exact `eps_g` of concrete networks `w * mask` (rows or entries) with second layers `vs`, from their
    own overlaps (`overlaps_from_weights`), for a batch of masks."""

    def one(mask, v):
        wm = jnp.where(mask if mask.ndim == 2 else mask[:, None], w, 0.0)
        return jp.generalisation_error(jp.overlaps_from_weights(wm, w_star, v, v_star))

    return jax.vmap(one)(masks, vs)


@functools.partial(jax.jit, static_argnames="reweights")
def _node_second_layers(state, masks, reweights):
    """Reweighted second layers `(len(reweights), masks, K)` for a batch of node masks (from the network's own
    overlaps); one compilation per number of masks serves every reweighting."""
    return jnp.stack([jax.vmap(lambda m: pruning.prune_nodes(state, m, reweight=rw)[0].v)(masks)
                      for rw in reweights])


def _pad_rows(x, n: int):
    """`x` with its first row repeated up to `n` rows (one compiled shape for one mask and for many)."""
    x = np.asarray(x)
    return x if x.shape[0] >= n else np.concatenate([x, np.repeat(x[:1], n - x.shape[0], axis=0)])


def _theory_rows(state, setting: PaperSetting, *, reweights, rescales, kernel, jitter, node_theory) -> list[dict]:
    """Theory rows on one student's overlaps: node methods by exact enumeration over subsets
    (`node_theory="enumerate"`, every reweighting) or by the closed form from inclusion probabilities
    (`"closed-form"`, no reweighting: for large `K`), importance with the protocol's score, edge methods by
    the Gaussian-equivalent map; format of `pruning.compare_methods`."""
    K, N = setting.K, setting.N
    score = setting.options["importance"]
    if node_theory == "enumerate":
        rows = pruning.compare_methods(state, methods=("random-node", "dpp-node") + EDGE_METHODS,
                                       reweights=reweights, rescales=rescales, kernel=kernel, jitter=jitter, N=N)
        return rows + _importance_rows(state, score, reweights, K, N)
    if tuple(reweights) != ("none",):
        raise ValueError(f"node_theory='closed-form' needs reweights=('none',), got {tuple(reweights)}")
    rows = pruning.compare_methods(state, methods=EDGE_METHODS, reweights=(), rescales=rescales, N=N)
    for k in range(1, K):
        for method in ("random", "dpp"):
            r = pruning.expected_node_error_closed_form(state, k, method=method, kernel=kernel, jitter=jitter)
            eps = float(r.mean)
            rows.append({"method": f"{method}-node", "option": "none", "k": k, "p": k / K,
                         "params_kept": pruning.node_params(K, N, k), "mean": eps, "std": float("nan"),
                         "stderr": 0.0, "min": float("nan"), "max": float("nan"), "exact": True,
                         "status": int(r.status), "budget_k": k})
    return rows + _importance_rows(state, score, reweights, K, N)


def simulation_check(
    setting: PaperSetting = PaperSetting(),
    *,
    sigmas: Sequence[float] = (0.0, 0.25),
    seeds: int = 3,
    masks: int = 20,
    test_samples: int = 20_000,
    kernel: str = "Q",
    jitter: float = 1e-6,
    reweights: Sequence[str] = ("none", "preactivation", "optimal"),
    rescales: Sequence[str] = ("none", "optimal"),
    seed: int = 0,
    progress=None,
    test_mse_masks: int = 3,
    node_masks: int | None = None,
    node_theory: str = "enumerate",
) -> dict:
    """The seed paper's experiment: train students, prune each by every method at every budget
    `k = 1..K-1` (edge methods at `p = k/K`), and set predicted beside measured errors (docs/theory.md
    sections 6.1 to 6.3).

    The protocol of `setting` decides the pruned network: with `"paper"`, every trained student's first-layer
    rows are normalised to `|w_i|^2 / N = 1` before pruning (theory and measurement both act on the normalised
    network; the DPP kernel is built from it) and importance keeps the `k` largest `v_i`. *Predicted*: the
    order-parameter theory on the student's overlaps (node methods: exact expectation over subsets; edge
    methods: the Gaussian-equivalent map of section 6.2). *Measured*: the exact `eps_g` of concrete pruned
    networks from their own overlaps, and their noisy test MSE on fresh inputs.

    **Arguments:**

    - `setting`: the [`PaperSetting`][jaxprune.experiments.PaperSetting] (sizes, SGD, protocol).
    - `sigmas`: label-noise standard deviations; students are trained afresh for each.
    - `seeds`: trained students per noise level (each with its own teacher).
    - `masks`: concrete masks per student for the random and DPP edge methods (magnitude edge is
      deterministic: one mask), and for node methods unless `node_masks` says otherwise.
    - `test_samples`: fresh inputs per noisy test-MSE estimate.
    - `kernel`: the node k-DPP kernel, `"Q"` (the paper's), `"A"` or `"rbf"` (docs/theory.md 6.1).
    - `jitter`: `>= 0`, added to the kernel's diagonal.
    - `reweights`: node reweighting rules to evaluate (`"none"`, `"preactivation"`, `"activation"`,
      `"optimal"`; docs/theory.md 6.1).
    - `rescales`: edge rescales to evaluate (`"none"`, `"inverse-keep"`, `"optimal"`; docs/theory.md 6.2).
    - `seed`: the integer all PRNG keys (training, masks, test inputs) derive from.
    - `progress`: an object with `update(n)` (e.g. a tqdm bar), called once per trained student; or `None`.
    - `test_mse_masks`: masks per student and method whose noisy test MSE is measured (`0` skips that check:
      the columns are `nan`).
    - `node_masks`: concrete node masks per random or DPP node method (default `masks`); `0` takes the exact
      expectation over subsets as the measured value (the pruned network's overlaps are exactly the theory's;
      `masks_per_seed` is then 0).
    - `node_theory`: `"enumerate"` (node theory by exact enumeration of subsets, every reweighting) or
      `"closed-form"` (random and DPP node errors from inclusion probabilities without reweighting, which
      needs `reweights=("none",)`; for large `K` such as 20).

    **Returns:** a dict with

    - `"rows"`: one dict per `(sigma, method, option, k)`: `sigma`, `method`, `option`, `k`, `p`, `predicted`
      and `predicted_std` (mean and std over seeds), `measured` (mean over seeds of each seed's mask mean) and
      `measured_std` (over seeds and masks), `measured_test_mse` (noisy, `2 eps_g + sigma^2` scale; `nan`
      when not measured) beside `test_mse_from_overlaps` (`2 eps_g + sigma^2` of the same masks), `n_masks`,
      and per seed (lists in seed order) `predicted_per_seed`, `measured_mean_per_seed`,
      `measured_std_per_seed`, `masks_per_seed`;
    - `"theory_rows"`: `{str(sigma): [theory rows of each student]}` in the format of
      [`compare_methods`][jaxprune.pruning.compare_methods];
    - `"training"`: `{str(sigma): {"eps_g_final": [...], "status": [...]}}`;
    - `"setting"`, `"protocol"`, `"seeds"`, `"masks"`, `"node_masks"`.

    Every error is the noise-free `eps_g` except the test-MSE columns.

    **Example:**

    ```python
    out = jpx.simulation_check(jpx.PaperSetting(N=100, K=4, steps=20_000), sigmas=(0.0,), seeds=2, masks=3)
    gaps = jpx.gap_rows(out["rows"])
    ```
    """
    K, N = setting.K, setting.N
    score = setting.options["importance"]
    node_masks = masks if node_masks is None else int(node_masks)
    node_methods = ("random-node", "importance-node", "dpp-node") if node_theory == "enumerate" else NODE_METHODS
    rows, theory_rows, train_info = [], {}, {}
    key = jax.random.key(seed + 1)
    for sigma in sigmas:
        teachers, students, res = train_students(setting, sigma, seeds, seed=seed)
        eps_trained = np.asarray(res.eps_g[:, -1], dtype=float)
        train_info[str(sigma)] = {"eps_g_final": eps_trained.tolist(), "status": np.asarray(res.status).tolist()}
        per = {}  # (method, option, k) -> lists over seeds
        theory_rows[str(sigma)] = []

        def record(method, opt, k, pred, errs, mses, mse_pred):
            d = per.setdefault((method, opt, k), {"pred": [], "meas": [], "mse": [], "mse_pred": [],
                                                   "seed_meas": []})
            d["seed_meas"].append(np.asarray(errs, float))
            d["mse_pred"].extend(mse_pred)
            d["pred"].append(pred)
            d["meas"].extend(np.asarray(errs, float).tolist())
            d["mse"].extend(mses)

        for s in range(seeds):
            f64 = lambda a: jnp.asarray(np.asarray(a, np.float64))
            w, v = f64(students.w[s]), f64(students.v[s])
            w_star, v_star = f64(teachers.w_star[s]), f64(teachers.v_star[s])
            if setting.options["normalise"]:
                w = normalise_rows(w)
            state = jp.overlaps_from_weights(w, w_star, v, v_star)
            trows = _theory_rows(state, setting, reweights=reweights, rescales=rescales, kernel=kernel,
                                 jitter=jitter, node_theory=node_theory)
            theory_rows[str(sigma)].append(trows)
            pred = {(r["method"], r["option"], r.get("budget_k", K)): r["mean"] for r in trows}
            for k in range(1, K):
                p = pruning.matched_keep_fraction(K, N, k)
                for method in node_methods:
                    exact = node_masks == 0 and method != "importance-node"
                    if exact:
                        for rw in reweights:
                            record(method, rw, k, pred[(method, rw, k)], [], [], [])
                        continue
                    key, sub = jax.random.split(key)
                    mk = _node_masks(sub, state, method, k, node_masks, kernel, jitter, score)
                    padded = jnp.asarray(_pad_rows(mk, max(node_masks, 1)))
                    vs_all = _node_second_layers(state, padded, tuple(reweights))
                    for rw, vs in zip(reweights, vs_all):
                        errs = np.asarray(_masked_network_errors(w, vs, w_star, v_star, padded))[: len(mk)]
                        mses, mse_pred = [], []
                        for j in range(min(test_mse_masks, len(mk))):
                            key, kk = jax.random.split(key)
                            wp = jnp.where(jnp.asarray(mk[j])[:, None], w, 0.0)
                            mses.append(float(jp.fresh_test_mse(kk, wp, vs[j], w_star, v_star, sigma, samples=test_samples, activation=setting.config(sigma).activation)))
                            mse_pred.append(2 * float(errs[j]) + sigma**2)
                        record(method, rw, k, pred[(method, rw, k)], errs, mses, mse_pred)
                for method in EDGE_METHODS:
                    key, sub = jax.random.split(key)
                    n_m = masks if method != "magnitude-edge" else 1
                    if method == "random-edge":
                        mk = jax.vmap(lambda kk: pruning.random_edge_mask(kk, w, p))(jax.random.split(sub, n_m))
                    elif method == "magnitude-edge":
                        mk = pruning.magnitude_edge_mask(w, p)[None]
                    else:
                        mk = pruning.dpp_edge_mask(sub, w, p, kernel="diagonal", num_samples=n_m)
                    for rs in rescales:
                        th = pruning.edge_prune_theory(state, p, method=method.removesuffix("-edge"), rescale=rs)
                        wc = w * th.c[:, None]
                        padded = jnp.asarray(_pad_rows(mk, masks))
                        vs = jnp.broadcast_to(v, (padded.shape[0], K))
                        errs = np.asarray(_masked_network_errors(wc, vs, w_star, v_star, padded))[:n_m]
                        mses, mse_pred = [], []
                        for j in range(min(test_mse_masks, n_m)):
                            key, kk = jax.random.split(key)
                            wp = pruning.apply_edge_mask(w, mk[j], th.c)
                            mses.append(float(jp.fresh_test_mse(kk, wp, v, w_star, v_star, sigma, samples=test_samples, activation=setting.config(sigma).activation)))
                            mse_pred.append(2 * float(errs[j]) + sigma**2)
                        record(method, rs, k, float(th.eps_g), errs, mses, mse_pred)
            if progress is not None:
                progress.update(1)
        for (method, opt, k), d in per.items():
            pr = np.asarray(d["pred"])
            # exact expectations stand in for the mask average where no masks were drawn
            seed_meas = [e if e.size else np.asarray([x]) for e, x in zip(d["seed_meas"], pr)]
            seed_mean = np.asarray([float(np.mean(e)) for e in seed_meas])
            me = np.concatenate(seed_meas)
            rows.append({
                "sigma": sigma, "method": method, "option": opt, "k": k, "p": k / K,
                "predicted": float(pr.mean()), "predicted_std": float(pr.std()),
                "measured": float(seed_mean.mean()), "measured_std": float(me.std()),
                "measured_test_mse": float(np.mean(d["mse"])) if d["mse"] else float("nan"),
                "test_mse_from_overlaps": float(np.mean(d["mse_pred"])) if d["mse_pred"] else float("nan"),
                "n_masks": int(sum(e.size for e in d["seed_meas"])),
                "predicted_per_seed": pr.tolist(),
                "measured_mean_per_seed": seed_mean.tolist(),
                "measured_std_per_seed": [float(np.std(e)) for e in d["seed_meas"]] if all(
                    e.size for e in d["seed_meas"]) else [0.0] * len(seed_meas),
                "masks_per_seed": [int(np.size(e)) for e in d["seed_meas"]],
            })
    return {"setting": dataclasses.asdict(setting), "rows": rows, "theory_rows": theory_rows,
            "training": train_info, "seeds": seeds, "masks": masks, "node_masks": node_masks,
            "protocol": dict(setting.options, name=setting.protocol)}


def __getattr__(name):
    # names that moved to their own modules (kept importable from here)
    from . import _paper_gap, _paper_theory, _paper_claims

    for mod in (_paper_gap, _paper_theory, _paper_claims):
        if name in getattr(mod, "__all__", ()):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
