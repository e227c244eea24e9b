"""Evaluation: the traced evaluation steps and the measures of a split."""
