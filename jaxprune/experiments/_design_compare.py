"""Design against the baselines (docs/theory.md, section 7): comparison tables of the designed masks, keep rules,
subset distributions and through-training subsets beside random / importance / magnitude / DPP pruning at the
same budget, with finite-N and fresh-input checks, and the verdict per budget. Experiments built on the public
names of `jaxprune`, `jaxprune.design` and `jaxprune.pruning`.

Every row is a dict `{keep or k, kind, method, role, error, setting, ...}`; `role` is "designed", "baseline",
"reference" (brute-force optimum, unpruned network: not competitors) and `error` the exact noise-free eps_g.
Where a concrete network is given, `sim` is the finite-N check (exact eps_g of the concrete pruned network from
its overlaps; for the training level after finite-N SGD) and `half_mse` the half test MSE of the pruned network
on fresh noise-free inputs ([`jaxprune.fresh_test_mse`][] / 2 with `sigma = 0`: an unbiased Monte Carlo estimate
of its eps_g, on the same inputs for every row of a table). `design_verdict` says, per budget, whether the best
designed row beats the best baseline.

Every table is built from a few compiled programs shared by its budgets: the design steps, one batched exact
evaluation of all concrete masks of a budget, one of all unit subsets (every reweighting at once), and the random
keys of the whole table drawn in one program (the same keys as drawing them one by one).

Modules: `_design_compare_common` (node enumeration tables and baselines, baseline edge masks, the half test
MSE), `_design_compare_network`, `_design_compare_population`, `_design_compare_training` (one table each) and
`_design_compare_verdict`; this module gathers their public names.
"""

from ._design_compare_network import compare_network as compare_network
from ._design_compare_population import compare_population as compare_population
from ._design_compare_training import compare_training as compare_training
from ._design_compare_verdict import design_verdict as design_verdict
from ._design_compare_verdict import format_verdict as format_verdict

__all__ = ["compare_network", "compare_population", "compare_training", "design_verdict", "format_verdict"]
