"""Integrators as ``(init, step)`` pairs over :class:`~hyenamd.engine.state.MDState`.

``state = integrator.init(system_or_batch)``; ``state = integrator.step(state)`` (a new state;
the old one is untouched). Everything stays on the device of the system; the only host
synchronisation per step is the Verlet list's "has anything moved more than skin/2" test.
Units: Å, fs, eV, amu; acceleration ``a = F / m · c`` with
``c = EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2`` ((eV/Å)/amu → Å/fs²).

A :class:`~hyenamd.Batch` of many systems is integrated as one set of tensors; systems never
interact (the neighbour list keeps them apart) and each has its own temperature and
degrees of freedom. The sequence order of the surrogate is computed once at :meth:`init` by
the model's rule (:func:`hyenamd.surrogate.ordering.batch_order`; ``batch.order`` when the
system carries one) and kept in the state for the whole trajectory (a smooth energy
surface); :meth:`Integrator.refresh_order` recomputes it from the current positions and
returns the energy jump (``Simulation(..., order_refresh_steps=M)`` does so every M steps).
``order_samples = K > 1`` keeps K orders (``state.aux["orders"]`` ``[K, N]``) and averages
energies and forces over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hyenamd.engine.evaluator import ForceEvaluator
from hyenamd.engine.state import MDState, remove_com_velocity
from hyenamd.geometry import complete_cell
from hyenamd.system import Batch, System
from hyenamd.units import BOLTZMANN_EV_PER_K, EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2

__all__ = ["Integrator", "LangevinBAOAB", "VelocityVerlet", "canonical_order", "maxwell_boltzmann"]

ACC = EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2


def canonical_order(potential: nn.Module, batch: Batch, order_samples: int = 1) -> Tensor | None:
    """The potential's sequence order(s) of ``batch``: ``[N]`` global indices, or ``[K, N]``
    for ``order_samples = K > 1``; None when the potential needs no order.

    The rule is the potential's (:func:`hyenamd.surrogate.ordering.model_ordering`). Row 0 is
    ``batch.order`` when set, else computed by the rule; further rows are the rule's
    deterministic variants (:func:`hyenamd.surrogate.ordering.batch_order_samples`).
    """
    from hyenamd.surrogate.ordering import batch_order, batch_order_samples, model_ordering

    rule = model_ordering(potential)
    if rule is None:
        return None
    if order_samples == 1:
        return batch.order if batch.order is not None else batch_order(batch, rule)
    orders = batch_order_samples(batch, rule, order_samples)
    if batch.order is not None:
        orders[0] = batch.order
    return orders


def maxwell_boltzmann(
    masses: Tensor, temperature_k: Tensor, generator: torch.Generator, *, dtype: torch.dtype
) -> Tensor:
    """Velocities ``[N, 3]`` Å/fs drawn from ``N(0, k_B T / m)`` per component.

    masses ``[N]`` amu; temperature_k ``[N]`` K (per atom); generator on the masses' device.
    """
    sd = torch.sqrt(BOLTZMANN_EV_PER_K * temperature_k * ACC / masses).unsqueeze(-1)
    xi = torch.randn(masses.shape[0], 3, generator=generator, dtype=dtype, device=masses.device)
    return sd * xi


def _as_batch(system: System | Batch) -> tuple[Batch, bool]:
    if isinstance(system, System):
        return Batch.from_system(system), True
    if isinstance(system, Batch):
        return system, False
    raise TypeError(f"init() needs a hyenamd.System or hyenamd.Batch, got {type(system).__name__}")


def _per_system(value: float | Sequence[float] | Tensor, n: int, name: str, like: Tensor) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must be one value or one per system ({n}), got {t.numel()}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, got {t.tolist()}")
    return t.clone()


class Integrator:
    """Base of the integrators: holds the potential (through a :class:`ForceEvaluator`) and ``dt``.

    Subclasses implement :meth:`step`. ``remove_com``: subtract each system's centre-of-mass
    velocity after every step (and at init); the state's ``dof`` is then ``3N - 3``.
    ``wrap``: wrap positions into the cell along periodic axes after every step (the
    neighbour list is correct under re-wrapping; by default trajectories stay unwrapped).
    """

    name = "integrator"

    def __init__(
        self,
        potential: nn.Module,
        dt_fs: float,
        *,
        skin: float = 1.0,
        remove_com: bool = False,
        wrap: bool = False,
        profile: bool = False,
        order_samples: int = 1,
    ) -> None:
        if not (dt_fs > 0 and math.isfinite(dt_fs)):
            raise ValueError(f"dt_fs must be a positive time step in fs, got {dt_fs}")
        if int(order_samples) < 1:
            raise ValueError(f"order_samples must be >= 1, got {order_samples}")
        self.order_samples = int(order_samples)
        self.potential = potential
        self.dt_fs = float(dt_fs)
        self.remove_com = bool(remove_com)
        self.wrap = bool(wrap)
        self.evaluator = ForceEvaluator(potential, skin=skin, profile=profile)
        self._generators: dict[torch.device, torch.Generator] = {}
        self._inv_m_of: Tensor | None = None
        self._inv_m: Tensor | None = None

    # ------------------------------------------------------------------ public API
    def describe(self) -> dict:
        """The settings a resumed run must share (written into checkpoints)."""
        return {
            "integrator": self.name,
            "dt_fs": self.dt_fs,
            "remove_com": self.remove_com,
            "wrap": self.wrap,
            **({"order_samples": self.order_samples} if self.order_samples != 1 else {}),
        }

    def init(
        self,
        system: System | Batch,
        *,
        temperature_k: float | Sequence[float] | None = None,
        seed: int = 0,
    ) -> MDState:
        """The initial state: forces at the initial positions, velocities from the system or drawn.

        Velocities: the system's own when it has them; else Maxwell-Boltzmann at
        ``temperature_k`` (K, one value or one per system) drawn with ``seed``; else zeros.
        """
        batch, single = _as_batch(system)
        gen = torch.Generator(device=batch.device)
        gen.manual_seed(int(seed))
        if batch.velocities is not None:
            v = batch.velocities.clone()
        elif temperature_k is not None:
            t_sys = _per_system(temperature_k, batch.n_systems, "temperature_k", batch.positions)
            v = maxwell_boltzmann(batch.masses, t_sys[batch.batch], gen, dtype=batch.dtype)
        else:
            v = torch.zeros_like(batch.positions)
        if self.remove_com:
            v = remove_com_velocity(batch.masses, v, batch.batch, batch.n_systems)
        order = canonical_order(self.potential, batch, self.order_samples)
        aux = {}
        if order is not None and order.ndim == 2:
            order, aux = order[0], {"orders": order}
        zeros = torch.zeros(batch.n_systems, dtype=batch.dtype, device=batch.device)
        state = MDState.from_batch(
            batch.replace(velocities=v),
            velocities=v,
            forces=torch.zeros_like(batch.positions),
            energy=zeros,
            remove_com=self.remove_com,
            single=single,
            rng_state=gen.get_state(),
            order=order,
        ).replace(aux=aux)
        positions = self._wrap(state, state.positions) if self.wrap else state.positions
        with torch.no_grad():
            energy, forces, ref = self.evaluator(state, positions)
        return state.replace(positions=positions, forces=forces, energy=energy, nl_ref=ref)

    def step(self, state: MDState) -> MDState:  # pragma: no cover - abstract
        raise NotImplementedError

    def refresh_order(self, state: MDState) -> tuple[MDState, Tensor]:
        """Recompute the sequence order(s) from the current positions (the potential's rule).

        Returns the new state (order, energy and forces of the new order) and the energy jump
        ``E_new - E_old`` ``[B]`` eV the refresh caused. A no-op (zero jump) for potentials
        that need no order.
        """
        if state.order is None:
            return state, torch.zeros_like(state.energy)
        fresh = state.as_batch().replace(order=None)
        order = canonical_order(self.potential, fresh, self.order_samples)
        aux = dict(state.aux)
        if order.ndim == 2:
            order, aux["orders"] = order[0], order
        new = state.replace(order=order, aux=aux)
        with torch.no_grad():
            energy, forces, ref = self.evaluator(new, new.positions)
        return new.replace(energy=energy, forces=forces, nl_ref=ref), energy - state.energy

    def run(self, state: MDState, n_steps: int) -> MDState:
        """``n_steps`` steps without reporters (see :class:`hyenamd.engine.Simulation` for those)."""
        for _ in range(int(n_steps)):
            state = self.step(state)
        return state

    # ------------------------------------------------------------------ helpers
    def _generator(self, state: MDState) -> torch.Generator:
        dev = state.device
        gen = self._generators.get(dev)
        if gen is None:
            gen = self._generators[dev] = torch.Generator(device=dev)
        if state.rng_state is None:
            raise ValueError("this state has no RNG state; create it with integrator.init()")
        gen.set_state(state.rng_state)
        return gen

    def _inverse_mass(self, state: MDState) -> Tensor:
        """``c / m`` as ``[N, 1]`` (Å/fs² per eV/Å), cached while the state's masses tensor is the same."""
        if self._inv_m_of is not state.masses:
            self._inv_m = (ACC / state.masses).unsqueeze(-1)
            self._inv_m_of = state.masses
        return self._inv_m

    def _wrap(self, state: MDState, x: Tensor) -> Tensor:
        """Wrap ``x`` into each system's cell along its periodic axes."""
        if not bool(state.pbc.any()):
            return x
        cells = torch.stack([complete_cell(c) for c in state.cell])
        inv = torch.linalg.inv(cells)
        f = torch.bmm(x.unsqueeze(1), inv[state.batch]).squeeze(1)
        f = torch.where(state.pbc[state.batch], f - torch.floor(f), f)
        return torch.bmm(f.unsqueeze(1), cells[state.batch]).squeeze(1)

    def _finish(self, state: MDState, x: Tensor, v: Tensor, **changes) -> MDState:
        """Common tail of a step: wrap, forces at the new positions, closing half kick, COM."""
        if self.wrap:
            x = self._wrap(state, x)
        energy, forces, ref = self.evaluator(state, x)
        v = torch.addcmul(v, forces, self._inverse_mass(state), value=0.5 * self.dt_fs)
        if self.remove_com:
            v = remove_com_velocity(state.masses, v, state.batch, state.n_systems)
        return state.replace(
            positions=x,
            velocities=v,
            forces=forces,
            energy=energy,
            nl_ref=ref,
            step=state.step + 1,
            time_fs=state.time_fs + self.dt_fs,
            **changes,
        )


class VelocityVerlet(Integrator):
    """Velocity Verlet, NVE (symplectic, time-reversible, energy error O(Δt²))::

        v(t + Δt/2) = v(t) + (Δt/2) a(t)
        x(t + Δt)   = x(t) + Δt v(t + Δt/2)
        v(t + Δt)   = v(t + Δt/2) + (Δt/2) a(t + Δt),      a = F(x) / m · c

    ========  ==========================  =========
    symbol    variable                    unit
    ========  ==========================  =========
    x         ``state.positions``         Å
    v         ``state.velocities``        Å/fs
    F         ``state.forces``            eV/Å
    m         ``state.masses``            amu
    Δt        ``dt_fs``                   fs
    c         ``ACC``                     (Å/fs²)/(eV/Å/amu)
    ========  ==========================  =========
    """

    name = "velocity_verlet"

    @torch.no_grad()
    def step(self, state: MDState) -> MDState:
        v = torch.addcmul(state.velocities, state.forces, self._inverse_mass(state), value=0.5 * self.dt_fs)
        x = torch.add(state.positions, v, alpha=self.dt_fs)
        return self._finish(state, x, v)


class LangevinBAOAB(Integrator):
    """Langevin dynamics, NVT, BAOAB splitting (Leimkuhler & Matthews 2013)::

        B: v ← v + (Δt/2) a(x)
        A: x ← x + (Δt/2) v
        O: v ← c₁ v + c₂ sqrt(k_B T / m · c) ξ,   c₁ = exp(−γ Δt),  c₂ = sqrt(1 − c₁²),  ξ ~ N(0, 1)
        A: x ← x + (Δt/2) v
        B: v ← v + (Δt/2) a(x)                    (forces evaluated once per step)

    ========  ==========================================  ======
    symbol    variable                                    unit
    ========  ==========================================  ======
    γ         ``friction_per_fs``                         1/fs
    T         ``temperature_k`` (one or one per system)   K
    k_B       ``BOLTZMANN_EV_PER_K``                      eV/K
    ξ         ``torch.randn`` from the state's RNG        —
    (others)  as in :class:`VelocityVerlet`
    ========  ==========================================  ======

    The noise is drawn from a ``torch.Generator`` whose state travels in ``state.rng_state``,
    so a run resumed from a checkpoint continues the same random sequence. A batch draws one
    ``[N, 3]`` block per step, so its noise differs from that of separate runs of its systems.
    """

    name = "langevin_baoab"

    def __init__(
        self,
        potential: nn.Module,
        dt_fs: float,
        temperature_k: float | Sequence[float],
        friction_per_fs: float = 0.01,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(potential, dt_fs, **kwargs)
        if not (friction_per_fs >= 0 and math.isfinite(friction_per_fs)):
            raise ValueError(f"friction_per_fs must be >= 0 (1/fs), got {friction_per_fs}")
        t = torch.as_tensor(temperature_k, dtype=torch.float64).reshape(-1)
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"temperature_k must be finite and >= 0 K, got {temperature_k}")
        self.temperature_k = temperature_k if isinstance(temperature_k, int | float) else tuple(t.tolist())
        self.friction_per_fs = float(friction_per_fs)
        self.seed = int(seed)
        self._sd_of: Tensor | None = None
        self._sd: Tensor | None = None
        self.c1 = math.exp(-self.friction_per_fs * self.dt_fs)
        self.c2 = math.sqrt(max(0.0, 1.0 - self.c1 * self.c1))

    def describe(self) -> dict:
        return {
            **super().describe(),
            "temperature_k": self.temperature_k,
            "friction_per_fs": self.friction_per_fs,
            "seed": self.seed,
        }

    def init(self, system: System | Batch, *, temperature_k=None, seed: int | None = None) -> MDState:
        """As :meth:`Integrator.init`; missing velocities are drawn at the thermostat temperature."""
        return super().init(
            system,
            temperature_k=self.temperature_k if temperature_k is None else temperature_k,
            seed=self.seed if seed is None else seed,
        )

    def _noise_scale(self, state: MDState) -> Tensor:
        """``sqrt(k_B T / m · c)`` ``[N, 1]`` Å/fs, cached while the masses tensor is the same."""
        if self._sd_of is not state.masses:
            t = _per_system(self.temperature_k, state.n_systems, "temperature_k", state.positions)
            self._sd = torch.sqrt(BOLTZMANN_EV_PER_K * t[state.batch] * ACC / state.masses).unsqueeze(-1)
            self._sd_of = state.masses
        return self._sd

    @torch.no_grad()
    def step(self, state: MDState) -> MDState:
        h = 0.5 * self.dt_fs
        inv_m = self._inverse_mass(state)
        sd = self._noise_scale(state)
        gen = self._generator(state)
        v = torch.addcmul(state.velocities, state.forces, inv_m, value=h)
        x = torch.add(state.positions, v, alpha=h)
        xi = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        v = torch.addcmul(self.c1 * v, sd, xi, value=self.c2)
        x = torch.add(x, v, alpha=h)
        return self._finish(state, x, v, rng_state=gen.get_state())
