"""Why a force field's Langevin BAOAB run reads a low kinetic temperature: the curvature it integrates.

    OMP_NUM_THREADS=1 python benchmarks/baoab_kinetic_deficit.py --model CKPT --store HELDOUT.h5md --dt-fs 0.5

For a harmonic mode of angular frequency ω, BAOAB samples positions exactly but the velocities it
reports (after the closing B half-kick) have ⟨v²⟩ = (k_BT/m)(1 − ω²Δt²/4). Summed over the 3N
modes the kinetic temperature reads low by

    δ = Δt² / (12 N) · tr(M⁻¹ H)                                     (H: Hessian of U, M: masses)

and in the canonical ensemble tr(M⁻¹ H) = Σ_i ⟨|F_i|²⟩ / (m_i k_BT) exactly (integration by parts),
so the reference's δ follows from its forces alone. For the model, tr(M⁻¹ H) is estimated on the
same frames with Hutchinson probes (``z`` Rademacher, ``zᵀ M^-½ H M^-½ z`` by double backward),
float64. A model whose δ exceeds the reference's has a rougher (stiffer) energy surface than the
physics it learned, and its BAOAB run reads a lower ⟨T⟩ at the same Δt.

``--nve-steps N`` also runs velocity Verlet with the model (its own dtype, Verlet list with a
1 Å skin) from the store's first frame and fits the total-energy drift: a Langevin run at friction
γ settles where the thermostat's heating balances it, ⟨T⟩/T − 1 ≈ drift / (3 k_B T γ) per atom.
Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import header, write_json

#: 1 eV / (Å² amu) in fs⁻²
EV_PER_A2_AMU_IN_FS2 = 9.648533e-3
KB_EV_PER_K = 8.617333262e-5


def hutchinson_trace(model, system, probes: int, gen: torch.Generator) -> tuple[float, float]:
    """tr(M⁻¹ H) of ``model``'s energy at ``system`` (eV/(Å² amu)): mean and standard error over probes."""
    from hyenamd.system import Batch

    batch = Batch.from_system(system)
    pos = batch.positions.detach().requires_grad_(True)
    inv_sqrt_m = batch.masses.rsqrt()[:, None]
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.enable_grad():
        energy = model(batch.replace(positions=pos))["energy"].sum()
        (grad,) = torch.autograd.grad(energy, pos, create_graph=True)
        vals = []
        for _ in range(probes):
            z = (torch.randint(0, 2, pos.shape, generator=gen, dtype=pos.dtype) * 2 - 1) * inv_sqrt_m
            (hz,) = torch.autograd.grad(grad, pos, z, retain_graph=True)
            vals.append(float((z * hz).sum()))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))


def nve_drift(args, kt: float) -> dict:
    """Velocity Verlet with the model from the store's first frame: total-energy drift per atom."""
    from hyenamd.engine import Simulation, VelocityVerlet
    from hyenamd.io import open_store
    from hyenamd.surrogate import load_model

    model = load_model(args.model)
    with open_store(args.store) as st:
        system = st[0].to(dtype=model.dtype)
    times, totals = [], []
    c = time.process_time()
    with Simulation(VelocityVerlet(model, args.dt_fs, skin=1.0), system, []) as sim:
        for _ in range(0, args.nve_steps, 10):
            s = sim.state
            times.append(s.step * args.dt_fs / 1000)
            totals.append(float(s.energy.sum() + s.kinetic_energy().sum()))
            sim.run(10)
    n = system.positions.shape[0]
    e = np.asarray(totals) / n * 1000  # meV/atom
    slope = float(np.polyfit(times, e, 1)[0])  # meV/atom/ps
    gamma = args.friction_per_ps
    return {
        "steps": args.nve_steps,
        "dtype": str(model.dtype),
        "drift_meV_per_atom_per_ps": slope,
        "total_energy_std_meV_per_atom": float(e.std()),
        "implied_nvt_temperature_offset": slope / (3 * kt * 1000 * gamma),
        "cpu_s": time.process_time() - c,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--store", required=True, help="reference store with forces (canonical frames)")
    p.add_argument("--dt-fs", type=float, default=0.5)
    p.add_argument("--temperature-k", type=float, default=300.0)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--nve-steps", type=int, default=0, help="velocity-Verlet steps for the drift (0: none)")
    p.add_argument(
        "--friction-per-ps", type=float, default=1.0, help="γ of the NVT run the drift is read against"
    )
    p.add_argument("--name", default="baoab_kinetic_deficit")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from hyenamd.io import open_store
    from hyenamd.surrogate import load_model

    model = load_model(args.model, dtype="float64")
    kt = KB_EV_PER_K * args.temperature_k
    gen = torch.Generator().manual_seed(0)
    c0, load0 = time.process_time(), os.getloadavg()
    ref_tr, mod_tr, mod_se = [], [], []
    with open_store(args.store) as st:
        idx = np.linspace(0, len(st) - 1, args.frames).round().astype(int)
        for k in idx:
            s = st[int(k)].to(dtype=torch.float64)
            f = torch.as_tensor(np.asarray(st.read(int(k), "forces")), dtype=torch.float64)
            ref_tr.append(float(((f**2).sum(1) / s.masses).sum()) / kt)
            m, se = hutchinson_trace(model, s, args.probes, gen)
            mod_tr.append(m)
            mod_se.append(se)
            print(
                f"frame {k}: tr(M⁻¹H) reference {ref_tr[-1]:.1f}, model {m:.1f} ± {se:.1f} eV/(Å² amu)",
                flush=True,
            )
        n = st.n_atoms

    def deficit(tr: float) -> float:
        return args.dt_fs**2 / (12 * n) * tr * EV_PER_A2_AMU_IN_FS2

    ref_mean, mod_mean = float(np.mean(ref_tr)), float(np.mean(mod_tr))
    mod_err = float(np.sqrt(np.sum(np.square(mod_se))) / len(mod_se))
    payload = {
        **header(
            "python benchmarks/baoab_kinetic_deficit.py " + " ".join(sys.argv[1:] if argv is None else argv)
        ),
        "load_average_start": load0,
        "load_average_end": os.getloadavg(),
        "cpu_s": time.process_time() - c0,
        "model": args.model,
        "store": args.store,
        "n_atoms": n,
        "dt_fs": args.dt_fs,
        "temperature_k": args.temperature_k,
        "frames": idx.tolist(),
        "probes": args.probes,
        "trace_reference": ref_tr,
        "trace_model": mod_tr,
        "predicted_deficit_reference": deficit(ref_mean),
        "predicted_deficit_model": deficit(mod_mean),
        "predicted_deficit_model_stderr": deficit(mod_err),
    }
    if args.nve_steps:
        payload["nve"] = nve_drift(args, kt)
    path = write_json(args.name, payload)
    print(
        f"predicted BAOAB kinetic-temperature deficit at dt {args.dt_fs:g} fs: reference "
        f"{100 * payload['predicted_deficit_reference']:.2f} %, model {100 * payload['predicted_deficit_model']:.2f} "
        f"± {100 * payload['predicted_deficit_model_stderr']:.2f} %"
        + (
            f"; NVE drift {payload['nve']['drift_meV_per_atom_per_ps']:.3f} meV/atom/ps"
            if args.nve_steps
            else ""
        )
        + f" → {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
