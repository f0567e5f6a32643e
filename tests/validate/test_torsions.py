"""Dihedrals (IUPAC sign, MDAnalysis agreement), backbone φ/ψ, histograms, Jensen–Shannon divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd.system import Labels
from hyenamd.validate.torsions import TorsionAccumulator, backbone_torsion_indices, dihedral, jensen_shannon

ANGLES = [-179.0, -120.0, -60.0, -1.0, 0.0, 35.0, 90.0, 150.0, 180.0]


def four_points(theta_deg: float) -> np.ndarray:
    """p1 at the origin, p2 on +z, p0 on +x; p3 rotated by theta about +z (right-handed)."""
    t = np.radians(theta_deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.5], [np.cos(t), np.sin(t), 1.5]])


@pytest.mark.parametrize("theta", ANGLES)
def test_dihedral_of_constructed_points(theta):
    p = four_points(theta)
    got = float(dihedral(*p))
    assert (got - theta + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-9)


def test_dihedral_sign_is_iupac():
    # looking from p1 along p1 -> p2 (+z), p3 at +y is reached from p0 (+x) clockwise: +90°
    assert float(dihedral(*four_points(90.0))) == pytest.approx(90.0)
    assert float(dihedral(*four_points(-90.0))) == pytest.approx(-90.0)


def test_dihedral_matches_mdanalysis():
    from MDAnalysis.lib.distances import calc_dihedrals

    rng = np.random.default_rng(0)
    p = rng.normal(size=(4, 50, 3)) * 2
    want = np.degrees(calc_dihedrals(*(q.astype(np.float64) for q in p)))
    np.testing.assert_allclose(dihedral(*p), want, atol=1e-4)  # MDAnalysis computes in float32


def test_dihedral_uses_the_minimum_image():
    cell = np.diag([10.0, 11.0, 12.0])
    p = four_points(-72.0) + 4.0
    p[3] += cell[0] - cell[2]  # the far atom wrapped into another image
    assert float(dihedral(*p, cell, np.ones(3, bool))) == pytest.approx(-72.0)


def test_backbone_indices_of_tripeptide(synth):
    labels = synth.backbone_labels(3)  # atoms: N0 CA0 C0 N1 CA1 C1 N2 CA2 C2
    phi, psi, res = backbone_torsion_indices(labels)
    np.testing.assert_array_equal(res, [1])
    np.testing.assert_array_equal(phi, [[2, 3, 4, 5]])
    np.testing.assert_array_equal(psi, [[3, 4, 5, 6]])


def test_backbone_indices_respect_chains_and_solvent(synth):
    base = synth.backbone_labels(4)
    chains = Labels(base.residue_index, torch.tensor([0] * 6 + [1] * 6), base.atom_names, base.residue_names)
    phi, _, _ = backbone_torsion_indices(chains)
    assert len(phi) == 0  # two chains of two residues: no residue has both neighbours in its chain
    water = Labels(torch.tensor([0, 0, 0]), atom_names=("O", "H1", "H2"), residue_names=("HOH",) * 3)
    assert len(backbone_torsion_indices(water)[0]) == 0
    assert len(backbone_torsion_indices(None)[0]) == 0


def test_accumulator_finds_built_phi_psi(synth):
    # every angle sits mid-bin (10° bins): an exact bin edge would depend on the last ulp of numpy's arctan2
    phis, psis = [0.0, -63.0, -125.0, 0.0], [155.0, -42.0, 135.0, 0.0]
    x = synth.peptide_backbone(phis, psis)
    labels = synth.backbone_labels(4)
    phi_idx, psi_idx, _ = backbone_torsion_indices(labels)
    np.testing.assert_allclose(dihedral(*(x[phi_idx[:, k]] for k in range(4))), phis[1:3], atol=1e-8)
    np.testing.assert_allclose(dihedral(*(x[psi_idx[:, k]] for k in range(4))), psis[1:3], atol=1e-8)
    acc = TorsionAccumulator(labels, n_bins=36)
    acc.update(x, None, np.zeros(3, bool))
    acc.update(x, None, np.zeros(3, bool))
    res = acc.result()
    assert res["rama"].sum() == 4 and res["n_residues"] == 2
    # φ = -63 → bin floor((−63 + 180) / 10) = 11; ψ = −42 → 13; (−125, 135) → (5, 31)
    assert res["rama"][11, 13] == 2 and res["rama"][5, 31] == 2


def test_jensen_shannon_known_values():
    p = np.array([3.0, 1.0, 0.0, 0.0])
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(p, 5 * p) == pytest.approx(0.0, abs=1e-15)  # normalised first
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    # scipy returns the Jensen–Shannon *distance* (square root of the divergence)
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    a, b = rng.random(20), rng.random(20)
    assert jensen_shannon(a, b) == pytest.approx(jensenshannon(a, b, base=2) ** 2, rel=1e-10)
    assert jensen_shannon(a, b) == pytest.approx(jensen_shannon(b, a))


def test_jensen_shannon_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        jensen_shannon(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="positive total"):
        jensen_shannon(np.zeros(3), np.ones(3))
