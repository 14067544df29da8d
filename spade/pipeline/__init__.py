"""The end-to-end pipeline: models -> prune sweep -> fine-tuning strategies -> evaluate ->
profile -> report, driven by a TOML recipe (see :mod:`spade.pipeline.recipe`)."""
from .recipe import read_pipeline_recipe
from .runner import Pipeline, run_pipeline

__all__ = ["read_pipeline_recipe", "Pipeline", "run_pipeline"]
