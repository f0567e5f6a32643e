"""TorchSim adapter: ``HyenaTorchSimModel(model)`` is a ``torch_sim.models.interface.ModelInterface``.

TorchSim (``pip install torch-sim-atomistic``, imported as ``torch_sim``) runs batched MD and
relaxations of many systems on one device: ``ts.integrate(states, model, integrator=...)``,
``ts.optimize(states, model, optimizer=...)``, ``ts.static(...)``. This module makes any
hyenamd potential (a G-Hyena, a :class:`~hyenamd.engine.committee.Committee`, the classical
torch potentials) one of its models::

    import torch_sim as ts
    from hyenamd.engine.torchsim import HyenaTorchSimModel

    model = HyenaTorchSimModel.from_checkpoint("model.safetensors", dtype="float64")
    final = ts.integrate([atoms1, atoms2], model, integrator=ts.nvt_langevin,
                         n_steps=1000, temperature=300, timestep=0.001)

A thin adapter, like the ASE one: TorchSim's units are hyenamd's (Å, eV, amu; "metal" units),
so only the layout is converted.

==========================  ====================================================
TorchSim ``SimState``       hyenamd :class:`~hyenamd.Batch`
==========================  ====================================================
``positions`` [N, 3] Å      ``positions``
``cell`` [S, 3, 3]          ``cell`` = ``state.row_vector_cell`` (TorchSim stores
                            the cell vectors as columns; hyenamd as rows)
``pbc`` (one bool)          ``pbc`` [S, 3]
``atomic_numbers`` [N]      ``species``
``system_idx`` [N]          ``batch`` (and ``ptr`` from its counts)
``momenta / masses``        ``velocities`` in Å/fs (only for a model with a
(Å per √(amu Å²/eV))        dynamics head; divided by ``FS_PER_ASE_TIME``)
==========================  ====================================================

Outputs: ``energy`` [S] eV, ``forces`` [N, 3] eV/Å, ``stress`` [S, 3, 3] eV/Å³ (ASE's sign,
which is TorchSim's: its NPT integrators and cell filters take ``stress`` as
``(1/V) ∂E/∂ε``), and ``energies`` [N] when ``per_atom_energies``. Forces and stress come
from :func:`hyenamd.surrogate.compute_forces` (one backward pass for the whole batch).
A :class:`~hyenamd.engine.committee.Committee` adds ``energy_var`` [S] and ``forces_var``
[N, 3].

The sequence order of a G-Hyena's global blocks is computed on every call from the state
(``canonical_order``: a pure function of the systems), because TorchSim's states carry no
extra per-atom arrays through its integrators, splits and autobatching swaps. The neighbour
list is built on every call (exact, O(N) cell list).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from hyenamd.dtypes import resolve_dtype
from hyenamd.engine.adapter import _model_dtype_device, check_species
from hyenamd.engine.integrators import canonical_order
from hyenamd.system import Batch
from hyenamd.units import FS_PER_ASE_TIME

try:  # TorchSim is optional: the module imports without it, the class needs it
    from torch_sim.models.interface import ModelInterface
except ImportError as _e:  # pragma: no cover - exercised only without torch-sim-atomistic
    _IMPORT_ERROR: ImportError | None = _e
    ModelInterface = nn.Module  # type: ignore[misc,assignment]
else:
    _IMPORT_ERROR = None

__all__ = ["HyenaTorchSimModel"]


class HyenaTorchSimModel(ModelInterface):
    """A hyenamd potential as a TorchSim model.

    model: the potential (G-Hyena, Committee or a classical torch potential). device/dtype:
    where and in which precision to run (default: the model's; ``"float32"``/``"float64"`` or
    a torch dtype; a converted copy is made, the caller's model is left untouched).
    compute_stress: return ``stress`` (needed by TorchSim's NPT integrators and cell
    optimisers). per_atom_energies: also return ``energies`` [N].
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        compute_stress: bool = True,
        compute_forces: bool = True,
        per_atom_energies: bool = False,
    ) -> None:
        if _IMPORT_ERROR is not None:
            raise ImportError(
                "HyenaTorchSimModel needs TorchSim: pip install torch-sim-atomistic"
            ) from _IMPORT_ERROR
        super().__init__()
        if not hasattr(model, "cutoff"):
            raise TypeError(f"{type(model).__name__} is not a hyenamd potential (no 'cutoff' attribute)")
        if not compute_forces:
            raise ValueError(
                "HyenaTorchSimModel always computes forces (compute_forces=False is not offered)"
            )
        m_dtype, m_device = _model_dtype_device(model)
        self._dtype = resolve_dtype(dtype) or m_dtype
        self._device = torch.device(device) if device is not None else m_device
        if (self._dtype, self._device) != (m_dtype, m_device):
            import copy

            model = copy.deepcopy(model).to(device=self._device, dtype=self._dtype)
        self.model = model.eval()
        self._compute_stress = bool(compute_stress)
        self._compute_forces = True
        self._per_atom_energies = bool(per_atom_energies)
        self._memory_scales_with = "n_atoms_x_density"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | list | tuple,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        **kwargs,
    ) -> HyenaTorchSimModel:
        """Load a checkpoint (or a list of them: a committee) with ``load_model``; no code runs on load."""
        if isinstance(path, list | tuple) and len(path) > 1:
            from hyenamd.engine.committee import load_committee

            return cls(load_committee(path, device=device, dtype=dtype), **kwargs)
        from hyenamd.surrogate import load_model

        path = path[0] if isinstance(path, list | tuple) else path
        return cls(load_model(path, device=device, dtype=dtype), **kwargs)

    def to_batch(self, state) -> Batch:
        """The hyenamd :class:`Batch` of a TorchSim ``SimState`` (or its dict form), see the module table."""
        get = state.get if isinstance(state, dict) else lambda k, d=None: getattr(state, k, d)
        dev, dt = self._device, self._dtype
        x = get("positions").to(device=dev, dtype=dt)
        n = x.shape[0]
        species = get("atomic_numbers").to(device=dev, dtype=torch.int64)
        sys_idx = get("system_idx")
        sys_idx = torch.zeros(n, dtype=torch.int64, device=dev) if sys_idx is None else sys_idx.to(dev)
        cell_cols = get("cell").to(device=dev, dtype=dt)
        if cell_cols.ndim == 2:
            cell_cols = cell_cols.unsqueeze(0)
        cell = cell_cols.transpose(-1, -2)  # TorchSim: vectors as columns; hyenamd: as rows
        n_sys = cell.shape[0]
        counts = torch.bincount(sys_idx, minlength=n_sys)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        pbc_value = get("pbc")
        pbc = torch.as_tensor(pbc_value, device=dev).to(torch.bool)
        pbc = pbc.reshape(1, -1).expand(n_sys, 3).clone() if pbc.numel() in (1, 3) else pbc.reshape(n_sys, 3)
        masses = get("masses")
        masses = torch.ones(n, dtype=dt, device=dev) if masses is None else masses.to(device=dev, dtype=dt)
        v = None
        if getattr(self.model, "dynamics_head", None) is not None:
            momenta = get("momenta")
            v = (
                torch.zeros_like(x)
                if momenta is None
                else momenta.to(device=dev, dtype=dt) / masses.unsqueeze(-1) / FS_PER_ASE_TIME
            )
        has_cell = torch.linalg.det(cell).abs() > 0
        batch = Batch(
            positions=x,
            species=species,
            masses=masses,
            cell=cell,
            pbc=pbc,
            batch=sys_idx,
            ptr=ptr,
            labels=(None,) * n_sys,
            velocities=v,
            has_cell=has_cell,
        )
        return batch.replace(order=canonical_order(self.model, batch))

    def forward(self, state, **kwargs) -> dict[str, torch.Tensor]:
        """``energy`` [S] eV, ``forces`` [N, 3] eV/Å, ``stress`` [S, 3, 3] eV/Å³ (if compute_stress)."""
        from hyenamd.engine.committee import Committee
        from hyenamd.surrogate.forces import compute_forces

        batch = self.to_batch(state)
        check_species(self.model, batch.species.cpu().numpy())
        if isinstance(self.model, Committee):
            out = self.model.statistics(batch, None, stress=self._compute_stress)
        else:
            out = compute_forces(self.model, batch, stress=self._compute_stress)
        keep = ["energy", "forces"]
        if self._compute_stress:
            keep.append("stress")
        if self._per_atom_energies:
            keep.append("energies")
        keep += [k for k in ("energy_var", "forces_var") if k in out]
        return {k: out[k].detach() for k in keep}
