"""npdl's Hydra sweepers: grid, seeded random, successive halving, Hyperband, TPE and
BOHB, all over one run store and one objective.

Select them with ``hydra/sweeper=npdl_grid``, ``npdl_random``, ``npdl_halving``,
``npdl_hyperband``, ``npdl_tpe`` or ``npdl_bohb``; they launch trials through whatever
``hydra/launcher`` is configured.
"""
