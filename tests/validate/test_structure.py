"""RDF, radius of gyration, Kabsch alignment and RMSF against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.geometry import minimum_image
from hyenamd.validate.structure import (
    RDFAccumulator,
    RMSFAccumulator,
    kabsch,
    pair_labels,
    radius_of_gyration,
    rdf_counts,
    residue_average,
)

TRICLINIC = np.array([[14.0, 0.0, 0.0], [2.8, 14.0, 0.0], [-1.4, 2.1, 14.0]])


def brute_force_counts(x, cell, types, n_types, r_max, n_bins):
    """O(N²) oracle: minimum-image distances of all unordered pairs, histogrammed."""
    d = (
        minimum_image(
            torch.tensor(x[None, :, :] - x[:, None, :]), torch.tensor(cell), torch.tensor([True, True, True])
        )
        .norm(dim=-1)
        .numpy()
    )
    iu, ju = np.triu_indices(len(x), 1)
    out = np.zeros((n_types * (n_types + 1) // 2, n_bins), np.int64)
    for i, j in zip(iu, ju):
        if d[i, j] < r_max:
            a, b = sorted((types[i], types[j]))
            out[a * n_types - a * (a - 1) // 2 + (b - a), int(d[i, j] / r_max * n_bins)] += 1
    return out


@pytest.mark.parametrize("chunk_atoms", [100_000, 40])
def test_rdf_counts_match_brute_force_triclinic(chunk_atoms):
    rng = np.random.default_rng(1)
    x = rng.random((150, 3)) @ TRICLINIC - 3.0  # some atoms outside the cell: wrapping is handled
    types = rng.integers(0, 3, 150)
    got = rdf_counts(x, TRICLINIC, np.ones(3, bool), types, 3, 6.5, 26, chunk_atoms=chunk_atoms)
    want = brute_force_counts(x, TRICLINIC, types, 3, 6.5, 26)
    np.testing.assert_array_equal(got, want)


def test_rdf_of_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    n, n_frames = 1500, 6
    species = np.where(rng.random(n) < 0.3, 8, 18)
    acc = RDFAccumulator(species, r_max=6.0, n_bins=24)
    for _ in range(n_frames):
        acc.update(rng.random((n, 3)) @ TRICLINIC, TRICLINIC, np.ones(3, bool))
    _, g = acc.result()
    assert set(g) == {"O-O", "O-Ar", "Ar-Ar"}
    # Poisson noise of each bin: g ~ count / expected, sd = 1/sqrt(expected count)
    vol = abs(np.linalg.det(TRICLINIC))
    n_o, n_ar = (species == 8).sum(), (species == 18).sum()
    edges = np.linspace(0, 6.0, 25)
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    for pair, npairs in (
        ("O-O", n_o * (n_o - 1) / 2),
        ("O-Ar", n_o * n_ar),
        ("Ar-Ar", n_ar * (n_ar - 1) / 2),
    ):
        expected = npairs * shell / vol * n_frames
        sd = 1 / np.sqrt(expected)
        z = (g[pair] - 1) / sd
        assert np.all(np.abs(z) < 5), (pair, z)
        w = expected / expected.sum()
        assert abs((g[pair] * w).sum() - 1) < 5 / np.sqrt(expected.sum())


def test_rdf_of_simple_cubic_lattice_has_six_nearest_neighbours():
    a, m = 3.0, 5
    grid = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(-1, 3) * a
    cell = np.eye(3) * a * m
    acc = RDFAccumulator(np.full(len(grid), 18), r_max=7.4, n_bins=74)
    acc.update(grid + 0.3, cell, np.ones(3, bool))
    r, g = acc.result()
    rho = (len(grid) - 1) / a**3 / m**3  # g is normalised by N (N - 1) / 2 pairs
    dr = r[1] - r[0]
    shells = 4 / 3 * np.pi * ((r + dr / 2) ** 3 - (r - dr / 2) ** 3)
    n_of_r = np.cumsum(rho * g["Ar-Ar"] * shells)
    assert n_of_r[r < 2.9][-1] == pytest.approx(0.0, abs=1e-9)
    assert n_of_r[r < 4.0][-1] == pytest.approx(6.0)  # first shell at a
    assert n_of_r[r < 4.5][-1] == pytest.approx(18.0)  # + 12 at a√2


def test_rdf_rejects_bad_ranges():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="half the cell width"):
        rdf_counts(x, np.eye(3) * 10, np.ones(3, bool), np.zeros(4, int), 1, 5.5, 10)
    with pytest.raises(ValueError, match="fully periodic"):
        rdf_counts(x, np.eye(3) * 10, np.array([True, True, False]), np.zeros(4, int), 1, 4.0, 10)


def test_pair_labels_order():
    assert pair_labels(np.array([1, 8])) == ["H-H", "H-O", "O-O"]


def test_radius_of_gyration_known_and_invariant():
    a = 2.5
    x = np.array([[a, 0, 0], [-a, 0, 0], [0, a, 0], [0, -a, 0], [0, 0, a], [0, 0, -a]])
    assert radius_of_gyration(x) == pytest.approx(a)
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    assert radius_of_gyration(x @ rot + 7.0) == pytest.approx(a)
    # mass weighting: two atoms at ±1 with masses 1 and 3: com at 0.5, Rg² = (1·2.25 + 3·0.25)/4
    y = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    assert radius_of_gyration(y, np.array([1.0, 3.0])) == pytest.approx(np.sqrt(0.75))


def test_kabsch_recovers_rotation_without_reflection():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 3))
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    q *= np.sign(np.linalg.det(q))
    y = x @ q + np.array([1.0, -2.0, 3.0])
    rot, mc, tc = kabsch(x, y)
    np.testing.assert_allclose((x - mc) @ rot + tc, y, atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    mirror = y * np.array([-1, 1, 1])  # a mirror image is not reachable by a rotation
    rot, _, _ = kabsch(x, mirror)
    assert np.linalg.det(rot) == pytest.approx(1.0)


def test_rmsf_of_harmonic_oscillation():
    amp, n_frames = 0.4, 200
    base = np.random.default_rng(3).normal(size=(5, 3)) * 3
    acc = RMSFAccumulator(5)
    for t in range(n_frames):  # atom 2 oscillates along x over whole periods: RMSF = A / sqrt(2)
        x = base.copy()
        x[2, 0] += amp * np.sin(2 * np.pi * t / 20)
        acc.update(x)
    rmsf = acc.result()
    assert rmsf[2] == pytest.approx(amp / np.sqrt(2), rel=1e-10)
    np.testing.assert_allclose(rmsf[[0, 1, 3, 4]], 0.0, atol=1e-12)


def test_rmsf_alignment_removes_rigid_motion():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(8, 3)) * 2
    aligned, raw = RMSFAccumulator(8, np.arange(8)), RMSFAccumulator(8)
    for _ in range(30):
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        q *= np.sign(np.linalg.det(q))
        x = base @ q + rng.normal(size=3) * 5
        aligned.update(x)
        raw.update(x)
    np.testing.assert_allclose(aligned.result(), 0.0, atol=1e-9)
    assert raw.result().min() > 0.5


def test_residue_average():
    ids, mean = residue_average(np.array([1.0, 3.0, 5.0, 2.0]), np.array([4, 4, 7, 7]))
    np.testing.assert_array_equal(ids, [4, 7])
    np.testing.assert_allclose(mean, [2.0, 3.5])
