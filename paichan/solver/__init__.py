"""CP-SAT scheduling core: model, heuristics, decomposition, instance readers."""

from paichan.solver.api import SolutionEvent, SolveParams, SolveResult, SolveStatus
from paichan.solver.solve import solve
from paichan.solver.verdict import ModelVerdict, model_verdict

__all__ = ["ModelVerdict", "SolutionEvent", "SolveParams", "SolveResult", "SolveStatus", "model_verdict", "solve"]
