"""``hyenamd inspect PATH``: summarise a store (``.h5``/``.h5md``/``.zarr``) or a checkpoint.

Stores: frames, atoms, status, steps and times, units, every array (shape, dtype, chunks,
compression, unit), observables (min/mean/max) and the size on disk. ``.safetensors``
files (model checkpoints, engine checkpoints, training states) by
:mod:`hyenamd.io.inspect_safetensors`. Anything else ends in one line naming file and problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "describe_store", "run"]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)  # pragma: no cover


def describe_store(path: str | os.PathLike) -> str:
    """A human-readable summary of a frame store."""
    from hyenamd.elements import SYMBOLS
    from hyenamd.io import open_store

    path = Path(path)
    with open_store(path) as st:
        n = len(st)
        species, counts = np.unique(st._static["species"], return_counts=True)
        skipped = getattr(st, "skipped", None)  # a foreign H5MD file (read-only, units converted)
        head = (
            f"H5MD file {path} written by {st.creator!r} (read-only; units converted to hyenamd's)"
            if skipped is not None
            else f"hyenamd store {path}"
        )
        lines = [
            f"{head} ({st.backend}, {_human(_size(path))} on disk)",
            f"  status       {st.status}",
            f"  frames       {n}"
            + (f" ({int((~st.committed).sum())} uncommitted slots)" if n and not st.committed.all() else ""),
            f"  atoms        {st.n_atoms}: "
            + ", ".join(f"{SYMBOLS[z]} {c}" for z, c in zip(species, counts)),
            f"  pbc          {st._static['pbc'].tolist()}",
        ]
        if n:
            ok = st.committed
            steps, times = st.steps[ok], st.times[ok]
            lines.append(f"  steps        {steps[0]} .. {steps[-1]}")
            lines.append(f"  time         {times[0]:g} .. {times[-1]:g} fs")
        if st.layout is not None:
            lay = st.layout
            lines.append(f"  dtype        {lay.dtype}  chunks {lay.chunk_frames} frames x {lay.atom_chunk} atoms"
                         f"  compression {lay.compression}" + (f"  quantize {lay.quantize}" if lay.quantize else ""))  # fmt: skip
        lines.append("  units        " + ", ".join(f"{k}: {v}" for k, v in st.units.items()))
        for name, why in (skipped or {}).items():
            lines.append(f"  not read     {name}: {why}")
        for name in st.observable_names:
            v = st.observable(name)
            if n and np.isfinite(v).any():
                lines.append(
                    f"  {name:<12} min {np.nanmin(v):.6g}  mean {np.nanmean(v):.6g}  max {np.nanmax(v):.6g}"
                )
        lines.append("  arrays")
        for a in st.array_info():
            unit = f" [{a['unit']}]" if a["unit"] else ""
            comp = f" {a['compression']}" if a["compression"] else ""
            lines.append(
                f"    {a['path']:<42} {a['dtype']:<8} {a['shape']!s:<18} chunks {a['chunks']}{comp}{unit}"
            )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        help="a store (.h5md, .h5, .zarr; any H5MD file) or a .safetensors file (model or engine "
        "checkpoint, training state)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the summary; a file it cannot describe ends in one line on stderr and status 2."""
    from hyenamd.io import StoreError

    path = Path(args.path)
    if not path.exists():
        print(f"hyenamd inspect: {path} does not exist", file=sys.stderr)
        return 2
    try:
        if path.suffix == ".safetensors":
            from hyenamd.io.inspect_safetensors import describe_safetensors

            print(describe_safetensors(path))
        else:
            print(describe_store(path))
    except (StoreError, ValueError, OSError, KeyError) as e:  # CheckpointError is a ValueError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"hyenamd inspect: {msg}", file=sys.stderr)
        return 2
    return 0
