"""Shared fixtures for the store tests: tiny seeded systems and frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.system import Labels, System


def _system(
    n: int = 7, dtype=torch.float64, cell: bool = True, labels: bool = True, order: bool = True, seed=0
):
    g = torch.Generator().manual_seed(seed)
    box = 6.0
    lab = None
    if labels:
        lab = Labels(
            residue_index=torch.arange(n) // 3,
            chain_index=torch.zeros(n, dtype=torch.int64),
            atom_names=tuple(f"C{k}" for k in range(n)),
            residue_names=tuple("ALA" if k // 3 % 2 == 0 else "GLY" for k in range(n)),
        )
    return System(
        positions=torch.rand(n, 3, generator=g, dtype=dtype) * box,
        species=torch.tensor([1, 6, 8, 7, 18, 1, 6] * (n // 7 + 1))[:n],
        cell=torch.tensor([[box, 0, 0], [0.5, box, 0], [0.2, 0.3, box]], dtype=dtype) if cell else None,
        pbc=cell,
        labels=lab,
        order=torch.randperm(n, generator=g) if order else None,
    )


def _frames(n: int, k: int, dtype=np.float64, seed: int = 1, cell: bool = True):
    """``k`` frames of random data: list of dicts ready for ``store.append(**d)``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        d = {
            "positions": (rng.random((n, 3)) * 6).astype(dtype),
            "velocities": (rng.normal(size=(n, 3)) * 0.01).astype(dtype),
            "forces": rng.normal(size=(n, 3)).astype(dtype),
            "step": 10 * i + 3,
            "time": 0.5 * (10 * i + 3),
            "potential_energy": float(rng.normal()),
            "temperature": float(300 + rng.normal()),
        }
        if cell:
            c = np.diag(6.0 + rng.random(3) * 0.1) + np.triu(rng.random((3, 3)) * 0.1, 1).T
            d["cell"] = c.astype(dtype)
        out.append(d)
    return out


@pytest.fixture
def make_system():
    return _system


@pytest.fixture
def make_frames():
    return _frames
