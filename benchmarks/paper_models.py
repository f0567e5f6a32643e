"""Small sequence models for the paper experiments (EAR, n-body): operator blocks on token sequences.

The tokens are not atoms: no local blocks, no neighbour lists. Token order is the sequence order
(``order = arange``) and ``ptr`` marks the sequence boundaries, so a batch of B sequences of L
tokens is ``ptr = [0, L, 2L, ...]``.

Symmetry types. In: invariant token features ``s0`` ``[N, F_in]`` and vector token features
``v0`` ``[N, C_in, 3]``. Out: one vector per sequence (``readout="pool"``: mean pooling → gated
equivariant MLP → one vector channel, EAR) or one vector per token (``readout="token"``: gated
equivariant MLP → one vector channel, n-body). With ``kind`` in {"ghyena", "eqattn"} the whole
model is O(3)-equivariant; "hyena" and "transformer" flatten the vectors into features and are
NOT equivariant (baselines).

=============  ===================================================================  ===========
kind           block                                                                width
=============  ===================================================================  ===========
ghyena         :class:`hyenamd.surrogate.global_block.GlobalBlock`                  F, C
eqattn         :class:`hyenamd.surrogate.baselines.EquivariantAttentionBlock`       F, C
hyena          :class:`hyenamd.surrogate.baselines.HyenaBlock` (non-equivariant)    wide × F, C
transformer    :class:`hyenamd.surrogate.baselines.TransformerBlock` (non-equiv.)   wide × F, C
=============  ===================================================================  ===========

The "equivariant transformer" of the papers is the ``eqattn`` stack here (the same block that
:class:`hyenamd.surrogate.baselines.EquivariantTransformer` stacks; that class is a potential
with a species embedding, so the task models build the stack directly from its block).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hyenamd.surrogate.baselines import EquivariantAttentionBlock, HyenaBlock, TransformerBlock
from hyenamd.surrogate.equivariant import GatedEquivariantMLP, VectorLinear
from hyenamd.surrogate.global_block import GlobalBlock

__all__ = ["KINDS", "SequenceModel", "count_parameters", "sinusoidal_encoding", "train_model", "uniform_ptr"]

KINDS = ("ghyena", "eqattn", "hyena", "transformer")
EQUIVARIANT = {"ghyena": True, "eqattn": True, "hyena": False, "transformer": False}


def sinusoidal_encoding(length: int, dim: int = 16, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Transformer sinusoidal position encodings ``[length, dim]`` (dim even): invariant token features."""
    if dim % 2:
        raise ValueError(f"sinusoidal_encoding needs an even dim, got {dim}")
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(-torch.arange(0, dim, 2, dtype=torch.float64) * (torch.log(torch.tensor(1e4)) / dim))
    enc = torch.zeros(length, dim, dtype=torch.float64)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)
    return enc.to(dtype)


def uniform_ptr(n_seq: int, length: int, device: torch.device | str = "cpu") -> Tensor:
    """``ptr`` ``[n_seq + 1]`` for n_seq sequences of ``length`` tokens each."""
    return torch.arange(n_seq + 1, device=device) * length


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _block(kind: str, f: int, c: int, *, attn_mode: str, filter_kw: dict) -> nn.Module:
    if kind == "ghyena":
        return GlobalBlock(f, c, **filter_kw)
    if kind == "eqattn":
        return EquivariantAttentionBlock(f, c, mode=attn_mode)
    if kind == "hyena":
        # filter cut at 2 w_cap lags (≥ the sequence when w_cap ≥ L/2): the default 30 w_cap
        # evaluates ~100 L lags per step, most of the step's cost at L = 256
        return HyenaBlock(f, c, w_init=filter_kw["w_init"], w_cap=filter_kw["w_cap"], efolds=2.0)
    if kind == "transformer":
        return TransformerBlock(f, c)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


