"""End to end on in-memory trajectories: identical runs pass with zero divergence; broken runs fail."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hyenamd.validate import ArrayTrajectory, Thresholds, ValidateConfig, validate

CFG = ValidateConfig(progress=False, rdf_r_max=6.0, rdf_bins=60)


def quiet(*_):
    pass


def test_identical_trajectories_pass_with_zero_divergence(synth):
    ref = synth.solvated_peptide(seed=0)
    res = validate(ref, ref, CFG, echo=quiet)
    assert res.passed, res.table()
    names = {m.name for m in res.metrics}
    for pair in ("O-O", "H-O", "N-O"):
        assert res.metric(f"rdf_mae[{pair}]").value == 0.0
    assert res.metric("torsion_js").value == 0.0
    assert res.metric("rmsf_correlation").value == pytest.approx(1.0)
    assert res.metric("rmsf_mae").value == 0.0
    assert res.metric("rg_rel_error").value == 0.0
    assert res.metric("diffusion_rel_error[all]").value == 0.0
    assert res.metric("vacf_mae").value == 0.0
    assert res.metric("broken_bond_fraction").value == 0.0
    assert math.isinf(res.metric("blowup_time").value)
    assert {"detached_h", "nve_drift", "rmsf_residue_correlation", "torsion_js[phi]"} <= names
    assert res.reference.torsions["n_residues"] == 4 and len(res.reference.rmsf) == 18


def test_the_peptide_is_analysed_whole_across_the_boundary(synth):
    ref = synth.solvated_peptide(seed=0)
    res = validate(ref, ref, CFG, echo=quiet)
    # a split molecule would have an Rg of half the box; a 6-residue helix has ~4 Å
    assert 2.5 < res.reference.rg.min() and res.reference.rg.max() < 6.0
    assert res.reference.rmsf.max() < 1.5


def test_different_torsion_ensembles_fail(synth):
    ref = synth.solvated_peptide(seed=0)
    sur = synth.solvated_peptide(seed=1, centre_phi=-120.0)
    res = validate(ref, sur, dataclasses.replace(CFG, max_temperature_factor=1e6), echo=quiet)
    assert res.metric("torsion_js").value > 0.5 and res.metric("torsion_js").passed is False
    assert not res.passed and "torsion_js" in [m.name for m in res.failed]


def test_blowup_and_stretched_bond_fail(synth):
    ref = synth.water_liquid(seed=0)
    pos = ref.positions.copy()
    u = pos[10:, 1] - pos[10:, 0]  # atom 1 is an H of water 0: stretch its O–H bond by 0.6 Å
    u -= 12.4 * np.round(u / 12.4)
    pos[10:, 1] += 0.6 * u / np.linalg.norm(u, axis=1, keepdims=True)
    pos[30:, 5] = np.nan
    sur = dataclasses.replace(ref, positions=pos)
    res = validate(ref, sur, CFG, echo=quiet)
    assert res.metric("blowup_time").value == pytest.approx(ref.times[30] / 1000)
    assert res.metric("blowup_time").passed is False
    assert res.metric("broken_bond_fraction").value == pytest.approx(1 / 128)
    assert res.metric("broken_bond_fraction").passed is False
    assert res.surrogate.n_frames == 30
    assert any("blow-up" in n for n in res.notes)


def test_nve_drift_is_judged_only_for_nve(synth):
    ref = synth.water_liquid(seed=0)
    res = validate(ref, ref, CFG, echo=quiet)
    assert res.metric("nve_drift").passed is None and res.ensemble == "unknown"
    strict = dataclasses.replace(CFG, ensemble="nve", thresholds=Thresholds(max_nve_drift=1e-6))
    res = validate(ref, ref, strict, echo=quiet)
    assert res.metric("nve_drift").passed is False
    assert res.metric("nve_drift").value == pytest.approx(abs(res.surrogate.drift.drift))


def test_baseline_gives_the_reference_spread(synth):
    ref, base = synth.solvated_peptide(seed=0), synth.solvated_peptide(seed=2)
    sur = synth.solvated_peptide(seed=3)
    res = validate(ref, sur, CFG, baseline=base, echo=quiet)
    js = res.metric("torsion_js")
    assert js.spread is not None and js.spread > 0 and js.limit == CFG.thresholds.max_torsion_js
    judged = validate(ref, sur, dataclasses.replace(CFG, spread_factor=2.0), baseline=base, echo=quiet)
    js2 = judged.metric("torsion_js")
    assert js2.limit == pytest.approx(2.0 * js.spread) and js2.passed == (js2.value <= js2.limit)


def test_mismatched_systems_are_rejected_before_work(synth):
    ref = synth.water_liquid(seed=0)
    other = ArrayTrajectory(ref.positions[:, :-3], ref.species[:-3], cell=ref.cell)
    with pytest.raises(ValueError, match="atoms"):
        validate(ref, other, CFG, echo=quiet)
    swapped = dataclasses.replace(ref, species=ref.species[::-1].copy())
    with pytest.raises(ValueError, match="species"):
        validate(ref, swapped, CFG, echo=quiet)
    with pytest.raises(ValueError, match="frame"):
        validate(
            ref,
            dataclasses.replace(
                ref, positions=ref.positions[:1], times=None, velocities=None, observables={}
            ),
            CFG,
            echo=quiet,
        )


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="stride"):
        ValidateConfig(stride=0)
    with pytest.raises(ValueError, match="msd_fit"):
        ValidateConfig(msd_fit=(0.9, 0.1))


def test_no_diffusion_coefficient_without_periodicity(synth):
    ref = synth.solvated_peptide(seed=0)
    vacuum = dataclasses.replace(ref, cell=None, pbc=False)
    res = validate(vacuum, vacuum, CFG, echo=quiet)
    assert not res.reference.diffusion and not any(m.name.startswith("diffusion") for m in res.metrics)
    assert res.reference.msd and res.metric("vacf_mae").value == 0.0  # MSD/VACF still computed
    assert not res.reference.rdf and any("not periodic" in n for n in res.notes)


def test_msd_fit_ps_limits_the_lags_and_fits_in_picoseconds(synth):
    """A 0.79-ps random walk (dt 10 fs): msd_fit_ps=(0.1, 0.3) keeps lags ≤ 0.3 ps and still finds D."""
    traj = synth.water_liquid(n_frames=80)
    cfg = dataclasses.replace(CFG, msd_fit_ps=(0.1, 0.3), msd_origins=100)
    res = validate(traj, traj, cfg, echo=quiet)
    assert float(np.max(res.reference.lag_times)) == pytest.approx(300.0)
    assert res.metric("diffusion_rel_error[all]").value == 0.0
    assert res.reference.diffusion["all"] > 0
