"""The learned propagator: strides of Δτ by the surrogate's dynamics head inside an exact O–Φ–O splitting.

A G-Hyena with the ``"dynamics"`` head is a map ``Φ: (x, v) → (x + d, v')`` over its horizon
``Δτ = model.cfg.dynamics_horizon_fs``, trained on *deterministic* (NVE) strides. One stride of
:class:`LearnedPropagator` wraps it in the exact Ornstein–Uhlenbeck (OU) half-steps of the
reference's Langevin thermostat and an energy-conserving momentum rescale (FlashMD, Bigi et al.
2025)::

    O:  v ← c₁ v + c₂ sqrt(k_B T / m · c) ξ₁          c₁ = exp(−γ Δτ / 2),  c₂ = sqrt(1 − exp(−γ Δτ))
        H = U(x) + K(v)                               (per system; the energy the map must keep)
    Φ:  x' = x + d(x, v),   v' = v'(x, v)             (one evaluation of the dynamics model)
        [sample=True: x' = x + d + σˣ ζ₁,  v' = v' + σᵛ (ρ ζ₁ + sqrt(1 − ρ²) ζ₂)   (the stochastic head)]
    R:  α = sqrt(1 − (U(x') + K(v') − H) / K(v')),    v' ← α v'   ⇒  U(x') + K(α v') = H exactly
    O:  v ← c₁ v' + c₂ sqrt(k_B T / m · c) ξ₂

    ========  ===================================================  =====================
    symbol    variable                                             unit
    ========  ===================================================  =====================
    x         ``state.positions``                                  Å
    v         ``state.velocities``                                 Å/fs
    d, v'     ``model(batch)["displacement"]``, ``["velocities"]``  Å, Å/fs
    Δτ        ``dt_fs`` (the model's horizon)                      fs
    γ         ``friction_per_fs`` (0: NVE, the rescale alone)      1/fs
    T         ``temperature_k`` (one or one per system)            K
    ξ₁, ξ₂    ``torch.randn`` from the state's RNG                 —
    σˣ, σᵛ    ``exp(model(batch)["log_sigma_x"/"log_sigma_v"])``    Å, Å/fs
    ρ         ``model(batch)["rho_xv"]`` (x–v noise correlation)   —
    ζ₁, ζ₂    ``torch.randn`` from the state's RNG (after ξ₁)      —
    U         ``energy_model(batch)["energy"]``, ``state.energy``  eV
    K         ``½ Σ m |v|²`` per system                            eV
    α         ``state.aux["alpha"]`` (per system, last stride)     —
    c         ``ACC``: (eV/Å)/amu → Å/fs²                          —
    ========  ===================================================  =====================

Sub-strides (``substeps = k > 1``): one stride is O, then k pairs (Φ, R), then O, so
``Δτ = k × model.cfg.dynamics_horizon_fs`` and H is the energy after the first O. A map Φ
trained on a k-times shorter horizon is far easier to learn than one over the whole stride
(argon, 90 K: 0.55 % of the 40-fs velocity variance unexplained against 38 % at 200 fs;
BENCHMARKS.md), at k times the evaluations per stride. In NVE (γ = 0) a k-substep stride is
exactly k strides of ``substeps=1``. ``rescale_every="stride"`` applies R after the last Φ only
(Φ, Φ, …, Φ R: one energy evaluation per stride).

Why this shape. Over 200 fs a quarter of the velocity variance of a Langevin trajectory is
thermostat noise that no function of ``(x, v)`` can predict; a deterministic head trained by
MSE on Langevin pairs learns the conditional mean and cools the system. A head trained on NVE
strides learns a (near) deterministic map; the OU half-steps are exact for any Δτ (they keep the
Maxwell–Boltzmann distribution invariant), so the stochastic part of the dynamics is done by
the splitting, not learned, and the rescale R removes the map's energy error each stride.

Stochastic Φ (``sample=True``, a model with the ``"stochastic_dynamics"`` head): the stride is
drawn from the head's per-atom Gaussians instead of taking their means (without ``sample`` such
a model runs on its means, like a deterministic head). The draws come from the same RNG as the
OU noise, in the order ξ₁, (ζ₁, ζ₂), ξ₂, so seeding and exact resume are unchanged. Which
splitting fits a stochastic head depends on its data (``docs/engine.md``): trained on Langevin
strides its σ already holds the thermostat's noise, so run it with ``friction_per_fs=0`` (the OU
steps would add the noise twice) and without ``energy_model`` (the rescale would pin H, which a
thermostatted system does not keep); trained on NVE strides, σ is the map's own uncertainty and
the full O–Φ–O splitting applies as for a deterministic head.

Guard of the rescale: when ``K(v') ≤ k_min`` (``1e-8`` eV per degree of freedom) the stride is
not rescaled (α = 1); otherwise ``α² = 1 − (U' + K' − H)/K'`` is clamped to
``[alpha_min², alpha_max²]`` (default [0.5², 2²]), so a bad prediction (U' > H) slows the atoms
down instead of producing NaN. ``state.aux["rescale_guarded"]`` counts the guarded strides
per system since :meth:`init`.

The energy U is a *potential* energy of positions only: the dynamics model's own energy head
sees velocities (they enter its vector stream), so U comes from ``energy_model`` (e.g. the
force field the dynamics head was initialised from; an energy-only evaluation without autograd,
sharing the dynamics model's neighbour list, so its cutoff must not be larger). Without an
energy model there is no rescale (R is skipped) and ``state.energy`` is zeros.

Exact resume and batches: ``x``, ``v``, ``U(x)`` and the RNG state are all the stride needs;
they travel in the state and its checkpoint. A :class:`~hyenamd.Batch` of many systems is one
set of tensors (α and H per system; one ``[N, 3]`` noise block per half-step). ``forces``:
``"none"`` (zeros; cheapest) or ``"conservative"`` (−∂U/∂x of the energy model at the new
positions, in the same evaluation as U; about 2-3× its cost). The sequence order is computed
once at :meth:`init` by the model's rule (:func:`hyenamd.surrogate.ordering.canonical_order`;
the energy model must share the rule) and kept; :meth:`refresh_order` recomputes it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from hyenamd.engine.evaluator import synchronize
from hyenamd.engine.integrators import Integrator, _per_system
from hyenamd.engine.state import MDState, kinetic_energy, remove_com_velocity
from hyenamd.units import BOLTZMANN_EV_PER_K, EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2

__all__ = ["LearnedPropagator", "energy_rescale_factor", "ou_half_step"]

ACC = EV_PER_ANGSTROM_AMU_TO_ANGSTROM_PER_FS2
K_MIN_PER_DOF = 1e-8  # eV: below this kinetic energy per degree of freedom the rescale is skipped


def ou_half_step(v: Tensor, c1: float, sd: Tensor, xi: Tensor) -> Tensor:
    """Exact OU update ``c₁ v + sqrt(1 − c₁²) sd ξ``: v, ξ ``[N, 3]`` Å/fs and —, sd ``[N, 1]`` Å/fs.

    With ``c₁ = exp(−γ Δτ/2)`` it is the exact solution of ``dv = −γ v dt + sqrt(2γ k_B T/m) dW``
    over Δτ/2, so ``N(0, sd²)`` velocities stay ``N(0, sd²)`` (for any Δτ).
    """
    return torch.addcmul(c1 * v, sd, xi, value=math.sqrt(max(0.0, 1.0 - c1 * c1)))


def energy_rescale_factor(
    u_new: Tensor,
    k_new: Tensor,
    total: Tensor,
    dof: Tensor,
    *,
    alpha_min: float = 0.5,
    alpha_max: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Per-system momentum scale ``α`` with ``U' + α² K' = H`` and a mask of the guarded systems.

    u_new, k_new, total ``[B]`` eV (U(x'), K(v'), H before the map); dof ``[B]``. ``α² = 1 −
    (U' + K' − H) / K'`` clamped to ``[alpha_min², alpha_max²]``; α = 1 where ``K' ≤ 1e-8 · dof``
    eV. Returns ``(alpha [B], guarded [B] bool)`` (guarded: clamped or skipped).
    """
    tiny = k_new <= K_MIN_PER_DOF * dof
    safe_k = torch.where(tiny, torch.ones_like(k_new), k_new)
    a2 = 1.0 - (u_new + k_new - total) / safe_k
    lo, hi = alpha_min * alpha_min, alpha_max * alpha_max
    clamped = (a2 < lo) | (a2 > hi) | ~torch.isfinite(a2)
    a2 = torch.nan_to_num(a2, nan=1.0).clamp(lo, hi)
    alpha = torch.where(tiny, torch.ones_like(a2), a2.sqrt())
    return alpha, tiny | clamped


