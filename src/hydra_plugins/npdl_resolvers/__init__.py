"""OmegaConf resolvers that ``conf/`` uses, registered wherever Hydra scans its plugins
(the stages, ``hydra.compose`` in tests, and DVC when it composes ``params.yaml``).

``${npdl.shortcut:${lr},0.001}``: the top-level shortcut's value if it is set (not
null), else the default. ``conf/`` writes ``optimizer.lr`` and ``model.reg`` this
way, so ``lr=X`` and ``optimizer.lr=X`` set the same value and the composed config
holds it once: a shortcut left null says nothing.
"""

from omegaconf import OmegaConf


def shortcut(value, default):
    """``value`` unless it is None, else ``default``."""
    return default if value is None else value


OmegaConf.register_new_resolver("npdl.shortcut", shortcut, replace=True)
