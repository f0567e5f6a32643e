"""Differentiation rules of the geometric convolutions (:mod:`hyenamd.surrogate.geometric_conv`).

* :class:`_GeometricConvs` — forward by the batched FFT kernels (``_fast_forward``, spectra kept
  for the backward when asked), backward by :class:`_GeometricConvsBackward`;
* :class:`_GeometricConvsBackward` — the adjoint convolutions (``_fast_backward``) as their own
  Function, so forces can be trained on (double backward through the plain ``_backward`` ops);
* :class:`_GeometricConvsFunctorch` — the same for ``torch.func`` transforms, with a ``vmap``
  rule that folds the committee-member axis into the channel axis (one FFT call for all members).

Shapes, units and maths are those of :func:`hyenamd.surrogate.geometric_conv.geometric_convs_cf`,
the only caller.
"""

from __future__ import annotations

import torch

from hyenamd.surrogate.geometric_conv import _backward, _fast_backward, _fast_forward

__all__: list[str] = []


class _GeometricConvs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ss, ks, sm, sv, kv, plan, chunk, keep_spectra):
        keep = bool(keep_spectra) and any(ctx.needs_input_grad[:5])
        with torch.no_grad():
            outs, specs = _fast_forward(ss, ks, sm, sv, kv, plan, chunk, keep)
        ctx.save_for_backward(ss, ks, sm, sv, kv, *specs)
        ctx.plan, ctx.chunk = plan, chunk
        return outs

    @staticmethod
    def backward(ctx, gs, gc, gm, gd):
        ss, ks, sm, sv, kv, *specs = ctx.saved_tensors
        zeros = lambda g, x: torch.zeros_like(x) if g is None else g  # noqa: E731
        gs, gd = zeros(gs, ss), zeros(gd, sm)
        gc, gm = zeros(gc, sv), zeros(gm, sv)
        grads = _GeometricConvsBackward.apply(gs, gc, gm, gd, ss, ks, sm, sv, kv, ctx.plan, ctx.chunk, *specs)
        return (*grads, None, None, None)


class _GeometricConvsBackward(torch.autograd.Function):
    """The backward pass as its own Function, differentiated by autograd through plain ops.

    ``specs``: the forward's input spectra (empty: recomputed); they carry no gradient.
    """

    @staticmethod
    def forward(ctx, gs, gc, gm, gd, ss, ks, sm, sv, kv, plan, chunk, *specs):
        ctx.save_for_backward(gs, gc, gm, gd, ss, ks, sm, sv, kv)
        ctx.plan, ctx.chunk, ctx.n_specs = plan, chunk, len(specs)
        with torch.no_grad():
            return _fast_backward(gs, gc, gm, gd, ss, ks, sm, sv, kv, plan, chunk, list(specs) or None)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_(True) for x in saved]
            outs = _backward(*inputs, ctx.plan, ctx.chunk)
            pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
            res = torch.autograd.grad(
                [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True, create_graph=True
            )
        return (*res, None, None, *([None] * ctx.n_specs))


class _GeometricConvsFunctorch(torch.autograd.Function):
    """:class:`_GeometricConvs` for functorch transforms (``torch.func.vmap`` over committee members).

    ``setup_context`` style (functorch needs it) and no kept spectra. Its ``vmap`` rule folds the
    member axis into the channel axis: channels are convolved independently, so ``K`` members'
    ``[B, F, L]`` inputs run as one ``[B, K F, L]`` call sharing the plan, and the outputs come
    back as ``[B, K, F, L]`` (out dim 1). Used only when an input is functorch-wrapped.
    """

    @staticmethod
    def forward(ss, ks, sm, sv, kv, plan, chunk):
        with torch.no_grad():
            return _fast_forward(ss, ks, sm, sv, kv, plan, chunk, False)[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        ss, ks, sm, sv, kv, plan, chunk = inputs
        ctx.save_for_backward(ss, ks, sm, sv, kv)
        ctx.plan, ctx.chunk = plan, chunk

    @staticmethod
    def backward(ctx, gs, gc, gm, gd):
        ss, ks, sm, sv, kv = ctx.saved_tensors
        zeros = lambda g, x: torch.zeros_like(x) if g is None else g  # noqa: E731
        gs, gd = zeros(gs, ss), zeros(gd, sm)
        gc, gm = zeros(gc, sv), zeros(gm, sv)
        grads = _GeometricConvsBackward.apply(gs, gc, gm, gd, ss, ks, sm, sv, kv, ctx.plan, ctx.chunk)
        return (*grads, None, None)

    @staticmethod
    def vmap(info, in_dims, ss, ks, sm, sv, kv, plan, chunk):
        k = info.batch_size
        folded = []
        for x, d in zip((ss, ks, sm, sv, kv), in_dims[:5]):
            x = x.unsqueeze(0).expand(k, *x.shape) if d is None else x.movedim(d, 0)
            folded.append(x.movedim(0, 1).reshape(x.shape[1], k * x.shape[2], *x.shape[3:]))
        outs = _GeometricConvsFunctorch.apply(*folded, plan, chunk)
        return tuple(o.view(o.shape[0], k, o.shape[1] // k, *o.shape[2:]) for o in outs), (1, 1, 1, 1)
