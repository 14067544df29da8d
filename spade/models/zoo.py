"""Importing this module registers every model family of the zoo."""
from . import ista_net_plus  # noqa: F401
from . import varnet  # noqa: F401
from . import du  # noqa: F401
from . import deq  # noqa: F401
from . import hqs_sr  # noqa: F401
from . import lista  # noqa: F401
