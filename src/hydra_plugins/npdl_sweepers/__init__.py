"""npdl's Hydra sweepers: seeded random search and successive halving.

Select them with ``hydra/sweeper=npdl_random`` or ``hydra/sweeper=npdl_halving``;
they launch trials through whatever ``hydra/launcher`` is configured.
"""
