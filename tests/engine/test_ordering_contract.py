"""The order contract across adapters: frame independence, ASE == OpenMM == engine, purity, errors.

Every evaluation here is *fresh* (a new calculator, atoms without a stored order) unless the
test is about the order travelling with the atoms. float64 throughout.
"""

from __future__ import annotations

import ase.io
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

from hyenamd import System
from hyenamd.engine import HyenaCalculator, Simulation, VelocityVerlet
from hyenamd.engine.ase_order import ORDER_ARRAY, ORDER_RULE_INFO
from hyenamd.engine.reference_systems import water_box
from hyenamd.surrogate import GHyena, GHyenaConfig, save_model
from hyenamd.surrogate.ordering import OrderingError
from hyenamd.testing import random_orthogonal
from hyenamd.units import EV_TO_KJ_PER_MOL

DT = torch.float64
REL = 1e-9


def _model(ordering: str, seed: int = 0) -> GHyena:
    cfg = GHyenaConfig(
        species=(1, 6, 7, 8), cutoff=4.0, n_scalar=16, n_vector=4, n_rbf=6,
        pattern=("local", "global", "local", "global"), energy_scale=10.0, dtype="float64",
        seed=seed, ordering=ordering,
    )  # fmt: skip
    model = GHyena(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # off the zero-initialised residual branches: the order matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _molecule(n: int = 48, seed: int = 0):
    """A random open 'molecule' of H, C, N, O atoms, no two closer than 1 Å (ASE atoms)."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.uniform(0, 8.0, 3)
        if all(np.linalg.norm(p - q) > 1.0 for q in pts):
            pts.append(p)
    return Atoms(numbers=rng.choice([1, 6, 7, 8], n), positions=np.array(pts))


def _water_atoms():
    ref = water_box(1.2, cutoff_nm=0.5)
    return ref.to_hyenamd().to_ase()


def _fresh_energy(model, atoms) -> float:
    a = atoms.copy()
    a.arrays.pop(ORDER_ARRAY, None)
    a.info.pop(ORDER_RULE_INFO, None)
    a.calc = HyenaCalculator(model)
    return a.get_potential_energy()


def _copies(atoms, seed=0):
    """Rotated+translated, reflected+translated, and (periodic) translated+re-wrapped copies."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, refl in (("rotation", False), ("reflection", True)):
        rot = random_orthogonal(seed + int(refl), reflection=refl).numpy()
        a = atoms.copy()
        a.positions = a.positions @ rot.T + rng.uniform(-10, 10, 3)
        if atoms.pbc.any():
            cell = atoms.cell.array @ rot.T
            if np.linalg.det(cell) < 0:
                cell[0] = -cell[0]
            a.set_cell(cell, scale_atoms=False)
        out[name] = a
    if atoms.pbc.any():
        a = atoms.copy()
        a.positions = a.positions + rng.uniform(0, 30, 3)
        a.wrap()
        out["translation + re-wrap"] = a
    else:
        a = atoms.copy()
        a.positions = a.positions + rng.uniform(-50, 50, 3)
        out["translation"] = a
    return out


@pytest.mark.parametrize("kind", ["molecule", "water box"])
def test_fresh_calculator_energy_is_frame_independent(kind):
    atoms = _molecule() if kind == "molecule" else _water_atoms()
    model = _model("hilbert")
    e0 = _fresh_energy(model, atoms)
    for what, copy in _copies(atoms).items():
        e = _fresh_energy(model, copy)
        assert abs(e - e0) <= REL * abs(e0), f"{kind}: {what} changed the energy by {e - e0:.3e} eV"


def test_topology_model_is_frame_independent_and_needs_residues():
    atoms = _water_atoms()
    model = _model("topology")
    e0 = _fresh_energy(model, atoms)
    for copy in _copies(atoms).values():
        assert abs(_fresh_energy(model, copy) - e0) <= REL * abs(e0)
    bare = atoms.copy()
    del bare.arrays["residuenumbers"]
    with pytest.raises(OrderingError, match="no residue information"):
        _fresh_energy(model, bare)
    with pytest.raises(OrderingError, match="ordering='topology'"):
        VelocityVerlet(model, 1.0).init(System.from_ase(bare))


def test_calculator_has_no_history_and_the_order_travels_with_the_atoms():
    model = _model("hilbert")
    a, b = _molecule(seed=1), _molecule(seed=2)
    calc = HyenaCalculator(model)
    a1 = a.copy()
    a1.calc = calc
    e_a = a1.get_potential_energy()
    assert ORDER_ARRAY in a1.arrays and a1.info[ORDER_RULE_INFO] == "hilbert"  # written back
    b.calc = calc
    b.get_potential_energy()
    rot = _copies(a)["rotation"]  # a fresh rotated copy of a: no stored order
    rot.calc = calc
    assert abs(rot.get_potential_energy() - e_a) <= REL * abs(e_a)
    # a copy keeps its order, also after its atoms are permuted
    perm = np.random.default_rng(0).permutation(len(a1))
    shuffled = a1.copy()[perm]
    assert shuffled.arrays[ORDER_ARRAY].tolist() == a1.arrays[ORDER_ARRAY][perm].tolist()
    shuffled.calc = HyenaCalculator(model)
    assert abs(shuffled.get_potential_energy() - e_a) <= REL * abs(e_a)
    # a stored order is used as is (an order of another rule is refused, not replaced)
    other = a1.copy()
    other.arrays[ORDER_ARRAY] = other.arrays[ORDER_ARRAY][::-1].copy()
    other.calc = HyenaCalculator(model)
    assert abs(other.get_potential_energy() - e_a) > 1e-6 * abs(e_a)
    other.info[ORDER_RULE_INFO] = "topology"
    other.calc = HyenaCalculator(model)
    with pytest.raises(ValueError, match="made by the 'topology' rule"):
        other.get_potential_energy()
    # System.from_ase / to_ase carry the order too
    sys_a = System.from_ase(a1)
    assert sys_a.order is not None and np.array_equal(
        sys_a.to_ase().arrays[ORDER_ARRAY], a1.arrays[ORDER_ARRAY]
    )


def _openmm_energy(system, positions_nm, box_nm) -> float:
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    ctx.setPeriodicBoxVectors(*box_nm)
    ctx.setPositions(positions_nm)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)


