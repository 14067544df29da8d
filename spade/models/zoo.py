"""Importing this module registers every model family of the zoo."""
from . import ista_net_plus  # noqa: F401
from . import coast  # noqa: F401
