"""The physics test kit: symmetry, conservation and batching checks, and tiny test systems.

Users test their own potentials with it (as e3nn's ``util.test`` or TorchSim's ``testing``)::

    from hyenamd.testing import assert_equivariant, assert_forces_match_fd, rattled_cu
    assert_equivariant(model, rattled_cu(seed=1))
    assert_forces_match_fd(model.to(torch.float64), rattled_cu(seed=1))

A *model* is an ``nn.Module`` following the potential protocol of
:mod:`hyenamd.surrogate.forces` (``model(batch) -> {"energy", "energies", ...}``); its
outputs are taken through ``compute_forces`` (adds ``"forces"``, and ``"stress"`` when the
system has a 3-D cell). A plain callable ``fn(system) -> dict[str, Tensor]`` works too.

How outputs transform is read from their names (:data:`OUTPUT_KINDS`; extend with ``kinds=``):
``"scalar"`` invariant, ``"vector"`` ``y -> y Rᵀ``, ``"tensor"`` (rank 2) ``y -> R y Rᵀ``. Under
translations and periodic re-wrapping every output is invariant.

Symmetry checks evaluate every transformed copy *fresh*: ``system.order`` is dropped and the
model computes the order of each copy by its own rule
(:func:`hyenamd.surrogate.ordering.canonical_order`), as a new calculator would; so they test
the frame independence of the ordering rule too. Finite-difference and batching checks fix
the order once by the model's rule (forces are derivatives at a fixed order).

Systems are built by hand (no ASE): :func:`water_trimer`, :func:`lj_argon`, :func:`rattled_cu`;
:func:`maxwell_boltzmann` adds seeded thermal velocities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from hyenamd.system import Batch, Labels, System

__all__ = [
    "OUTPUT_KINDS",
    "assert_batch_independent",
    "assert_equivariant",
    "assert_forces_match_fd",
    "assert_matches_reference",
    "lj_argon",
    "maxwell_boltzmann",
    "perturb_parameters",
    "random_orthogonal",
    "rattled_cu",
    "water_trimer",
]

#: How each named output transforms under a rotation/reflection R.
OUTPUT_KINDS: dict[str, str] = {
    "energy": "scalar",
    "energies": "scalar",
    "forces": "vector",
    "direct_forces": "vector",
    "displacement": "vector",
    "velocities": "vector",
    "stress": "tensor",
}

_PER_SYSTEM = {"energy", "stress"}

ModelOrFn = nn.Module | Callable[[System], Mapping[str, Tensor]]


# --------------------------------------------------------------------------- helpers
def _default_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-4


def _has_volume(system: System) -> bool:
    return system.cell is not None and bool(system.pbc.any()) and (system.volume or 0.0) > 0


def _fresh(system: System) -> System:
    """``system`` without a sequence order: the model computes it by its rule at evaluation."""
    return system if system.order is None else system.replace(order=None)


def _with_order(model_or_fn: ModelOrFn, system: System) -> System:
    """``system`` with the order of ``model``'s rule fixed (unchanged for plain callables or orderless models)."""
    from hyenamd.surrogate.ordering import canonical_order, model_ordering

    rule = model_ordering(model_or_fn) if isinstance(model_or_fn, nn.Module) else None
    if rule is None or system.order is not None:
        return system
    return system.replace(order=canonical_order(system, rule))


def _evaluate(model_or_fn: ModelOrFn, system: System) -> dict[str, Tensor]:
    if isinstance(model_or_fn, nn.Module):
        from hyenamd.surrogate.forces import compute_forces

        out = compute_forces(model_or_fn, Batch.from_system(system), stress=_has_volume(system))
    else:
        out = model_or_fn(system)
    return {k: v.detach() for k, v in out.items() if isinstance(v, Tensor)}


def _transform(y: Tensor, kind: str, rot: Tensor) -> Tensor:
    if kind == "scalar":
        return y
    if kind == "vector":
        return y @ rot.T
    if kind == "tensor":
        return rot @ y @ rot.T
    raise ValueError(f"unknown output kind {kind!r}; use 'scalar', 'vector' or 'tensor'")


def _compare(name: str, what: str, got: Tensor, want: Tensor, atol: float, rtol: float) -> None:
    if got.shape != want.shape:
        raise AssertionError(f"{name} under {what}: shape {tuple(got.shape)} != {tuple(want.shape)}")
    err = float((got - want).abs().max()) if got.numel() else 0.0
    scale = float(want.abs().max()) if want.numel() else 0.0
    if not err <= atol + rtol * scale:  # also catches NaN
        raise AssertionError(
            f"'{name}' fails the {what} check: "
            f"max |error| = {err:.3e} > atol {atol:.1e} + rtol {rtol:.1e} × max|{name}| {scale:.3e}"
        )


