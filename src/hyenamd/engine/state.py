"""The typed MD state that integrators carry from step to step, on the device.

:class:`MDState` holds one :class:`~hyenamd.Batch` worth of dynamical variables (a single
:class:`~hyenamd.System` is a batch of one). Integrators never mutate a state: ``step``
returns a new one (``dataclasses.replace``), so stepping the same state twice gives the same
result, and the RNG state is part of the state (not a hidden global).

=================  =====================  =================================================
field              shape / dtype          meaning (internal units)
=================  =====================  =================================================
positions          [N, 3] float           Å (unwrapped unless the integrator wraps)
velocities         [N, 3] float           Å/fs
forces             [N, 3] float           eV/Å at ``positions``
energy             [B] float              potential energy of each system at ``positions``, eV
masses             [N] float              amu
species            [N] int64              atomic numbers
cell               [B, 3, 3] float        lattice vectors as rows, Å (zeros: no cell)
pbc                [B, 3] bool            periodic axes
has_cell           [B] bool               whether system b has a cell
batch              [N] int64              system index of each atom
ptr                [B + 1] int64          atom offsets of the systems
dof                [B] float              degrees of freedom (3 n_b, or 3 n_b - 3 with COM removal)
step               int                    steps taken since the start of the trajectory
time_fs            float                  simulated time, fs
rng_state          [S] uint8 or None      ``torch.Generator.get_state()`` of the integrator's RNG
order              [N] int64 or None      canonical order of the surrogate (computed once at init)
nl_ref             [N, 3] float or None   positions at the last neighbour-list build (for exact resume)
labels             tuple                  per-system :class:`~hyenamd.Labels` (host objects)
aux                dict[str, Tensor]      integrator-specific tensors (the learned propagator's
                                          pending prediction); checkpointed as ``aux.<name>``
=================  =====================  =================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hyenamd.dtypes import resolve_dtype
from hyenamd.system import Batch, System
from hyenamd.units import AMU_ANGSTROM2_PER_FS2_TO_EV, BOLTZMANN_EV_PER_K

__all__ = ["TENSOR_FIELDS", "MDState", "kinetic_energy", "remove_com_velocity", "temperature"]

#: fields saved as tensors in a checkpoint (``rng_state``, ``order``, ``nl_ref`` may be None)
TENSOR_FIELDS = (
    "positions",
    "velocities",
    "forces",
    "energy",
    "masses",
    "species",
    "cell",
    "pbc",
    "has_cell",
    "batch",
    "ptr",
    "dof",
    "rng_state",
    "order",
    "nl_ref",
)


@dataclass(frozen=True, eq=False)
class MDState:
    """The dynamical state of one or more systems (see the module docstring for fields)."""

    positions: Tensor
    velocities: Tensor
    forces: Tensor
    energy: Tensor
    masses: Tensor
    species: Tensor
    cell: Tensor
    pbc: Tensor
    has_cell: Tensor
    batch: Tensor
    ptr: Tensor
    dof: Tensor
    step: int = 0
    time_fs: float = 0.0
    rng_state: Tensor | None = None
    order: Tensor | None = None
    nl_ref: Tensor | None = None
    labels: tuple = ()
    single: bool = False
    aux: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_systems(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def replace(self, **changes) -> MDState:
        """A copy with some fields replaced (no validation: used in the hot loop)."""
        return dataclasses.replace(self, **changes)

    def as_batch(self, positions: Tensor | None = None) -> Batch:
        """A :class:`~hyenamd.Batch` view (no copy, no validation) for the potential."""
        return Batch(
            positions=self.positions if positions is None else positions,
            species=self.species,
            masses=self.masses,
            cell=self.cell,
            pbc=self.pbc,
            batch=self.batch,
            ptr=self.ptr,
            velocities=self.velocities,
            order=self.order,
            labels=self.labels,
            has_cell=self.has_cell,
        )

    def system(self, k: int = 0) -> System:
        """System ``k`` as a validated :class:`~hyenamd.System` (velocities included)."""
        return self.as_batch().system(k)

    def kinetic_energy(self) -> Tensor:
        """Kinetic energy of each system, ``[B]`` eV."""
        return kinetic_energy(self.masses, self.velocities, self.batch, self.n_systems)

    def temperature(self) -> Tensor:
        """Instantaneous temperature of each system, ``[B]`` K (``2 K / (dof k_B)``)."""
        return temperature(self.kinetic_energy(), self.dof)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> MDState:
        """Copy to a device and/or float dtype (integer fields keep theirs; the RNG state stays on the CPU)."""
        dtype = resolve_dtype(dtype)

        def f(t):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)

        changes = {k: f(getattr(self, k)) for k in TENSOR_FIELDS if k != "rng_state"}
        return self.replace(**changes, aux={k: f(v) for k, v in self.aux.items()})

    @classmethod
    def from_batch(
        cls,
        batch: Batch,
        *,
        velocities: Tensor,
        forces: Tensor,
        energy: Tensor,
        remove_com: bool,
        single: bool,
        rng_state: Tensor | None = None,
        order: Tensor | None = None,
    ) -> MDState:
        counts = batch.counts.to(batch.dtype)
        dof = 3.0 * counts - (3.0 if remove_com else 0.0)
        has_cell = batch.has_cell if batch.has_cell is not None else torch.ones_like(counts, dtype=torch.bool)
        return cls(
            positions=batch.positions,
            velocities=velocities,
            forces=forces,
            energy=energy,
            masses=batch.masses,
            species=batch.species,
            cell=batch.cell,
            pbc=batch.pbc,
            has_cell=has_cell,
            batch=batch.batch,
            ptr=batch.ptr,
            dof=dof.clamp(min=1.0),
            rng_state=rng_state,
            order=order if order is not None else batch.order,
            labels=tuple(batch.labels),
            single=single,
        )


# ---------------------------------------------------------------------- pure functions
def kinetic_energy(masses: Tensor, velocities: Tensor, batch: Tensor, n_systems: int) -> Tensor:
    """``K_b = ½ Σ_{i∈b} m_i |v_i|²`` in eV, ``[n_systems]``.

    masses ``[N]`` amu, velocities ``[N, 3]`` Å/fs, batch ``[N]`` system index.
    """
    per_atom = 0.5 * AMU_ANGSTROM2_PER_FS2_TO_EV * masses * (velocities * velocities).sum(-1)
    out = torch.zeros(n_systems, dtype=velocities.dtype, device=velocities.device)
    return out.index_add_(0, batch, per_atom)


def temperature(kinetic: Tensor, dof: Tensor) -> Tensor:
    """``T = 2 K / (dof k_B)`` in K, elementwise over systems."""
    return 2.0 * kinetic / (dof * BOLTZMANN_EV_PER_K)


def remove_com_velocity(masses: Tensor, velocities: Tensor, batch: Tensor, n_systems: int) -> Tensor:
    """Velocities with each system's centre-of-mass velocity ``Σ m v / Σ m`` subtracted."""
    m = masses.unsqueeze(-1)
    p = torch.zeros(n_systems, 3, dtype=velocities.dtype, device=velocities.device).index_add_(
        0, batch, m * velocities
    )
    mt = torch.zeros(n_systems, dtype=masses.dtype, device=masses.device).index_add_(0, batch, masses)
    return velocities - (p / mt.unsqueeze(-1))[batch]
