"""Experiment configs: Python files whose `get_config(arg)` returns an `ml_collections.ConfigDict`.

Use them with `python train.py --config configs/<file>.py[:args] --workdir DIR`.
"""
