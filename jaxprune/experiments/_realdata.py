"""The real-data run (docs/theory.md 6.3, claim C8): train MLPs on a data set, prune their first hidden layer
with every node and edge method of [`jaxprune.realdata`][] at every budget, with and without least-squares
reweighting, and compare test errors at equal first-layer parameter counts.

The methods, the reweighting rules and the parameter matching are the library's (`jaxprune.realdata`: each
method name is turned into its object once, by `jaxprune.realdata.realdata_option`); this module runs them over
training seeds, masks and budgets and stores the results; `_realdata_summary` turns them into tables, figures
and verdicts:

- **C8, the seed paper's real-data claim** ([`c8_cells`][jaxprune.experiments.c8_cells]): random edge pruning WITH least-squares
  reweighting (`edge-random+ls`) against DPP node pruning WITH fusing (DIVNET, `node-dpp-rbf+ls`): both sides
  reweighted, at equal first-layer parameter counts; paired cells (difference and standard error per budget).
- **Ours** (comparisons the paper does not make, reported beside it): DIVNET against random and importance node
  pruning, with and without fusing; random edge WITHOUT reweighting against DIVNET; the best variant per budget.

Test errors are classification error rates on the test split, as mean and standard deviation over training
seeds and masks. Results are written atomically per (seed, method) under the output folder and reused when
their configuration matches, so a rerun only computes what is missing; a corrupt file is recomputed with a
warning naming it.

References: Acharyya et al., "Statistical Mechanical Analysis of Neural Network Pruning", UAI 2021;
Mariet & Sra, "Diversity Networks", ICLR 2016.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import jaxprune as jp
from .._checks import check_float, check_int
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ._realdata_summary import (
    RealDataResult,
    _figure_png,
    format_table,
    plot_realdata,
    realdata_verdicts,
    summarise,
    verdict_lines,
)

__all__ = ["DEFAULT_BUDGETS", "run_realdata"]

rd = jp.realdata

DEFAULT_BUDGETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_FORMAT_VERSION = 1



def _work_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _check_budgets(budgets) -> tuple[float, ...]:
    out = tuple(float(b) for b in np.atleast_1d(np.asarray(budgets, dtype=float)))
    if not out:
        raise ValueError("budgets must list at least one fraction in (0, 1], got none")
    for b in out:
        if not (math.isfinite(b) and 0 < b <= 1):
            raise ValueError(f"budgets must be fractions in (0, 1] of the first layer's parameters, got {b}")
    return out


def _prepare_out_dir(out_dir) -> Path:
    """The output folder, created if needed and checked writable before any work (one-line `ValueError`)."""
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise ValueError(f"out_dir {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"out_dir {out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir {out}: folder is not writable")
    return out


def _read_part(path: Path, expected_hash: str, valid: Callable[[dict], bool]) -> dict | None:
    """A stored result if it exists, holds `expected_hash` and is well formed; `None` (recompute) otherwise.
    A file that cannot be parsed or is malformed is corrupt: a warning names it."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict) or "hash" not in old:
            raise ValueError("not a result object")
        if old["hash"] != expected_hash:
            return None  # written with other settings: recomputed silently
        if not valid(old):
            raise ValueError("missing or malformed fields")
        return old
    except (OSError, ValueError, TypeError, KeyError) as e:
        warnings.warn(f"realdata: corrupt result file {path} ({e}); recomputing it", stacklevel=3)
        return None


def _valid_method_result(res: dict, nb: int, finetune: bool) -> bool:
    def table(t):
        return (isinstance(t, dict) and all(isinstance(t.get(r), list) and len(t[r]) == nb for r in rd.REWEIGHTS)
                and all(isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
                        for r in rd.REWEIGHTS for v in t[r]))

    return (all(isinstance(res.get(f), list) and len(res[f]) == nb for f in ("k", "c", "params_kept"))
            and table(res.get("errors")) and (not finetune or table(res.get("finetuned"))))


# --------------------------------------------------------------------------------------------------
# Per-network work
# --------------------------------------------------------------------------------------------------


