"""The GLUE study of PATS on all-MiniLM-L6-v2: its protocol (`minilm.py`) and its sweeps.

`tune.py` and `tune_options.py` choose PATS's noise scale and options on two dev sets;
`core.py`, `baselines.py` and `sst2.py` compare PATS with plain fine-tuning and the baselines
at that choice. `scripts/study/run_study.sh` runs them in order; `docs/glue_minilm/README.md`
reports the results.
"""
