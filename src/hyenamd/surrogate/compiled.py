"""An opt-in ``torch.compile`` path for a G-Hyena's energy at a fixed atom count (small-system MD).

``pot = CompiledGHyena(model)`` is a potential (the protocol of :mod:`hyenamd.surrogate.forces`:
``cutoff``, ``forward(batch, neighbors)``) whose forward pass runs as one compiled graph;
``compute_forces(pot, batch, stress=...)`` and the engine's integrators use it unchanged
(``LangevinBAOAB(CompiledGHyena(model), dt, T)``), and AOTAutograd compiles the backward pass
(forces, stress) as a second graph. Results equal the eager model's within rounding: the same
maths in the same dtype, summed in another order.

Why. A 108-atom step of preset S dispatches ~1,050 small torch ops (forward and backward) at
~7 µs each, while its arithmetic is below 1 ms; inductor fuses the elementwise chains into a
few C++ kernels per graph (BENCHMARKS.md, "Small systems").

What is compiled, and what stays eager (per call, cheap and cached):

* eager: the input checks (:meth:`GHyena._check`: dtype, unknown species), the species
  indices, the sequence order, each global block's implicit filter on the ``n`` tokens (a
  constant for fixed ``n`` and weights, :func:`~hyenamd.surrogate.global_block._token_filter`),
  the DFT matrices, and padding the neighbour list;
* compiled: pair vectors, the local blocks, the global blocks' DFT-matrix convolutions
  (:mod:`hyenamd.surrogate.dft_conv`), the energy head and the optional two-body term.

Pairs. ``compact=True`` (default) first keeps the pairs within the model's range at the
current positions (one eager distance test and ``nonzero`` per call, as the eager model drops
the Verlet skin's pairs: about half of a superset list at a 1 Å skin), so the graph works on
the pairs that matter. Their number changes from call to call, so the list is padded to a
capacity (``pad_factor`` × the first count, rounded up to ``pad_multiple``; grown the same way
when a list outgrows it, which compiles once more) with pairs ``0 → 0`` whose vector is
replaced by a constant far beyond the cutoff (their messages and pair energies are exact
zeros, their gradient is zero): the graph's shapes stay static and neither a new count nor a
neighbour-list rebuild compiles again. ``compact=False`` pads the whole (superset) list
instead: no per-call work outside the graph, the skin pairs computed as exact zeros inside it.
A dynamic pair dimension (``torch._dynamo.mark_dynamic``) was tried and dropped: the local
blocks' chunk loop ``range(0, n_pairs, pair_chunk)`` specialises the count, so every new
count compiled again.

Fallback. The eager model runs instead (same results) when the model or batch is outside what
is compiled — several systems in the batch, more than
:data:`~hyenamd.surrogate.dft_conv.MAX_TOKENS` atoms, heads other than the energy, a velocity
input, parameters that require gradients (training) — and, after a warning, for good when
compiling fails (also when this wrapper has compiled ``torch._dynamo.config.recompile_limit``
graphs: capacities, stress on/off; each wrapper has its own cache).
:attr:`CompiledGHyena.fallback_reason` says why the last call ran eagerly,
:attr:`n_compiled_calls` counts the calls that ran compiled and :attr:`eager_calls` the others
per reason. The compiled path is for inference: it never records a
parameter gradient.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from hyenamd.geometry import Neighbors, batch_neighbor_list, edge_vectors
from hyenamd.surrogate.dft_conv import MAX_TOKENS, dft_matrices
from hyenamd.surrogate.forces import _parameters_of
from hyenamd.surrogate.global_block import _split_projections, _token_filter, block_tail, dft_convs
from hyenamd.surrogate.local_block import Edges
from hyenamd.surrogate.model import GHyena, _order_of
from hyenamd.system import Batch

__all__ = ["DEFAULT_OPTIONS", "CompiledGHyena", "ghyena_energies"]


def _global_block_dft(
    block: nn.Module, s: Tensor, v: Tensor, order: Tensor, h_s: Tensor, h_v: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`~hyenamd.surrogate.global_block.global_block_forward` of one small system with its
    token filter given (``h_s`` ``[n, F]``, ``h_v`` ``[n, C, 1]``): the DFT-matrix path, no caches."""
    s_t, v_t = s[order], v[order]
    p = _split_projections(block, s_t, v_t)
    return block_tail(block, s_t, v_t, p, dft_convs(block, p, h_s, h_v), order)


