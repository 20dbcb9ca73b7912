"""PATS ablations: each file imports the base GLUE config and changes a few fields."""
