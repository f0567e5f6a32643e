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

A wrapper can also fall back per call (e.g. a system of more than ``MAX_TOKENS`` atoms).
:class:`FallbackWatch` is the one place that turns those calls into a ``RuntimeWarning`` (once
per new reason) and a record (calls compiled, calls eager, the reasons): the ASE/OpenMM
runner (:class:`~hyenamd.engine.adapter.ModelRunner`) and the rollout worker
(:class:`~hyenamd.cluster.worker.RolloutWorker`, ``RolloutResult.compile_fallback``) use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import nn

__all__ = ["CompileOption", "FallbackWatch", "check_compilable", "compile_backend", "compiled_potential"]

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


class FallbackWatch:
    """Warns once per new eager-fallback reason of a compiled potential and counts its calls.

    potential: what is evaluated (a :class:`~hyenamd.surrogate.compiled.CompiledGHyena`, or any
    other potential: then nothing is ever warned or counted). Counts start when the watch is
    made (a wrapper cached across rollouts keeps its own totals). The wrapper's static reason
    (a head it never compiles) is taken as already reported: :func:`compiled_potential` warned
    it; a failed compile is warned by the wrapper itself, so :meth:`check` only records it.
    """

    def __init__(self, potential: nn.Module) -> None:
        self.potential = potential
        self.active = hasattr(potential, "eager_calls")
        self._compiled0 = int(getattr(potential, "n_compiled_calls", 0))
        self._eager0 = dict(getattr(potential, "eager_calls", {}))
        from hyenamd.surrogate.compiled import CompiledGHyena, unsupported_reason

        static = unsupported_reason(potential.model) if isinstance(potential, CompiledGHyena) else None
        self.seen: set[str] = {static} if static is not None else set()

    def eager_calls(self) -> dict[str, int]:
        """The calls that ran eagerly since the watch was made, per reason."""
        now = getattr(self.potential, "eager_calls", {})
        return {r: n - self._eager0.get(r, 0) for r, n in now.items() if n > self._eager0.get(r, 0)}

    def check(self, *, stacklevel: int = 2) -> None:
        """A ``RuntimeWarning`` for each eager-fallback reason not reported before (``stacklevel``
        as for :func:`warnings.warn`, counted from the caller of this method)."""
        if not self.active:
            return
        for reason in self.eager_calls():
            if reason in self.seen:
                continue
            self.seen.add(reason)
            if not reason.startswith("compiling failed"):
                warnings.warn(
                    f"compile is on but this call ran eagerly ({reason}); same results, no speed-up",
                    RuntimeWarning,
                    stacklevel=stacklevel + 1,
                )

    def summary(self) -> dict:
        """``{"compiled_calls": n, "eager_calls": n, "compile_fallback": str | None}`` since the
        watch was made (the fields of :class:`~hyenamd.cluster.spec.RolloutResult`); the reason is
        None when every call ran compiled (several reasons: joined by ``"; "`` in the order they
        first occurred)."""
        eager = self.eager_calls()
        compiled = int(getattr(self.potential, "n_compiled_calls", 0)) - self._compiled0
        return {
            "compiled_calls": compiled,
            "eager_calls": sum(eager.values()),
            "compile_fallback": "; ".join(eager) or None,
        }
