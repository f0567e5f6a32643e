"""The n-body task model: a stack of local (distance-based) and sequence blocks on the particles.

Tokens are particles (5 per system). Per particle, in: invariant ``s0 = [q, |v|]`` ``[N, 2]``,
vectors ``v0 = [x - x̄, v]`` ``[N, 2, 3]`` and positions ``x`` ``[N, 3]`` (only their
differences enter); out: one displacement vector per particle ``[N, 3]`` (the prediction is
``x + Δ``). The stack is a string of block letters, run in order:

======  ============================================================================  ============
letter  block                                                                         equivariant
======  ============================================================================  ============
``L``   :class:`hyenamd.surrogate.local_block.LocalBlock` on the complete graph of     yes
        each system (every pair ``i ≠ j``; no cutoff: the radial features below have
        no envelope, i.e. "a cutoff larger than the system")
``G``   :class:`hyenamd.surrogate.global_block.GlobalBlock` (G-Hyena operator)         yes
``A``   :class:`hyenamd.surrogate.baselines.EquivariantAttentionBlock`                yes
``H``   :class:`hyenamd.surrogate.baselines.HyenaBlock` (flattened features)          no
``T``   :class:`hyenamd.surrogate.baselines.TransformerBlock` (flattened features)    no
``E``   :class:`nbody_edge_block.EdgeBlock`: EGNN-style messages, an MLP of            yes
        ``(s_i, s_j, b(r), q_i q_j)`` (complete graph, as ``L``)
======  ============================================================================  ============

So ``"GG"`` is G-Hyena with global blocks only, ``"LGLG"`` the paper's local/global
alternation, ``"LL"`` a PaiNN-like local-only model, ``"AA"`` the equivariant transformer,
``"EGEG"`` the alternation with EGNN-style local blocks (the charges' product ``q_i q_j``, read
from the input scalar column ``charge_index``, is their pair attribute).

Regularisation: ``dropout`` > 0 drops each block's residual increment (scalars elementwise,
vectors per channel: one invariant mask value multiplies all three components, so dropout
keeps the equivariance) in training mode only.

Pair features (radial "basis" of the local blocks), for the distance ``r`` of a pair:
``[(r_c/K) sin(kπr/r_c)/r (k = 1..K, Bessel), exp(-r/r_c), 1/(1 + r²)]`` with envelope 1: smooth,
bounded (≤ π·sqrt(2/r_c) as r → 0) and distance-resolving at short range, monotone at long
range. ``r_c`` is a length scale here, not a cutoff. (Unbounded features such as ``r, r²``, as
EGNN feeds its edge MLP, made the un-normalised local blocks diverge in training: loss 1e6.)

Order: sequence blocks (G, A, H, T) run along ``order`` (a permutation of the tokens within each
system); the local blocks do not depend on it. Training with a random order per sample is the
permutation augmentation; averaging predictions over K random orders is test-time averaging.

Checkpoints: :func:`save_task_model` / :func:`load_task_model` (one ``.safetensors`` file, the
constructor arguments and a free-form summary in its JSON metadata; loading never unpickles).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import torch
from nbody_edge_block import EdgeBlock
from torch import Tensor, nn

from hyenamd.surrogate.baselines import EquivariantAttentionBlock, HyenaBlock, TransformerBlock
from hyenamd.surrogate.equivariant import GatedEquivariantMLP, VectorLinear
from hyenamd.surrogate.global_block import GlobalBlock
from hyenamd.surrogate.local_block import Edges, LocalBlock
from hyenamd.surrogate.radial import bessel_basis

__all__ = [
    "BLOCK_LETTERS",
    "NBodyNet",
    "PairFeatures",
    "complete_graph",
    "load_task_model",
    "random_orders",
    "save_task_model",
]

BLOCK_LETTERS = "LGAHTE"
_META_KEY = "hyenamd_task_model"


class PairFeatures(nn.Module):
    """``r [P] -> (features [P, K + 2], envelope [P] = 1)``: scaled Bessel ``sin(kπr/r_c)/r``, ``exp(-r/r_c)``, ``1/(1+r²)``."""

    def __init__(self, length_scale: float = 16.0, n_bessel: int = 16) -> None:
        super().__init__()
        self.length_scale, self.n_bessel = float(length_scale), int(n_bessel)
        self.n_rbf = self.n_bessel + 2

    def forward(self, r: Tensor) -> tuple[Tensor, Tensor]:
        b = bessel_basis(r, self.length_scale, self.n_bessel) * (self.length_scale / self.n_bessel)
        far = torch.stack([torch.exp(-r / self.length_scale), 1.0 / (1.0 + r * r)], dim=-1)
        return torch.cat([b, far], dim=-1), torch.ones_like(r)


def complete_graph(n_sys: int, p: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Pairs ``(i, j)`` ``[n_sys · p(p-1)]`` of every ordered ``i ≠ j`` within each system of p tokens."""
    a = torch.arange(p, device=device)
    ii, jj = torch.meshgrid(a, a, indexing="ij")
    keep = ii != jj
    off = (torch.arange(n_sys, device=device) * p).view(-1, 1)
    return (off + ii[keep]).flatten(), (off + jj[keep]).flatten()


