"""Experiments built on the library's public names: the seed paper's experiment and claims, sweeps, the
real-data run, and `reproduce`.
"""

from ._paper import PaperSetting as PaperSetting
from ._paper import train_students as train_students
from ._paper import simulation_check as simulation_check
from ._paper import gap_rows as gap_rows
from ._paper import gap_vs_N as gap_vs_N
from ._paper import claims_from_rows as claims_from_rows
from ._paper import winner_map as winner_map
from ._paper import ode_student as ode_student
from ._paper import theory_winner_map as theory_winner_map
from ._sweep import KINDS as KINDS
from ._sweep import AXES as AXES
from ._sweep import load_spec as load_spec
from ._sweep import validate_spec as validate_spec
from ._sweep import expand_grid as expand_grid
from ._sweep import sweep_arrays as sweep_arrays
from ._sweep import run_grid as run_grid
from ._sweep import run_batched as run_batched
from ._sweep import run_sweep as run_sweep
from ._sweep import read_results as read_results
from ._sweep import plot_results as plot_results
from ._realdata import RealDataResult as RealDataResult
from ._realdata import run_realdata as run_realdata
from ._realdata import summarise as summarise
from ._realdata import realdata_verdicts as realdata_verdicts
from ._realdata import format_table as format_table
from ._reproduce import PARTS as PARTS
from ._reproduce import reproduce_settings as reproduce_settings
from ._reproduce import reproduce as reproduce
from ._reproduce import ReproduceResult as ReproduceResult
from ._reproduce import run_part as run_part
from ._reproduce import build_report as build_report
