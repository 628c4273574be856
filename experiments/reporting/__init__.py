"""Figures and the HTML report, built from a run's tables."""
