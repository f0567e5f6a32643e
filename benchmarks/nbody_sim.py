"""Charged-particle n-body simulator (Kipf et al. 2018, as used without the box by EGNN / SE(3)-Hyena).

Written from the published description, not copied: P point particles of unit mass in 3D with
charges ``q_i ∈ {+1, -1}``, pairwise Coulomb-like forces (like charges repel)

    F_i = k Σ_{j≠i} q_i q_j (x_i - x_j) / |x_i - x_j|³,        E = ½ Σ m v² + k Σ_{i<j} q_i q_j / r_ij,

integrated with a fixed time step. Initial positions ``x ~ N(0, loc_std²)``, initial velocities
isotropic with norm ``vel_norm`` per particle (as in the original generator). A sample is the
state at frame ``t_in`` (input: positions, velocities, charges) and the positions at frame
``t_out``; frames are every ``sample_every`` steps (EGNN: frames 30 → 40, 100 steps apart, so
the target lies 1000 simulator steps after the input).

Two integrators. :func:`simulate_egnn` repeats the public EGNN generator's loop step for step
(an initial full kick ``v += dt F``, then ``x += dt v``; record; ``v += dt F``, so a recorded
velocity is the one that moved the particles to the recorded positions; its frame ``k`` is the
state after ``100 (k + 1)`` steps, because its first recorded frame overwrites the initial
state); :func:`generate_dataset` uses it by default (``scheme="egnn"``). :func:`simulate` is
velocity Verlet (kick-drift-kick; frame k = after ``100 k`` steps), whose conservation laws the
tests check (``scheme="verlet"``).

Differences from the original generator (stated in docs/paper.md):
* the original clips each force component at ±0.1/dt; :func:`generate_dataset` does the same
  (``max_force=100``, which tames close encounters of opposite charges but breaks exact
  momentum/energy conservation in them); :func:`simulate` defaults to no clipping, under which
  momentum is conserved to round-off and energy to the integrator's O(dt²) error;
* seeds and the random stream differ, so the data sets are statistically, not bitwise, alike.

Pure numpy functions; ``simulate`` is vectorised over samples.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "coulomb_forces",
    "generate_dataset",
    "initial_state",
    "momentum",
    "simulate",
    "simulate_egnn",
    "total_energy",
]


def _pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(i, j)`` of the P(P-1)/2 unordered pairs ``i < j``."""
    return np.triu_indices(p, k=1)


def coulomb_forces(
    x: np.ndarray, q: np.ndarray, *, k: float = 1.0, softening: float = 0.0, max_force: float | None = None
) -> np.ndarray:
    """Forces ``[S, P, 3]`` on particles at x ``[S, P, 3]`` with charges q ``[S, P]``; optional clip.

    Each unordered pair is computed once and applied with opposite signs (Newton's third law
    holds exactly unless ``max_force`` clips a component, as the original generator does).
    """
    p = x.shape[1]
    i, j = _pairs(p)
    d = x[:, i] - x[:, j]  # [S, M, 3]
    r2 = (d * d).sum(-1) + softening**2
    fij = (k * q[:, i] * q[:, j] / (r2 * np.sqrt(r2)))[..., None] * d  # force on i from j
    inc = np.zeros((p, i.size))
    inc[i, np.arange(i.size)], inc[j, np.arange(i.size)] = 1.0, -1.0  # +f on i, -f on j
    f = np.matmul(inc, fij)  # [S, P, 3]
    if max_force is not None:
        f = np.clip(f, -max_force, max_force)
    return f


def total_energy(x: np.ndarray, v: np.ndarray, q: np.ndarray, *, k: float = 1.0, softening: float = 0.0):
    """Kinetic + Coulomb energy ``[S]`` (unit masses)."""
    i, j = _pairs(x.shape[1])
    d = x[:, i] - x[:, j]
    r = np.sqrt((d * d).sum(-1) + softening**2)
    return 0.5 * (v * v).sum((1, 2)) + (k * q[:, i] * q[:, j] / r).sum(1)


def momentum(v: np.ndarray) -> np.ndarray:
    """Total momentum ``[S, 3]`` (unit masses)."""
    return v.sum(1)