class _SeedContext:
    """Lazily computed per-network quantities shared by all methods of one training seed."""

    def __init__(self, model: jp.realdata.MLP, dataset: jp.realdata.Dataset, jitter: float):
        dt = _work_dtype()
        self.layers = [(l.weight.astype(dt), l.bias.astype(dt)) for l in model.layers]
        self.activation = model.activation
        self.x_tr = jnp.asarray(dataset.x_train, dt)
        self.y_tr = jnp.asarray(dataset.y_train, jnp.int32)
        self.x_te = jnp.asarray(dataset.x_test, dt)
        self.y_te = jnp.asarray(dataset.y_test, jnp.int32)
        self.jitter = jitter
        self.acts = rd.first_layer_activations(self.layers, self.activation, self.x_tr)
        self.H, self.D = self.layers[0][0].shape
        self._node_eig: dict = {}

    @functools.cached_property
    def gram(self):
        return rd.augmented_gram(self.acts)

    def node_eig(self, selector: jp.pruning.DPPNodes) -> jp.pruning.KDPPEigen:
        """The k-DPP eigendecomposition of `selector`'s data kernel, computed once per network."""
        if selector not in self._node_eig:
            self._node_eig[selector] = jp.pruning.kdpp_eigen(rd.data_node_kernel(self.acts, selector))
        return self._node_eig[selector]

    @functools.cached_property
    def edge_eig(self):
        return rd.edge_dpp_eigen(self.layers[0][0], self.x_tr, jitter=self.jitter)

    def errors(self, W1s, W2s, b2s):
        return np.asarray(rd.masked_test_errors(self.layers, self.activation, W1s, W2s, b2s, self.x_te, self.y_te))


def _run_method(ctx: _SeedContext, kind, method, option, budgets, num_masks, key, ridge, finetune, tcfg, seed):
    """One (seed, method) unit: masks at every budget, test errors with and without reweighting. `method` is the
    label (results key), `option` its object ([`jaxprune.realdata.realdata_option`][])."""
    H, D = ctx.H, ctx.D
    S = num_masks if rd.is_randomised(option) else 1
    reweights = {r: rd.realdata_option(f"{kind}-reweight", r) for r in rd.REWEIGHTS}
    out = {"k": [], "c": [], "params_kept": [], "errors": {r: [] for r in reweights}}
    if finetune:
        out["finetuned"] = {r: [] for r in reweights}
    for bi, f in enumerate(budgets):
        k = int(min(H, max(1, math.floor(f * H + 0.5))))
        kb = jax.random.fold_in(key, bi)
        if kind == "node":
            eig = ctx.node_eig(option) if isinstance(option, jp.pruning.DPPNodes) else None
            masks = rd.node_masks(kb, option, k, S, acts=ctx.acts, W2=ctx.layers[1][0], eig=eig)
            counts = np.asarray(jnp.sum(masks, axis=1))
            if not np.all(counts == k):
                raise RuntimeError(f"node {method} mask kept {counts.tolist()} units, expected {k}")
            c, params = None, rd.first_layer_params(H, D, k=k)
            M1 = jnp.broadcast_to(masks[:, :, None], (masks.shape[0], H, D))
            M2 = jnp.broadcast_to(masks[:, None, :], (masks.shape[0],) + ctx.layers[1][0].shape)
        else:
            c = D if f >= 1 else rd.edge_count(H, D, k)
            eig = ctx.edge_eig if isinstance(option, jp.pruning.DPPEdges) else None
            masks = rd.edge_masks(kb, option, c, S, W=ctx.layers[0][0], x=ctx.x_tr, jitter=ctx.jitter, eig=eig)
            counts = np.asarray(jnp.sum(masks, axis=2))
            if not np.all(counts == c):
                raise RuntimeError(f"edge {method} mask kept {np.unique(counts).tolist()} per unit, expected {c}")
            params = rd.first_layer_params(H, D, c=c)
            M1 = masks
            M2 = jnp.ones((masks.shape[0],) + ctx.layers[1][0].shape, bool)
        out["k"].append(k)
        out["c"].append(c)
        out["params_kept"].append(params)
        for r, rw in reweights.items():
            if kind == "node":
                W1s, W2s, b2s = rd.prune_nodes_network(ctx.layers, masks, rw, acts=ctx.acts, ridge=ridge,
                                                       gram=ctx.gram)
            else:
                W1s, W2s, b2s = rd.prune_edges_network(ctx.layers, masks, rw, x=ctx.x_tr, ridge=ridge)
            out["errors"][r].append(ctx.errors(W1s, W2s, b2s).tolist())
            if finetune:
                fe = rd.finetuned_test_errors(
                    ctx.layers, ctx.activation, W1s, W2s, b2s, M1, M2, (ctx.x_tr, ctx.y_tr, ctx.x_te, ctx.y_te),
                    finetune, batch_size=tcfg.batch_size, learning_rate=tcfg.learning_rate,
                    momentum=tcfg.momentum, seed=seed)
                out["finetuned"][r].append(np.asarray(fe).tolist())
    return out