class LearnedPropagator(Integrator):
    """``(init, step)`` over :class:`MDState`: O–Φ–O strides of the dynamics head (see the module doc).

    model: a G-Hyena with the ``"dynamics"`` head (Φ). temperature_k, friction_per_fs: the
    reference thermostat (γ = 0: NVE, no OU steps). energy_model: a potential for U(x) and the
    rescale (None: no rescale). alpha_min/alpha_max: clamp of α. seed: RNG of the noise and of
    initial velocities. forces: ``"none"`` or ``"conservative"`` (needs ``energy_model``).
    sample: draw Φ from the stochastic head's Gaussians (needs ``heads: [..., stochastic_dynamics]``).
    substeps: Φ R pairs per stride (the stride ``dt_fs`` is ``substeps`` × the model's horizon).
    rescale_every: ``"substep"`` (R after every Φ) or ``"stride"`` (R after the last Φ only: one
    energy evaluation per stride instead of ``substeps``).
    """

    name = "learned_propagator"

    def __init__(
        self,
        model: nn.Module,
        temperature_k: float | Sequence[float] | None = None,
        friction_per_fs: float = 0.0,
        *,
        energy_model: nn.Module | None = None,
        alpha_min: float = 0.5,
        alpha_max: float = 2.0,
        seed: int = 0,
        forces: Literal["none", "conservative"] = "none",
        sample: bool = False,
        substeps: int = 1,
        rescale_every: Literal["substep", "stride"] = "substep",
        skin: float = 1.0,
        remove_com: bool = False,
        wrap: bool = False,
        profile: bool = False,
    ) -> None:
        if getattr(model, "dynamics_head", None) is None:
            raise ValueError(
                "LearnedPropagator needs a model with a dynamics head (GHyenaConfig(heads=(..., 'dynamics')))"
            )
        if sample and not hasattr(model.dynamics_head, "noise_shift"):
            raise ValueError(
                "sample=True needs a stochastic dynamics head (GHyenaConfig(heads=(..., 'stochastic_dynamics')))"
            )
        if forces not in ("none", "conservative"):
            raise ValueError(f"forces must be 'none' or 'conservative', got {forces!r}")
        if forces == "conservative" and energy_model is None:
            raise ValueError("forces='conservative' needs an energy_model (the force field)")
        if not (friction_per_fs >= 0 and math.isfinite(friction_per_fs)):
            raise ValueError(f"friction_per_fs must be >= 0 (1/fs), got {friction_per_fs}")
        if friction_per_fs > 0 and temperature_k is None:
            raise ValueError("a Langevin (friction_per_fs > 0) learned propagator needs temperature_k")
        if not 0 < alpha_min <= 1 <= alpha_max:
            raise ValueError(f"need 0 < alpha_min <= 1 <= alpha_max, got {alpha_min}, {alpha_max}")
        if energy_model is not None:
            cut_e = float(getattr(energy_model, "cutoff", 0.0) or 0.0)
            if cut_e > float(getattr(model, "cutoff", 0.0) or 0.0):
                raise ValueError(
                    f"energy_model cutoff {cut_e} Å exceeds the dynamics model's {model.cutoff} Å "
                    "(they share one neighbour list)"
                )
        if energy_model is not None:
            from hyenamd.surrogate.ordering import model_ordering

            rules = {model_ordering(model), model_ordering(energy_model)} - {None}
            if len(rules) > 1:
                raise ValueError(
                    f"the dynamics model and the energy_model order atoms by different rules {sorted(rules)}; "
                    "they share one sequence order (GHyenaConfig.ordering must match)"
                )
        if not (isinstance(substeps, int) and substeps >= 1):
            raise ValueError(f"substeps must be an integer >= 1, got {substeps!r}")
        self.substeps = int(substeps)
        if rescale_every not in ("substep", "stride"):
            raise ValueError(f"rescale_every must be 'substep' or 'stride', got {rescale_every!r}")
        self.rescale_every = rescale_every
        horizon = float(model.cfg.dynamics_horizon_fs)
        super().__init__(
            model, horizon * self.substeps, skin=skin, remove_com=remove_com, wrap=wrap, profile=profile
        )
        self.evaluator._fast = False  # never the analytic path: the model is evaluated below
        self.energy_model = energy_model
        self.forces = forces
        self.friction_per_fs = float(friction_per_fs)
        if temperature_k is not None:
            t = torch.as_tensor(temperature_k, dtype=torch.float64).reshape(-1)
            if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
                raise ValueError(f"temperature_k must be finite and >= 0 K, got {temperature_k}")
            temperature_k = temperature_k if isinstance(temperature_k, int | float) else tuple(t.tolist())
        self.temperature_k = temperature_k
        self.alpha_min, self.alpha_max = float(alpha_min), float(alpha_max)
        self.seed = int(seed)
        self.sample = bool(sample)
        self.c1 = math.exp(-0.5 * self.friction_per_fs * self.dt_fs)
        self._sd_of: Tensor | None = None
        self._sd: Tensor | None = None

    @property
    def langevin(self) -> bool:
        return self.friction_per_fs > 0

    @property
    def rescale(self) -> bool:
        return self.energy_model is not None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "temperature_k": self.temperature_k,
            "friction_per_fs": self.friction_per_fs,
            "rescale": self.rescale,
            "alpha_min": self.alpha_min,
            "alpha_max": self.alpha_max,
            "seed": self.seed,
            "forces": self.forces,
            "sample": self.sample,
            "substeps": self.substeps,
            "rescale_every": self.rescale_every,
        }

    # ------------------------------------------------------------------ evaluations
    def _phi(
        self, state: MDState, x: Tensor, v: Tensor, gen: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Displacement, next velocities and nl_ref: one evaluation of the dynamics model at (x, v)
        (a draw from its Gaussians with ``gen`` when ``sample``)."""
        ev = self.evaluator
        if ev.profile:
            synchronize(x.device)
            t0 = time.perf_counter()
        nbrs, ref = ev.neighbors(state, x)
        if ev.profile:
            t1 = time.perf_counter()
            ev.timings["neighbors"] += t1 - t0
        with torch.no_grad():
            out = self.potential(state.as_batch(x).replace(velocities=v), neighbors=nbrs)
        ev.n_evaluations += 1
        if ev.profile:
            synchronize(x.device)
            ev.timings["model"] += time.perf_counter() - t1
        if self.sample:
            from hyenamd.surrogate.stochastic_head import sample_stride

            disp, vel = sample_stride({k: t.detach().to(x.dtype) for k, t in out.items()}, gen)
            return disp, vel, ref
        return out["displacement"].detach().to(x.dtype), out["velocities"].detach().to(x.dtype), ref

    def _potential(self, state: MDState, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """U(x) ``[B]`` eV and forces ``[N, 3]`` (zeros unless ``forces='conservative'``) of the energy model."""
        if self.energy_model is None:
            zeros = torch.zeros(state.n_systems, dtype=x.dtype, device=x.device)
            return zeros, torch.zeros_like(x), state.nl_ref
        ev = self.evaluator
        t0 = time.perf_counter() if ev.profile else 0.0
        nbrs, ref = ev.neighbors(state, x)
        batch = state.as_batch(x).replace(velocities=None)
        if self.forces == "conservative":
            from hyenamd.surrogate.forces import compute_forces

            out = compute_forces(self.energy_model, batch, neighbors=nbrs)
            f = out["forces"].detach()
        else:
            with torch.no_grad():
                out = self.energy_model(batch, neighbors=nbrs)
            f = torch.zeros_like(x)
        ev.n_evaluations += 1
        if ev.profile:
            synchronize(x.device)
            ev.timings["model"] += time.perf_counter() - t0
        return out["energy"].detach().to(x.dtype), f, ref

    def _noise_scale(self, state: MDState) -> Tensor:
        """``sqrt(k_B T / m · c)`` ``[N, 1]`` Å/fs, cached while the masses tensor is the same."""
        if self._sd_of is not state.masses:
            t = _per_system(self.temperature_k, state.n_systems, "temperature_k", state.positions)
            self._sd = torch.sqrt(BOLTZMANN_EV_PER_K * t[state.batch] * ACC / state.masses).unsqueeze(-1)
            self._sd_of = state.masses
        return self._sd

    # ------------------------------------------------------------------ (init, step)
    def init(self, system, *, temperature_k=None, seed: int | None = None) -> MDState:
        """As :meth:`Integrator.init` (missing velocities drawn at the thermostat temperature), with
        ``state.energy = U(x)`` of the energy model and the rescale counters in ``state.aux``."""
        if temperature_k is None:
            temperature_k = self.temperature_k
        seed = self.seed if seed is None else seed
        state = Integrator.init(self, system, temperature_k=temperature_k, seed=seed)
        energy, forces, ref = self._potential(state, state.positions)
        ones = torch.ones(state.n_systems, dtype=state.dtype, device=state.device)
        return state.replace(
            energy=energy,
            forces=forces,
            nl_ref=ref,
            aux={"alpha": ones, "rescale_guarded": torch.zeros_like(ones)},
        )

    def refresh_order(self, state: MDState) -> tuple[MDState, Tensor]:
        """Recompute the sequence order at the current positions (the models' rule); returns the new
        state (U of the energy model under the new order) and the jump of U ``[B]`` eV."""
        from hyenamd.engine.integrators import canonical_order

        if state.order is None:
            return state, torch.zeros_like(state.energy)
        new = state.replace(order=canonical_order(self.potential, state.as_batch().replace(order=None)))
        energy, forces, ref = self._potential(new, new.positions)
        return new.replace(energy=energy, forces=forces, nl_ref=ref), energy - state.energy

    @torch.no_grad()
    def step(self, state: MDState) -> MDState:
        if "rescale_guarded" not in state.aux:
            raise ValueError("this state was not made by LearnedPropagator.init(); create it there")
        v = state.velocities
        gen = self._generator(state) if self.langevin or self.sample else None
        if self.langevin:
            sd = self._noise_scale(state)
            xi = torch.randn(v.shape, generator=gen, dtype=v.dtype, device=v.device)
            v = ou_half_step(v, self.c1, sd, xi)
        total = state.energy + kinetic_energy(state.masses, v, state.batch, state.n_systems)
        x, ref, u_new = state.positions, state.nl_ref, state.energy
        forces = state.forces
        alpha, guarded = state.aux["alpha"], state.aux["rescale_guarded"]
        for k in range(self.substeps):  # Φ R, Φ R, ... (one Φ R unless substeps > 1)
            disp, v_new, ref = self._phi(state.replace(nl_ref=ref), x, v, gen)
            x = x + disp
            if self.wrap:
                x = self._wrap(state, x)
            last = k == self.substeps - 1
            if self.rescale and (last or self.rescale_every == "substep"):
                # U(x') on the same Verlet list (rebuilt if x' moved beyond skin/2)
                with torch.enable_grad():
                    u_new, forces, ref = self._potential(state.replace(nl_ref=ref), x)
                k_new = kinetic_energy(state.masses, v_new, state.batch, state.n_systems)
                alpha, hit = energy_rescale_factor(
                    u_new, k_new, total, state.dof, alpha_min=self.alpha_min, alpha_max=self.alpha_max
                )
                v_new = v_new * alpha[state.batch].unsqueeze(-1)
                guarded = guarded + hit.to(guarded.dtype)
            elif not self.rescale:
                u_new, forces = torch.zeros_like(state.energy), torch.zeros_like(x)
            v = v_new
        if self.langevin:
            xi = torch.randn(v.shape, generator=gen, dtype=v.dtype, device=v.device)
            v_new = ou_half_step(v_new, self.c1, sd, xi)
        if self.remove_com:
            v_new = remove_com_velocity(state.masses, v_new, state.batch, state.n_systems)
        return state.replace(
            positions=x,
            velocities=v_new,
            forces=forces,
            energy=u_new,
            nl_ref=ref,
            step=state.step + 1,
            time_fs=state.time_fs + self.dt_fs,
            rng_state=gen.get_state() if gen is not None else state.rng_state,
            aux={"alpha": alpha, "rescale_guarded": guarded},
        )
