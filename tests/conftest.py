"""Shared fixtures. Tests that read the benchmark data (the ``bench_data`` fixture, marked
``bench_data``) skip, with the reason, when it is absent, and fail instead when
``SPADE_REQUIRE_BENCH_DATA=1`` (as in CI, which has the data: the official reproductions
are proven on every CI run)."""
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


REQUIRE = "SPADE_REQUIRE_BENCH_DATA"


def pytest_collection_modifyitems(items):
    for item in items:
        if "bench_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.bench_data)


@pytest.fixture(scope="session")
def bench_data():
    """Path of the benchmark data root; skips the test when it is missing (fails under
    ``SPADE_REQUIRE_BENCH_DATA=1``)."""
    root = benchmark_root()
    if not (root / "ista_net_plus").is_dir():
        message = f"benchmark data not found at {root} (set {ENV_VAR})"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{message}; {REQUIRE}=1 requires it")
        pytest.skip(message)
    return root
