"""Reference systems for OpenMM MD, built only from files that ship in installed wheels.

No downloads. Every builder returns a :class:`ReferenceSystem` (OpenMM ``Topology``,
``System`` and positions) that :func:`hyenamd.engine.reference.reference_md` integrates.

=====================  ==========================================================================
name                   what and where it comes from
=====================  ==========================================================================
``argon``              LJ argon fluid: an FCC lattice (rattled) at liquid density in a periodic
                       box; ``NonbondedForce`` (CutoffPeriodic, OpenMM's switching function, no
                       charges, no dispersion correction) — identical term by term to
                       :class:`hyenamd.engine.potentials.LennardJones`. No input file.
``water``              TIP3P water box: ``Modeller.addSolvent`` with ``amber14-all.xml`` +
                       ``amber14/tip3p.xml`` from the openmm wheel (``openmm/app/data``); PME.
``villin``             villin headpiece (N68H) in explicit water: ``openmm/app/data/test.pdb``
                       (8867 atoms, box and water included), amber14 + TIP3P, PME.
``alanine_dipeptide``  ACE-ALA-NME in vacuum (NoCutoff) or OBC2 implicit solvent
                       (``implicit/obc2.xml``): residues 6-8 (LYS-ALA-VAL) of villin in
                       ``test.pdb`` are cut out, LYS is reduced to the ACE cap (C, O, CA→CH3),
                       VAL to the NME cap (N, H, CA→C), and ``Modeller.addHydrogens`` adds the
                       cap hydrogens. MDAnalysisTests (which ships an alanine dipeptide) is not
                       a dependency, so this is the peptide that needs no extra package.
=====================  ==========================================================================

Water is flexible by default (``rigid_water=False``, no constraints): a surrogate learns the
O-H vibrations too, and forces/velocities in the store then need no constraint bookkeeping.
Use dt ≤ 0.5 fs for flexible water.

:func:`lj_fluid_system` builds the same argon box as a :class:`hyenamd.System` without OpenMM
(the engine's tests use it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hyenamd.system import Labels, System
from hyenamd.units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

if TYPE_CHECKING:  # pragma: no cover
    import openmm

__all__ = [
    "ReferenceSystem",
    "alanine_dipeptide",
    "argon_box",
    "fcc_positions",
    "lj_fluid_system",
    "villin_in_water",
    "water_box",
]

ARGON_MASS = 39.948


def fcc_positions(n_cells: int, lattice_constant: float) -> tuple[np.ndarray, np.ndarray]:
    """FCC lattice: positions ``[4 n³, 3]`` and the cubic cell ``[3, 3]`` (units of the constant)."""
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + 0.25
    g = np.stack(np.meshgrid(*(np.arange(n_cells),) * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((g + base).reshape(-1, 3) * lattice_constant), np.eye(3) * n_cells * lattice_constant


def lj_fluid_system(
    n_cells: int = 3,
    density: float = 0.0212,
    *,
    rattle: float = 0.05,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> System:
    """A periodic argon box: FCC with ``4 n_cells³`` atoms at ``density`` atoms/Å³, rattled by ``rattle`` Å."""
    a = (4.0 / density) ** (1.0 / 3.0)
    x, cell = fcc_positions(n_cells, a)
    x = x + np.random.default_rng(seed).normal(0.0, rattle, x.shape)
    n = x.shape[0]
    return System(
        positions=torch.tensor(x, dtype=dtype),
        species=torch.full((n,), 18, dtype=torch.int64),
        masses=torch.full((n,), ARGON_MASS, dtype=dtype),
        cell=torch.tensor(cell, dtype=dtype),
        pbc=True,
    )


@dataclass
class ReferenceSystem:
    """An OpenMM system ready to simulate: ``topology``, ``system``, ``positions`` ``[N, 3]`` nm."""

    name: str
    topology: Any
    system: Any
    positions: np.ndarray

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def box_angstrom(self) -> np.ndarray | None:
        """Periodic box vectors as rows, Å (None without periodic boundaries)."""
        if not self.system.usesPeriodicBoundaryConditions():
            return None
        import openmm.unit as u

        vecs = self.system.getDefaultPeriodicBoxVectors()
        return np.array([v.value_in_unit(u.nanometer) for v in vecs]) * NM_TO_ANGSTROM

    def to_hyenamd(self, *, dtype: torch.dtype = torch.float64) -> System:
        """The same atoms as a :class:`hyenamd.System` (Å, amu; labels from the topology)."""
        import openmm.unit as u

        atoms = list(self.topology.atoms())
        species = [0 if a.element is None else a.element.atomic_number for a in atoms]
        if 0 in species:
            k = species.index(0)
            raise ValueError(f"atom {k} ({atoms[k].name}) has no element (a virtual site?); cannot convert")
        masses = [self.system.getParticleMass(k).value_in_unit(u.dalton) for k in range(len(atoms))]
        box = self.box_angstrom()
        labels = Labels(
            residue_index=torch.tensor([a.residue.index for a in atoms]),
            chain_index=torch.tensor([a.residue.chain.index for a in atoms]),
            atom_names=tuple(a.name for a in atoms),
            residue_names=tuple(a.residue.name for a in atoms),
        )
        return System(
            positions=torch.tensor(self.positions * NM_TO_ANGSTROM, dtype=dtype),
            species=torch.tensor(species),
            masses=torch.tensor(masses, dtype=dtype),
            cell=None if box is None else torch.tensor(box, dtype=dtype),
            pbc=box is not None,
            labels=labels,
        )


@functools.lru_cache(maxsize=2)
def _test_pdb():
    """``openmm/app/data/test.pdb`` parsed once (Modeller copies it before any change)."""
    import openmm.app as app

    return app.PDBFile(_data_file("test.pdb"))


def _data_file(name: str) -> str:
    import os

    import openmm.app

    path = os.path.join(os.path.dirname(openmm.app.__file__), "data", name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} is not in this openmm installation ({path})")
    return path


def _positions_nm(positions) -> np.ndarray:
    import openmm.unit as u

    return np.array(positions.value_in_unit(u.nanometer), dtype=np.float64).reshape(-1, 3)


def argon_box(
    n_cells: int = 4,
    density: float = 0.0212,
    *,
    sigma: float = 3.405,
    epsilon: float = 0.010323,
    cutoff: float = 8.5,
    switch_on: float | None = 7.5,
    rattle: float = 0.05,
    seed: int = 0,
) -> ReferenceSystem:
    """LJ argon (Å, eV arguments as :class:`~hyenamd.engine.potentials.LennardJones`)."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    hs = lj_fluid_system(n_cells, density, rattle=rattle, seed=seed)
    n = hs.n_atoms
    box = hs.cell.numpy() * ANGSTROM_TO_NM
    if cutoff * ANGSTROM_TO_NM > 0.5 * float(box[0, 0]):
        raise ValueError(
            f"cutoff {cutoff} Å exceeds half the box ({0.5 * box[0, 0] * 10:.2f} Å); use more cells"
        )
    top = app.Topology()
    chain = top.addChain()
    ar = app.Element.getBySymbol("Ar")
    for _ in range(n):
        top.addAtom("Ar", ar, top.addResidue("AR", chain))
    vecs = [openmm.Vec3(*row) * u.nanometer for row in box]
    top.setPeriodicBoxVectors(vecs)
    sysm = openmm.System()
    sysm.setDefaultPeriodicBoxVectors(*vecs)
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(cutoff * ANGSTROM_TO_NM)
    nb.setUseDispersionCorrection(False)
    if switch_on is not None:
        nb.setUseSwitchingFunction(True)
        nb.setSwitchingDistance(switch_on * ANGSTROM_TO_NM)
    for _ in range(n):
        sysm.addParticle(ARGON_MASS)
        nb.addParticle(0.0, sigma * ANGSTROM_TO_NM, epsilon * EV_TO_KJ_PER_MOL)
    sysm.addForce(nb)
    return ReferenceSystem("argon", top, sysm, hs.positions.numpy() * ANGSTROM_TO_NM)


