"""``twinpass reproduce``: the paper's experiments as one resumable, parallel command.

:mod:`.experiments` lists every configuration (task x rule x N x seed) per scale,
:mod:`.runner` trains them in worker processes and appends each result to a JSON-lines
file, :mod:`.memory` measures peak memory against sequence length in fresh processes,
:mod:`.claims` decides from the results whether each of the paper's claims held,
:mod:`.report` writes ``report.md`` and :mod:`.figures` the PNG figures.
"""

from .experiments import EXPERIMENTS, RULES, SCALES, RunSpec, plan
from .runner import load_results, run_all, run_spec

__all__ = [
    "EXPERIMENTS",
    "RULES",
    "SCALES",
    "RunSpec",
    "load_results",
    "plan",
    "run_all",
    "run_spec",
]
