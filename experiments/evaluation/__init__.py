"""Evaluation of a checkpoint: belief, scoring, in-context control, judge, probe readout, checks."""
