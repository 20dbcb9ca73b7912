"""Benchmarks of pats_jax, run from the repository root as `python -m scripts.bench.<name>`."""
