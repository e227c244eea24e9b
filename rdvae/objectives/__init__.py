"""Losses, bounds and exact enumeration: pure functions of rate and
distortion terms."""
