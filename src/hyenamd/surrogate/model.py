"""G-Hyena: the whole surrogate model (embedding → local/global blocks → heads) and its config.

``model = GHyena(GHyenaConfig(...))``; ``model(batch, neighbors=None)`` returns a dict:

=================  ===================  =====  ==============================================
key                shape                units  when
=================  ===================  =====  ==============================================
energy             [n_systems]          eV     always (Σ of the per-atom energies)
energies           [n_atoms]            eV     always
direct_forces      [n_atoms, 3]         eV/Å   ``"direct_forces" in cfg.heads`` (not conservative)
displacement       [n_atoms, 3]         Å      ``"dynamics" in cfg.heads`` (needs velocities)
velocities         [n_atoms, 3]         Å/fs   ``"dynamics" in cfg.heads``
log_sigma_x        [n_atoms]            ln Å   ``"stochastic_dynamics" in cfg.heads`` (with the two above)
log_sigma_v        [n_atoms]            ln Å/fs ``"stochastic_dynamics" in cfg.heads``
rho_xv             [n_atoms]            —      ``"stochastic_dynamics" in cfg.heads`` (x–v noise correlation)
=================  ===================  =====  ==============================================

The model follows the potential protocol of :mod:`hyenamd.surrogate.forces` (a ``cutoff``
attribute; positions enter only through ``edge_vectors``), so
``compute_forces(model, batch, stress=True)`` adds conservative ``"forces"`` and ``"stress"``.
Energies are exactly invariant to translations and periodic re-wrapping; given the sequence
order (``batch.order``, or the order of the model's rule ``cfg.ordering`` when absent), they
are invariant under O(3) and the vector outputs are equivariant. See ``docs/model.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hyenamd.allocator import adapt_malloc
from hyenamd.elements import MAX_Z
from hyenamd.geometry import Neighbors, batch_neighbor_list, edge_vectors
from hyenamd.surrogate.heads import DynamicsHead, EnergyHead, VectorHead, VelocityEmbedding
from hyenamd.surrogate.local_block import DEFAULT_PAIR_CHUNK, Edges, LocalBlock
from hyenamd.surrogate.memory_policy import AUTO_MIN_ATOMS, config_regime
from hyenamd.surrogate.pair_term import PairTerm
from hyenamd.surrogate.radial import RadialEmbedding
from hyenamd.system import Batch

__all__ = ["GHyena", "GHyenaConfig"]

BlockKind = Literal["local", "global"]
HeadKind = Literal["energy", "direct_forces", "dynamics", "stochastic_dynamics"]
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass(frozen=True)
class GHyenaConfig:
    """Settings of :class:`GHyena` (``configs/surrogate/{S,M,L}.yaml`` map 1:1 onto it).

    species: atomic numbers the model knows (index in this tuple = embedding row).
    cutoff: local-block cutoff, Å.  n_scalar (F), n_vector (C): channel widths of the two streams.
    n_rbf: radial basis size K; radial_basis: "bessel" or "gaussian"; envelope_exponent: p of
    the polynomial envelope (C² at the cutoff for p >= 2).
    avg_neighbors: ν, local messages are summed and divided by ν (keeps activations O(1)).
    pattern: the block stack, e.g. ("local", "global", "local", "global").
    filter_order, filter_depth, filter_bands: width, hidden layers and sin/cos bands of the global
    blocks' implicit filter; filter_w_min, filter_w_init, filter_w_cap: its initial shortest and
    longest e-folding lengths and the largest it may learn, in tokens (see surrogate/filters.py).
    heads: output heads; "energy" is required (the potential protocol), "direct_forces" and
    "dynamics" are optional; "stochastic_dynamics" is the dynamics head with a per-atom Gaussian
    (means plus invariant log σ, :mod:`hyenamd.surrogate.stochastic_head`), used instead of
    "dynamics" (at most one of the two).  dynamics_horizon_fs: Δτ of the dynamics head, fs.
    energy_shifts: per-species energy offsets μ_Z (eV), one per species (None: zeros);
    energy_scale: σ, scale of the learned per-atom energies (eV). Both become buffers.
    pair_chunk: pairs per chunk of the local messages (bounds memory; results unchanged).
    conv: global blocks' long convolution, "circular" (each system's length-n circular
    convolution: every token sees every token) or "linear" (zero-padded; chain ends do not
    couple); see docs/model.md for the ablation behind the default.
    checkpoint_atoms: when energy + forces trade time for memory (same results either way;
    :mod:`hyenamd.surrogate.memory_policy`): ``"auto"`` keeps everything for the backward pass
    unless the batch would not fit comfortably in the memory available, then recomputes the
    local blocks' pair chunks, and if that is not enough each block (per-block activation
    checkpointing, with the large-system allocator under the CLI); an integer: pair chunks
    always recomputed, blocks for batches of at least this many atoms; -1: blocks never.
    dtype: parameter dtype, "float32" or "float64".  seed: RNG seed of the initial weights.
    ordering: the sequence-order rule of the global blocks, "topology" (chain, residue, atom;
    needs residue labels) or "hilbert" (a frame-independent Hilbert curve); see
    :mod:`hyenamd.surrogate.ordering` and docs/model.md ("Ordering").
    pair_cutoff: range of a learned two-body energy ``½ Σ φ_{Z_i Z_j}(r)`` (Å, >= cutoff; None:
    no such term); the model's interaction range (``GHyena.cutoff``, what neighbour lists are
    built for) is then ``pair_cutoff``, while messages still use ``cutoff`` (see
    :mod:`hyenamd.surrogate.pair_term`).  pair_rbf: its radial basis size.
    residual_init: "zero" (the residual branches of the blocks start at zero: every block is the
    identity at initialisation) or "default" (PyTorch's default init of those last layers);
    output heads' vector gates and the two-body term start at zero either way.
    norm_eps, learn_norm_eps: initial floor ε of the smooth vector norms and the global blocks'
    pre-norm, and whether the norms' per-channel floors are learned. docs/model.md ("Norms and
    initialisation") has the measurements behind these options.
    """

    species: tuple[int, ...] = (1, 6, 7, 8)
    cutoff: float = 5.0
    n_scalar: int = 64
    n_vector: int = 16
    n_rbf: int = 8
    radial_basis: Literal["bessel", "gaussian"] = "bessel"
    envelope_exponent: int = 6
    avg_neighbors: float = 16.0
    pattern: tuple[BlockKind, ...] = ("local", "global", "local", "global")
    filter_order: int = 16
    filter_depth: int = 2
    filter_bands: int = 8
    filter_w_min: float = 2.0
    filter_w_init: float = 512.0
    filter_w_cap: float = 2048.0
    heads: tuple[HeadKind, ...] = ("energy",)
    dynamics_horizon_fs: float = 10.0
    energy_shifts: tuple[float, ...] | None = None
    energy_scale: float = 1.0
    pair_chunk: int = DEFAULT_PAIR_CHUNK
    conv: Literal["linear", "circular"] = "circular"
    checkpoint_atoms: int | Literal["auto"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    ordering: Literal["topology", "hilbert"] = "hilbert"
    pair_cutoff: float | None = None
    pair_rbf: int = 16
    residual_init: Literal["zero", "default"] = "zero"
    norm_eps: float = 1e-3
    learn_norm_eps: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", tuple(int(z) for z in self.species))
        object.__setattr__(self, "pattern", tuple(self.pattern))
        object.__setattr__(self, "heads", tuple(self.heads))
        if not self.species:
            raise ValueError("species must list at least one atomic number")
        if len(set(self.species)) != len(self.species):
            raise ValueError(f"species has duplicates: {list(self.species)}")
        bad = [z for z in self.species if not 1 <= z <= MAX_Z]
        if bad:
            raise ValueError(f"species must be atomic numbers in 1..{MAX_Z}, got {bad}")
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {self.cutoff}")
        if self.pair_cutoff is not None and not self.pair_cutoff >= self.cutoff:
            raise ValueError(
                f"pair_cutoff must be >= cutoff ({self.cutoff} Å) or null, got {self.pair_cutoff}"
            )
        for name in (
            "n_scalar",
            "n_vector",
            "n_rbf",
            "filter_order",
            "filter_depth",
            "filter_bands",
            "pair_chunk",
            "pair_rbf",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.envelope_exponent < 2:
            raise ValueError(f"envelope_exponent must be >= 2 (C² cutoff), got {self.envelope_exponent}")
        if not 0 < self.filter_w_min <= self.filter_w_init < self.filter_w_cap:
            raise ValueError(
                "need 0 < filter_w_min <= filter_w_init < filter_w_cap (tokens), got "
                f"{self.filter_w_min}, {self.filter_w_init}, {self.filter_w_cap}"
            )
        if not self.avg_neighbors > 0:
            raise ValueError(f"avg_neighbors must be positive, got {self.avg_neighbors}")
        if not self.pattern:
            raise ValueError("pattern needs at least one block ('local' or 'global')")
        for k in self.pattern:
            if k not in ("local", "global"):
                raise ValueError(f"unknown block kind {k!r} in pattern; use 'local' or 'global'")
        for h in self.heads:
            if h not in ("energy", "direct_forces", "dynamics", "stochastic_dynamics"):
                raise ValueError(
                    f"unknown head {h!r}; choose from energy, direct_forces, dynamics, stochastic_dynamics"
                )
        if "dynamics" in self.heads and "stochastic_dynamics" in self.heads:
            raise ValueError("heads: choose 'dynamics' or 'stochastic_dynamics', not both")
        if "energy" not in self.heads:
            raise ValueError("heads must include 'energy' (every model is a potential)")
        if not self.dynamics_horizon_fs > 0:
            raise ValueError(f"dynamics_horizon_fs must be positive, got {self.dynamics_horizon_fs}")
        if self.energy_shifts is not None and len(self.energy_shifts) != len(self.species):
            raise ValueError(
                f"energy_shifts has {len(self.energy_shifts)} values but species has {len(self.species)}"
            )
        if self.checkpoint_atoms != "auto" and (
            isinstance(self.checkpoint_atoms, bool)
            or not isinstance(self.checkpoint_atoms, int)
            or self.checkpoint_atoms < -1
        ):
            raise ValueError(
                f"checkpoint_atoms must be 'auto' or an integer >= -1 (-1: never), got {self.checkpoint_atoms!r}"
            )
        if self.conv not in ("linear", "circular"):
            raise ValueError(f"conv must be 'linear' or 'circular', got {self.conv!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.residual_init not in ("zero", "default"):
            raise ValueError(f"residual_init must be 'zero' or 'default', got {self.residual_init!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if self.ordering not in ("topology", "hilbert"):
            raise ValueError(f"ordering must be 'topology' or 'hilbert', got {self.ordering!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def has_dynamics(self) -> bool:
        """Whether the model has a dynamics head (deterministic or stochastic; needs velocities)."""
        return "dynamics" in self.heads or "stochastic_dynamics" in self.heads


class GHyena(nn.Module):
    """The G-Hyena surrogate (see the module doc for outputs, ``docs/model.md`` for the maths)."""

    #: Pairs beyond the cutoff contribute exact zeros (the envelope is 0 there), so a superset
    #: neighbour list (a Verlet list with its skin) gives bit-identical results.
    needs_exact_neighbors = False
    #: the forward pass sets the allocator thresholds itself, from its memory regime
    #: (:func:`_memory_regime`); :func:`~hyenamd.surrogate.forces.compute_forces` leaves them alone
    adapts_malloc = True

    def __init__(self, cfg: GHyenaConfig = GHyenaConfig()) -> None:
        super().__init__()
        if not isinstance(cfg, GHyenaConfig):
            raise TypeError(f"GHyena needs a GHyenaConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        #: interaction range (Å): what neighbour lists must cover (messages use cfg.cutoff)
        self.cutoff = float(max(cfg.cutoff, cfg.pair_cutoff or 0.0))
        n_sp, f, c = len(cfg.species), cfg.n_scalar, cfg.n_vector
        table = torch.full((MAX_Z + 1,), -1, dtype=torch.int64)
        table[list(cfg.species)] = torch.arange(n_sp)
        self.register_buffer("species_table", table)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.radial = RadialEmbedding(cfg.cutoff, cfg.n_rbf, cfg.radial_basis, cfg.envelope_exponent)
            self.embedding = nn.Embedding(n_sp, f)
            self.velocity_embedding = (
                VelocityEmbedding(n_sp, c, cfg.dynamics_horizon_fs) if cfg.has_dynamics else None
            )
            blocks = []
            for kind in cfg.pattern:
                if kind == "local":
                    blocks.append(
                        LocalBlock(
                            f,
                            c,
                            self.radial,
                            avg_neighbors=cfg.avg_neighbors,
                            pair_chunk=cfg.pair_chunk,
                            # v starts as zeros (below): the first block may skip their term
                            zero_vectors_in=not blocks and self.velocity_embedding is None,
                        )
                    )
                else:
                    blocks.append(_global_block(cfg))
            self.blocks = nn.ModuleList(blocks)
            shifts = (
                None if cfg.energy_shifts is None else torch.tensor(cfg.energy_shifts, dtype=torch.float64)
            )
            self.energy_head = EnergyHead(f, n_sp, shifts, cfg.energy_scale)
            self.pair_term = (
                PairTerm(n_sp, cfg.pair_cutoff, cfg.pair_rbf, p=cfg.envelope_exponent)
                if cfg.pair_cutoff is not None
                else None
            )
            _apply_init_options(self, cfg)
            self.direct_force_head = VectorHead(f, c) if "direct_forces" in cfg.heads else None
            self.dynamics_head = (
                DynamicsHead(f, c, cfg.dynamics_horizon_fs) if "dynamics" in cfg.heads else None
            )
            if "stochastic_dynamics" in cfg.heads:
                from hyenamd.surrogate.stochastic_head import StochasticDynamicsHead

                self.dynamics_head = StochasticDynamicsHead(f, c, cfg.dynamics_horizon_fs, n_sp)
        self.to(cfg.torch_dtype)

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    @property
    def needs_order(self) -> bool:
        """Whether the stack has a global block (which runs along the sequence order)."""
        return "global" in self.cfg.pattern

    def check_species(self, species: Tensor) -> None:
        """ValueError naming the atomic numbers of ``species`` ``[N]`` that this model does not know.

        Reads only the input and the config (never a parameter or buffer), so it runs once on
        the input before any model maths, also when the members of a committee are evaluated
        together under ``torch.func.vmap`` (where a check on stacked buffers cannot run).
        """
        if torch.compiler.is_exporting():
            return  # not traced into an exported program (see docs/engine.md, "Export")
        # an MD run passes the same species tensor every step: checked once (and again after
        # any in-place change, which bumps its version counter); saves a host sync per call
        seen = self.__dict__.get("_species_checked")
        if seen is not None and seen[0] is species and seen[1] == species._version:
            return
        known = torch.tensor(self.cfg.species, dtype=species.dtype, device=species.device)
        bad = ~torch.isin(species, known)
        if bool(bad.any()):
            unknown = sorted({int(z) for z in species[bad].tolist()})
            raise ValueError(
                f"species {unknown} are not known to this model (it knows {list(self.cfg.species)})"
            )
        if not torch._C._functorch.is_functorch_wrapped_tensor(species):
            self.__dict__["_species_checked"] = (species, species._version)

    def species_index(self, species: Tensor, *, check: bool = True) -> Tensor:
        """Atomic numbers ``[N]`` -> embedding rows ``[N]``; ValueError naming unknown species.

        ``check=False``: a pure table look-up with no data-dependent branch (the caller has run
        :meth:`check_species`; unknown species would give row -1).
        """
        if check:
            self.check_species(species)
        return self.species_table[species.clamp(0, MAX_Z)]

    def _check(self, batch: Batch) -> None:
        if not isinstance(batch, Batch):
            raise TypeError(f"GHyena takes a hyenamd.Batch, got {type(batch).__name__}")
        if batch.positions.dtype != self.dtype:
            raise ValueError(
                f"batch positions are {batch.positions.dtype} but the model is {self.dtype}; "
                "convert one of them (batch.to(dtype=...) or model.to(dtype))"
            )
        if self.dynamics_head is not None and batch.velocities is None:
            raise ValueError("this model has a dynamics head: it needs batch.velocities (Å/fs)")
        self.check_species(batch.species)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        """Outputs for every system of ``batch`` (see the module doc); ``neighbors`` built if None."""
        self._check(batch)
        idx = self.species_index(batch.species, check=False)  # checked in _check
        if neighbors is None:
            neighbors = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, self.cutoff)
        vectors = edge_vectors(batch.positions, batch.cell, neighbors, batch.batch)
        pi, pj = neighbors.i.long(), neighbors.j.long()  # int64: fast index_add_
        pair_energies = None
        # messages only within the local cutoff: pairs beyond it (a Verlet list's skin, or the
        # two-body term's longer range) would add exact zeros (the envelope is 0 there), so
        # dropping them gives bit-identical energies and forces with fewer pairs. Skipped under
        # torch.func.vmap (committee members: per-member distances, all pairs stay, same
        # result), under torch.export (a data-dependent size), and on accelerators when the
        # list has no extra range (a host sync per call would cost more than the zeros).
        drop = not torch._C._functorch.is_functorch_wrapped_tensor(vectors) and (
            (self.cfg.pair_cutoff is not None and self.cfg.pair_cutoff > self.cfg.cutoff)
            or (vectors.device.type == "cpu" and not torch.compiler.is_exporting())
        )
        r = torch.linalg.vector_norm(vectors, dim=-1) if self.pair_term is not None or drop else None
        if self.pair_term is not None:
            pair_energies = self.pair_term(r, pi, pj, idx, self.energy_head.energy_scale)
        if drop:
            keep = torch.nonzero(r < self.cfg.cutoff).squeeze(1)
            if keep.shape[0] < r.shape[0]:
                pi, pj, vectors, r = pi[keep], pj[keep], vectors[keep], r[keep]
        # what the backward pass recomputes (memory_policy.py): lean, blocks and pair chunks;
        # fast and chunked, the fused pair messages' products only (local_block.py)
        regime = _memory_regime(self.cfg, batch.n_atoms, int(pi.shape[0]), vectors.device)
        ckpt = regime == "lean"
        edges = Edges(pi, pj, vectors, recompute_chunks=ckpt)
        if len(edges) <= self.cfg.pair_chunk and "local" in self.cfg.pattern:
            # one chunk: r̂ and the enveloped basis once for all local blocks
            edges = edges.with_geometry(self.radial, r)

        s = self.embedding(idx)
        if self.velocity_embedding is not None:
            v = self.velocity_embedding(batch.velocities, idx)
        else:
            v = s.new_zeros(batch.n_atoms, self.cfg.n_vector, 3)
        order = None
        for kind, block in zip(self.cfg.pattern, self.blocks):
            if kind == "local":
                args = (s, v, edges)
            else:
                if order is None:
                    order = _order_of(batch, self.cfg.ordering)
                args = (s, v, order, batch.ptr)
            s, v = checkpoint(block, *args, use_reentrant=False) if ckpt else block(*args)

        energies = self.energy_head(s, idx)
        if pair_energies is not None:
            energies = energies + pair_energies
        energy = energies.new_zeros(batch.n_systems).index_add(0, batch.batch, energies)
        out = {"energy": energy, "energies": energies}
        if self.direct_force_head is not None:
            out["direct_forces"] = self.direct_force_head(s, v)
        if isinstance(self.dynamics_head, DynamicsHead):
            out["displacement"], out["velocities"] = self.dynamics_head(s, v, batch.velocities)
        elif self.dynamics_head is not None:  # stochastic: means and log σ
            out.update(self.dynamics_head(s, v, batch.velocities, idx))
        return out

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"species={list(self.cfg.species)}, cutoff={self.cutoff}, parameters={n:,}"


def _apply_init_options(model: GHyena, cfg: GHyenaConfig) -> None:
    """``cfg.residual_init``, ``cfg.norm_eps`` and ``cfg.learn_norm_eps`` on the built blocks (seeded RNG)."""
    import math

    from hyenamd.surrogate.equivariant import GatedEquivariantMLP, SmoothNorm
    from hyenamd.surrogate.global_block import GlobalBlock

    for m in model.blocks.modules():
        if cfg.residual_init == "default":
            if isinstance(m, GatedEquivariantMLP):
                m.mlp[-1].reset_parameters()
            elif isinstance(m, LocalBlock):
                m.update_mlp[-1].reset_parameters()
            elif isinstance(m, GlobalBlock):
                m.out_s.reset_parameters()
        if isinstance(m, SmoothNorm):
            with torch.no_grad():
                m.log_eps.fill_(math.log(cfg.norm_eps))
            m.log_eps.requires_grad_(cfg.learn_norm_eps)
        if isinstance(m, GlobalBlock):
            m.prenorm_eps = float(cfg.norm_eps)


def _memory_regime(cfg: GHyenaConfig, n_atoms: int, n_pairs: int, device: torch.device) -> str:
    """The call's memory regime (:func:`hyenamd.surrogate.memory_policy.memory_regime`, against
    the memory of ``device``); "fast" when no gradient is recorded (nothing is kept for a
    backward pass then). Under the ``hyenamd`` CLI the host allocator follows it on the CPU
    (large-system thresholds only when lean, :func:`hyenamd.allocator.adapt_malloc`)."""
    if not torch.is_grad_enabled():
        return "fast"
    regime = config_regime(cfg, n_atoms, n_pairs, device=device)
    if n_atoms >= AUTO_MIN_ATOMS and device.type == "cpu":
        adapt_malloc(n_atoms, large=regime == "lean")
    return regime


def _order_of(batch: Batch, rule: str) -> Tensor:
    """The batch's sequence order (global indices), computed by the model's rule if absent."""
    if batch.order is not None:
        return batch.order
    from hyenamd.surrogate.ordering import batch_order

    return batch_order(batch, rule)


def _global_block(cfg: GHyenaConfig) -> nn.Module:
    from hyenamd.surrogate.global_block import GlobalBlock

    return GlobalBlock(
        cfg.n_scalar,
        cfg.n_vector,
        filter_order=cfg.filter_order,
        filter_depth=cfg.filter_depth,
        filter_bands=cfg.filter_bands,
        w_min=cfg.filter_w_min,
        w_init=cfg.filter_w_init,
        w_cap=cfg.filter_w_cap,
        conv=cfg.conv,
    )
