"""Shared helpers of the robustness tests: tiny seeded systems and models, and a hash of every
byte under a path (to prove a refused write changed nothing on disk)."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pytest
import torch

from hyenamd import System


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tree_hash(*paths: pathlib.Path) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or directories), keyed by path; lock and claim
    files of live writers excluded (they are not data)."""
    out = {}
    for root in paths:
        root = pathlib.Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if p.name.endswith(".lock") or ".claims" in p.parts[-2:-1]:
                continue
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def tiny_system(n: int = 4, *, periodic: bool = False, seed: int = 0) -> System:
    """``n`` H/O atoms 1.5 Å apart on a line (float64), in a 10 Å cubic box when periodic."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((n, 3))
    pos[:, 0] = 1.5 * np.arange(n)
    pos += rng.normal(0, 0.01, pos.shape)
    species = [1 if k % 2 else 8 for k in range(n)]
    cell = np.eye(3) * 10.0 if periodic else None
    return System(torch.tensor(pos), torch.tensor(species), cell=cell, pbc=periodic)


def tiny_model_cfg():
    from hyenamd.surrogate import GHyenaConfig

    return GHyenaConfig(
        species=(1, 8), cutoff=3.0, n_scalar=8, n_vector=2, n_rbf=4, pattern=("local", "global"),
        dtype="float64", seed=0,
    )  # fmt: skip


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> pathlib.Path:
    """A tiny float64 G-Hyena (H, O) saved with save_model."""
    from hyenamd.surrogate import GHyena, save_model

    path = tmp_path_factory.mktemp("robust_models") / "tiny.safetensors"
    save_model(GHyena(tiny_model_cfg()), path, note="robustness tests")
    return path
