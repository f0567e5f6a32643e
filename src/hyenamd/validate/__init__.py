"""Comparisons of surrogate trajectories against reference MD: metrics, plots, reports."""
