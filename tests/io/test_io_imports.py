"""``import hyenamd.io`` (and the dataset module) stays free of h5py, zarr and the adapters' libraries."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("h5py", "zarr", "ase", "openmm", "MDAnalysis", "ray")


def test_import_hyenamd_io_is_light():
    code = (
        "import sys, hyenamd.io, hyenamd.io.dataset, hyenamd.io.schema;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import hyenamd.io pulled in: {out.stdout.strip()}"