def _default_train_config(dataset: str, seed: int, quick: bool) -> jp.realdata.TrainConfig:
    return rd.TrainConfig(
        optimizer="sgd-momentum", learning_rate=0.05, momentum=0.9, batch_size=32 if dataset == "digits" else 64,
        max_epochs=100, stop_train_accuracy=0.97 if quick else 0.99, seed=seed,
    )


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_dataset(dataset, data_dir):
    if isinstance(dataset, rd.Dataset):
        return dataset
    if dataset == "digits":
        return rd.load_dataset("digits")
    return rd.load_dataset(dataset, data_dir=data_dir)


def run_realdata(
    out_dir: str | os.PathLike = "runs/realdata",
    *,
    dataset: str | jp.realdata.Dataset = "digits",
    data_dir: str | os.PathLike | None = None,
    hidden: Sequence[int] | None = None,
    activation: str = "sigmoid",
    budgets: Sequence[float] | None = None,
    seeds: int | None = None,
    masks: int | None = None,
    finetune_epochs: int = 0,
    node_methods: Sequence[str] = jp.realdata.NODE_METHODS,
    edge_methods: Sequence[str] = jp.realdata.EDGE_METHODS,
    beta: float = 1.0,
    jitter: float = 1e-6,
    ridge: float = 1e-6,
    design_steps: int | None = None,
    train_config: Callable[[int], jp.realdata.TrainConfig] | None = None,
    quick: bool = False,
    progress: bool = True,
    plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> RealDataResult:
    """Train (or load) MLPs on `dataset`, prune their first hidden layer with every method at every budget,
    and write `out_dir/results.json`, `table.md`, `test_error_vs_params.png` (resumable).

    Defaults: digits, one hidden layer of 100 (`hidden`; MNIST `(500, 500)`, CIFAR-10 `(1000, 1000, 1000)`,
    the seed paper's sizes), sigmoid, budgets 0.1..0.9, 3 training seeds, 5 masks per randomised method, SGD
    with momentum until 99% training accuracy. `quick=True` (under a minute): hidden 50, budgets
    (0.25, 0.5, 0.75), 2 seeds, 3 masks, 100 design steps, 97% training accuracy.

    Per (seed, method) results go to `out_dir/seed<s>/<kind>-<method>.json` with a hash of every setting that
    affects them; a rerun reuses the files whose hash matches and recomputes, with a warning naming it, a
    file that is corrupt. Networks go to `out_dir/models/`. An `out_dir` that is a file or cannot be written
    is a `ValueError` before any work.

    **Arguments:**

    - `out_dir`: the output folder (created).
    - `dataset`: `"digits"`, `"mnist"`, `"cifar10"` or a [`jaxprune.realdata.Dataset`][].
    - `data_dir`: folder of the MNIST / CIFAR-10 files (nothing is downloaded).
    - `hidden`: hidden widths (default: see above).
    - `activation`: hidden nonlinearity, `"sigmoid"` (default), `"relu"`, `"tanh"` or `"erf"`.
    - `budgets`: fractions in `(0, 1]` of first-layer parameters kept.
    - `seeds`: training seeds, `>= 1`.
    - `masks`: masks per randomised method and budget, `>= 1`.
    - `finetune_epochs`: epochs of masked fine-tuning after pruning, reported separately (0: none).
    - `node_methods`, `edge_methods`: method names (labels of the results; [`jaxprune.realdata.NODE_METHODS`][],
      [`jaxprune.realdata.EDGE_METHODS`][]), turned into objects by [`jaxprune.realdata.realdata_option`][].
    - `beta`: RBF node-kernel inverse width `> 0`, in units of the mean squared distance.
    - `jitter`: DPP kernel jitter `>= 0`, relative to the mean diagonal.
    - `ridge`: least-squares reweighting ridge `> 0`, relative to the mean Gram diagonal.
    - `design_steps`: descent steps of the designed masks (default 200; `quick` 100).
    - `train_config`: a function of the seed giving its [`jaxprune.realdata.TrainConfig`][] (default: SGD
      with momentum, learning rate 0.05, until 99% training accuracy).
    - `quick`: the small defaults above.
    - `progress`: progress bars.
    - `plot`: write the figure.
    - `log`: a function receiving one line per trained or loaded network (default: silent).

    **Returns:** a [`RealDataResult`][jaxprune.experiments.RealDataResult].
    """
    t0 = time.perf_counter()
    log = log or (lambda s: None)
    if hidden is not None:
        hidden = tuple(check_int("hidden width", h, 1) for h in hidden)
        if not hidden:
            raise ValueError("hidden must list at least one positive layer width, got none")
    budgets = _check_budgets((0.25, 0.5, 0.75) if (budgets is None and quick) else (budgets or DEFAULT_BUDGETS))
    seeds = check_int("seeds", seeds if seeds is not None else (2 if quick else 3), 1)
    masks = check_int("masks", masks if masks is not None else (3 if quick else 5), 1)
    design_steps = check_int("design_steps", design_steps if design_steps is not None else (100 if quick else 200), 1)
    finetune_epochs = check_int("finetune_epochs", finetune_epochs, 0)
    beta = check_float("beta", beta, 0.0, lo_open=True)
    ridge = check_float("ridge", ridge, 0.0, lo_open=True)
    jitter = check_float("jitter", jitter, 0.0)
    # method labels (the results' keys) -> method objects, once
    options = {(kind, m): rd.realdata_option(kind, m, beta=beta, jitter=jitter, design_steps=design_steps)
               for kind, names in (("node", node_methods), ("edge", edge_methods)) for m in names}
    out = _prepare_out_dir(out_dir)
    ds = _load_dataset(dataset, data_dir)
    name = ds.name
    if hidden is None:
        hidden = (50,) if quick else {"mnist": (500, 500), "cifar10": (1000, 1000, 1000)}.get(name, (100,))
    sizes = (ds.input_dim,) + hidden + (ds.num_classes,)
    tcfg_fn = train_config or (lambda s: _default_train_config(name, s, quick))
    config = {
        "dataset": name, "fingerprint": ds.fingerprint(), "sizes": list(sizes), "activation": activation,
        "budgets": list(budgets), "seeds": seeds, "masks": masks, "finetune_epochs": finetune_epochs,
        "node_methods": list(node_methods), "edge_methods": list(edge_methods), "beta": beta, "jitter": jitter,
        "ridge": ridge, "design_steps": design_steps, "dtype": jnp.dtype(_work_dtype()).name,
        "format": _FORMAT_VERSION,
        "parameter_rule": "node: k (D+1); edge: H c + H with c = round((k (D+1) - H) / H)",
    }
    methods = [("node", m) for m in node_methods] + [("edge", m) for m in edge_methods]
    bar = tqdm(total=seeds * len(methods), desc=f"realdata {name}", disable=not progress, leave=False)
    results, unpruned, computed, reused = [], [], 0, 0
    common = {k: config[k] for k in ("fingerprint", "sizes", "activation", "budgets", "masks", "finetune_epochs",
                                     "beta", "jitter", "ridge", "design_steps", "dtype", "format")}
    valid = lambda res: _valid_method_result(res, len(budgets), bool(finetune_epochs))
    for s in range(seeds):
        tcfg = tcfg_fn(s)
        model_path = out / "models" / f"seed{s}.eqx"
        seed_dir = out / f"seed{s}"
        ctx = None

        def context():
            nonlocal ctx
            if ctx is None:
                model, history, loaded = rd.train_or_load(
                    model_path, sizes, activation, ds, tcfg, dtype=jnp.float32, progress=progress)
                ctx = _SeedContext(model, ds, jitter)
                log(f"seed {s}: network {'loaded' if loaded else 'trained'} "
                    f"({history.num_epochs} epochs, train acc {history.train_accuracy[-1]:.4f})")
            return ctx

        for kind, method in methods:
            key_hash = _hash({"common": common, "train": tcfg.to_dict(), "seed": s, "kind": kind, "method": method})
            path = seed_dir / f"{kind}-{method}.json"
            res = _read_part(path, key_hash, valid)
            if res is not None:
                reused += 1
            else:
                c = context()
                t1 = time.perf_counter()
                key = jax.random.fold_in(jax.random.key(1000 + s), methods.index((kind, method)))
                body = _run_method(c, kind, method, options[(kind, method)], budgets, masks, key, ridge,
                                   finetune_epochs, tcfg, s)
                res = {"hash": key_hash, "seed": s, "kind": kind, "method": method, **body,
                       "seconds": time.perf_counter() - t1}
                atomic_write_json(path, res)
                computed += 1
            results.append(res)
            bar.update(1)
        # Unpruned error of this seed's network (cached beside the method files).
        upath = seed_dir / "unpruned.json"
        uhash = _hash({"train": tcfg.to_dict(), "sizes": list(sizes), "fp": ds.fingerprint(), "act": activation,
                       "dtype": config["dtype"]})
        old = _read_part(upath, uhash, lambda r: isinstance(r.get("test_error"), (int, float)))
        if old is not None:
            uerr = old["test_error"]
        else:
            c = context()
            W1, _ = c.layers[0]
            W2, b2 = c.layers[1]
            uerr = float(c.errors(W1[None], W2[None], b2[None])[0])
            atomic_write_json(upath, {"hash": uhash, "test_error": uerr})
        unpruned.append(uerr)
    bar.close()

    rows = summarise(results, budgets)
    ft_rows = summarise(results, budgets, field="finetuned") if finetune_epochs else []
    verdicts = realdata_verdicts(rows, budgets)
    if ft_rows:
        verdicts["finetuned"] = realdata_verdicts(ft_rows, budgets)
    H, D = hidden[0], ds.input_dim
    title = f"{name}, {'-'.join(map(str, sizes))} {activation}"
    table = f"# Pruning the first hidden layer: {title}\n\n" + format_table(rows, budgets, unpruned)
    if ft_rows:
        table += "\n" + format_table(ft_rows, budgets, unpruned,
                                     title=f"test error (%) after {finetune_epochs} epochs of fine-tuning")
    table += "\nFirst-layer parameters kept per budget: " + ", ".join(
        f"{100 * r['budget']:g}%: node {rd.first_layer_params(H, D, k=r['k'])}, edge "
        f"{rd.first_layer_params(H, D, c=rd.edge_count(H, D, r['k']) if r['budget'] < 1 else D)}"
        for r in rows if r["variant"] == rows[0]["variant"]) + f" (of {H * (D + 1)}).\n"
    table += "\n" + "\n".join(verdict_lines(verdicts)) + "\n"
    seconds = time.perf_counter() - t0
    paths = {"results": str(out / "results.json"), "table": str(out / "table.md")}
    if plot:
        png = _figure_png(plot_realdata(rows, unpruned, total_params=H * (D + 1), title=name))
        atomic_write_bytes(out / "test_error_vs_params.png", png)
        paths["plot"] = str(out / "test_error_vs_params.png")
    result = RealDataResult(config=config, unpruned=unpruned, rows=rows + [dict(r, finetuned=True) for r in ft_rows],
                            verdicts=verdicts, table=table, paths=paths, seconds=seconds, computed=computed,
                            reused=reused)
    atomic_write_json(out / "results.json", {**result.to_dict(), "per_seed": results})
    atomic_write_text(out / "table.md", table)
    return result
