"""Experiment configs: `get_config()` files for `--config=configs/NAME.py`.

Files import their siblings absolutely (`from configs import default`); the
entry points in `experiments/` make `configs` importable from any working
directory (see experiments/__init__.py).
"""
