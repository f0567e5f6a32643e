"""``hyenamd inspect PATH`` for stores (and a clear message for what it cannot read)."""

from __future__ import annotations

import pytest

from hyenamd.cli import main
from hyenamd.io import open_store


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_inspect_store(tmp_path, make_system, make_frames, capsys, suffix):
    system = make_system()
    p = tmp_path / f"t{suffix}"
    with open_store(p, "w", system=system, compression="gzip") as st:
        for d in make_frames(system.n_atoms, 3):
            st.append(**d)
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "status       complete" in out and "frames       3" in out
    assert "atoms        7: H 2, C 2, N 1, O 1, Ar 1" in out
    assert "steps        3 .. 23" in out and "time         1.5 .. 11.5 fs" in out
    assert "/particles/all/position/value" in out and "[Angstrom]" in out and "Angstrom-1]" in out
    assert "potential_energy min" in out and "on disk" in out


def test_inspect_errors(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert main(["inspect", str(bad)]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err


def test_inspect_checkpoint(tmp_path, capsys):
    from hyenamd.surrogate import GHyena, GHyenaConfig, save_model

    cfg = GHyenaConfig(species=(1, 8), cutoff=3.0, n_scalar=4, n_vector=2, n_rbf=3, pattern=("local",))
    path = save_model(GHyena(cfg), tmp_path / "m.safetensors")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hyenamd checkpoint" in out and "H (1), O (8)" in out and "3.0 Å" in out
