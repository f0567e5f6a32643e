"""Checkpoints written before issue 12: which rule and which maths they were trained with.

Issue 12 changed the model in ways a checkpoint written before it cannot know about:

* ``GHyenaConfig.ordering`` (``"topology"`` | ``"hilbert"``) did not exist; the order was
  chosen per system (topology when it had residue labels, else a Hilbert curve);
* ``GHyenaConfig.conv`` did not exist: the global convolution was the zero-padded linear one;
* every vector-norm floor was an absolute ``ε = 1`` (local update, gated MLP, the global
  blocks' pseudovector norm and vector pre-norm), with no learned floors (``*.log_eps``
  tensors) and no pre-norm gain (``*.prenorm_gain``).

A file is *pre-issue-12* when its config has no ``conv`` key (every later file records it).
:func:`migrate` turns its config into today's settings that reproduce the old maths exactly,
``conv="linear"``, ``norm_eps=1.0``, ``learn_norm_eps=False`` (frozen floors, so fine-tuning
keeps the old norms), ``residual_init="default"`` (initialisation only; loaded weights are
unaffected), and names the tensors to add with the values that make them the identity of the
old maths: ``log_eps = log 1 = 0`` (so ``ε = exp(0) = 1`` exactly) and ``prenorm_gain = 1``.
Nothing else of the old file is changed; :func:`hyenamd.surrogate.checkpoint.load_model` warns
once, listing what it assumed. Tested against a checkpoint and outputs written by the old code
itself (``tests/data/legacy/``, ``tests/surrogate/test_checkpoint_legacy.py``).

What is *not* reproduced: the old Hilbert order of unlabelled systems depended on the lab
frame (bounding box / wrapped fractional coordinates) and on which structure a calculator saw
first; issue 12 replaced it by a frame-independent order on purpose. A pre-issue-12 model of
the Hilbert rule therefore gets today's canonical Hilbert order (its weights and maths are the
old ones; the sequence order of an unlabelled system may differ). Topology order is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["PRE12_SETTINGS", "Migration", "legacy_ordering", "migrate", "pre12_fill_values"]

#: today's config values that reproduce the model maths of the code before issue 12
PRE12_SETTINGS: dict[str, Any] = {
    "conv": "linear",
    "norm_eps": 1.0,
    "learn_norm_eps": False,
    "residual_init": "default",
}


def legacy_ordering(info: dict[str, Any]) -> str:
    """The ordering rule a checkpoint written before ``GHyenaConfig.ordering`` existed was trained with.

    Those versions used topology order when the training systems had residue labels and a
    Hilbert curve otherwise. Stores written by hyenamd (``reference_md``) always carry the
    topology's labels, so a model whose training summary lists ``stores`` was trained in
    topology order; any other model (trained on unlabelled samples) in Hilbert order. The
    trainer nests the data summary under ``training.data`` (``hyenamd train``); a top-level
    ``training.stores`` is accepted too.
    """
    training = info.get("training") or {}
    if not isinstance(training, dict):
        return "hilbert"
    data = training.get("data")
    stores = training.get("stores") or (data.get("stores") if isinstance(data, dict) else None)
    return "topology" if stores else "hilbert"


@dataclass
class Migration:
    """What :func:`migrate` decided for one checkpoint.

    config: the config mapping to build the model from; pre12: whether the file predates the
    issue-12 model changes (tensors are then filled by :func:`pre12_fill_values`); assumed:
    one human-readable line per assumption (empty: nothing assumed, no warning).
    """

    config: dict[str, Any]
    pre12: bool = False
    assumed: list[str] = field(default_factory=list)

    def warning(self, path: Any) -> str:
        """The one warning :func:`~hyenamd.surrogate.checkpoint.load_model` emits."""
        what = (
            "issue 12 (sequence-order rule, convolution mode, norm floors)"
            if self.pre12
            else "models recorded their ordering rule"
        )
        return (
            f"{path} was written before {what}; loading it with the settings it was trained with: "
            + "; ".join(self.assumed)
            + ". Saving the loaded model writes these settings into a current checkpoint."
        )


def migrate(info: dict[str, Any], ordering: str | None = None) -> Migration:
    """The config to build the model of checkpoint description ``info`` from, and what was assumed.

    ``ordering``: the caller's choice of rule (overrides the file and the legacy inference).
    A config that is not a mapping is passed through (the typed loader reports it).
    """
    config = info["config"]
    if not isinstance(config, dict):
        return Migration(config)
    config = dict(config)
    mig = Migration(config, pre12="conv" not in config)
    if ordering is not None:
        config["ordering"] = ordering
    elif "ordering" not in config:
        rule = config["ordering"] = legacy_ordering(info)
        note = "; the Hilbert order is today's frame-independent one" if rule == "hilbert" else ""
        mig.assumed.append(
            f"ordering={rule!r} (the rule it was trained with: topology order when the training "
            "systems had residue labels, as hyenamd's reference stores do, else a Hilbert curve"
            f"{note}; pass load_model(..., ordering='topology'|'hilbert') to choose)"
        )
    if mig.pre12:
        new = {k: v for k, v in PRE12_SETTINGS.items() if k not in config}
        config.update(new)
        mig.assumed.append(
            "conv='linear' (the zero-padded convolution), absolute norm floors ε = 1 frozen "
            "(norm_eps=1.0, learn_norm_eps=False; missing '*.log_eps' tensors set to log 1 = 0), "
            "global pre-norm without gain (missing '*.prenorm_gain' set to 1), residual_init='default'"
        )
    return mig


def pre12_fill_values(model: nn.Module, norm_eps: float) -> dict[str, float]:
    """Tensor name → the constant that makes it the identity of the pre-issue-12 maths, for ``model``.

    ``model``: the model built from the migrated config (the ``meta`` device is enough: only
    names are read). SmoothNorm floors ``log_eps = log(norm_eps)`` (0 for ε = 1); the global
    blocks' pre-norm gains ``1``.
    """
    from hyenamd.surrogate.equivariant import SmoothNorm
    from hyenamd.surrogate.global_block import GlobalBlock

    fill: dict[str, float] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, SmoothNorm):
            fill[prefix + "log_eps"] = math.log(norm_eps)
        elif isinstance(module, GlobalBlock):
            fill[prefix + "prenorm_gain"] = 1.0
    return fill
