"""Compatibility shim: the design layer now lives in `_loop`, `_network`, `_node`, `_rule`, `_subsets` and
`_training` (library), and the comparisons against the baselines in `jaxprune.experiments._design_compare`.
This module re-exports the old names until every caller imports them from their new homes.
"""

from ._loop import *  # noqa: F401,F403
from ._loop import __all__ as _loop_all
from ._loop import _adam, _design_step, _draw, _hyper_arrays, _top_mask, _top_mask_np  # noqa: F401
from ._network import *  # noqa: F401,F403
from ._network import __all__ as _network_all
from ._network import _EdgeContext  # noqa: F401
from ._node import *  # noqa: F401,F403
from ._node import __all__ as _node_all
from ._node import _NODE_REWEIGHTS, _node_eval_rows, _node_mask_init, _relaxed_node_v  # noqa: F401
from ._rule import *  # noqa: F401,F403
from ._rule import __all__ as _rule_all
from ._rule import _GRID_W, _GRID_Z, _kernels_fit, _solve_shift  # noqa: F401
from ._subsets import *  # noqa: F401,F403
from ._subsets import __all__ as _subsets_all
from ._training import *  # noqa: F401,F403
from ._training import __all__ as _training_all
from ._training import _MODE_RELAXED, _pruned_start, _training_problem  # noqa: F401


def __getattr__(name):
    # The comparison tables are experiments (they import the library, not the other way round): loaded on
    # first use, so that importing the design layer never imports `jaxprune.experiments`.
    if name in ("compare_network", "compare_population", "compare_training", "design_verdict", "format_verdict"):
        import importlib

        return getattr(importlib.import_module("jaxprune.experiments._design_compare"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_loop_all, *_network_all, *_node_all, *_rule_all, *_subsets_all, *_training_all]
