"""Committee (ensemble) of potentials: mean prediction plus the spread between members.

MACE's convention (``MACECalculator(model_paths=[...])``): the committee predicts the *mean*
energy, forces and stress of its members, and reports the population variance (``ddof = 0``)
between members as the uncertainty:

==================  =====================  =========================================
key                 shape                  meaning
==================  =====================  =========================================
``energy``          scalar, eV             mean over members of the total energy
``forces``          ``[N, 3]`` eV/Å        mean of the members' forces
``stress``          ``[3, 3]`` eV/Å³       mean of the members' stress (3-D cells)
``energy_var``      scalar, eV²            ``var_k E_k``
``forces_var``      ``[N, 3]`` (eV/Å)²     ``var_k F_k`` per atom and component
``stress_var``      ``[3, 3]`` (eV/Å³)²    ``var_k σ_k``
``energy_comm``     ``[K]`` eV             every member's energy
``forces_comm``     ``[K, N, 3]`` eV/Å     every member's forces
==================  =====================  =========================================

(MACE calls the members' energies ``energies``; here ``energies`` keeps ASE's meaning, the
per-atom energies of the mean model, and the members' values are ``energy_comm``.)

:class:`Committee` is itself a potential (the protocol of
:func:`hyenamd.surrogate.compute_forces`): its ``forward`` returns the mean energy, so the
forces that ``compute_forces`` takes from it are the mean forces (the gradient is linear)
and a :class:`~hyenamd.engine.Simulation` can run on it like on one model.
:meth:`Committee.statistics` evaluates the members on the same batch and returns the table
above: members of one architecture share one sequence order and neighbour list and run in one
``torch.func.vmap`` pass over their stacked weights (:mod:`hyenamd.engine.committee_vmap`);
others run one after another (:func:`loop_statistics`, also the O(K) reference of the vmapped
pass; a neighbour list passed in is shared, else each member builds its own).
:class:`UncertaintyGuard` (``engine/guard.py`` style) stops or flags a rollout whose largest
per-atom force standard deviation exceeds a threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from hyenamd.engine.adapter import ModelRunner
from hyenamd.engine.committee_vmap import (
    StackedMembers,
    shared_inputs,
    vmap_energies,
    vmap_fits,
    vmap_statistics,
)
from hyenamd.system import Batch

__all__ = ["Committee", "CommitteeConfig", "CommitteeRunner", "load_committee", "loop_statistics"]


@dataclass(frozen=True)
class CommitteeConfig:
    """What the adapters read from a potential's ``cfg``: the species every member knows and the
    members' shared sequence-order rule (None when no member needs an order)."""

    species: tuple[int, ...]
    n_members: int
    ordering: str | None = None