def simulate(
    x0: np.ndarray,
    v0: np.ndarray,
    q: np.ndarray,
    *,
    n_frames: int,
    sample_every: int = 100,
    dt: float = 1e-3,
    k: float = 1.0,
    softening: float = 0.0,
    max_force: float | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity Verlet from (x0, v0) ``[S, P, 3]``; returns positions, velocities ``[S, n_frames, P, 3]``.

    Frame f is the state after ``f · sample_every`` steps (frame 0 = the initial state).
    """
    from hyenamd.progress import progress_bar

    x, v = np.array(x0, dtype=np.float64), np.array(v0, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    xs = np.empty((x.shape[0], n_frames, *x.shape[1:]))
    vs = np.empty_like(xs)
    f = coulomb_forces(x, q, k=k, softening=softening, max_force=max_force)
    xs[:, 0], vs[:, 0] = x, v
    for frame in progress_bar(
        range(1, n_frames), desc="n-body simulation", disable=not progress, mininterval=5
    ):
        for _ in range(sample_every):
            v += 0.5 * dt * f
            x += dt * v
            f = coulomb_forces(x, q, k=k, softening=softening, max_force=max_force)
            v += 0.5 * dt * f
        xs[:, frame], vs[:, frame] = x, v
    return xs, vs


def simulate_egnn(
    x0: np.ndarray,
    v0: np.ndarray,
    q: np.ndarray,
    *,
    frames: tuple[int, ...],
    sample_every: int = 100,
    dt: float = 1e-3,
    max_force: float | None = 100.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The EGNN generator's integrator; returns positions, velocities ``[S, len(frames), P, 3]``.

    Frame k is the state after ``sample_every · (k + 1)`` steps, as in the EGNN generator.
    """
    x, v = np.array(x0, dtype=np.float64), np.array(v0, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    steps = {sample_every * (k + 1): n for n, k in enumerate(frames)}
    xs = np.empty((x.shape[0], len(frames), *x.shape[1:]))
    vs = np.empty_like(xs)
    v += dt * coulomb_forces(x, q, max_force=max_force)
    for i in range(1, max(steps) + 1):
        x += dt * v
        if i in steps:
            xs[:, steps[i]], vs[:, steps[i]] = x, v
        v += dt * coulomb_forces(x, q, max_force=max_force)
    return xs, vs


def initial_state(
    n_samples: int, n_particles: int = 5, *, seed: int = 0, loc_std: float = 1.0, vel_norm: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random (x ``[S, P, 3]``, v ``[S, P, 3]``, q ``[S, P]``) as in the original generator."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, loc_std, (n_samples, n_particles, 3))
    v = rng.normal(0.0, 1.0, (n_samples, n_particles, 3))
    v *= vel_norm / np.linalg.norm(v, axis=-1, keepdims=True)
    q = rng.choice([-1.0, 1.0], size=(n_samples, n_particles))
    return x, v, q


def generate_dataset(
    n_samples: int,
    *,
    seed: int = 0,
    n_particles: int = 5,
    t_in: int = 30,
    t_out: int = 40,
    sample_every: int = 100,
    dt: float = 1e-3,
    max_force: float | None = 100.0,
    scheme: str = "egnn",
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Samples {"x": [S, P, 3], "v": [S, P, 3], "q": [S, P], "target": [S, P, 3]} (frame t_in → t_out).

    ``max_force`` clips each force component as the original generator does (0.1/dt = 100);
    ``None`` turns clipping off (exact momentum conservation). ``scheme``: "egnn" (the EGNN
    generator's loop and frame numbering, :func:`simulate_egnn`) or "verlet" (:func:`simulate`).
    """
    if not 0 <= t_in < t_out:
        raise ValueError(f"need 0 <= t_in < t_out, got {t_in}, {t_out}")
    if scheme not in ("egnn", "verlet"):
        raise ValueError(f"scheme must be 'egnn' or 'verlet', got {scheme!r}")
    x0, v0, q = initial_state(n_samples, n_particles, seed=seed)
    if scheme == "egnn":
        xs, vs = simulate_egnn(
            x0, v0, q, frames=(t_in, t_out), sample_every=sample_every, dt=dt, max_force=max_force
        )
        return {"x": xs[:, 0], "v": vs[:, 0], "q": q, "target": xs[:, 1]}
    xs, vs = simulate(
        x0,
        v0,
        q,
        n_frames=t_out + 1,
        sample_every=sample_every,
        dt=dt,
        max_force=max_force,
        progress=progress,
    )
    return {"x": xs[:, t_in], "v": vs[:, t_in], "q": q, "target": xs[:, t_out]}
