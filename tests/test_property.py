"""Property workflow: labels computed from reference MD of alanine dipeptide → PDB + CSV → train → predictions."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from hyenamd.config import from_dict
from hyenamd.surrogate.model import GHyenaConfig
from hyenamd.system import Batch

pytest.importorskip("openmm")


@pytest.fixture(scope="module")
def peptide_store(tmp_path_factory):
    from hyenamd.engine.reference import ReferenceConfig, reference_md

    out = tmp_path_factory.mktemp("pep") / "ala2.h5"
    cfg = ReferenceConfig(
        system="alanine_dipeptide",
        output=str(out),
        temperature_k=300.0,
        dt_fs=0.5,
        n_steps=240,
        report_interval=6,
        minimize=True,
        store_dtype="float64",
        progress=False,
    )
    return reference_md(cfg)


def test_pdb_round_trip_keeps_topology(peptide_store, tmp_path) -> None:
    from hyenamd.io import open_store
    from hyenamd.workflows.property import read_pdb, write_pdb

    with open_store(peptide_store) as st:
        s = st[0]
    write_pdb(s, tmp_path / "a.pdb")
    r = read_pdb(tmp_path / "a.pdb")
    assert torch.equal(r.species, s.species)
    assert torch.equal(r.labels.residue_index, s.labels.residue_index)
    assert torch.allclose(r.positions, s.positions.double(), atol=1e-3)  # PDB keeps 3 decimals


def test_property_workflow_trains_and_writes_predictions(peptide_store, tmp_path) -> None:
    from hyenamd.workflows.property import PropertyModel, make_rmsf_dataset
    from hyenamd.workflows.train import TrainConfig, train

    paths = make_rmsf_dataset(peptide_store, tmp_path / "data", window=5)
    rows = list(csv.DictReader(paths["residues_csv"].open()))
    assert len(rows) == 8 * 3 and all(float(r["rmsf"]) > 0 for r in rows)  # 8 windows × 3 residues
    model = dict(
        species=[1, 6, 7, 8],
        cutoff=4.0,
        n_scalar=8,
        n_vector=4,
        n_rbf=4,
        pattern=["local", "global"],
        filter_order=4,
        avg_neighbors=8.0,
        dtype="float64",
    )
    prop = dict(
        structures_csv=str(paths["structures_csv"]),
        residues_csv=str(paths["residues_csv"]),
        structure_targets=["rg"],
        residue_targets=["rmsf"],
        epochs=4,
        batch_size=2,
        lr=5e-3,
        warmup_steps=1,
        progress=False,
    )
    cfg = from_dict(
        TrainConfig,
        {"task": "property", "output_dir": str(tmp_path / "run"), "model": model, "property": prop},
    )
    summary = train(cfg)
    run = tmp_path / "run"
    res = list(csv.DictReader((run / "predictions_residues.csv").open()))
    st = list(csv.DictReader((run / "predictions_structures.csv").open()))
    assert len(res) == 24 and len(st) == 8
    assert {r["split"] for r in st} == {"train", "valid"}
    assert all(torch.isfinite(torch.tensor(float(r["pred_rmsf"]))) for r in res)
    assert "valid_mae[rmsf]" in summary["metrics"] and (run / "loss_curve.png").exists()
    losses = summary and json.loads((run / "property_summary.json").read_text())
    assert losses["best_valid_loss"] >= 0
    # heads are O(3)-invariant: a rotated structure gives the same predictions
    pm = PropertyModel(GHyenaConfig(**{**model, "species": (1, 6, 7, 8), "pattern": ("local",)}), 1, 1)
    from hyenamd.workflows.property import read_pdb

    s = read_pdb(tmp_path / "data" / "structures" / "w0000.pdb")
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    a = pm(Batch.from_systems([s]))
    b = pm(Batch.from_systems([s.replace(positions=s.positions @ q.T)]))
    assert torch.allclose(a["residue"], b["residue"], atol=1e-10)
    assert torch.allclose(a["structure"], b["structure"], atol=1e-10)


def test_property_config_errors() -> None:
    from hyenamd.workflows.property import PropertyData

    with pytest.raises(ValueError, match="structures_csv"):
        PropertyData()
    with pytest.raises(ValueError, match="residues_csv"):
        PropertyData(structures_csv="x.csv", residue_targets=("rmsf",))