class Committee(nn.Module):
    """K potentials evaluated together: mean energy (forward) and member statistics (:meth:`statistics`).

    models: two or more potentials of the same dtype (each with a ``cutoff``). Members that
    need an exact neighbour list (``needs_exact_neighbors``, the classical potentials) must
    share one cutoff; G-Hyena members may differ (their pair terms vanish beyond the cutoff).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        models = list(models)
        if len(models) < 2:
            raise ValueError(f"a committee needs at least 2 models, got {len(models)}")
        for k, m in enumerate(models):
            if not hasattr(m, "cutoff"):
                raise TypeError(f"committee member {k} ({type(m).__name__}) is not a hyenamd potential")
        self.models = nn.ModuleList(models)
        cutoffs = [float(m.cutoff) for m in models]
        self.cutoff = max(cutoffs)
        from hyenamd.surrogate.model import GHyena

        exact = [bool(getattr(m, "needs_exact_neighbors", not isinstance(m, GHyena))) for m in models]
        if any(exact) and len(set(cutoffs)) > 1:
            raise ValueError(
                f"committee members have cutoffs {cutoffs} Å and some need an exact neighbour list; "
                "members with exact lists must share one cutoff"
            )
        self.needs_exact_neighbors = any(exact)
        self.needs_order = any(
            getattr(m, "uses_order", True) and getattr(m, "needs_order", True) for m in models
        )
        species = None
        for m in models:
            known = getattr(getattr(m, "cfg", None), "species", None)
            if known is not None:
                species = set(known) if species is None else species & set(known)
        from hyenamd.surrogate.ordering import model_ordering

        rules = sorted({model_ordering(m) for m in models} - {None})
        if len(rules) > 1:
            raise ValueError(
                f"committee members order atoms by different rules {rules}; they share one order"
            )
        self.cfg = CommitteeConfig(
            tuple(sorted(species)) if species is not None else None, len(models), rules[0] if rules else None
        )
        shapes = [_architecture(m) for m in models]
        #: members share an architecture (config up to the seed): one batch, one neighbour list
        self.same_config = all(a == shapes[0] for a in shapes)
        #: the members run together under torch.func.vmap (G-Hyenas of one architecture)
        self.vectorized = self.same_config and all(isinstance(m, GHyena) for m in models)
        self._stacked = StackedMembers(models) if self.vectorized else None

    @property
    def dynamics_head(self) -> nn.Module | None:
        """The first member's dynamics head (the adapters pass velocities when any member reads them)."""
        for m in self.models:
            head = getattr(m, "dynamics_head", None)
            if head is not None:
                return head
        return None

    def __len__(self) -> int:
        return len(self.models)

    def forward(self, batch: Batch, neighbors=None) -> dict[str, Tensor]:
        """Mean ``energy`` ``[S]`` and ``energies`` ``[N]`` of the members; ``energy_comm`` ``[K, S]``.

        One vmapped pass when :attr:`vectorized` (and the input fits, see :meth:`statistics`),
        else the members one after another (a vectorized committee shares one neighbour list
        and one sequence order in both cases).
        """
        if self.vectorized:
            batch, neighbors = shared_inputs(self.models[0], batch, neighbors)
        if self.vectorized and vmap_fits(self.models[0], batch, neighbors):
            energy, energies = vmap_energies(self._stacked, batch, neighbors)
        else:
            outs = [m(batch, neighbors=neighbors) for m in self.models]
            energy = torch.stack([o["energy"] for o in outs])
            energies = torch.stack([o["energies"] for o in outs])
        return {"energy": energy.mean(0), "energies": energies.mean(0), "energy_comm": energy}

    def statistics(
        self, batch: Batch, neighbors=None, *, stress: bool = False, vectorize: bool | None = None
    ) -> dict[str, Tensor]:
        """Members' energies/forces (and stress) on one batch, their means and population variances.

        Returns tensors: ``energy`` ``[S]``, ``energies`` ``[N]``, ``forces`` ``[N, 3]``,
        ``energy_var`` ``[S]``, ``forces_var`` ``[N, 3]``, ``energy_comm`` ``[K, S]``,
        ``forces_comm`` ``[K, N, 3]`` and, with ``stress``, ``stress``/``stress_var`` ``[S, 3, 3]``,
        ``stress_comm`` ``[K, S, 3, 3]``. ``vectorize``: None = one ``torch.func.vmap`` pass
        (:func:`~hyenamd.engine.committee_vmap.vmap_statistics`) when :attr:`vectorized` and the
        input is not large enough for activation checkpointing
        (:func:`~hyenamd.engine.committee_vmap.vmap_fits`), else the loop; False = the loop over
        members (:func:`loop_statistics`, the O(K) reference). A vectorized committee checks
        the species and builds the order and neighbour list once for both paths.
        """
        if vectorize and not self.vectorized:
            raise ValueError("vectorize=True needs G-Hyena members of one architecture (same_config)")
        if self.vectorized:
            batch, neighbors = shared_inputs(self.models[0], batch, neighbors)
            fits = vmap_fits(self.models[0], batch, neighbors)
            if vectorize and not fits:
                raise ValueError(
                    "vectorize=True: this input would use activation checkpointing (large batch), "
                    "which runs outside vmap; leave vectorize=None to use the loop"
                )
            vectorize = fits if vectorize is None else vectorize
        if vectorize:
            comm = vmap_statistics(self._stacked, batch, neighbors, stress=stress)
        else:
            comm = loop_statistics(self.models, batch, neighbors, stress=stress)
        res: dict[str, Tensor] = {}
        for name in ("energy", "forces", "stress"):
            if name not in comm:
                continue
            res[name] = comm[name].mean(0)
            res[f"{name}_var"] = comm[name].var(0, unbiased=False)
            res[f"{name}_comm"] = comm[name]
        res["energies"] = comm["energies"].mean(0)
        return res

    def descriptors(self, batch: Batch, neighbors=None) -> Tensor:
        """Every member's per-atom invariant features ``[K, N, F]`` (see :func:`descriptors`)."""
        return torch.stack([descriptors(m, batch, neighbors) for m in self.models])


