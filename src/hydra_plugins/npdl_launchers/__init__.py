"""npdl's launchers: Hydra's Ray launcher, always with Ray's token authentication.

``hydra/launcher=ray_cluster`` and ``ray_local`` (``conf/hydra/launcher/``) select them;
see :mod:`.ray_token`.
"""