def random_orthogonal(
    seed: int = 0, *, reflection: bool = False, dtype: torch.dtype = torch.float64
) -> Tensor:
    """A random ``[3, 3]`` orthogonal matrix with ``det = -1`` if ``reflection`` else ``+1`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.linalg.det(q) < 0) != reflection:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _rotate(system: System, rot: Tensor, shift: Tensor) -> System:
    """``x -> x Rᵀ + t``, ``cell -> cell Rᵀ`` (a lattice vector negated to stay right-handed), ``v -> v Rᵀ``."""
    cell = system.cell
    if cell is not None:
        cell = cell @ rot.T
        if float(torch.linalg.det(cell)) < 0:  # reflected: the same lattice with one vector negated
            k = int(torch.nonzero(cell.norm(dim=1) > 0)[0])
            cell = cell.clone()
            cell[k] = -cell[k]
    vel = None if system.velocities is None else system.velocities @ rot.T
    return system.replace(positions=system.positions @ rot.T + shift, cell=cell, velocities=vel)


def _rewrap(system: System, gen: torch.Generator) -> System:
    """Move each atom by a random lattice vector ``n @ cell`` (n ∈ {-1, 0, 1} on periodic axes)."""
    n = torch.randint(-1, 2, (system.n_atoms, 3), generator=gen) * system.pbc.to(torch.int64)
    return system.replace(positions=system.positions + n.to(system.dtype) @ system.cell)


# --------------------------------------------------------------------------- assertions
def assert_equivariant(
    model_or_fn: ModelOrFn,
    system: System,
    *,
    outputs: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Check O(3) equivariance, translation and periodic re-wrap invariance of the outputs.

    Transforms: a proper rotation plus a translation, a reflection (det = -1) plus a
    translation, and (periodic systems) a re-wrap of random atoms by lattice vectors. Every
    copy is evaluated fresh (its order recomputed by the model's rule; see the module doc).
    ``outputs``: names to check (default: every returned output of known kind);
    tolerances default to 1e-10 (float64) or 1e-4 (float32), as ``|Δ| ≤ atol + rtol·max|y|``.
    Returns the outputs of the untransformed system. Raises AssertionError naming the output.
    """
    table = {**OUTPUT_KINDS, **(kinds or {})}
    system = _fresh(system)
    tol = _default_tol(system.dtype)
    atol = tol if atol is None else atol
    rtol = tol if rtol is None else rtol
    ref = _evaluate(model_or_fn, system)
    names = [k for k in ref if k in table] if outputs is None else list(outputs)
    missing = [k for k in names if k not in ref]
    if missing:
        raise ValueError(f"outputs {missing} were not returned (got {sorted(ref)})")
    unknown = [k for k in names if k not in table]
    if unknown:
        raise ValueError(f"don't know how outputs {unknown} transform; pass kinds={{name: 'vector', ...}}")
    if not names:
        raise ValueError(f"no output of known kind to check among {sorted(ref)}")
    gen = torch.Generator().manual_seed(seed)
    for reflection in (False, True):
        rot = random_orthogonal(seed + int(reflection), reflection=reflection, dtype=system.dtype)
        shift = (torch.rand(3, generator=gen, dtype=torch.float64) * 10 - 5).to(system.dtype)
        out = _evaluate(model_or_fn, _rotate(system, rot, shift))
        what = "reflection + translation" if reflection else "rotation + translation"
        for k in names:
            _compare(k, what, out[k], _transform(ref[k], table[k], rot), atol, rtol)
    if system.cell is not None and bool(system.pbc.any()):
        out = _evaluate(model_or_fn, _rewrap(system, gen))
        for k in names:
            _compare(k, "periodic re-wrap", out[k], ref[k], atol, rtol)
    return ref