class SequenceModel(nn.Module):
    """Embedding → ``n_blocks`` operator blocks → readout (see the module docstring).

    kind: one of :data:`KINDS`; s_in, v_in: input invariant / vector channels; n_scalar, n_vector:
    hidden widths (F, C); wide: width multiplier applied to the non-equivariant baselines only
    (the papers make them 3× wider); readout: "pool" (one vector per sequence) or "token" (one
    vector per token); attn_mode: "naive" or "chunked" for the equivariant attention;
    filter_kw: keyword arguments of :class:`GlobalBlock` (implicit-filter windows, in tokens).
    """

    def __init__(
        self,
        kind: str,
        *,
        s_in: int,
        v_in: int,
        n_scalar: int = 16,
        n_vector: int = 16,
        n_blocks: int = 3,
        wide: int = 3,
        readout: str = "pool",
        attn_mode: str = "naive",
        filter_kw: dict | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
        if readout not in ("pool", "token"):
            raise ValueError(f"readout must be 'pool' or 'token', got {readout!r}")
        mult = 1 if EQUIVARIANT[kind] else int(wide)
        f, c = n_scalar * mult, n_vector * mult
        self.kind, self.readout, self.f, self.c = kind, readout, f, c
        self.embed_s = nn.Linear(s_in, f)
        self.embed_v = VectorLinear(v_in, c)
        kw = dict(filter_kw or {"w_min": 1.0, "w_init": 64.0, "w_cap": 1024.0})
        self.blocks = nn.ModuleList(
            _block(kind, f, c, attn_mode=attn_mode, filter_kw=kw) for _ in range(n_blocks)
        )
        self.head = GatedEquivariantMLP(f, c)
        self.out = VectorLinear(c, 1)

    def forward(self, s0: Tensor, v0: Tensor, ptr: Tensor) -> Tensor:
        """s0 ``[N, F_in]``, v0 ``[N, C_in, 3]``, ptr ``[B+1]`` → ``[B, 3]`` (pool) or ``[N, 3]`` (token)."""
        n = s0.shape[0]
        if v0.shape[0] != n or int(ptr[-1]) != n:
            raise ValueError(
                f"SequenceModel: s0 {tuple(s0.shape)}, v0 {tuple(v0.shape)}, ptr[-1]={int(ptr[-1])}"
            )
        order = torch.arange(n, device=s0.device)
        s, v = self.embed_s(s0), self.embed_v(v0)
        for blk in self.blocks:
            s, v = blk(s, v, order, ptr)
        if self.readout == "pool":
            counts = (ptr[1:] - ptr[:-1]).to(s.dtype).clamp_min(1)
            seg = torch.repeat_interleave(torch.arange(ptr.numel() - 1, device=s.device), ptr[1:] - ptr[:-1])
            s = torch.zeros(ptr.numel() - 1, s.shape[1], dtype=s.dtype, device=s.device).index_add(0, seg, s)
            v = torch.zeros(ptr.numel() - 1, *v.shape[1:], dtype=v.dtype, device=v.device).index_add(
                0, seg, v
            )
            s, v = s / counts.unsqueeze(1), v / counts.view(-1, 1, 1)
        s, v = self.head(s, v)
        return self.out(v).squeeze(1)


def train_model(
    model: nn.Module,
    loss_fn: Callable[[int], Tensor],
    *,
    n_steps: int,
    lr: float,
    weight_decay: float,
    cosine: bool = True,
    clip: float | None = None,
    decoupled: bool = False,
    desc: str = "train",
    progress: bool = True,
) -> dict[str, object]:
    """Adam with L2 ``weight_decay`` (torch's Adam, as the papers) and a cosine learning-rate decay to 0.

    ``clip``: clip the gradient's global norm to this value (None: no clipping).
    ``decoupled``: AdamW's decoupled weight decay instead of the L2 term.

    loss_fn(step) returns the scalar training loss of that step's mini-batch. Returns the loss
    curve (every step) and the wall time. Shows a tqdm bar when ``progress``, else a log line
    on stderr every 10 % of the steps.
    """
    from hyenamd.progress import progress_bar

    opt_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
    lam = (lambda k: 0.5 * (1.0 + math.cos(math.pi * k / max(n_steps, 1)))) if cosine else (lambda k: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = progress_bar(range(n_steps), desc=desc, disable=not progress, mininterval=5.0, leave=False)
    for step in bar:
        model.train()
        loss = loss_fn(step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
        if not progress and step % max(n_steps // 10, 1) == 0:  # a log line every 10 % when no bar
            print(f"{desc}: step {step}/{n_steps} loss {losses[-1]:.4g}", file=sys.stderr, flush=True)
    return {"losses": losses, "train_seconds": time.perf_counter() - t0}