@pytest.mark.parametrize("ordering", ["topology", "hilbert"])
def test_ase_openmm_engine_agree_on_a_pdb_water_box(tmp_path, ordering):
    from openmmml import MLPotential

    ref = water_box(1.2, cutoff_nm=0.5)
    pdb = tmp_path / "water.pdb"
    with open(pdb, "w") as fh:
        app.PDBFile.writeFile(ref.topology, ref.positions * u.nanometer, fh)
    path = save_model(_model(ordering, seed=3), tmp_path / f"{ordering}.safetensors")

    atoms = ase.io.read(pdb)
    assert "residuenumbers" in atoms.arrays and atoms.pbc.all()
    atoms.calc = HyenaCalculator.from_checkpoint(path, dtype=DT)
    e_ase = atoms.get_potential_energy()

    omm = app.PDBFile(str(pdb))
    system = MLPotential("hyenamd", model=str(path)).createSystem(omm.topology, precision="double")
    box = omm.topology.getPeriodicBoxVectors()
    e_omm = _openmm_energy(system, omm.positions, box) / EV_TO_KJ_PER_MOL

    sys_ = System.from_ase(ase.io.read(pdb))
    from hyenamd.surrogate import load_model

    e_eng = float(VelocityVerlet(load_model(path), 1.0).init(sys_).energy[0])
    assert abs(e_omm - e_ase) <= REL * abs(e_ase), (e_ase, e_omm)
    assert abs(e_eng - e_ase) <= REL * abs(e_ase), (e_ase, e_eng)


def test_order_samples_average_in_every_adapter():
    model = _model("hilbert", seed=1)
    atoms = _water_atoms()
    a = atoms.copy()
    a.calc = HyenaCalculator(model, order_samples=3)
    e3 = a.get_potential_energy()
    assert a.arrays[ORDER_ARRAY].shape == (len(a), 3)
    e1 = _fresh_energy(model, atoms)
    assert abs(e3 - e1) > 1e-9 * abs(e1)  # a different (averaged) value
    state = VelocityVerlet(model, 1.0, order_samples=3).init(System.from_ase(atoms).replace(order=None))
    assert state.aux["orders"].shape == (3, len(atoms))
    assert abs(float(state.energy[0]) - e3) <= REL * abs(e3)
    # a stored single order does not fit a 3-order calculator: a clear error, not a silent recompute
    b = atoms.copy()
    b.calc = HyenaCalculator(model)
    b.get_potential_energy()
    b.calc = HyenaCalculator(model, order_samples=3)
    with pytest.raises(ValueError, match="order_samples=3"):
        b.get_potential_energy()


def test_simulation_refreshes_the_order_and_reports_the_jump():
    from hyenamd.testing import maxwell_boltzmann

    model = _model("hilbert", seed=2)
    sys_ = maxwell_boltzmann(System.from_ase(_water_atoms()), 600.0, seed=1)
    sim = Simulation(VelocityVerlet(model, 0.5), sys_, order_refresh_steps=3, guard=None)
    order0 = sim.state.order.clone()
    sim.run(7)
    assert [r["step"] for r in sim.order_refreshes] == [3, 6]
    assert all(
        len(r["energy_jump_ev"]) == 1 and np.isfinite(r["energy_jump_ev"][0]) for r in sim.order_refreshes
    )
    assert not torch.equal(sim.state.order, order0)  # atoms moved: a new Hilbert order
    # the refreshed state is self-consistent: energy and forces belong to the new order
    from hyenamd.surrogate.forces import compute_forces

    out = compute_forces(model, sim.state.as_batch())
    assert torch.allclose(out["energy"], sim.state.energy, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="order_refresh_steps"):
        Simulation(VelocityVerlet(model, 0.5), sys_, order_refresh_steps=0)
