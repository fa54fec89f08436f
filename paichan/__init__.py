"""paichan: multi-agent production scheduling on a CP-SAT core."""

__version__ = "0.1.0"
