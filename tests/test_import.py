"""`import hyenamd` stays cheap: no ray/openmm/zarr/h5py/ase."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("ray", "openmm", "zarr", "h5py", "ase")


def test_import_hyenamd_is_cheap():
    code = (
        "import sys, hyenamd, hyenamd.geometry, hyenamd.units, hyenamd.config;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import hyenamd pulled in: {out.stdout.strip()}"