def random_orders(n_sys: int, p: int, generator: torch.Generator | None = None) -> Tensor:
    """``order`` ``[n_sys · p]``: an independent random permutation of the tokens of each system."""
    perm = torch.argsort(torch.rand(n_sys, p, generator=generator), dim=1)
    return (perm + torch.arange(n_sys).view(-1, 1) * p).flatten()


class NBodyNet(nn.Module):
    """Embedding → blocks (``pattern``, see the module doc) → gated equivariant MLP → one vector per token.

    n_scalar, n_vector: hidden widths F, C (the non-equivariant letters H/T run on ``wide``× them);
    filter_kw: :class:`GlobalBlock` keyword arguments (implicit-filter windows, in tokens);
    length_scale, n_bessel: :class:`PairFeatures`; avg_neighbors: the local blocks' 1/ν;
    dropout: the residual-increment dropout rate (module doc); charge_index: the column of ``s0``
    holding the charge (``E`` blocks' pair attribute ``q_i q_j``).
    """

    def __init__(
        self,
        pattern: str = "LGLG",
        *,
        s_in: int = 2,
        v_in: int = 2,
        n_scalar: int = 32,
        n_vector: int = 16,
        wide: int = 1,
        length_scale: float = 16.0,
        n_bessel: int = 16,
        avg_neighbors: float = 4.0,
        filter_kw: dict | None = None,
        dropout: float = 0.0,
        charge_index: int = 0,
    ) -> None:
        super().__init__()
        if not pattern or any(ch not in BLOCK_LETTERS for ch in pattern):
            raise ValueError(f"pattern must be a non-empty string of {BLOCK_LETTERS!r}, got {pattern!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0 <= charge_index < s_in:
            raise ValueError(f"charge_index must be in [0, {s_in}), got {charge_index}")
        equivariant = not any(ch in "HT" for ch in pattern)
        if not equivariant and any(ch in "LGAE" for ch in pattern):
            raise ValueError(f"pattern {pattern!r} mixes equivariant and non-equivariant blocks")
        mult = 1 if equivariant else int(wide)
        f, c = n_scalar * mult, n_vector * mult
        self.config = {
            "pattern": pattern,
            "s_in": s_in,
            "v_in": v_in,
            "n_scalar": n_scalar,
            "n_vector": n_vector,
            "wide": wide,
            "length_scale": length_scale,
            "n_bessel": n_bessel,
            "avg_neighbors": avg_neighbors,
            "filter_kw": dict(filter_kw or {"w_min": 1.0, "w_init": 4.0, "w_cap": 16.0}),
            "dropout": float(dropout),
            "charge_index": int(charge_index),
        }
        self.pattern, self.equivariant = pattern, equivariant
        self.embed_s = nn.Linear(s_in, f)
        self.embed_v = VectorLinear(v_in, c)
        self.pairs = PairFeatures(length_scale, n_bessel)
        blocks: list[nn.Module] = []
        for ch in pattern:
            if ch == "L":
                blocks.append(LocalBlock(f, c, self.pairs, avg_neighbors=avg_neighbors))
            elif ch == "G":
                blocks.append(GlobalBlock(f, c, **self.config["filter_kw"]))
            elif ch == "E":
                blocks.append(EdgeBlock(f, c, self.pairs, n_attr=1, avg_neighbors=avg_neighbors))
            elif ch == "A":
                blocks.append(EquivariantAttentionBlock(f, c))
            elif ch == "H":
                kw = self.config["filter_kw"]
                blocks.append(HyenaBlock(f, c, w_init=kw["w_init"], w_cap=kw["w_cap"]))
            else:
                blocks.append(TransformerBlock(f, c))
        self.blocks = nn.ModuleList(blocks)
        self.head = GatedEquivariantMLP(f, c)
        self.out = VectorLinear(c, 1)
        nn.init.zeros_(self.out.weight)  # start at "copy the input" (Δ = 0), not at a random O(10) jump

    def forward(self, s0: Tensor, v0: Tensor, x: Tensor, p: int, order: Tensor | None = None) -> Tensor:
        """s0 ``[N, s_in]``, v0 ``[N, v_in, 3]``, x ``[N, 3]``, p tokens per system, order ``[N]`` → ``[N, 3]``."""
        n = s0.shape[0]
        if n % p or v0.shape[0] != n or x.shape != (n, 3):
            raise ValueError(
                f"NBodyNet: s0 {tuple(s0.shape)}, v0 {tuple(v0.shape)}, x {tuple(x.shape)}, p={p}"
            )
        n_sys = n // p
        ptr = torch.arange(n_sys + 1, device=s0.device) * p
        if order is None:
            order = torch.arange(n, device=s0.device)
        edges = attr = None
        if "L" in self.pattern or "E" in self.pattern:
            i, j = complete_graph(n_sys, p, s0.device)
            edges = Edges(i, j, x[j] - x[i])
            q = s0[:, self.config["charge_index"]]
            attr = (q[i] * q[j]).unsqueeze(-1)
        s, v = self.embed_s(s0), self.embed_v(v0)
        rate = self.config["dropout"] if self.training else 0.0
        for ch, blk in zip(self.pattern, self.blocks):
            if ch == "L":
                s_new, v_new = blk(s, v, edges)
            elif ch == "E":
                s_new, v_new = blk(s, v, edges, attr)
            else:
                s_new, v_new = blk(s, v, order, ptr)
            if rate > 0.0:
                s_new, v_new = _drop_increment(s, v, s_new, v_new, rate)
            s, v = s_new, v_new
        s, v = self.head(s, v)
        return self.out(v).squeeze(1)


def _drop_increment(s: Tensor, v: Tensor, s_new: Tensor, v_new: Tensor, rate: float) -> tuple[Tensor, Tensor]:
    """Inverted dropout of a block's increments ``s_new − s`` ``[N, F]``, ``v_new − v`` ``[N, C, 3]`` (vectors per channel)."""
    keep = 1.0 - rate
    ms = torch.bernoulli(torch.full_like(s, keep)) / keep
    mv = torch.bernoulli(torch.full_like(v[..., 0], keep)).unsqueeze(-1) / keep
    return s + ms * (s_new - s), v + mv * (v_new - v)


def save_task_model(model: NBodyNet, path: str | pathlib.Path, **summary: Any) -> pathlib.Path:
    """Write weights + ``{"class", "config", "summary"}`` JSON metadata to one ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = pathlib.Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path.name!r}")
    state = {k: t.detach().cpu().contiguous().clone() for k, t in model.state_dict().items()}
    meta = json.dumps({"class": type(model).__name__, "config": model.config, "summary": summary})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={_META_KEY: meta})
    tmp.replace(path)
    return path


def load_task_model(path: str | pathlib.Path) -> tuple[NBodyNet, dict]:
    """Rebuild a model written by :func:`save_task_model` (float32, eval mode); returns (model, summary)."""
    from safetensors import safe_open

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        raw = (f.metadata() or {}).get(_META_KEY)
        if raw is None:
            raise ValueError(f"{path}: not an n-body task checkpoint (no {_META_KEY!r} metadata)")
        info = json.loads(raw)
        if info.get("class") != "NBodyNet":
            raise ValueError(f"{path}: unknown task model class {info.get('class')!r}")
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = NBodyNet(**info["config"])
    model.load_state_dict(state, strict=True)
    return model.eval(), info.get("summary", {})
