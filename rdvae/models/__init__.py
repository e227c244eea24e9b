"""Encoders, decoders, marginals and their composition into a model that
returns per-example rate and distortion."""
