"""npdl's Hydra sweepers: grid search, seeded random search and successive halving.

Select them with ``hydra/sweeper=npdl_grid``, ``hydra/sweeper=npdl_random`` or
``hydra/sweeper=npdl_halving``;
they launch trials through whatever ``hydra/launcher`` is configured.
"""
