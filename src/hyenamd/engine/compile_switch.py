"""The user-facing ``compile`` switch: wrap a G-Hyena in :class:`~hyenamd.surrogate.compiled.CompiledGHyena`.

One parser and one builder for every place a user can ask for the compiled small-system path:
``HyenaCalculator(model, compile=True)`` (ASE), the rollout configs' ``compile`` key
(:mod:`hyenamd.cluster.cli`) and ``ValidateConfig.compile`` (:mod:`hyenamd.validate`).

Values (``compile``):

* ``False`` / ``None``: off (the default everywhere): the potential is used as given;
* ``True``: inductor (C++ kernels; the first call compiles for 30-50 s);
* a string: a registered ``torch.compile`` backend (``"inductor"``, ``"aot_eager"``: the same
  traced graphs without code generation, for tests; ``torch._dynamo.list_backends(exclude_tags=())``);
* a callable backend (Python API only; YAML configs never name code).

Anything else is refused before any work (``TypeError`` for the type, ``ValueError`` for an
unknown backend name). Compile requested for a potential that is not a single G-Hyena (a
classical potential, a committee, an already wrapped model is returned as is) is a
``TypeError``: silently running eagerly would hide that the user's setting does nothing. A
G-Hyena the compiled path never covers (direct-force or dynamics heads, velocity inputs) is
wrapped with a ``RuntimeWarning``: it runs eagerly with the same results, and
``CompiledGHyena.fallback_reason`` says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import nn

__all__ = ["CompileOption", "check_compilable", "compile_backend", "compiled_potential"]

#: what a ``compile`` argument may be: off (False/None), on (True: inductor), a backend name or callable
CompileOption = bool | str | Callable | None


def compile_backend(value: CompileOption, *, what: str = "compile") -> str | Callable | None:
    """The ``torch.compile`` backend a ``compile`` value asks for (None: off); checked, no compiling.

    what: the option's name in error messages (e.g. ``"HyenaCalculator(compile=...)"``).
    """
    if value is None or value is False:
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str):
        import torch._dynamo

        known = torch._dynamo.list_backends(exclude_tags=())
        if value not in known:
            raise ValueError(
                f"{what}={value!r} is not a torch.compile backend; use true (inductor), false (off) or "
                f"one of {known}"
            )
        return value
    if callable(value) and not isinstance(value, type):
        return value
    raise TypeError(f"{what} must be a bool or a torch.compile backend name, got {value!r}")


def check_compilable(
    model: nn.Module, value: CompileOption, *, what: str = "compile"
) -> str | Callable | None:
    """The backend of ``value`` (None: off) after checking ``model`` can take it (see the module doc)."""
    backend = compile_backend(value, what=what)
    if backend is None:
        return None
    from hyenamd.surrogate.compiled import CompiledGHyena
    from hyenamd.surrogate.model import GHyena

    if not isinstance(model, GHyena | CompiledGHyena):
        raise TypeError(
            f"{what}={value!r}: the compiled path runs one G-Hyena model, not a {type(model).__name__} "
            "(classical potentials and committees run eagerly); remove the option"
        )
    return backend


def compiled_potential(model: nn.Module, value: CompileOption, *, what: str = "compile") -> nn.Module:
    """``model`` as given when ``value`` is off, else ``CompiledGHyena(model, backend=...)``.

    Raises before any work for a bad ``value`` and for a potential other than one G-Hyena (see
    the module doc); a model already wrapped is returned as is. Nothing compiles here: the
    first call of the wrapper does.
    """
    backend = check_compilable(model, value, what=what)
    if backend is None:
        return model
    from hyenamd.surrogate.compiled import CompiledGHyena, unsupported_reason

    if isinstance(model, CompiledGHyena):
        return model
    reason = unsupported_reason(model)
    if reason is not None:
        warnings.warn(
            f"{what}={value!r}: this model runs eagerly ({reason}); same results, no speed-up",
            RuntimeWarning,
            stacklevel=2,
        )
    return CompiledGHyena(model, backend=backend)
