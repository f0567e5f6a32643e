"""Can a G-Hyena be exported with ``torch.export``? Records where it fails (see docs/engine.md, "Export").

The model's input is a :class:`hyenamd.Batch` dataclass (not a pytree ``torch.export`` accepts),
so a thin wrapper takes plain tensors, builds the Batch inside and passes a precomputed
neighbour list. Then:

* ``torch.export.export(wrapper, args, strict=False)``: the first data-dependent guard that
  stops it (type, message, the hyenamd source line);
* ``torch.export.draft_export``: how many data-dependent issues it had to assume away (and
  where), and the largest energy difference exported vs eager on the example and on
  perturbed positions with the same neighbour list (same shapes).

Both for the local + global model (``result``) and a local-only one (``local_only``).

    python benchmarks/export_probe.py [--out DIR]     # ~30 s on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import torch
from common import header, write_json

from hyenamd import Batch
from hyenamd.engine.integrators import canonical_order
from hyenamd.geometry import Neighbors
from hyenamd.surrogate import GHyena, GHyenaConfig
from hyenamd.surrogate.model import batch_neighbor_list
from hyenamd.workflows.demo import liquid_like_system


class TensorInputs(torch.nn.Module):
    """``GHyena`` on plain tensors (one system): ``(energy [1], energies [N])``."""

    def __init__(self, model: GHyena) -> None:
        super().__init__()
        self.model = model

    def forward(self, positions, species, masses, cell, pbc, batch, ptr, order, i, j, shifts):
        b = Batch(
            positions=positions, species=species, masses=masses, cell=cell, pbc=pbc, batch=batch,
            ptr=ptr, order=order, labels=(None,), has_cell=torch.ones(1, dtype=torch.bool),
        )  # fmt: skip
        out = self.model(b, neighbors=Neighbors(i, j, shifts))
        return out["energy"], out["energies"]


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "hyenamd" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{pathlib.Path(f.filename).name}:{f.lineno} {f.line}"


def _issues(report) -> list[str]:
    """Each draft-export failure as ``TYPE file:line (function)`` at its innermost hyenamd frame."""
    out = []
    for failure in report.failures:
        frames = [
            f
            for f in failure.data.get("user_stack") or []
            if "hyenamd" in str(report.str_to_filename.get(f["filename"], ""))
        ]
        where = "?"
        if frames:
            f = frames[-1]
            where = f"{pathlib.Path(report.str_to_filename[f['filename']]).name}:{f['line']} ({f['name']})"
        out.append(f"{failure.failure_type} {where}")
    return out


def probe(pattern: tuple[str, ...]) -> dict:
    """``export`` and ``draft_export`` of a float64 G-Hyena with this block ``pattern`` (27 atoms)."""
    cfg = GHyenaConfig(
        species=(8,),
        cutoff=4.0,
        n_scalar=16,
        n_vector=4,
        n_rbf=6,
        pattern=pattern,
        dtype="float64",
    )
    model = GHyena(cfg).eval()
    s = liquid_like_system(27, density=0.1, species=8, seed=0, triclinic=True, dtype=torch.float64)
    b = Batch.from_system(s)
    b = b.replace(order=canonical_order(model, b))
    nb = batch_neighbor_list(b.positions, b.cell, b.pbc, b.ptr, model.cutoff)
    inputs = (b.positions, b.species, b.masses, b.cell, b.pbc, b.batch, b.ptr, b.order, nb.i, nb.j, nb.shifts)
    wrapper = TensorInputs(model)
    result: dict = {"torch": torch.__version__, "n_atoms": s.n_atoms, "pattern": list(cfg.pattern)}
    try:
        exported = torch.export.export(wrapper, inputs, strict=False)
        with torch.no_grad():
            diff = (exported.module()(*inputs)[0] - wrapper(*inputs)[0]).abs().max()
        result["export"] = {"ok": True, "max_energy_diff_example": float(diff)}
    except Exception as e:
        result["export"] = {"ok": False, "error": type(e).__name__, "at": _where(e), "message": str(e)[:300]}
    try:
        ep = torch.export.draft_export(wrapper, inputs)
        report = getattr(ep, "_report", None)
        noise = torch.randn(
            b.positions.shape, generator=torch.Generator().manual_seed(0), dtype=b.positions.dtype
        )
        perturbed = (b.positions + 0.01 * noise, *inputs[1:])
        result["draft_export"] = {
            "ok": True,
            "n_data_dependent_issues": None if report is None else len(report.failures),
            "issues": None if report is None else _issues(report),
            "max_energy_diff_example": float((ep.module()(*inputs)[0] - wrapper(*inputs)[0]).abs().max()),
            "max_energy_diff_perturbed": float(
                (ep.module()(*perturbed)[0] - wrapper(*perturbed)[0]).abs().max()
            ),
        }
    except Exception as e:
        result["draft_export"] = {
            "ok": False,
            "error": type(e).__name__,
            "at": _where(e),
            "message": str(e)[:400],
        }
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=None, help="directory for the JSON result")
    args_ns = p.parse_args(argv)
    torch.set_num_threads(1)
    result = probe(("local", "global"))
    payload = header("python benchmarks/export_probe.py") | {
        "load_avg": os.getloadavg(),
        "result": result,
        "local_only": probe(("local", "local")),
    }
    path = write_json("export_probe", payload, args_ns.out)
    print(json.dumps({k: payload[k] for k in ("result", "local_only")}, indent=1))
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
