"""What the ASE calculator and the OpenMM force share: run a potential on host arrays.

:class:`ModelRunner` holds a potential (any module of the potential protocol, e.g. a loaded
G-Hyena), the atoms' species/masses/labels, a :class:`~hyenamd.geometry.VerletList` kept
between calls (rebuilt only when an atom moved more than ``skin / 2``, correct when the host
re-wraps positions). It keeps no order: the sequence order is an input (``orders``, from the
atoms the adapter was handed) or, when absent, computed fresh from the system by the model's
rule (:func:`hyenamd.surrogate.ordering.order_samples`) and returned in ``"orders"`` for the
adapter to store with its atoms; so its results depend only on the arguments of the call
(the Verlet list changes only the rounding). ``order_samples = K > 1`` averages every result
over K valid orders. ``runner(positions, cell)`` takes numpy arrays in Å and returns numpy
arrays in eV, eV/Å and eV/Å³. It never changes torch's default dtype: every tensor is created
with the runner's explicit dtype and device. Unit conversion to ASE/OpenMM units happens in
the adapters, not here.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from hyenamd.dtypes import resolve_dtype
from hyenamd.engine.evaluator import verlet_list_for
from hyenamd.engine.static_inputs import StaticInputs
from hyenamd.system import Batch, Labels

__all__ = ["ModelRunner", "check_species"]


def check_species(model: nn.Module, species: np.ndarray) -> None:
    """Raise ``ValueError`` naming the atomic numbers ``model`` does not know (G-Hyena's ``cfg.species``)."""
    cfg = getattr(model, "cfg", None)
    known = getattr(cfg, "species", None)
    if known is None:
        return
    unknown = sorted(set(np.asarray(species).tolist()) - set(known))
    if unknown:
        raise ValueError(f"species {unknown} are not known to this model (it knows {list(known)})")


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.float64, torch.device("cpu")


class ModelRunner:
    """Energy, per-atom energies, forces and stress of one system from host arrays.

    model: a potential; device/dtype: where to run (default: the model's own; otherwise a
    converted copy is made once, the caller's model is left untouched). skin: Verlet skin, Å. labels: topology labels (for the topology order).
    compile: off (False, the default), True (inductor) or a ``torch.compile`` backend name: the
    model is evaluated through :class:`~hyenamd.surrogate.compiled.CompiledGHyena`
    (:mod:`hyenamd.engine.compile_switch`); :attr:`potential` is what is evaluated, :attr:`model`
    stays the G-Hyena itself (species, order rule, velocity inputs, descriptors).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        skin: float = 0.5,
        order_samples: int = 1,
        compile=False,
    ) -> None:
        from hyenamd.engine.compile_switch import FallbackWatch, check_compilable, compiled_potential

        if int(order_samples) < 1:
            raise ValueError(f"order_samples must be >= 1, got {order_samples}")
        check_compilable(model, compile)  # a bad value or potential: refused before the model is copied
        m_dtype, m_device = _model_dtype_device(model)
        self.dtype = resolve_dtype(dtype) or m_dtype
        self.device = torch.device(device) if device is not None else m_device
        if self.dtype != m_dtype or self.device != m_device:
            # a converted copy: nn.Module.to works in place and the caller's model stays as it was
            model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        self.model = model.eval() if hasattr(model, "eval") else model
        #: what :meth:`evaluate` runs: the model, or its compiled wrapper (``compile``)
        self.potential = compiled_potential(self.model, compile)
        #: the compiled wrapper's eager fallbacks: warned once per new reason, counted
        self.fallbacks = FallbackWatch(self.potential)
        self.neighbor_list = verlet_list_for(model, skin)
        self._species_key: bytes | None = None
        #: species, masses, cell, pbc, ptr as tensors, made afresh only when their arrays change
        self.static = StaticInputs(self.device, self.dtype)
        self._checked_orders: tuple | None = None  # (a copy of the orders given, checked [K, N])
        self.order_samples = int(order_samples)
        from hyenamd.surrogate.ordering import model_ordering

        self.ordering = model_ordering(self.model)  # None: the potential needs no order
        self.n_calls = 0

    def __call__(
        self,
        positions: np.ndarray,
        species: np.ndarray,
        cell: np.ndarray | None,
        pbc: np.ndarray,
        *,
        masses: np.ndarray | None = None,
        labels: Labels | None = None,
        velocities: np.ndarray | None = None,
        stress: bool = False,
        orders: np.ndarray | torch.Tensor | None = None,
    ) -> dict[str, np.ndarray | float]:
        """positions ``[N, 3]`` Å, species ``[N]``, cell ``[3, 3]`` Å or None, pbc ``[3]`` bool.

        velocities ``[N, 3]`` Å/fs are passed on to models with a dynamics head (whose energy
        sees them through the velocity embedding); zeros when not given. orders: ``[K, N]``
        (or ``[N]`` for K = 1) sequence orders to use (``orders[k][j]`` = atom at position j);
        None: computed from this system by the model's rule. Every result is the mean over the
        K orders; ``"orders"`` ``[K, N]`` int64 is what was used (None: the potential needs none).
        """
        self.n_calls += 1
        batch, nbrs = self.prepare(
            positions, species, cell, pbc, masses=masses, labels=labels, velocities=velocities, orders=()
        )
        orders = self.orders_for(batch, orders)
        if orders is None:
            return {**self.evaluate(batch, nbrs, stress=stress), "orders": None}
        runs = [self.evaluate(batch.replace(order=o), nbrs, stress=stress) for o in orders.to(self.device)]
        res = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        return {**res, "orders": orders}

    def prepare(
        self,
        positions: np.ndarray,
        species: np.ndarray,
        cell: np.ndarray | None,
        pbc: np.ndarray,
        *,
        masses: np.ndarray | None = None,
        labels: Labels | None = None,
        velocities: np.ndarray | None = None,
        orders: np.ndarray | torch.Tensor | tuple | None = None,
    ) -> tuple[Batch, object]:
        """The one-system :class:`Batch` and the neighbour list for these arrays.

        The batch's order is ``orders[0]`` when given, else computed fresh by the model's rule
        (nothing is kept between calls); ``orders=()``: leave it unset.
        """
        key = np.asarray(species, dtype=np.int64).tobytes()
        if key != self._species_key:
            check_species(self.model, species)
            self._species_key = key
            if self.neighbor_list is not None:
                self.neighbor_list.reset()
        dev, dt = self.device, self.dtype
        x = torch.as_tensor(np.asarray(positions), dtype=dt, device=dev)
        finite = np.isfinite(x.numpy()).all() if x.device.type == "cpu" else torch.isfinite(x).all()
        if not bool(finite):
            raise ValueError("positions contain NaN or inf")
        st = self.static(species, masses, cell, pbc)
        if st.species.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} positions but {st.species.shape[0]} species")
        v = None
        if getattr(self.model, "dynamics_head", None) is not None:
            v = (
                torch.zeros_like(x)
                if velocities is None
                else torch.as_tensor(velocities, dtype=dt, device=dev)
            )
        batch = Batch(
            positions=x,
            species=st.species,
            masses=st.masses,
            cell=st.cell,
            pbc=st.pbc,
            batch=st.batch,
            ptr=st.ptr,
            labels=(labels,),
            velocities=v,
            has_cell=st.has_cell,
        )
        if not (isinstance(orders, tuple) and orders == ()):
            o = self.orders_for(batch, orders, k=None if orders is not None else 1)
            batch = batch if o is None else batch.replace(order=o[0].to(dev))
        nbrs = None if self.neighbor_list is None else self.neighbor_list(x, st.cell, st.pbc, st.ptr)
        return batch, nbrs

    def evaluate(self, batch: Batch, nbrs, *, stress: bool = False) -> dict[str, np.ndarray | float]:
        """Energy (eV), per-atom energies, forces (eV/Å) and stress (eV/Å³) of a prepared batch, as numpy."""
        from hyenamd.surrogate.forces import compute_forces

        out = compute_forces(self.potential, batch, stress=stress, neighbors=nbrs)
        self.fallbacks.check(stacklevel=3)  # compile=True is never silently without effect
        res: dict[str, np.ndarray | float] = {
            "energy": float(out["energy"][0]),
            "energies": out["energies"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if stress:
            res["stress"] = out["stress"][0].detach().cpu().double().numpy()
        return res

    def orders_for(self, batch: Batch, orders=None, k: int | None = None) -> torch.Tensor | None:
        """The ``[K, N]`` orders to run ``batch`` with: ``orders`` (checked: ``K = order_samples``
        unless ``k`` says otherwise) or fresh ones by the model's rule; None if it needs none."""
        if self.ordering is None:
            return None
        n = batch.n_atoms
        if orders is None:
            from hyenamd.surrogate.ordering import order_samples

            return order_samples(batch.system(0), self.ordering, k or self.order_samples)
        hit = self._checked_orders  # the orders of the last call (equal content): checked then
        if (
            hit is not None
            and isinstance(orders, torch.Tensor)
            and orders.shape == hit[0].shape
            and orders.dtype == hit[0].dtype
            and hit[1].shape[1] == n
            and (k is not None or hit[1].shape[0] == self.order_samples)
            and torch.equal(orders, hit[0])
        ):
            return hit[1]
        o = torch.as_tensor(np.asarray(orders), dtype=torch.int64).reshape(-1, n)
        if k is None and o.shape[0] != self.order_samples:
            raise ValueError(
                f"{o.shape[0]} sequence order(s) were given but this adapter averages over "
                f"order_samples={self.order_samples}; drop the stored order to recompute it"
            )
        if not torch.equal(torch.sort(o, dim=1).values, torch.arange(n).expand(o.shape[0], n)):
            raise ValueError(f"a given sequence order is not a permutation of 0..{n - 1}")
        if isinstance(orders, torch.Tensor) and orders.device.type == "cpu":
            o = o.clone() if o.data_ptr() == orders.data_ptr() else o  # never an alias of the caller's
            self._checked_orders = (orders.clone(), o)
        return o
