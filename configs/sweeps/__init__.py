"""Example sweep files for `python -m scripts.study.sweep`: methods x tasks x seeds x noise scales.

`tiny.py` runs in seconds on synthetic data; `glue_small.py` compares every method on the
small GLUE tasks. The MiniLM study's own sweeps are in `configs/study/`.
"""
