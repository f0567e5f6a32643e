"""Progress bars: a tqdm bar on a terminal, nothing when the output is not a terminal.

Every progress display of hyenamd goes through :func:`progress_bar`. On a terminal it is a
tqdm bar. When the stream is not a TTY (a log file, a pipe, a batch job, CI) progress is off by
default (the project's rule: long work shows progress, auto-off when output is not a terminal;
a redirected validation run used to log ~30 lines of percentages). ``HYENAMD_PROGRESS=lines``
asks for a :class:`LineProgress` instead, one plain line every ``every_percent`` percent
(default 10) and one at the end, e.g. for a batch job whose log should show it is alive::

    reference argon: 40% (4000/10000 step) 812.3 step/s, ns/day=0.351

``HYENAMD_PROGRESS`` overrides the choice: ``bar``, ``lines`` or ``off``. tqdm is imported only
when a bar is shown.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["LineProgress", "progress_bar", "progress_mode"]


def progress_mode(file: IO[str] | None = None) -> str:
    """``"bar"`` on a TTY, ``"off"`` otherwise; ``HYENAMD_PROGRESS`` overrides."""
    forced = os.environ.get("HYENAMD_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    stream = file if file is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "off"
    except (AttributeError, ValueError):  # closed or exotic streams
        return "off"


class LineProgress:
    """The tqdm subset hyenamd uses (``update``, ``set_postfix``, ``set_description``,
    ``close``, iteration, context manager), printing a line every ``every_percent`` percent
    of ``total`` (or every ``every_s`` seconds when the total is unknown) and at the end."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        initial: float = 0,
        every_percent: float = 10.0,
        every_s: float = 30.0,
        file: IO[str] | None = None,
        disable: bool = False,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = initial
        self.disable = disable
        self.every_percent, self.every_s = float(every_percent), float(every_s)
        self.file = file
        self._postfix = ""
        self._t0 = self._last_t = time.monotonic()
        self._n0 = initial
        self._next_pct = self._percent() // self.every_percent * self.every_percent + self.every_percent
        self._closed = False

    def _percent(self) -> float:
        return 100.0 * self.n / self.total if self.total else 0.0

    def _line(self) -> str:
        dt = time.monotonic() - self._t0
        rate = (self.n - self._n0) / dt if dt > 0 else 0.0
        where = (
            f"{self._percent():.0f}% ({self.n:g}/{self.total:g} {self.unit})"
            if self.total
            else f"{self.n:g} {self.unit}"
        )
        head = f"{self.desc}: " if self.desc else ""
        tail = f", {self._postfix}" if self._postfix else ""
        return f"{head}{where} {rate:.3g} {self.unit}/s{tail}"

    def _emit(self) -> None:
        if self.disable:
            return
        stream = self.file if self.file is not None else sys.stderr
        print(self._line(), file=stream, flush=True)
        self._last_t = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total:
            if self._percent() >= self._next_pct and self.n < self.total:
                self._emit()
                while self._next_pct <= self._percent():
                    self._next_pct += self.every_percent
        elif time.monotonic() - self._last_t >= self.every_s:
            self._emit()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={_fmt(v)}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def reset(self, total: float | None = None) -> None:
        """Start counting again from 0 (tqdm API), e.g. for the next ``Simulation.run``."""
        self.n = self._n0 = 0
        self.total = total
        self._t0 = self._last_t = time.monotonic()
        self._next_pct = self.every_percent
        self._closed = False

    def refresh(self) -> None:
        """No-op (tqdm API): lines are written on progress only."""

    def write(self, s: str) -> None:
        print(s, file=self.file if self.file is not None else sys.stderr, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n > self._n0 or (self.total and self.n >= self.total):
            self._emit()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress display wraps no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def progress_bar(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm bar on a terminal, a :class:`LineProgress` otherwise (same calls).

    Takes tqdm's ``total``, ``desc``, ``unit``, ``initial``, ``disable``, ``leave``,
    ``mininterval``, ``dynamic_ncols``, ``file``; ``every_percent`` (default 10) sets the line
    interval of the plain mode. ``disable=True`` shows nothing in either mode.
    """
    every = kwargs.pop("every_percent", 10.0)
    mode = progress_mode(kwargs.get("file"))
    if mode == "off":
        kwargs["disable"] = True
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    keep = {k: kwargs[k] for k in ("total", "desc", "unit", "initial", "file", "disable") if k in kwargs}
    return LineProgress(iterable, every_percent=every, **keep)
