"""hyenamd as an ASE calculator: ``atoms.calc = HyenaCalculator.from_checkpoint(path)``.

The model here is a *randomly initialised* small G-Hyena saved with ``save_model`` (this example
trains nothing): the numbers it prints are not physical, but every call is the real one. Swap
``path`` for a trained checkpoint to get real MD.

    python examples/ase_calculator.py
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from hyenamd.engine import HyenaCalculator
from hyenamd.surrogate import GHyena, GHyenaConfig, save_model
from hyenamd.workflows.demo import liquid_like_system


def main() -> None:
    cfg = GHyenaConfig(species=(1, 8), cutoff=4.0, n_scalar=16, n_vector=4, pattern=("local", "global"))
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(
            GHyena(cfg), pathlib.Path(tmp) / "model.safetensors", note="random weights (example)"
        )

        # a periodic box of 96 "water-like" atoms (H, H, O, ...) at 0.1 atoms/Å³
        system = liquid_like_system(96, density=0.1, species=8, seed=0, dtype=torch.float64)
        numbers = system.species.clone()
        numbers[0::3] = 1
        numbers[1::3] = 1
        atoms = system.replace(species=numbers, masses=None).to_ase()

        atoms.calc = HyenaCalculator.from_checkpoint(path, device="cpu", dtype=torch.float32)
        print(
            f"E = {atoms.get_potential_energy():.4f} eV, max |F| = {np.abs(atoms.get_forces()).max():.4f} eV/Å"
        )
        print("stress (Voigt, eV/Å³):", np.array2string(atoms.get_stress(), precision=6))

        thermalize_momenta(atoms, 300.0, rng=np.random.default_rng(0))
        dyn = Langevin(
            atoms, timestep=0.5 * units.fs, temperature_K=300.0, friction=0.01 / units.fs, fixcm=False
        )
        for _ in range(5):
            dyn.run(4)
            print(
                f"step {dyn.nsteps:3d}: E_pot = {atoms.get_potential_energy():9.4f} eV, T = {atoms.get_temperature():6.1f} K"
            )


if __name__ == "__main__":
    main()