@functools.lru_cache(maxsize=8)
def _amber(*extra: str):
    """A (cached, read-only in use) amber14 ``ForceField`` plus ``extra`` files."""
    import openmm.app as app

    return app.ForceField("amber14-all.xml", *extra)


def _nonbonded(method: str):
    import openmm.app as app

    return {"PME": app.PME, "CutoffPeriodic": app.CutoffPeriodic}[method]


def water_box(
    box_nm: float = 2.0,
    *,
    cutoff_nm: float = 0.9,
    rigid_water: bool = False,
    nonbonded: str = "PME",
) -> ReferenceSystem:
    """A cubic TIP3P box of edge ``box_nm`` (amber14 files from the openmm wheel)."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    if cutoff_nm > 0.5 * box_nm:
        raise ValueError(f"cutoff {cutoff_nm} nm exceeds half the box edge {box_nm} nm")
    ff = _amber("amber14/tip3p.xml")
    m = app.Modeller(app.Topology(), [])
    m.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * u.nanometer)
    sysm = ff.createSystem(
        m.topology,
        nonbondedMethod=_nonbonded(nonbonded),
        nonbondedCutoff=cutoff_nm * u.nanometer,
        constraints=None,
        rigidWater=rigid_water,
    )
    return ReferenceSystem("water", m.topology, sysm, _positions_nm(m.positions))


def villin_in_water(
    *, cutoff_nm: float = 0.9, rigid_water: bool = False, constraints: str = "none"
) -> ReferenceSystem:
    """Villin headpiece in water from ``test.pdb`` of the openmm wheel (amber14 + TIP3P, PME)."""
    import openmm.app as app
    import openmm.unit as u

    pdb = _test_pdb()
    ff = _amber("amber14/tip3p.xml")
    sysm = ff.createSystem(
        pdb.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=cutoff_nm * u.nanometer,
        constraints=None if constraints == "none" else app.HBonds,
        rigidWater=rigid_water,
    )
    return ReferenceSystem("villin", pdb.topology, sysm, _positions_nm(pdb.positions))


def alanine_dipeptide(*, solvent: str = "vacuum") -> ReferenceSystem:
    """ACE-ALA-NME cut from villin in ``test.pdb`` (see the module docstring); vacuum or ``obc2``."""
    import openmm.app as app

    if solvent not in ("vacuum", "obc2"):
        raise ValueError(f"solvent must be 'vacuum' or 'obc2', got {solvent!r}")
    pdb = _test_pdb()
    m = app.Modeller(pdb.topology, pdb.positions)
    res = list(m.topology.residues())
    if [r.name for r in res[6:9]] != ["LYS", "ALA", "VAL"]:
        raise ValueError("test.pdb does not have LYS-ALA-VAL at residues 6-8; cannot cut the dipeptide")
    keep = {res[6]: {"C", "O", "CA"}, res[7]: None, res[8]: {"N", "H", "CA"}}
    m.delete(
        [
            a
            for a in m.topology.atoms()
            if a.residue not in keep or (keep[a.residue] is not None and a.name not in keep[a.residue])
        ]
    )
    ace, _, nme = m.topology.residues()
    ace.name, nme.name = "ACE", "NME"
    for a in ace.atoms():
        if a.name == "CA":
            a.name = "CH3"
    for a in nme.atoms():
        if a.name == "CA":
            a.name = "C"
    m.topology.setPeriodicBoxVectors(None)
    ff = _amber() if solvent == "vacuum" else _amber("implicit/obc2.xml")
    m.addHydrogens(ff)
    sysm = ff.createSystem(m.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    return ReferenceSystem(f"alanine_dipeptide_{solvent}", m.topology, sysm, _positions_nm(m.positions))


def openmm_platform(name: str, threads: int = 0) -> tuple[openmm.Platform, dict[str, str]]:
    """The OpenMM platform ``name`` ("CPU", "Reference", "CUDA" or "auto": CUDA when present, else CPU)."""
    import openmm

    names = [openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())]
    if name == "auto":
        name = "CUDA" if "CUDA" in names else "CPU"
    if name not in names:
        raise ValueError(f"OpenMM platform {name!r} is not available here (have {names})")
    props: dict[str, str] = {}
    if name == "CPU" and threads > 0:
        props["Threads"] = str(int(threads))
    return openmm.Platform.getPlatformByName(name), props
