"""Experiments built on the library's public names: the seed paper's experiment and claims, sweeps, the
real-data run, and `reproduce`.
"""

from ._paper import PaperSetting as PaperSetting
from ._paper import PROTOCOLS as PROTOCOLS
from ._paper import train_students as train_students
from ._paper import normalise_rows as normalise_rows
from ._paper import simulation_check as simulation_check
from ._paper_gap import gap_rows as gap_rows
from ._paper_gap import gap_vs_N as gap_vs_N
from ._paper_theory import idealised_rows as idealised_rows
from ._paper_theory import lean_rows as lean_rows
from ._paper_theory import winner_map as winner_map
from ._paper_theory import ode_student as ode_student
from ._paper_theory import theory_winner_map as theory_winner_map
from ._claims import Claim as Claim
from ._claims import CLAIMS as CLAIMS
from ._claims import OURS as OURS
from ._claims import claim_by_id as claim_by_id
from ._claims import outcome as outcome
from ._claims import verdict as verdict
from ._claims import decide as decide
from ._paper_claims import decide_claims as decide_claims
from ._paper_claims import claims_from_rows as claims_from_rows
from ._sweep_spec import KINDS as KINDS
from ._sweep_spec import AXES as AXES
from ._sweep_spec import COLUMNS as COLUMNS
from ._sweep_spec import load_spec as load_spec
from ._sweep_spec import validate_spec as validate_spec
from ._sweep_spec import expand_grid as expand_grid
from ._sweep_spec import sweep_options as sweep_options
from ._sweep import sweep_arrays as sweep_arrays
from ._sweep import run_grid as run_grid
from ._sweep import run_batched as run_batched
from ._sweep import run_sweep as run_sweep
from ._sweep import default_batch_size as default_batch_size
from ._sweep_store import read_results as read_results
from ._sweep_figure import plot_results as plot_results
from ._realdata_summary import RealDataResult as RealDataResult
from ._realdata import run_realdata as run_realdata
from ._realdata_summary import summarise as summarise
from ._realdata_summary import realdata_verdicts as realdata_verdicts
from ._realdata_summary import format_table as format_table
from ._realdata_summary import plot_realdata as plot_realdata
from ._realdata_summary import paired_cells as paired_cells
from ._realdata_summary import c8_cells as c8_cells
from ._realdata_summary import verdict_lines as verdict_lines
from ._realdata_summary import C8_SIDES as C8_SIDES
from ._reproduce import PARTS as PARTS
from ._reproduce import reproduce_settings as reproduce_settings
from ._reproduce import reproduce as reproduce
from ._reproduce import ReproduceResult as ReproduceResult
from ._reproduce import run_part as run_part
from ._reproduce import build_report as build_report
from ._design_compare import compare_network as compare_network
from ._design_compare import compare_population as compare_population
from ._design_compare import compare_training as compare_training
from ._design_compare import design_verdict as design_verdict
from ._design_compare import format_verdict as format_verdict

__all__ = [
    "AXES",
    "C8_SIDES",
    "CLAIMS",
    "COLUMNS",
    "Claim",
    "KINDS",
    "OURS",
    "PARTS",
    "PROTOCOLS",
    "PaperSetting",
    "RealDataResult",
    "ReproduceResult",
    "build_report",
    "c8_cells",
    "claim_by_id",
    "claims_from_rows",
    "compare_network",
    "compare_population",
    "compare_training",
    "decide",
    "default_batch_size",
    "decide_claims",
    "design_verdict",
    "expand_grid",
    "format_table",
    "format_verdict",
    "gap_rows",
    "gap_vs_N",
    "idealised_rows",
    "lean_rows",
    "load_spec",
    "normalise_rows",
    "ode_student",
    "outcome",
    "paired_cells",
    "plot_realdata",
    "plot_results",
    "read_results",
    "realdata_verdicts",
    "reproduce",
    "reproduce_settings",
    "run_batched",
    "run_grid",
    "run_part",
    "run_realdata",
    "run_sweep",
    "simulation_check",
    "summarise",
    "sweep_arrays",
    "sweep_options",
    "theory_winner_map",
    "train_students",
    "validate_spec",
    "verdict",
    "verdict_lines",
    "winner_map",
]
