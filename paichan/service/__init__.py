"""User-facing surfaces: command line, Gantt chart (HTTP API to come)."""
