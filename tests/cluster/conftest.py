"""Cluster tests: one torch thread (bit-identity across processes), helpers on sys.path."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, os.path.dirname(__file__))  # cluster_helpers (importlib import mode)


@pytest.fixture(autouse=True)
def _one_thread():
    """Bit-identity across processes: the same (single) torch thread everywhere."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
