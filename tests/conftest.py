"""Shared fixtures. Tests that read the benchmark data skip, with the reason, when it is absent."""
from __future__ import annotations

import os

# idle OpenMP threads sleep instead of spinning: keeps tests fast on a busy machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from spade.data.sources import ENV_VAR, benchmark_root


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tests measure behaviour, not speed; one thread avoids oversubscription
    yield


@pytest.fixture(scope="session")
def bench_data():
    """Path of the benchmark data root; skips the test when it is missing."""
    root = benchmark_root()
    if not (root / "ista_net_plus").is_dir():
        pytest.skip(f"benchmark data not found at {root} (set {ENV_VAR})")
    return root
