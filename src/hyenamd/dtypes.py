"""One parser for the floating dtypes a user may name: ``"float32"``, ``"float64"`` or a ``torch.dtype``.

Every public entry point that takes a ``dtype`` (``load_model``, ``HyenaCalculator``,
``MLPotential('hyenamd', dtype=...)``, ``System.to``) passes it through
:func:`resolve_dtype`, so the accepted spellings and the error are the same everywhere:

* ``torch.float32``, ``"float32"``, ``"single"``, ``"torch.float32"``, ``numpy.float32`` → ``torch.float32``;
* ``torch.float64``, ``"float64"``, ``"double"``, ``"torch.float64"``, ``numpy.float64`` → ``torch.float64``;
* ``None`` (where the caller allows it) → ``None``: keep the model's own dtype.

Anything else (``"float16"``, ``torch.int64``, ``"fp32"``, ...) raises :class:`ValueError`
naming the value and the accepted spellings, before any work is done. openmm-ml's
``precision='single'|'double'`` is the same table under another name (:func:`precision_dtype`).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DTYPE_NAMES", "dtype_name", "precision_dtype", "resolve_dtype"]

_BY_NAME = {
    "float32": torch.float32,
    "float64": torch.float64,
    "single": torch.float32,
    "double": torch.float64,
    "torch.float32": torch.float32,
    "torch.float64": torch.float64,
}
#: the canonical names (what checkpoints, specs and manifests write)
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


def resolve_dtype(value: Any, *, allow_none: bool = True, what: str = "dtype") -> torch.dtype | None:
    """``value`` as ``torch.float32``/``torch.float64`` (or None when ``allow_none``); ValueError otherwise.

    value: a ``torch.dtype``, a name (``"float32"``, ``"float64"``, ``"single"``, ``"double"``,
    ``"torch.float64"``, any case), a numpy float dtype, or None. what: the argument's name in the error.
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{what} must be 'float32' or 'float64' (or a torch dtype), got None")
    if isinstance(value, torch.dtype):
        if value in DTYPE_NAMES:
            return value
    elif isinstance(value, str):
        found = _BY_NAME.get(value.strip().lower())
        if found is not None:
            return found
    else:
        name = getattr(value, "name", None) or getattr(value, "__name__", None)  # numpy dtypes / types
        if isinstance(name, str) and name in ("float32", "float64"):
            return _BY_NAME[name]
    raise ValueError(
        f"{what} must be 'float32' or 'float64' (or torch.float32 / torch.float64), got {value!r}"
    )


def dtype_name(value: Any) -> str | None:
    """The canonical name (``"float32"``/``"float64"``) of anything :func:`resolve_dtype` accepts; None stays None."""
    dt = resolve_dtype(value)
    return None if dt is None else DTYPE_NAMES[dt]


def precision_dtype(precision: str | None) -> torch.dtype | None:
    """openmm-ml's ``precision``: ``'single'`` → float32, ``'double'`` → float64, None → the model's own."""
    if precision is None:
        return None
    if not isinstance(precision, str) or precision.strip().lower() not in ("single", "double"):
        raise ValueError(f"precision must be 'single' or 'double' (openmm-ml's names), got {precision!r}")
    return _BY_NAME[precision.strip().lower()]
