"""Importing this module registers every model family of the zoo."""
from . import coast, deq, du, hqs_sr, ista_net_plus, lista, varnet  # noqa: F401
