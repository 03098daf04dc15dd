"""The pruning methods of the real-data layer as objects (docs/theory.md, sections 6.1, 6.2 and 6.3, last item):
the option types of `jaxprune.pruning` where one fits, two small `equinox.Module`s for the designed (surrogate)
masks and one for the least-squares refit of kept edges, and [`realdata_option`][], the one place where the
strings of the experiments and the CLI become objects.

| kind            | name           | object (`jp.pruning.X` unless marked `rd.`)       |
|-----------------|----------------|---------------------------------------------------|
| `node`          | `random`       | `RandomNodes()`                                   |
| `node`          | `importance`   | `ImportanceNodes()` (score `magnitude`)           |
| `node`          | `dpp-rbf`      | `DPPNodes(kernel="rbf", beta, jitter)` (DIVNET)   |
| `node`          | `dpp-linear`   | `DPPNodes(kernel="A", beta, jitter)`              |
| `node`          | `designed`     | `rd.DesignedNodes(steps=design_steps)`            |
| `edge`          | `random`       | `RandomEdges()`                                   |
| `edge`          | `magnitude`    | `MagnitudeEdges()`                                |
| `edge`          | `dpp`          | `DPPEdges()`                                      |
| `edge`          | `designed`     | `rd.DesignedEdges(steps=design_steps)`            |
| `node-reweight` | `none` / `ls`  | `NoReweight()` / `ActivationReweight()` (fusing)  |
| `edge-reweight` | `none` / `ls`  | `NoRescale()` / `rd.RefitEdges()`                 |

On data the options keep the meaning of the teacher-student theory, measured on the training set:
`DPPNodes(kernel="A")` is the sample activation second moment `A^T A / P` (the `linear` kernel of
[`data_node_kernel`][]); `DPPNodes(kernel="rbf")` is DIVNET's kernel, whose `beta` is in units of the mean
squared distance between units; `jitter` is relative to the kernel's mean diagonal; importance is the data
score of [`data_importance_scores`][] (the data version of score `magnitude`). Options with no data version
(`DPPNodes(kernel="Q")`, `ImportanceNodes(score="v")`, the `preactivation` and `optimal` reweights, the
`inverse-keep` and `optimal` rescales) are a `ValueError` naming them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx

from .._checks import check_choice, check_float, check_int
from ..pruning import (
    AbstractEdgeRule,
    AbstractNodeSelector,
    ActivationReweight,
    DPPEdges,
    DPPNodes,
    ImportanceNodes,
    MagnitudeEdges,
    NoRescale,
    NoReweight,
    RandomEdges,
    RandomNodes,
)

__all__ = [
    "DesignedNodes",
    "DesignedEdges",
    "RefitEdges",
    "NODE_METHODS",
    "EDGE_METHODS",
    "REWEIGHTS",
    "OPTION_KINDS",
    "realdata_option",
    "is_randomised",
    "RANDOMISED",
]

#: node selectors (the names of [`realdata_option`][]`("node", ...)`)
NODE_METHODS: tuple[str, ...] = ("random", "importance", "dpp-rbf", "dpp-linear", "designed")
#: edge selectors (the names of [`realdata_option`][]`("edge", ...)`)
EDGE_METHODS: tuple[str, ...] = ("random", "magnitude", "dpp", "designed")
#: reweighting rules: `none`, or least squares (`ls`: fusing for nodes, [`RefitEdges`][] for edges)
REWEIGHTS: tuple[str, ...] = ("none", "ls")
#: the kinds of choice [`realdata_option`][] maps strings onto
OPTION_KINDS: tuple[str, ...] = ("node", "edge", "node-reweight", "edge-reweight")

# data-kernel name of each DPPNodes kernel with a data version
_DATA_NODE_KERNELS = {"rbf": "rbf", "A": "linear"}


class _SurrogateDescent(eqx.Module):
    """The options shared by the two designed masks: projected descent on the exact quadratic surrogate."""

    steps: int = 300
    learning_rate: float = 0.5
    name: ClassVar[str] = "designed"

    def __check_init__(self):
        check_int("steps", self.steps, 1)
        check_float("learning_rate", self.learning_rate, 0.0, lo_open=True)


class DesignedNodes(_SurrogateDescent):
    """The designed node mask ([`surrogate_node_mask`][]): projected heavy-ball descent on a relaxed mask
    `m in [0, 1]^H`, `sum m = k`, against the exact quadratic surrogate of the next layer's pre-activation error
    on the training set, then the `k` largest entries (docs/theory.md, section 7, on data).

    **Arguments:**

    - `steps`: descent steps, an integer `>= 1` (default 300).
    - `learning_rate`: step size `> 0` of the preconditioned descent (default 0.5).
    """

    name: ClassVar[str] = "designed"


class DesignedEdges(_SurrogateDescent):
    """The designed edge mask ([`surrogate_edge_mask`][]): per unit, projected descent on a relaxed mask
    `m_i in [0, 1]^D`, `sum m_i = c`, against the unit's pre-activation error on the training inputs, then the
    `c` largest entries (docs/theory.md, section 7, on data).

    **Arguments:**

    - `steps`: descent steps, an integer `>= 1` (default 300).
    - `learning_rate`: step size `> 0` of the preconditioned descent (default 0.5).
    """

    name: ClassVar[str] = "designed"


class RefitEdges(eqx.Module):
    """Least-squares reweighting of edge pruning (the seed paper's `reweight_edge`): each unit's kept incoming
    weights are refit by ridge least squares so that they reproduce the unit's pre-activations on the training
    inputs ([`jaxprune.pruning.reweight_edges`][]). It has no fields; the ridge is an argument of
    [`prune_edges_network`][]."""

    name: ClassVar[str] = "ls"


_NODE_TYPES = (RandomNodes, ImportanceNodes, DPPNodes, DesignedNodes)
_EDGE_TYPES = (RandomEdges, MagnitudeEdges, DPPEdges, DesignedEdges)
_TYPES: dict[str, tuple[type, ...]] = {
    "node": _NODE_TYPES,
    "edge": _EDGE_TYPES,
    "node-reweight": (NoReweight, ActivationReweight),
    "edge-reweight": (NoRescale, RefitEdges),
}
_NAMES: dict[str, tuple[str, ...]] = {
    "node": NODE_METHODS, "edge": EDGE_METHODS, "node-reweight": REWEIGHTS, "edge-reweight": REWEIGHTS}
_LABELS = {"node": "node method", "edge": "edge method", "node-reweight": "reweight", "edge-reweight": "reweight"}


def _from_name(kind: str, value: str, beta: float, jitter: float, design_steps: int) -> eqx.Module:
    if kind == "node":
        if value.startswith("dpp-"):
            kernel = {"rbf": "rbf", "linear": "A"}[value.removeprefix("dpp-")]
            return DPPNodes(kernel=kernel, beta=beta, jitter=jitter)
        return {"random": RandomNodes, "importance": ImportanceNodes,
                "designed": lambda: DesignedNodes(steps=design_steps)}[value]()
    if kind == "edge":
        return {"random": RandomEdges, "magnitude": MagnitudeEdges, "dpp": DPPEdges,
                "designed": lambda: DesignedEdges(steps=design_steps)}[value]()
    if kind == "node-reweight":
        return NoReweight() if value == "none" else ActivationReweight()
    return NoRescale() if value == "none" else RefitEdges()


def _check_on_data(kind: str, value: eqx.Module, label: str) -> None:
    if kind == "node" and isinstance(value, DPPNodes) and value.kernel not in _DATA_NODE_KERNELS:
        raise ValueError(f"{label}: DPPNodes kernel {value.kernel!r} has no data version; use one of "
                         f"{', '.join(map(repr, _DATA_NODE_KERNELS))}")
    if kind == "node" and isinstance(value, ImportanceNodes) and value.score != "magnitude":
        raise ValueError(f"{label}: ImportanceNodes score {value.score!r} has no data version; use 'magnitude'")


def realdata_option(
    kind: str, value: Any, *, beta: float = 1.0, jitter: float = 1e-6, design_steps: int = 300
) -> eqx.Module:
    """The method object for `value` of `kind`: the one place where the real-data layer's strings become
    objects, and where an object is checked to have a data version.

    **Arguments:**

    - `kind`: `"node"` (node selector), `"edge"` (edge rule), `"node-reweight"` or `"edge-reweight"`.
    - `value`: an object of that kind, returned as is after the check (node: [`jaxprune.pruning.RandomNodes`][],
      [`jaxprune.pruning.ImportanceNodes`][] with score `magnitude`, [`jaxprune.pruning.DPPNodes`][] with
      kernel `rbf` or `A`, [`DesignedNodes`][]; edge: [`jaxprune.pruning.RandomEdges`][],
      [`jaxprune.pruning.MagnitudeEdges`][], [`jaxprune.pruning.DPPEdges`][], [`DesignedEdges`][];
      node-reweight: [`jaxprune.pruning.NoReweight`][], [`jaxprune.pruning.ActivationReweight`][] (fusing);
      edge-reweight: [`jaxprune.pruning.NoRescale`][], [`RefitEdges`][]), or one of its names: node
      [`NODE_METHODS`][], edge [`EDGE_METHODS`][], reweights [`REWEIGHTS`][] (`none`, `ls`).
    - `beta`, `jitter`: the kernel options given to `DPPNodes` for the names `dpp-rbf` and `dpp-linear`
      (`beta > 0` in units of the mean squared distance, `jitter >= 0` relative to the mean diagonal).
    - `design_steps`: descent steps given to [`DesignedNodes`][] / [`DesignedEdges`][] for the name `designed`.

    **Returns:** the object (an `equinox.Module`). A name or an object outside the table, or an object without
    a data version, is a one-line `ValueError`.

        realdata_option("node", "dpp-rbf", beta=2.0)  # DPPNodes(kernel="rbf", beta=2.0, jitter=1e-6)
    """
    kind = check_choice("kind", kind, OPTION_KINDS)
    label = _LABELS[kind]
    types = _TYPES[kind]
    if isinstance(value, types):
        _check_on_data(kind, value, label)
        return value
    if isinstance(value, eqx.Module):
        raise ValueError(f"{label} must be a {', '.join(t.__name__ for t in types)} or one of "
                         f"{', '.join(map(repr, _NAMES[kind]))}; got {type(value).__name__}")
    if not isinstance(value, str):
        raise ValueError(f"{label} must be one of {', '.join(map(repr, _NAMES[kind]))} or a method object; "
                         f"got {value!r}")
    check_choice(label, value, _NAMES[kind])
    return _from_name(kind, value, beta, jitter, design_steps)


def is_randomised(method: Any) -> bool:
    """Whether a node or edge method draws random masks (several per budget) rather than one deterministic mask.

    **Arguments:**

    - `method`: a node or edge method object (see [`realdata_option`][]).

    **Returns:** `True` for [`jaxprune.pruning.RandomNodes`][], [`jaxprune.pruning.DPPNodes`][],
    [`jaxprune.pruning.RandomEdges`][] and [`jaxprune.pruning.DPPEdges`][]; `False` for importance, magnitude
    and designed masks.
    """
    if not isinstance(method, (AbstractNodeSelector, AbstractEdgeRule, DesignedNodes, DesignedEdges)):
        raise ValueError(f"method must be a node or edge method object (see realdata_option); "
                         f"got {type(method).__name__}")
    return isinstance(method, (RandomNodes, DPPNodes, RandomEdges, DPPEdges))


def data_kernel_name(selector: DPPNodes) -> str:
    """The [`data_node_kernel`][] name (`rbf`, `linear`) of a `DPPNodes` kernel with a data version."""
    _check_on_data("node", selector, "node method")
    return _DATA_NODE_KERNELS[selector.kernel]


#: the (kind, name) pairs whose masks are random draws (several masks per budget)
RANDOMISED: frozenset[tuple[str, str]] = frozenset(
    (kind, name) for kind, names in (("node", NODE_METHODS), ("edge", EDGE_METHODS)) for name in names
    if is_randomised(realdata_option(kind, name)))
