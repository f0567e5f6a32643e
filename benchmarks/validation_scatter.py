"""How often an EXACT run passes the demo's validation: the statistical power of each metric.

    OMP_NUM_THREADS=1 python benchmarks/validation_scatter.py --seeds 10 --ref-ps 10 100 --run-ps 5 20 50

The demo judges a surrogate rollout against a held-out OpenMM run with fixed limits (⟨T⟩ within
3 %, kinetic-energy KS p ≥ 0.01, RDF MAE ≤ 0.05, diffusion within 10 %, VACF MAE ≤ 0.05). A
rollout can only be judged by these limits if an exact simulation of the same length passes them
nearly always. This script runs ``--seeds`` independent OpenMM runs of the demo's argon (108
atoms, 90 K, γ = 1/ps, dt 4 fs, a frame every 40 fs, melted starts; seeds 100, 101, …) for each
``--run-ps`` length and held-out references of each ``--ref-ps`` length (seed 1, the demo's), and
validates every exact run against every reference with the demo's settings. Recorded per
(reference, run) length: each metric's values over the seeds, their mean and spread, and the
fraction of exact runs that pass its limit; and the KS p-values' calibration (for exact runs
they should be uniform: P(p < 0.01) ≈ 1 %).

Writes ``benchmarks/results/<name>.json`` (machine, date, commit, command, load averages) and
``docs/figures/<name>.png`` (pass fraction per metric against run length).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import FIGURES, ROOT, header, save_figure, write_json

METRICS = (
    "temperature_rel_error",
    "kinetic_ks_p",
    "rdf_mae[Ar-Ar]",
    "diffusion_rel_error[all]",
    "vacf_mae",
)


def exact_run(cfg, path: pathlib.Path, seed: int, ps: float) -> pathlib.Path:
    """One continuous NVT OpenMM run of the demo's argon (reused when its provenance matches)."""
    from hyenamd.engine.reference import reference_md
    from hyenamd.workflows.demo_stages import _complete

    rc = dataclasses.replace(
        cfg.reference,
        output=str(path),
        overwrite=True,
        seed=seed,
        n_steps=round(ps * 1000 / cfg.reference.dt_fs),
        segments="none",
        progress=False,
    )
    if not _complete(path, rc):
        reference_md(rc)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--ref-ps", type=float, nargs="+", default=[10.0, 100.0])
    ap.add_argument("--run-ps", type=float, nargs="+", default=[5.0, 20.0, 50.0])
    ap.add_argument(
        "--set", nargs="*", default=[], help="DemoConfig overrides (e.g. validate.msd_fit=[0.1,0.5])"
    )
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/validation_scatter"))
    ap.add_argument("--name", default="validation_scatter")
    args = ap.parse_args(argv)

    from hyenamd.config import load_config
    from hyenamd.validate import validate
    from hyenamd.workflows.demo import DemoConfig

    cfg = load_config(ROOT / "configs" / "demo.yaml", DemoConfig, args.set)
    vcfg = dataclasses.replace(cfg.validate, temperature_k=cfg.reference.temperature_k, progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = header(
        "python benchmarks/validation_scatter.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    payload.update(
        {
            "load_avg_start": os.getloadavg(),
            "limits": {},
            "validate": {
                k: getattr(vcfg, k) for k in ("msd_fit", "msd_max_lag_fraction", "msd_origins", "stride")
            },
            "results": {},
        }
    )
    t0, c0 = time.perf_counter(), time.process_time()
    refs = {
        ps: exact_run(cfg, args.out / f"ref_{ps:g}ps.h5", cfg.reference.seed + 1, ps) for ps in args.ref_ps
    }
    runs = {
        ps: [exact_run(cfg, args.out / f"run_{ps:g}ps_s{100 + k}.h5", 100 + k, ps) for k in range(args.seeds)]
        for ps in args.run_ps
    }
    for ref_ps, ref in refs.items():
        for run_ps, paths in runs.items():
            values: dict[str, list[float]] = {m: [] for m in METRICS}
            passed: dict[str, list[bool]] = {m: [] for m in METRICS}
            for path in paths:
                res = validate(ref, path, vcfg, echo=lambda *a: None)
                for m in res.metrics:
                    if m.name in values:
                        values[m.name].append(float(m.value))
                        passed[m.name].append(bool(m.passed))
                        payload["limits"][m.name] = m.limit
            key = f"ref{ref_ps:g}ps_run{run_ps:g}ps"
            payload["results"][key] = {
                "ref_ps": ref_ps,
                "run_ps": run_ps,
                "values": values,
                "mean": {m: float(np.mean(v)) for m, v in values.items() if v},
                "std": {m: float(np.std(v, ddof=1)) for m, v in values.items() if len(v) > 1},
                "pass_fraction": {m: float(np.mean(p)) for m, p in passed.items() if p},
            }
            r = payload["results"][key]
            print(key, {m: round(f, 2) for m, f in r["pass_fraction"].items()}, flush=True)
            write_json(args.name, payload)
    payload["wall_s"], payload["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    payload["load_avg_end"] = os.getloadavg()
    write_json(args.name, payload)
    _plot(payload, FIGURES / f"{args.name}.png")
    return payload


def _plot(payload: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(payload["results"].values())
    refs = sorted({r["ref_ps"] for r in rows})
    fig, axes = plt.subplots(1, len(refs), figsize=(5 * len(refs), 3.6), squeeze=False)
    for ax, ref_ps in zip(axes[0], refs, strict=True):
        sel = sorted((r for r in rows if r["ref_ps"] == ref_ps), key=lambda r: r["run_ps"])
        for m in METRICS:
            ax.plot(
                [r["run_ps"] for r in sel], [r["pass_fraction"].get(m, np.nan) for r in sel], "o-", label=m
            )
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("exact run length (ps)")
        ax.set_ylabel("fraction of exact runs passing")
        ax.set_title(f"reference {ref_ps:g} ps")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