def ghyena_energies(
    model: GHyena,
    positions: Tensor,
    cell: Tensor,
    idx: Tensor,
    order: Tensor,
    i: Tensor,
    j: Tensor,
    shifts: Tensor,
    valid: Tensor | None,
    filters: list[tuple[Tensor, Tensor]],
) -> tuple[Tensor, Tensor]:
    """``(energy [1], energies [N])`` eV of one system: :meth:`GHyena.forward`'s maths on tensors.

    positions ``[N, 3]`` Å; cell ``[3, 3]`` Å; idx ``[N]`` embedding rows; order ``[N]``;
    i, j ``[P]`` int64, shifts ``[P, 3]``: the (padded) pair list; valid ``[P]`` bool (None: all
    pairs real); filters: ``(h_s, h_v)`` of each global block on the ``N`` tokens. No
    data-dependent branch or shape: the function :class:`CompiledGHyena` compiles.
    """
    cfg = model.cfg
    vectors = edge_vectors(positions, cell, Neighbors(i, j, shifts))
    if valid is not None:  # padding pairs: a constant vector beyond every cutoff (exact zeros)
        far = torch.zeros(3, dtype=vectors.dtype, device=vectors.device)
        far[0] = 2.0 * model.cutoff + 1.0
        vectors = torch.where(valid.unsqueeze(1), vectors, far)
    r = torch.linalg.vector_norm(vectors, dim=-1)
    pair_energies = (
        None if model.pair_term is None else model.pair_term(r, i, j, idx, model.energy_head.energy_scale)
    )
    edges = Edges(i, j, vectors)
    if "local" in cfg.pattern:
        edges = edges.with_geometry(model.radial, r)
    s = model.embedding(idx)
    v = s.new_zeros(s.shape[0], cfg.n_vector, 3)
    k = 0
    for kind, block in zip(cfg.pattern, model.blocks):
        if kind == "local":
            s, v = block(s, v, edges)
        else:
            s, v = _global_block_dft(block, s, v, order, *filters[k])
            k += 1
    energies = model.energy_head(s, idx)
    if pair_energies is not None:
        energies = energies + pair_energies
    energy = energies.new_zeros(1).index_add(0, torch.zeros_like(idx), energies)
    return energy, energies


#: inductor options of :class:`CompiledGHyena` unless overridden: scalar (not SIMD-vectorised)
#: C++ kernels. At 108 atoms a call costs the same either way (the arithmetic is a small part),
#: while the first compile takes 33-49 s instead of 79-111 s on 2 busy cores (BENCHMARKS.md)
DEFAULT_OPTIONS: dict = {"cpp.vec_isa_ok": False}


def _options(backend, mode: str | None, options: dict | None) -> dict | None:
    """``torch.compile`` options: :data:`DEFAULT_OPTIONS` updated by ``options`` for inductor
    without a ``mode`` (torch.compile takes one of the two), else ``options`` as given."""
    if backend != "inductor" or mode is not None:
        return options
    return {**DEFAULT_OPTIONS, **(options or {})}


def unsupported_reason(model: GHyena) -> str | None:
    """Why ``model`` cannot take the compiled path at all (None: it can)."""
    cfg = model.cfg
    if cfg.heads != ("energy",):
        return f"heads {list(cfg.heads)}: only the energy head is compiled"
    if model.velocity_embedding is not None:
        return "the model takes velocities"
    return None


