"""`archspec sweep` and `archspec runs`: many variants of one .arch file, checked first, trained in
parallel (local worker processes or Ray tasks), searched and pruned by Optuna, then compared.

space.py reads the swept values and checks every variant (no torch); study.py drives the Optuna
study; execute.py runs trials (worker.py is one trial's process); runs.py compares finished runs.
"""
