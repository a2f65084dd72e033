"""Evidence: what turns runs into results a researcher can trust and compare.

``results`` owns results.json (one writer, one reader) and the per-speaker intervals; ``plots``
draws confusion matrices and attribute scatters; ``grid`` the cross-corpus grids of a
multirun; ``aggregate`` the mean and spread over seeds or folds; ``report`` a report.md /
report.html over many runs. Imports the learning core only: never serving, never a running
experiment.
"""
