"""``hyenamd demo``: what the project can do end to end, on a laptop CPU in minutes.

Stage 1 (foundation): build a large periodic liquid-like system, validate it through the
data contract, and compute its neighbour list and a Verlet-list step, printing timings.
Later stages (reference MD, training, Ray rollouts, validation) extend this module.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from hyenamd.system import System

__all__ = ["DemoConfig", "liquid_like_system", "run_demo"]


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of ``hyenamd demo`` (``configs/demo.yaml``).

    n_atoms: size of the periodic system built in the foundation stage.
    density: number density, atoms/Å³ (0.1 ≈ liquid water's atom density).
    cutoff: neighbour-list cutoff, Å.  skin: Verlet skin, Å.  seed: RNG seed.
    """

    n_atoms: int = 100_000
    density: float = 0.1
    cutoff: float = 5.0
    skin: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_atoms < 1 or self.density <= 0 or self.cutoff <= 0 or self.skin < 0:
            raise ValueError("need n_atoms >= 1, density > 0, cutoff > 0, skin >= 0")


def liquid_like_system(
    n_atoms: int,
    density: float = 0.1,
    *,
    species: int = 18,
    seed: int = 0,
    triclinic: bool = False,
    dtype: torch.dtype = torch.float32,
) -> System:
    """A periodic box of ``n_atoms`` at ``density`` atoms/Å³: a rattled simple-cubic lattice.

    The lattice is rattled by 0.1 of its spacing, so no two atoms overlap (as in a liquid).
    ``triclinic=True`` shears the cell (positions follow), a test of the triclinic paths.
    """
    rng = np.random.default_rng(seed)
    m = int(np.ceil(n_atoms ** (1 / 3)))
    length = (n_atoms / density) ** (1 / 3)
    a = length / m
    grid = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    frac = (grid + 0.5 + rng.normal(0, 0.1, grid.shape)) / m
    cell = np.eye(3) * length
    if triclinic:
        cell[1, 0] = 0.2 * length
        cell[2, 0] = -0.1 * length
        cell[2, 1] = 0.15 * length
    del a
    return System(
        positions=torch.tensor(frac @ cell, dtype=dtype),
        species=torch.full((n_atoms,), species, dtype=torch.int64),
        cell=torch.tensor(cell, dtype=dtype),
        pbc=True,
    )


def run_demo(cfg: DemoConfig = DemoConfig(), *, echo=print) -> dict[str, float]:
    """Run the demo stages that exist; returns the timings (s) and counts it printed."""
    from hyenamd.geometry import VerletList, neighbor_list, wrap_positions

    out: dict[str, float] = {}
    echo(f"hyenamd demo — stage 1: a {cfg.n_atoms:,}-atom periodic system and its neighbour list")
    t = time.perf_counter()
    system = liquid_like_system(cfg.n_atoms, cfg.density, seed=cfg.seed, triclinic=True)
    out["build_s"] = time.perf_counter() - t
    echo(f"  built + validated  {system!r}  in {out['build_s']:.2f} s")
    echo(
        f"  cell volume        {system.volume:,.0f} Å³  (density {cfg.n_atoms / system.volume:.4f} atoms/Å³)"
    )

    t = time.perf_counter()
    nb = neighbor_list(system.positions, system.cell, system.pbc, cfg.cutoff, full=False)
    out["neighbor_list_s"] = time.perf_counter() - t
    out["pairs"] = len(nb)
    echo(
        f"  neighbour list     {len(nb):,} pairs within {cfg.cutoff} Å "
        f"({2 * len(nb) / cfg.n_atoms:.1f} neighbours/atom) in {out['neighbor_list_s']:.2f} s (vesin)"
    )

    vl = VerletList(cfg.cutoff, cfg.skin, full=False)
    t = time.perf_counter()
    vl(system.positions, system.cell, system.pbc)
    out["verlet_build_s"] = time.perf_counter() - t
    rng = torch.Generator().manual_seed(cfg.seed)
    x = system.positions + 0.05 * torch.randn(system.positions.shape, generator=rng, dtype=system.dtype)
    x = wrap_positions(x, system.cell, system.pbc)
    t = time.perf_counter()
    nb2 = vl(x, system.cell, system.pbc)
    out["verlet_reuse_s"] = time.perf_counter() - t
    echo(
        f"  Verlet list        build {out['verlet_build_s']:.2f} s (cutoff + {cfg.skin} Å skin); "
        f"reuse after a small move + re-wrap {out['verlet_reuse_s']:.2f} s, "
        f"{len(nb2):,} pairs, rebuilds {vl.n_builds}"
    )
    return out
