"""npdl's version, written into model files and run-store entries (and ``npdl.__version__``).

Its own module so that the modules writing it need not import the package's
``__init__``, which imports them.
"""

__version__ = "0.2.0"
