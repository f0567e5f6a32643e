"""Regenerate ``pre12.safetensors`` and ``pre12_reference.json`` with the code of commit 48c7d20.

48c7d20 is main just before the issue-12 model changes (2e0d96b: circular convolution,
scale-relative norms, zero-init; 831c349: the ordering rule in the config). The files here were
written by that version's own code, so the test in ``tests/surrogate/test_checkpoint_legacy.py``
checks today's loader against what the old code computed. To regenerate (only if the old
behaviour itself is in question; the files are the record)::

    git worktree add /tmp/old 48c7d20
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old/src python tests/data/legacy/make_pre12_checkpoint.py
    git worktree remove /tmp/old

What it does: a tiny float64 G-Hyena (species H, O, Ar; F = 8, C = 4; local–global–local–global;
energy + direct-force heads) is trained for two epochs with that version's ``Trainer`` on
jittered copies of a labelled periodic argon–water box (targets: a smooth Gaussian pair
potential, so the weights move off their initial values). The training summary has the shape
``hyenamd train`` wrote (``data.stores``; the data are synthetic, named as such). Then the best
checkpoint is evaluated by the old code on two fixed systems: a labelled periodic box (8 Ar +
3 H₂O, topology order) and an open unlabelled cluster (4 Ar + 2 H₂O, the old Hilbert order,
recorded). Energies, per-atom energies, forces and direct forces go to the JSON. A second,
untrained large-step model (energy + dynamics heads, velocity inputs) goes to
``pre12_dynamics.safetensors`` with its outputs on the labelled box in
``pre12_dynamics_reference.json``. (safetensors orders its metadata differently on every write,
so a regenerated ``.safetensors`` differs in bytes, never in tensors.)
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
import tempfile

import torch

import hyenamd
from hyenamd.surrogate import GHyena, GHyenaConfig, compute_forces, load_model, save_model
from hyenamd.surrogate.ordering import canonical_order
from hyenamd.surrogate.training import Sample, Trainer, TrainSettings
from hyenamd.system import Batch, Labels, System

HERE = pathlib.Path(__file__).resolve().parent
COMMIT = "48c7d20"
DT = torch.float64


def _water(o: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """O, H, H positions ``[3, 3]`` Å: 0.9572 Å bonds, 104.52°, random orientation about ``o``."""
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=DT))
    half = math.radians(104.52) / 2
    local = 0.9572 * torch.tensor(
        [[math.sin(half), math.cos(half), 0.0], [-math.sin(half), math.cos(half), 0.0]]
    )
    return torch.cat([o.unsqueeze(0), o + local.to(DT) @ q.T])


def _sites(n: int, spacing: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` jittered sites of a cubic grid (3 per axis), Å."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(3.0, dtype=DT)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pick = torch.randperm(27, generator=gen)[:n]
    return (grid[pick] + 0.5) * spacing + 0.15 * torch.randn(n, 3, generator=gen, dtype=DT)


def build(n_ar: int, n_water: int, *, periodic: bool, seed: int) -> System:
    """Argon atoms and rigid-geometry waters on a jittered 3-Å grid (box 9 Å when periodic)."""
    gen = torch.Generator().manual_seed(seed)
    sites = _sites(n_ar + n_water, 3.0, gen)
    pos = [sites[:n_ar]] + [_water(sites[n_ar + k], gen) for k in range(n_water)]
    species = [18] * n_ar + [8, 1, 1] * n_water
    residues = list(range(n_ar)) + [n_ar + k for k in range(n_water) for _ in range(3)]
    labels = Labels(residue_index=torch.tensor(residues)) if periodic else None
    return System(
        positions=torch.cat(pos),
        species=torch.tensor(species),
        cell=torch.eye(3, dtype=DT) * 9.0 if periodic else None,
        pbc=periodic,
        labels=labels,
    )


def target(system: System) -> tuple[float, torch.Tensor]:
    """A smooth Gaussian pair potential (eV) over minimum-image pairs and its forces (eV/Å)."""
    x = system.positions.detach().clone().requires_grad_(True)
    d = x.unsqueeze(0) - x.unsqueeze(1)
    if system.cell is not None:
        d = d - 9.0 * torch.round(d / 9.0)
    r2 = (d**2).sum(-1)
    z = system.species.to(DT)
    a = 0.01 * (z.unsqueeze(0) * z.unsqueeze(1)).sqrt()
    mask = ~torch.eye(len(z), dtype=torch.bool)
    e = 0.5 * (a * torch.exp(-r2 / 4.0))[mask].sum()
    (g,) = torch.autograd.grad(e, x)
    return float(e.detach()), -g.detach()


def jittered(system: System, k: int) -> System:
    gen = torch.Generator().manual_seed(100 + k)
    return system.replace(
        positions=system.positions + 0.05 * torch.randn(system.positions.shape, generator=gen, dtype=DT)
    )


def evaluate(model: GHyena, system: System) -> dict:
    order = canonical_order(system)
    out = compute_forces(model, Batch.from_system(system))
    return {
        "positions": system.positions.tolist(),
        "species": system.species.tolist(),
        "cell": None if system.cell is None else system.cell.tolist(),
        "pbc": bool(system.pbc.any()),
        "residue_index": None if system.labels is None else system.labels.residue_index.tolist(),
        "order": order.tolist(),
        "energy": float(out["energy"][0]),
        "energies": out["energies"].tolist(),
        "forces": out["forces"].tolist(),
        "direct_forces": out["direct_forces"].tolist(),
    }


def write_dynamics_model(cfg: GHyenaConfig, commit: str) -> None:
    """A large-step model (energy + dynamics heads; the old init, every layer random) and its outputs.

    Untrained: the old initialisation already makes every layer non-trivial. Saved with the
    metadata shape ``hyenamd train`` wrote for the dynamics task (``data.stores``)."""
    import dataclasses

    model = GHyena(dataclasses.replace(cfg, heads=("energy", "dynamics"), dynamics_horizon_fs=20.0, seed=11))
    summary = {"stores": [{"path": "none: untrained", "n_frames": 0}], "task": "dynamics"}
    save_model(model, HERE / "pre12_dynamics.safetensors", task="dynamics", data=summary)
    model = load_model(HERE / "pre12_dynamics.safetensors")
    system = build(8, 3, periodic=True, seed=2)
    gen = torch.Generator().manual_seed(4)
    system = system.replace(velocities=0.005 * torch.randn(system.positions.shape, generator=gen, dtype=DT))
    out = compute_forces(model, Batch.from_system(system))
    record = {
        "written_by": f"hyenamd at commit {commit} (tests/data/legacy/make_pre12_checkpoint.py)",
        "checkpoint": "pre12_dynamics.safetensors",
        "system": "labelled_box of pre12_reference.json",
        "velocities": system.velocities.tolist(),
        "energy": float(out["energy"][0]),
        "forces": out["forces"].tolist(),
        "displacement": out["displacement"].tolist(),
        "velocities_out": out["velocities"].tolist(),
    }
    (HERE / "pre12_dynamics_reference.json").write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    torch.set_num_threads(1)
    src = pathlib.Path(hyenamd.__file__).parent
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=src
    ).stdout.strip()
    if not commit.startswith(COMMIT):
        sys.exit(f"run this with the code of commit {COMMIT} on PYTHONPATH (got {commit or 'no git'})")
    cfg = GHyenaConfig(
        species=(1, 8, 18),
        cutoff=4.0,
        n_scalar=8,
        n_vector=4,
        n_rbf=4,
        avg_neighbors=8.0,
        pattern=("local", "global", "local", "global"),
        filter_order=4,
        filter_depth=1,
        filter_bands=2,
        heads=("energy", "direct_forces"),
        dtype="float64",
        seed=7,
    )
    model = GHyena(cfg)
    box = build(8, 3, periodic=True, seed=1)
    samples = []
    for k in range(8):
        s = jittered(box, k)
        e, f = target(s)
        samples.append(Sample(s, energy=e, forces=f, segment=k // 2))
    summary = {
        "stores": [
            {"path": "synthetic: Gaussian pair potential on a labelled argon-water box", "n_frames": 8}
        ],
        "task": "force_field",
        "generator": f"tests/data/legacy/make_pre12_checkpoint.py at {COMMIT}",
    }
    settings = TrainSettings(epochs=2, batch_size=2, lr=5e-3, warmup_steps=1, ema_decay=0.5, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(
            model, samples[:6], samples[6:], settings, out_dir=tmp, data_summary=summary, echo=lambda _: None
        ).fit()
        best = pathlib.Path(tmp) / "best.safetensors"
        (HERE / "pre12.safetensors").write_bytes(best.read_bytes())
    model = load_model(HERE / "pre12.safetensors")
    record = {
        "written_by": f"hyenamd at commit {commit} (tests/data/legacy/make_pre12_checkpoint.py)",
        "torch": torch.__version__,
        "checkpoint": "pre12.safetensors",
        "systems": {
            "labelled_box": evaluate(model, build(8, 3, periodic=True, seed=2)),
            "open_cluster": evaluate(model, build(4, 2, periodic=False, seed=3)),
        },
    }
    (HERE / "pre12_reference.json").write_text(json.dumps(record, indent=1) + "\n")
    write_dynamics_model(cfg, commit)
    print(
        f"wrote {HERE / 'pre12.safetensors'} ({(HERE / 'pre12.safetensors').stat().st_size} bytes) and the JSON"
    )


if __name__ == "__main__":
    main()