def assert_forces_match_fd(
    model: nn.Module,
    system: System,
    *,
    h: float = 1e-5,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    atoms: Sequence[int] | None = None,
    stress: bool | None = None,
) -> None:
    """Check ``forces = -∂E/∂x`` (and ``stress = (1/V) ∂E/∂ε``) by central finite differences.

    Needs float64 (model and system). ``atoms``: indices to check (default: up to 6 spread over
    the system); ``stress``: check the strain derivative too (default: when the system has a
    3-D cell). Passes when ``max |analytic - fd| ≤ atol + rtol · max |fd|`` per quantity.
    """
    from hyenamd.surrogate.forces import compute_forces

    if system.dtype != torch.float64:
        raise ValueError(f"finite differences need float64; got a {system.dtype} system")
    system = _with_order(model, system)
    batch = Batch.from_system(system)
    stress = _has_volume(system) if stress is None else stress
    out = compute_forces(model, batch, stress=stress)

    def energy(pos: Tensor, cell: Tensor) -> float:
        with torch.no_grad():
            return float(model(batch.replace(positions=pos, cell=cell))["energy"].sum())

    if atoms is None:
        atoms = sorted({int(k) for k in np.linspace(0, system.n_atoms - 1, min(6, system.n_atoms))})
    fd = torch.zeros(len(atoms), 3, dtype=torch.float64)
    for a, atom in enumerate(atoms):
        for ax in range(3):
            xp, xm = batch.positions.clone(), batch.positions.clone()
            xp[atom, ax] += h
            xm[atom, ax] -= h
            fd[a, ax] = -(energy(xp, batch.cell) - energy(xm, batch.cell)) / (2 * h)
    _check_fd("forces", out["forces"][list(atoms)].double(), fd, atol, rtol)
    if stress:
        vol = float(torch.linalg.det(batch.cell[0]))
        fd_s = torch.zeros(3, 3, dtype=torch.float64)
        for a in range(3):
            for c in range(3):
                eps = torch.zeros(3, 3, dtype=torch.float64)
                eps[a, c] = eps[c, a] = h if a == c else h / 2
                ep = torch.eye(3, dtype=torch.float64) + eps
                em = torch.eye(3, dtype=torch.float64) - eps
                e_p = energy(batch.positions @ ep, batch.cell @ ep)
                e_m = energy(batch.positions @ em, batch.cell @ em)
                fd_s[a, c] = (e_p - e_m) / (2 * h) / vol
        _check_fd("stress", out["stress"][0].double(), fd_s, atol, rtol)


def _check_fd(name: str, got: Tensor, fd: Tensor, atol: float, rtol: float) -> None:
    err = float((got - fd).abs().max())
    scale = float(fd.abs().max())
    if not err <= atol + rtol * scale:
        raise AssertionError(
            f"{name} do not match finite differences of the energy: max |error| = {err:.3e} > "
            f"atol {atol:.1e} + rtol {rtol:.1e} × max|fd| {scale:.3e}\nanalytic:\n{got}\nfd:\n{fd}"
        )


def assert_batch_independent(
    model: nn.Module, systems: Sequence[System], *, atol: float = 1e-12, rtol: float = 1e-12
) -> None:
    """Check that a batch of ``systems`` gives the same outputs as separate calls (all outputs)."""
    from hyenamd.surrogate.forces import compute_forces

    systems = [_with_order(model, s) for s in systems]
    batch = Batch.from_systems(systems)
    stress = any(_has_volume(s) for s in systems)
    together = compute_forces(model, batch, stress=stress)
    ptr = batch.ptr.tolist()
    for k, s in enumerate(systems):
        alone = compute_forces(model, Batch.from_system(s), stress=stress)
        for name, y in alone.items():
            if name not in together:
                raise AssertionError(f"output '{name}' missing from the batched call")
            per_system = name in _PER_SYSTEM or together[name].shape[0] != batch.n_atoms
            part = together[name][k : k + 1] if per_system else together[name][ptr[k] : ptr[k + 1]]
            _compare(name, f"batching (system {k} of {len(systems)})", part, y, atol, rtol)


def assert_matches_reference(model: nn.Module, batch: Batch, atol: float = 1e-10) -> None:
    """A G-Hyena's per-atom energies and forces equal the slow O(N²) oracle's (float64 models).

    The order is fixed once by the model's rule; forces of the oracle come from autograd through
    :func:`hyenamd.surrogate.reference.reference_forward`. ``atol`` in eV and eV/Å (relative to
    the largest force when that exceeds 1).
    """
    from hyenamd.surrogate import compute_forces
    from hyenamd.surrogate.ordering import batch_order
    from hyenamd.surrogate.reference import reference_forward

    batch = batch.replace(order=batch_order(batch, model.cfg.ordering))
    fast = compute_forces(model, batch)
    pos = batch.positions.clone().requires_grad_(True)
    ref = reference_forward(model, batch.replace(positions=pos))
    (grad,) = torch.autograd.grad(ref["energy"].sum(), pos)
    _compare("energies", "fast vs reference", fast["energies"].detach(), ref["energies"].detach(), atol, 0.0)
    scale = max(1.0, float(grad.abs().max()))
    _compare("forces", "fast vs reference", fast["forces"].detach(), -grad, atol * scale, 0.0)


