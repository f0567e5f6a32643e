"""The streaming RDF and MSD accumulators agree with MDAnalysis' InterRDF and EinsteinMSD on
the same trajectory (ours stream frames in bounded memory; MDAnalysis is the oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from hyenamd.validate.dynamics import CorrelationAccumulator
from hyenamd.validate.structure import RDFAccumulator

mda = pytest.importorskip("MDAnalysis")
rdf_mod = pytest.importorskip("MDAnalysis.analysis.rdf")
msd_mod = pytest.importorskip("MDAnalysis.analysis.msd")


def _lattice_frames(n_frames=6, seed=0):
    """A jittered 4x4x4 fcc lattice (256 atoms, two species) in a fixed cubic box; float32-exact."""
    rng = np.random.default_rng(seed)
    a, cells = 3.6, 4
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.array([[i, j, k] for i in range(cells) for j in range(cells) for k in range(cells)])
    x0 = ((grid[:, None, :] + base[None]) * a).reshape(-1, 3)
    box = a * cells
    frames = [
        np.mod(x0 + rng.normal(scale=0.15, size=x0.shape), box).astype(np.float32) for _ in range(n_frames)
    ]
    species = np.where(np.arange(len(x0)) % 3 == 0, 10, 18)
    return np.stack(frames), species, box


def _universe(frames, box):
    from MDAnalysis.coordinates.memory import MemoryReader

    u = mda.Universe.empty(frames.shape[1], trajectory=True)
    u.load_new(
        frames, format=MemoryReader, dimensions=np.array([box, box, box, 90, 90, 90], dtype=np.float32)
    )
    return u


def test_rdf_matches_interrdf():
    frames, species, box = _lattice_frames()
    r_max, n_bins = 6.0, 60
    acc = RDFAccumulator(species, r_max, n_bins)
    cell = np.eye(3) * box
    for x in frames:
        acc.update(x.astype(np.float64), cell, np.array([True] * 3))
    r, g = acc.result()
    u = _universe(frames, box)
    ne, ar = u.atoms[species == 10], u.atoms[species == 18]
    for label, (g1, g2, excl) in {
        "Ne-Ne": (ne, ne, (1, 1)),
        "Ar-Ar": (ar, ar, (1, 1)),
        "Ne-Ar": (ne, ar, None),
    }.items():
        ref = rdf_mod.InterRDF(g1, g2, nbins=n_bins, range=(0.0, r_max), exclusion_block=excl).run()
        np.testing.assert_allclose(r, ref.results.bins, rtol=1e-12)
        np.testing.assert_allclose(g[label], ref.results.rdf, rtol=1e-6, atol=1e-6, err_msg=label)
    assert g["Ar-Ar"].max() > 3.0  # a structured liquid-like g(r), not an ideal gas


def test_msd_matches_einstein_msd():
    rng = np.random.default_rng(1)
    n_frames, n_atoms = 30, 40
    steps = rng.normal(scale=0.3, size=(n_frames, n_atoms, 3))
    x = np.cumsum(steps, axis=0).astype(np.float32)  # unwrapped random walks
    acc = CorrelationAccumulator("msd", np.zeros(n_atoms, dtype=np.int64), max_lag=n_frames - 1)
    for frame in x:
        acc.update(frame.astype(np.float64))
    lags, vals = acc.result()
    u = _universe(x, 1000.0)
    ref = msd_mod.EinsteinMSD(u, select="all", msd_type="xyz", fft=False).run()
    assert lags.tolist() == list(range(n_frames))
    np.testing.assert_allclose(vals[0], ref.results.timeseries, rtol=1e-5, atol=1e-6)
