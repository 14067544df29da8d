"""SPADE: structured pruning, fine-tuning and speed/quality reports for unrolled networks."""
__version__ = "0.1.0"


def __getattr__(name):
    if name == "prune":  # spade.prune(model, example_inputs, ...): the callable pruning package
        import importlib

        return importlib.import_module(".prune", __name__)
    if name in ("Adapter", "load_pruned", "save_pruned", "load_own"):  # a user's own network: adapt, save, reload
        import importlib

        home = ".models" if name == "Adapter" else ".prune"
        return getattr(importlib.import_module(home, __name__), name)
    raise AttributeError(f"module 'spade' has no attribute '{name}'")
