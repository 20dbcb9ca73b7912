"""Sweep configs for `scripts/sweep.py`: grids of methods x tasks x seeds x noise scales."""
