"""Pruning choices as small immutable objects instead of strings (docs/theory.md, section 6), as diffrax and
optimistix pass solver objects: node selectors (which `k` units to keep), node reweighting rules (the new second
layer), edge rules (which weights to keep) and edge rescalings. Each validates its options once, in
`__check_init__`; [`pruning_option`][] maps the strings of the CLI, the experiments and the older string
arguments onto them (the one place where the vocabularies meet).

    jp.pruning.expected_node_error(state, 3, method=jp.pruning.DPPNodes(kernel="rbf", beta=2.0),
                                   reweight=jp.pruning.ActivationReweight())
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx

from .._checks import check_choice, check_float

__all__ = [
    "AbstractNodeSelector",
    "RandomNodes",
    "ImportanceNodes",
    "DPPNodes",
    "AbstractReweight",
    "NoReweight",
    "PreactivationReweight",
    "ActivationReweight",
    "OptimalReweight",
    "AbstractEdgeRule",
    "RandomEdges",
    "MagnitudeEdges",
    "DPPEdges",
    "AbstractRescale",
    "NoRescale",
    "InverseKeepRescale",
    "OptimalRescale",
    "pruning_option",
    "OPTION_KINDS",
]

#: the kinds of choice [`pruning_option`][] maps strings onto
OPTION_KINDS = ("selector", "reweight", "edge", "rescale")
#: node-selector k-DPP kernels ([`DPPNodes`][])
DPP_KERNELS = ("Q", "A", "rbf")
#: importance scores ([`ImportanceNodes`][])
IMPORTANCE_SCORES = ("magnitude", "v")


# --------------------------------------------------------------------------------------------------
# Node selectors (docs/theory.md 6.1, "Subset distributions")
# --------------------------------------------------------------------------------------------------


class AbstractNodeSelector(eqx.Module):
    """Which `k` of the `K` student units node pruning keeps: a distribution over size-`k` subsets."""

    name: ClassVar[str]


class RandomNodes(AbstractNodeSelector):
    """Uniform over the `C(K, k)` subsets."""

    name: ClassVar[str] = "random"


class ImportanceNodes(AbstractNodeSelector):
    """The point mass on the `k` units of largest score (ties: the lower index); docs/theory.md section 6.1.

    **Arguments:**

    - `score`: `"magnitude"` (default) `|v_i| sqrt(Q_ii)`, the RMS of the unit's output contribution
      `v_i lambda_i`; `"v"`: the seed paper's `v_i` (signed second-layer weight; on row-normalised students
      `Q_ii = 1`). Another value is a `ValueError`.
    """

    score: str = "magnitude"
    name: ClassVar[str] = "importance"

    def __check_init__(self):
        check_choice("score", self.score, IMPORTANCE_SCORES)


class DPPNodes(AbstractNodeSelector):
    """The k-DPP `P(S) = det(L_S) / e_k(L)` with kernel `L + jitter I` (docs/theory.md section 6.1).

    **Arguments:**

    - `kernel`: `"Q"` (`L = Q`, the seed paper's; default), `"A"` (activation covariance) or `"rbf"`
      (`exp(-beta E[(g_i - g_k)^2])`), see [`kernel_matrix`][].
    - `beta`: the RBF kernel's inverse width, `> 0`.
    - `jitter`: the ridge added to `L`, `>= 0`.

    Invalid values raise `ValueError` naming the field.
    """

    kernel: str = "Q"
    beta: float = 1.0
    jitter: float = 0.0
    name: ClassVar[str] = "dpp"

    def __check_init__(self):
        check_choice("kernel", self.kernel, DPP_KERNELS)
        check_float("beta", self.beta, 0.0, lo_open=True)
        check_float("jitter", self.jitter, 0.0)


# --------------------------------------------------------------------------------------------------
# Node reweighting rules (docs/theory.md 6.1)
# --------------------------------------------------------------------------------------------------


class AbstractReweight(eqx.Module):
    """The second layer `v'_S` of the kept units."""

    name: ClassVar[str]


class NoReweight(AbstractReweight):
    """`v'_S = v_S`."""

    name: ClassVar[str] = "none"


class PreactivationReweight(AbstractReweight):
    """`v'_S = v_S + Q_SS^{-1} Q_{S,Sc} v_Sc` (least squares on pre-activations; the seed paper's code)."""

    name: ClassVar[str] = "preactivation"


class ActivationReweight(AbstractReweight):
    """`v'_S = v_S + A_SS^{-1} A_{S,Sc} v_Sc` (fusing, Mariet & Sra: least squares on activations)."""

    name: ClassVar[str] = "activation"


class OptimalReweight(AbstractReweight):
    """`v'_S = A_SS^{-1} B_S v*`, the second layer minimising `eps_g` for the kept first layer."""

    name: ClassVar[str] = "optimal"


# --------------------------------------------------------------------------------------------------
# Edge rules and rescalings (docs/theory.md 6.2)
# --------------------------------------------------------------------------------------------------


class AbstractEdgeRule(eqx.Module):
    """Which first-layer weights edge pruning keeps (a fraction `p` of each unit's incoming weights)."""

    name: ClassVar[str]


class RandomEdges(AbstractEdgeRule):
    """Each weight kept independently with probability `p`."""

    name: ClassVar[str] = "random"


class MagnitudeEdges(AbstractEdgeRule):
    """The weights of largest `|w_ij|` of each unit (threshold `P(|w_i| > t_i) = p`)."""

    name: ClassVar[str] = "magnitude"


class DPPEdges(AbstractEdgeRule):
    """The seed paper's per-unit edge k-DPP; for iid inputs in the large-N limit a soft magnitude rule
    `pi(w) = mu w^2 / (1 + mu w^2)`."""

    name: ClassVar[str] = "dpp"


class AbstractRescale(eqx.Module):
    """Per-unit rescale `c_i` of the kept weights, `w'_i = c_i (m_i * w_i)`."""

    name: ClassVar[str]


class NoRescale(AbstractRescale):
    """`c = 1`."""

    name: ClassVar[str] = "none"


class InverseKeepRescale(AbstractRescale):
    """`c = 1 / p` (keeps `E[w'] = w`)."""

    name: ClassVar[str] = "inverse-keep"


class OptimalRescale(AbstractRescale):
    """The per-unit `c` minimising `eps_g` (never worse than `1` or `1/p`)."""

    name: ClassVar[str] = "optimal"


# --------------------------------------------------------------------------------------------------
# Strings -> objects, in one place
# --------------------------------------------------------------------------------------------------

_ABSTRACT = {
    "selector": AbstractNodeSelector,
    "reweight": AbstractReweight,
    "edge": AbstractEdgeRule,
    "rescale": AbstractRescale,
}

_NAMES: dict[str, dict[str, type]] = {
    "selector": {
        "random": RandomNodes, "random-node": RandomNodes,
        "importance": ImportanceNodes, "importance-node": ImportanceNodes,
        "dpp": DPPNodes, "dpp-node": DPPNodes,
    },
    "reweight": {
        "none": NoReweight, "preactivation": PreactivationReweight, "activation": ActivationReweight,
        "fusing": ActivationReweight, "optimal": OptimalReweight,
    },
    "edge": {
        "random": RandomEdges, "random-edge": RandomEdges, "magnitude": MagnitudeEdges,
        "magnitude-edge": MagnitudeEdges, "dpp": DPPEdges, "dpp-edge": DPPEdges,
    },
    "rescale": {
        "none": NoRescale, "inverse-keep": InverseKeepRescale, "1/p": InverseKeepRescale,
        "optimal": OptimalRescale,
    },
}


def pruning_option(kind: str, value, *, name: str | None = None, **options):
    """The object for `value` of `kind` (`"selector"`, `"reweight"`, `"edge"` or `"rescale"`).

    `value` is an object of that kind (returned as is; `options` must then be empty) or one of its names:
    selectors `random[-node]`, `importance[-node]`, `dpp[-node]`; reweights `none`, `preactivation`,
    `activation` (= `fusing`), `optimal`; edge rules `random[-edge]`, `magnitude[-edge]`, `dpp[-edge]`;
    rescalings `none`, `inverse-keep` (= `1/p`), `optimal`. `options` go to the constructor (e.g.
    `kernel`, `beta`, `jitter` of [`DPPNodes`][], `score` of [`ImportanceNodes`][]); options that the chosen
    class does not take are ignored, so one set of CLI flags serves every method.

    **Arguments:**

    - `kind`: `"selector"`, `"reweight"`, `"edge"` or `"rescale"` (`OPTION_KINDS`).
    - `value`: an object of that kind, or one of its names (above).
    - `name`: the argument named in error messages (default: `kind`).
    - `options`: keyword options for the constructor (ignored where the class does not take them).

    **Returns:**

    An instance of a final subclass of [`AbstractNodeSelector`][], [`AbstractReweight`][],
    [`AbstractEdgeRule`][] or [`AbstractRescale`][]; a `ValueError` naming `name` for an unknown value.

    Example: `pruning_option("selector", "dpp", kernel="rbf", beta=2.0)` is `DPPNodes(kernel="rbf", beta=2.0)`.
    """
    kind = check_choice("kind", kind, OPTION_KINDS)
    base = _ABSTRACT[kind]
    label = kind if name is None else name
    if isinstance(value, base):
        return value
    if isinstance(value, eqx.Module):
        raise ValueError(f"{label} must be a {base.__name__} or one of {sorted(_NAMES[kind])}; "
                         f"got {type(value).__name__}")
    cls = _NAMES[kind].get(value) if isinstance(value, str) else None
    if cls is None:
        raise ValueError(f"{label} must be one of {', '.join(map(repr, sorted(_NAMES[kind])))}; got {value!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in fields})
