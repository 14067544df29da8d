"""Sub-commands of the ``spade`` command line (one module each)."""
