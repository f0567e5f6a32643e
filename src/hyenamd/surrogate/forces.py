"""Forces and stress from any energy model, by automatic differentiation (one wrapper).

A *potential* is an ``nn.Module`` with a ``cutoff`` attribute (Å) whose
``forward(batch, neighbors=None)`` returns a dict with ``"energy"`` ``[n_systems]`` eV and
``"energies"`` ``[n_atoms]`` eV, computed from ``batch.positions`` and ``batch.cell`` only
through differentiable operations (pair vectors ``x_j - x_i + S @ cell``). The G-Hyena model
and the classical torch potentials of the engine all follow this protocol.

Forces ``F = -∂E/∂x`` (eV/Å). Stress ``σ = (1/V) ∂E/∂ε`` (eV/Å³) for a symmetric strain ε
applied as ``x -> x (1 + ε)``, ``cell -> cell (1 + ε)``: ASE's sign convention, negative when
the system is compressed (it pushes outwards). Systems without a 3-D cell get zero stress.

Inference (``create_graph=False``: MD, calculators, validation) runs the model with its
parameters' ``requires_grad`` switched off (through the backward pass too, restored after),
so autograd records only what the gradient with
respect to positions (and strain) needs: no parameter-gradient graph (e.g. the implicit
filters' MLPs, the inputs of every linear layer kept for its weight gradient). The outputs are
identical; training (``create_graph=True``) differentiates the parameters as before.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from hyenamd.allocator import adapt_malloc
from hyenamd.geometry import Neighbors
from hyenamd.system import Batch

__all__ = ["compute_forces"]


def compute_forces(
    model: nn.Module,
    batch: Batch,
    *,
    stress: bool = False,
    neighbors: Neighbors | None = None,
    create_graph: bool = False,
) -> dict[str, Tensor]:
    """Run ``model`` and add ``"forces"`` ``[n_atoms, 3]`` (and ``"stress"`` ``[n_systems, 3, 3]``).

    ``create_graph=True`` keeps the graph of the forces (for training on forces).
    The batch itself is not modified; gradients are taken through detached copies.
    Under the ``hyenamd`` CLI the allocator thresholds follow the batch size
    (:func:`hyenamd.allocator.adapt_malloc`; a no-op otherwise), unless the model sets them
    itself (``adapts_malloc``: the G-Hyena model, from its memory regime).
    """
    if not getattr(model, "adapts_malloc", False):
        adapt_malloc(batch.n_atoms)
    pos = batch.positions.detach().requires_grad_(True)
    cell = batch.cell.detach()
    inputs = [pos]
    if stress:
        eps = torch.zeros(batch.n_systems, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)
        sym = 0.5 * (eps + eps.transpose(1, 2))
        one = torch.eye(3, dtype=pos.dtype, device=pos.device)
        deform = one + sym  # [B, 3, 3]
        pos_in = torch.bmm(pos.unsqueeze(1), deform[batch.batch]).squeeze(1)
        cell = torch.bmm(cell, deform)
        inputs.append(eps)
    else:
        pos_in = pos
    inputs_batch = batch.replace(positions=pos_in, cell=cell)
    frozen = contextlib.nullcontext() if create_graph else _frozen_parameters(model)
    with torch.enable_grad(), frozen:  # the backward pass too (checkpointed blocks recompute in it)
        out = dict(model(inputs_batch, neighbors=neighbors))
        grads = torch.autograd.grad(out["energy"].sum(), inputs, create_graph=create_graph, allow_unused=True)
    f = grads[0]
    out["forces"] = torch.zeros_like(pos) if f is None else -f
    if stress:
        de = (
            grads[1]
            if grads[1] is not None
            else torch.zeros(batch.n_systems, 3, 3, dtype=pos.dtype, device=pos.device)
        )
        vol = torch.linalg.det(batch.cell.detach()).abs()
        full = (batch.has_cell if batch.has_cell is not None else torch.ones_like(vol, dtype=torch.bool)) & (
            vol > 0
        )
        safe = torch.where(full, vol, torch.ones_like(vol))
        out["stress"] = torch.where(full[:, None, None], de / safe[:, None, None], torch.zeros_like(de))
    if not create_graph:
        out = {k: v.detach() for k, v in out.items()}
    return out


#: bumped whenever any module registers a parameter or a submodule (global torch hooks): the
#: parameter lists cached by :func:`_parameters_of` are then rebuilt
_GENERATION = [0]


def _bump(*_args) -> None:
    _GENERATION[0] += 1


nn.modules.module.register_module_parameter_registration_hook(_bump)
nn.modules.module.register_module_module_registration_hook(_bump)


def _parameters_of(model: nn.Module) -> list[nn.Parameter]:
    """``list(model.parameters())``, cached on the model until any module registers a parameter
    or submodule (walking the ~90 modules of a preset-S model costs ~0.17 ms per call).

    A stale list could only leave a parameter unfrozen (a parameter graph recorded, the same
    results), never change an output: freezing affects what autograd records, not the values.
    So it serves :func:`_frozen_parameters` only; nothing keys a cached value on it. Not used
    (nor filled) under ``torch.func`` transforms or with swapped-in functorch tensors.
    """
    if torch._C._are_functorch_transforms_active():
        return list(model.parameters())  # swapped-in, vmap-stacked tensors: never cached
    cached = model.__dict__.get("_hyenamd_parameters")
    if cached is not None and cached[0] == _GENERATION[0]:
        return cached[1]
    params = list(model.parameters())
    if not any(torch._C._functorch.is_functorch_wrapped_tensor(p) for p in params):
        model.__dict__["_hyenamd_parameters"] = (_GENERATION[0], params)
    return params


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module):
    """Context: ``model``'s trainable parameters switched to ``requires_grad=False`` (no parameter graph).

    Restored on exit, also after an exception. One ``requires_grad_`` flag per parameter: ~20×
    cheaper per call than swapping in detached aliases (``torch.func.functional_call``'s
    reparametrisation, 2-3 ms per call at preset S, measured), which matters for small systems.
    The flags are the module's own, so one model must not be evaluated by two threads at once,
    nor trained in one thread while another evaluates it.
    """
    params = [p for p in _parameters_of(model) if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