def loop_statistics(models: Sequence[nn.Module], batch: Batch, neighbors=None, *, stress: bool = False):
    """The members one after another (:func:`~hyenamd.surrogate.compute_forces` each), stacked.

    The O(K) reference of :func:`~hyenamd.engine.committee_vmap.vmap_statistics`, with the
    same return value: ``energy`` ``[K, S]``, ``energies`` ``[K, N]``, ``forces`` ``[K, N, 3]``
    and, with ``stress``, ``stress`` ``[K, S, 3, 3]``.
    """
    from hyenamd.surrogate.forces import compute_forces

    outs = [compute_forces(m, batch, stress=stress, neighbors=neighbors) for m in models]
    keys = ("energy", "energies", "forces") + (("stress",) if stress else ())
    return {k: torch.stack([o[k] for o in outs]) for k in keys}


def _architecture(model: nn.Module):
    """A member's type and config without its initialisation seed (what makes two members comparable)."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and dataclasses.is_dataclass(cfg) and hasattr(cfg, "seed"):
        cfg = dataclasses.replace(cfg, seed=0)
    return type(model), cfg


def descriptors(model: nn.Module, batch: Batch, neighbors=None) -> Tensor:
    """Per-atom invariant features ``[N, F]`` of a G-Hyena: the scalar channels entering the energy head.

    These are the ``n_scalar`` rotation-invariant features after the last block (what the
    energy readout sees), in the batch's atom order. A :class:`Committee` gives ``[K, N, F]``.
    """
    if isinstance(model, Committee):
        return model.descriptors(batch, neighbors)
    head = getattr(model, "energy_head", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no energy_head: descriptors need a G-Hyena model")
    seen: list[Tensor] = []
    hook = head.register_forward_pre_hook(lambda _mod, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(batch, neighbors=neighbors)
    finally:
        hook.remove()
    return seen[-1]


class CommitteeRunner(ModelRunner):
    """:class:`~hyenamd.engine.adapter.ModelRunner` for a :class:`Committee`: adds the variances (numpy)."""

    def evaluate(self, batch: Batch, nbrs, *, stress: bool = False) -> dict[str, np.ndarray | float]:
        st = self.model.statistics(batch, nbrs, stress=stress)
        host = {k: v.detach().cpu().double().numpy() for k, v in st.items()}
        res: dict[str, np.ndarray | float] = {
            "energy": float(host["energy"][0]),
            "energies": host["energies"],
            "forces": host["forces"],
            "energy_var": float(host["energy_var"][0]),
            "forces_var": host["forces_var"],
            "energy_comm": host["energy_comm"][:, 0],
            "forces_comm": host["forces_comm"],
        }
        if stress:
            res["stress"] = host["stress"][0]
            res["stress_var"] = host["stress_var"][0]
            res["stress_comm"] = host["stress_comm"][:, 0]
        return res


def load_committee(paths: Sequence, device="cpu", dtype=None) -> Committee:
    """A :class:`Committee` of the checkpoints at ``paths`` (``load_model`` each; no code runs on load)."""
    from hyenamd.surrogate import load_model

    paths = list(paths)
    if not paths:
        raise ValueError("load_committee needs at least one checkpoint path")
    return Committee([load_model(p, device=device, dtype=dtype) for p in paths])
