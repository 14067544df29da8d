"""File-level jobs: the library functions behind every ``spade`` command and recipe stage.

Each job is a settings dataclass (validated when built, before anything is written) and
a function that reads model files, calls the library (:func:`spade.prune.prune`,
:func:`spade.finetune.finetune`, ...) and writes one model file. The CLI commands and
the recipe pipeline are thin harnesses over these functions; neither goes through the
other (the fastMRI split of library and harness).
"""
from .finetuning import FinetuneJob, finetune_file
from .importing import ImportJob, import_file
from .latency_budget import LatencyTarget
from .pruning import PruneJob, prune_file
from .training import TrainJob, train_recipe

__all__ = ["FinetuneJob", "finetune_file", "ImportJob", "import_file", "LatencyTarget", "PruneJob", "prune_file", "TrainJob",
           "train_recipe"]