class CompiledGHyena(nn.Module):
    """A G-Hyena potential whose forward pass runs compiled (see the module doc).

    model: the :class:`GHyena` (held, not copied: later weight updates are seen; the token
    filters are re-read per weights version). backend: ``torch.compile`` backend ("inductor",
    or "aot_eager": the same graphs without code generation). pad_factor, pad_multiple: the
    pair capacity rule; compact: pass only the
    pairs within range (see the module doc). mode, options: passed to ``torch.compile``;
    ``options`` update :data:`DEFAULT_OPTIONS` (scalar C++ kernels; ``{"cpp.vec_isa_ok": None}``
    restores inductor's vectorised ones).
    """

    def __init__(
        self,
        model: GHyena,
        *,
        backend: str = "inductor",
        pad_factor: float = 1.25,
        pad_multiple: int = 64,
        compact: bool = True,
        mode: str | None = None,
        options: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, GHyena):
            raise TypeError(f"CompiledGHyena wraps a GHyena, got {type(model).__name__}")
        if not pad_factor >= 1.0 or pad_multiple < 1:
            raise ValueError(f"need pad_factor >= 1 and pad_multiple >= 1, got {pad_factor}, {pad_multiple}")
        self.model = model
        self.pad_factor, self.pad_multiple = float(pad_factor), int(pad_multiple)
        self.compact = bool(compact)
        self.backend = backend
        self._compiled = torch.compile(
            ghyena_energies,
            backend=backend,
            fullgraph=True,
            dynamic=False,  # static shapes: a new capacity compiles again, never a dynamic graph
            isolate_recompiles=True,  # this wrapper's own graph cache and recompile limit
            mode=mode,
            options=_options(backend, mode, options),
        )
        #: why the last call ran eagerly (None: it ran compiled); a compile failure sticks
        self.fallback_reason: str | None = unsupported_reason(model)
        self._failed: str | None = None
        self.n_compiled_calls = 0
        #: the calls that ran eagerly, per reason (in the order the reasons first occurred)
        self.eager_calls: dict[str, int] = {}
        self.capacity = 0
        self._padded: tuple | None = None

    # the potential protocol and what the engine reads from a G-Hyena
    @property
    def cutoff(self) -> float:
        return self.model.cutoff

    @property
    def cfg(self):
        return self.model.cfg

    @property
    def needs_order(self) -> bool:
        return self.model.needs_order

    needs_exact_neighbors = False

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def check_species(self, species: Tensor) -> None:
        self.model.check_species(species)

    # ------------------------------------------------------------------ eager or compiled
    def _eager_reason(self, batch: Batch) -> str | None:
        if self._failed is not None:
            return self._failed
        static = unsupported_reason(self.model)
        if static is not None:
            return static
        if batch.n_systems != 1:
            return f"{batch.n_systems} systems in the batch: one system is compiled"
        if batch.n_atoms > MAX_TOKENS and self.model.needs_order:
            return f"{batch.n_atoms} atoms > MAX_TOKENS = {MAX_TOKENS}: the FFT path is not compiled"
        if torch.is_grad_enabled() and any(p.requires_grad for p in _parameters_of(self.model)):
            return "parameters require gradients (training): the compiled path is for inference"
        return None

    def _pad(
        self, nbrs: Neighbors, positions: Tensor, cell: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """int64 ``i, j``, ``shifts`` and ``valid`` of the padded list (cached per list object;
        with ``compact``, first the pairs within the model's range at ``positions``, per call)."""
        hit = self._padded
        if self.compact:
            with torch.no_grad():
                r = torch.linalg.vector_norm(edge_vectors(positions, cell, nbrs), dim=-1)
                keep = torch.nonzero(r < self.model.cutoff).squeeze(1)
            nbrs = Neighbors(nbrs.i[keep], nbrs.j[keep], nbrs.shifts[keep])
        elif hit is not None and hit[0] is nbrs.i and hit[1] is nbrs.j and hit[2] is nbrs.shifts:
            return hit[3]
        p = int(nbrs.i.shape[0])
        i, j, shifts = nbrs.i.long(), nbrs.j.long(), nbrs.shifts
        if p > self.capacity:
            cap = math.ceil(max(p, 1) * self.pad_factor)
            self.capacity = self.pad_multiple * math.ceil(cap / self.pad_multiple)
        extra = self.capacity - p
        valid = torch.ones(self.capacity, dtype=torch.bool, device=i.device)
        valid[p:] = False
        out = (
            torch.cat([i, i.new_zeros(extra)]),
            torch.cat([j, j.new_zeros(extra)]),
            torch.cat([shifts, shifts.new_zeros(extra, 3)]),
            valid,
        )
        self._padded = (nbrs.i, nbrs.j, nbrs.shifts, out)
        return out

    def _filters(self, n: int, device: torch.device, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        from hyenamd.surrogate.global_block import GlobalBlock

        with torch.no_grad():
            out = [
                _token_filter(b, n, device, dtype) for b in self.model.blocks if isinstance(b, GlobalBlock)
            ]
            for b in self.model.blocks:  # warm the DFT-matrix cache outside the graph
                if isinstance(b, GlobalBlock):
                    dft_matrices(n, b.conv == "circular", dtype, device)
        return out

    def forward(self, batch: Batch, neighbors: Neighbors | None = None) -> dict[str, Tensor]:
        """``{"energy": [1], "energies": [N]}`` eV (compiled), or the eager model's outputs."""
        model = self.model
        reason = self._eager_reason(batch)
        self.fallback_reason = reason
        if reason is not None:
            self.eager_calls[reason] = self.eager_calls.get(reason, 0) + 1
            return model(batch, neighbors=neighbors)
        model._check(batch)
        if neighbors is None:
            neighbors = batch_neighbor_list(batch.positions, batch.cell, batch.pbc, batch.ptr, model.cutoff)
        idx = model.species_index(batch.species, check=False)
        order = _order_of(batch, model.cfg.ordering) if model.needs_order else idx
        pos, cell = batch.positions, batch.cell.reshape(3, 3)
        i, j, shifts, valid = self._pad(neighbors, pos, cell)
        filters = self._filters(batch.n_atoms, pos.device, pos.dtype)
        try:
            energy, energies = self._compiled(model, pos, cell, idx, order, i, j, shifts, valid, filters)
        except Exception as exc:  # a compile failure: eager from now on
            out = model(batch, neighbors=neighbors)  # an error of the input itself raises here
            msg = " ".join(str(exc).split())[:300]
            self._failed = self.fallback_reason = f"compiling failed: {type(exc).__name__}: {msg}"
            self.eager_calls[self._failed] = 1
            warnings.warn(f"CompiledGHyena: {self._failed}; running eagerly", RuntimeWarning, stacklevel=2)
            return out
        self.n_compiled_calls += 1
        return {"energy": energy, "energies": energies}

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, compact={self.compact}, capacity={self.capacity}"
