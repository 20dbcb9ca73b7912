"""The GLUE study of PATS on all-MiniLM-L6-v2: sweep runner, choice rules, tables and plots.

Run from the repository root (`docs/glue_minilm/README.md` has the study and its commands):

  python -m scripts.study.sweep --sweep configs/sweeps/tiny.py --root workdirs/tiny --dry_run
  python -m scripts.study.aggregate --runs docs/glue_minilm/runs_core.jsonl --out workdirs/core
  python -m scripts.study.report --archive docs/glue_minilm --out docs/glue_minilm
"""