def perturb_parameters(module: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    """Add seeded Gaussian noise of ``std`` to every parameter of ``module`` in place; returns it.

    A fresh G-Hyena starts its residual branches and vector heads at exactly zero (see
    docs/model.md), so a symmetry or finite-difference test of a fresh model would not exercise
    them; perturbing the weights first makes every path of the model non-trivial.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p))
    return module


# --------------------------------------------------------------------------- systems
def water_trimer(dtype: torch.dtype = torch.float64) -> System:
    """A cyclic water trimer (9 atoms, open boundaries), with residue labels (one per water).

    Oxygens on an equilateral triangle (O–O 2.85 Å), each donating a linear hydrogen bond
    to the next (O–H 0.96 Å), free hydrogens alternately above and below the ring (H–O–H 104.5°).
    """
    r_oo, r_oh, angle = 2.85, 0.96, math.radians(104.5)
    rad = r_oo / math.sqrt(3.0)
    oxy = [
        np.array([rad * math.cos(2 * math.pi * k / 3), rad * math.sin(2 * math.pi * k / 3), 0.0])
        for k in range(3)
    ]
    pos = []
    for k in range(3):
        o = oxy[k]
        d = oxy[(k + 1) % 3] - o
        d /= np.linalg.norm(d)
        p = 0.6 * o / np.linalg.norm(o) + np.array([0.0, 0.0, (-1.0) ** k])
        p -= p.dot(d) * d
        p /= np.linalg.norm(p)
        pos += [o, o + r_oh * d, o + r_oh * (math.cos(angle) * d + math.sin(angle) * p)]
    labels = Labels(
        residue_index=[0, 0, 0, 1, 1, 1, 2, 2, 2],
        atom_names=("OW", "HW1", "HW2") * 3,
        residue_names=("HOH",) * 9,
    )
    return System(torch.tensor(np.array(pos), dtype=dtype), [8, 1, 1] * 3, labels=labels)


def _fcc(n: int, a: float) -> np.ndarray:
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    grid = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((grid + basis) * a).reshape(-1, 3)


def lj_argon(
    n: int = 4, *, a: float = 5.26, rattle: float = 0.0, seed: int = 0, dtype: torch.dtype = torch.float64
) -> System:
    """Face-centred cubic argon, ``n × n × n`` conventional cells (4n³ atoms; 256 for n = 4), periodic.

    a: lattice constant, Å (5.26 ≈ solid Ar); rattle: std of Gaussian displacements, Å (seeded).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    x = _fcc(n, a)
    x = x + np.random.default_rng(seed).normal(0.0, rattle, x.shape) if rattle > 0 else x
    return System(
        torch.tensor(x, dtype=dtype), [18] * len(x), cell=torch.eye(3, dtype=dtype) * n * a, pbc=True
    )


def rattled_cu(
    seed: int = 0, *, n: int = 3, a: float = 3.615, rattle: float = 0.1, dtype: torch.dtype = torch.float64
) -> System:
    """Copper in the triclinic primitive fcc cell repeated ``n³`` times (27 atoms for n = 3), rattled.

    Cell rows ``n · a/2 · (0,1,1), (1,0,1), (1,1,0)`` (60° angles: a test of triclinic PBC);
    each atom displaced by Gaussian noise of std ``rattle`` Å (seeded).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    prim = 0.5 * a * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
    grid = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), -1).reshape(-1, 3)
    x = grid @ prim + np.random.default_rng(seed).normal(0.0, rattle, (len(grid), 3))
    return System(
        torch.tensor(x, dtype=dtype), [29] * len(x), cell=torch.tensor(n * prim, dtype=dtype), pbc=True
    )


def maxwell_boltzmann(system: System, temperature_k: float, *, seed: int = 0) -> System:
    """``system`` with seeded Maxwell–Boltzmann velocities (Å/fs) at ``temperature_k``, zero total momentum."""
    from hyenamd.units import AMU_ANGSTROM2_PER_FS2_TO_EV, BOLTZMANN_EV_PER_K

    g = torch.Generator().manual_seed(seed)
    m = system.masses.double()
    std = torch.sqrt(BOLTZMANN_EV_PER_K * temperature_k / (m * AMU_ANGSTROM2_PER_FS2_TO_EV))
    v = torch.randn(system.n_atoms, 3, generator=g, dtype=torch.float64) * std.unsqueeze(-1)
    if system.n_atoms > 1:
        v = v - (m.unsqueeze(-1) * v).sum(0) / m.sum()
    return system.replace(velocities=v.to(system.dtype))
