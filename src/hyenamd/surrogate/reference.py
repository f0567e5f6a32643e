"""A slow, readable re-implementation of the whole G-Hyena forward pass: the test oracle.

:func:`reference_forward` reads the parameters of a :class:`~hyenamd.surrogate.model.GHyena`
and recomputes every output one system at a time, with nothing shared with the fast path but
the weights:

* neighbours by brute force over all atom pairs and lattice images
  (:func:`hyenamd.geometry.brute_force_neighbor_list`), pair vectors ``x_j - x_i + S @ cell``;
* radial basis, envelope, MLPs, channel mixing written out as formulas (``x @ Wᵀ + b``, SiLU);
* local messages gathered in a plain loop over the receiving atoms;
* global blocks through :func:`hyenamd.surrogate.reference_global.reference_global_block`
  (direct O(N²) convolutions);
* heads as formulas.

Outputs are differentiable in the positions (forces by autograd are comparable too).
Use it on tiny systems only: it is O(N²) in time and memory.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyenamd.geometry import brute_force_neighbor_list
from hyenamd.system import Batch

__all__ = ["reference_forward"]


def _linear(x: Tensor, lin: nn.Linear) -> Tensor:
    y = x @ lin.weight.T
    return y if lin.bias is None else y + lin.bias


def _mlp(x: Tensor, seq: nn.Sequential) -> Tensor:
    """Linear -> SiLU -> Linear, written out: ``W2 silu(W1 x + b1) + b2``."""
    h = _linear(x, seq[0])
    h = h * torch.sigmoid(h)
    return _linear(h, seq[2])


def _mix(v: Tensor, weight: Tensor) -> Tensor:
    """Vector channel mixing ``out[n, o, :] = Σ_c W[o, c] v[n, c, :]``."""
    return torch.stack(
        [sum(weight[o, c] * v[:, c, :] for c in range(v.shape[1])) for o in range(weight.shape[0])], 1
    )


def _smooth_norm(v: Tensor, eps: Tensor) -> Tensor:
    return torch.sqrt((v * v).sum(-1) + eps * eps) - eps


def _radial(r: Tensor, rc: float, k_max: int, p: int, kind: str = "bessel") -> tuple[Tensor, Tensor]:
    """Basis ``[P, K]`` and envelope ``[P]`` (cutoff ``rc`` Å, ``K = k_max``) from their defining formulas."""
    ks = torch.arange(1, k_max + 1, dtype=r.dtype)
    if kind == "bessel":
        basis = math.sqrt(2 / rc) * torch.sin(ks * math.pi * r[:, None] / rc) / r[:, None]
    else:
        centres = torch.tensor(
            [rc * k / (k_max - 1) if k_max > 1 else 0.0 for k in range(k_max)], dtype=r.dtype
        )
        basis = torch.exp(-((r[:, None] - centres) ** 2) / (2 * (rc / k_max) ** 2))
    d = r / rc
    env = 1 - (p + 1) * (p + 2) / 2 * d**p + p * (p + 2) * d ** (p + 1) - p * (p + 1) / 2 * d ** (p + 2)
    return basis, torch.where(d < 1, env, torch.zeros_like(env))


def _local_block(block: nn.Module, s: Tensor, v: Tensor, pairs: list, cfg) -> tuple[Tensor, Tensor]:
    """One local block; ``pairs[i] = (j [P_i], r_ij [P_i, 3])`` lists the neighbours of atom i."""
    n, f, c = s.shape[0], s.shape[1], v.shape[1]
    phi = _mlp(s, block.phi)  # [N, F + 2C]
    ds_all, dv_all = [], []
    for i in range(n):
        j, rij = pairs[i]
        if j.numel() == 0:
            ds_all.append(s.new_zeros(f))
            dv_all.append(v.new_zeros(c, 3))
            continue
        r = torch.sqrt((rij * rij).sum(-1))
        basis, env = _radial(r, cfg.cutoff, cfg.n_rbf, cfg.envelope_exponent, cfg.radial_basis)
        w = (basis * env[:, None]) @ block.filter.weight.T  # no bias: zero beyond the cutoff
        x = phi[j] * w
        ds, dvv, dvs = x[:, :f], x[:, f : f + c], x[:, f + c :]
        unit = rij / r[:, None]
        ds_all.append(ds.sum(0))
        dv_all.append((dvv[:, :, None] * v[j] + dvs[:, :, None] * unit[:, None, :]).sum(0))
    s = s + torch.stack(ds_all) / cfg.avg_neighbors
    v = v + torch.stack(dv_all) / cfg.avg_neighbors
    uv, vv = _mix(v, block.u.weight), _mix(v, block.v.weight)
    a = _mlp(torch.cat([s, _smooth_norm(vv, torch.exp(block.vnorm.log_eps))], -1), block.update_mlp)
    a_ss, a_sv, a_vv = a[:, :f], a[:, f : f + c], a[:, f + c :]
    s = s + a_ss + (a_sv * (uv * vv).sum(-1)) @ block.mix.weight.T
    v = v + a_vv[:, :, None] * uv
    return s, v


def _pair_energies(model: nn.Module, x: Tensor, cell, pbc, idx: Tensor) -> Tensor:
    """Per-atom shares of the two-body energy, ``½ Σ_j φ_{Z_i Z_j}(r_ij)``, by a plain loop over pairs."""
    term, cfg = model.pair_term, model.cfg
    rc2 = cfg.pair_cutoff
    nb = brute_force_neighbor_list(x, cell, pbc, rc2)
    shift = nb.shifts.to(x.dtype) @ cell if cell is not None else 0.0
    r = torch.sqrt(((x[nb.j] - x[nb.i] + shift) ** 2).sum(-1))
    basis, env = _radial(r, rc2, cfg.pair_rbf, cfg.envelope_exponent)
    shares: list[list[Tensor]] = [[] for _ in range(x.shape[0])]
    phi = _mlp(basis, term.mlp)  # [P, n_species_pairs]
    for k in range(r.shape[0]):
        a, b = sorted((int(idx[nb.i[k]]), int(idx[nb.j[k]])))
        col = a * len(cfg.species) - a * (a - 1) // 2 + (b - a)  # unordered pair {a, b}
        shares[int(nb.i[k])].append(0.5 * env[k] * phi[k, col])
    scale = model.energy_head.energy_scale
    return torch.stack([scale * sum(e) if e else x.new_zeros(()) for e in shares])


def _vector_head(head: nn.Module, s: Tensor, v: Tensor) -> Tensor:
    gates = _mlp(s, head.gate)  # [N, C]
    mixed = _mix(v, head.mix.weight)
    return (gates[:, :, None] * mixed).sum(1)


def _one_system(model: nn.Module, batch: Batch, k: int) -> dict[str, Tensor]:
    cfg = model.cfg
    a, b = int(batch.ptr[k]), int(batch.ptr[k + 1])
    x = batch.positions[a:b]
    n = b - a
    has_cell = batch.has_cell is None or bool(batch.has_cell[k])
    cell = batch.cell[k]
    nb = brute_force_neighbor_list(x, cell if has_cell else None, batch.pbc[k], cfg.cutoff)
    rvec = x[nb.j] - x[nb.i] + nb.shifts.to(x.dtype) @ cell
    pairs = [(nb.j[nb.i == i], rvec[nb.i == i]) for i in range(n)]
    known = {z: row for row, z in enumerate(cfg.species)}
    idx = torch.tensor([known[int(z)] for z in batch.species[a:b]], dtype=torch.int64)

    s = model.embedding.weight[idx]
    if model.velocity_embedding is not None:
        u = batch.velocities[a:b] * cfg.dynamics_horizon_fs
        v = model.velocity_embedding.weight[idx][:, :, None] * u[:, None, :]
    else:
        v = x.new_zeros(n, cfg.n_vector, 3)
    order = None
    if batch.order is not None:
        order = batch.order[a:b] - a
    for kind, block in zip(cfg.pattern, model.blocks):
        if kind == "local":
            s, v = _local_block(block, s, v, pairs, cfg)
        else:
            from hyenamd.surrogate.ordering import canonical_order
            from hyenamd.surrogate.reference_global import reference_global_block

            if order is None:
                order = canonical_order(batch.system(k), cfg.ordering)
            s, v = reference_global_block(block, s, v, order, torch.tensor([0, n]))

    head = model.energy_head
    energies = head.energy_scale * _mlp(s, head.mlp)[:, 0] + head.energy_shift[idx]
    if cfg.pair_cutoff is not None:
        energies = energies + _pair_energies(model, x, cell if has_cell else None, batch.pbc[k], idx)
    out = {"energy": energies.sum().reshape(1), "energies": energies}
    if model.direct_force_head is not None:
        out["direct_forces"] = _vector_head(model.direct_force_head, s, v)
    if model.dynamics_head is not None:
        dt = cfg.dynamics_horizon_fs
        vel = batch.velocities[a:b]
        stochastic = "stochastic_dynamics" in cfg.heads
        mean = model.dynamics_head.mean if stochastic else model.dynamics_head
        out["displacement"] = vel * dt + _vector_head(mean.displacement, s, v)
        out["velocities"] = vel + _vector_head(mean.velocity, s, v) / dt
        if stochastic:
            from hyenamd.surrogate.stochastic_head import LOG_SIGMA_RANGE, RHO_MAX

            head = model.dynamics_head
            raw = _mlp(s, head.noise) + head.noise_shift[idx]
            ls = raw[:, :2].clamp(*LOG_SIGMA_RANGE)
            out["log_sigma_x"], out["log_sigma_v"] = ls[:, 0], ls[:, 1]
            out["rho_xv"] = RHO_MAX * torch.tanh(raw[:, 2])
    return out


def reference_forward(model: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """The outputs of ``model(batch)`` recomputed slowly, system by system (CPU; tiny systems).

    Same keys, shapes and units as :meth:`GHyena.forward`. The sequence order is
    ``batch.order`` when set, else the canonical order of each system.
    """
    parts = [_one_system(model, batch, k) for k in range(batch.n_systems)]
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
