"""Stream a large trajectory through a hyenamd store: write frames, read atom ranges back.

Writes 5 frames of a 200 000-atom periodic system to an HDF5 (H5MD) store and a zarr v3 store,
then iterates over one atom range of every frame with the prefetching reader (memory stays at
a few frames, whatever the trajectory length) and reads one whole frame back as a ``System``.

    python examples/hdf5_streaming.py [N_ATOMS]
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import numpy as np

from hyenamd.io import open_store
from hyenamd.workflows.demo import liquid_like_system


def main(n_atoms: int = 200_000, n_frames: int = 5) -> None:
    system = liquid_like_system(n_atoms, seed=0)
    rng = np.random.default_rng(0)
    x0 = system.positions.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".h5md", ".zarr"):
            path = pathlib.Path(tmp) / f"traj{suffix}"
            t = time.perf_counter()
            with open_store(path, "w", system=system) as store:  # close() marks it complete
                for k in range(n_frames):
                    x = x0 + rng.normal(0, 0.05, x0.shape).astype(np.float32)
                    store.append(x, step=100 * k, time=100.0 * k, potential_energy=-1.0 * k)
            wrote = time.perf_counter() - t
            mb = n_frames * x0.nbytes / 1e6
            with open_store(path) as store:
                centre = slice(
                    n_atoms // 2, min(n_atoms, n_atoms // 2 + 10_000)
                )  # ranges past the end are refused
                t = time.perf_counter()
                means = [f["positions"].mean(0) for f in store.frames(atoms=centre, prefetch=2)]
                read_range = time.perf_counter() - t
                last = store[len(store) - 1]  # a hyenamd.System
                print(
                    f"{path.name:10s} {len(store)} frames x {store.system.n_atoms:,} atoms, status {store.status}: "
                    f"wrote {mb:.0f} MB in {wrote:.2f} s; 10k-atom range of every frame in {read_range * 1e3:.0f} ms "
                    f"(mean x of last range {means[-1].round(2).tolist()} Å); last frame step {store.steps[-1]}, "
                    f"E_pot {store.observable('potential_energy').tolist()} eV; {last!r}"
                )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
