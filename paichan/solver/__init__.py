"""CP-SAT scheduling core: model, heuristics, decomposition, instance readers."""

from paichan.solver.api import SolutionEvent, SolveParams, SolveResult, SolveStatus
from paichan.solver.solve import solve

__all__ = ["SolutionEvent", "SolveParams", "SolveResult", "SolveStatus", "solve"]
