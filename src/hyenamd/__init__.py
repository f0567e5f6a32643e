"""hyenamd: large-system molecular simulation with a Geometric Hyena (G-Hyena) surrogate.

``import hyenamd`` is cheap: it loads torch and the data contract only. ASE, OpenMM, Ray,
zarr and h5py are imported by the adapters that need them, when they are used.
"""

from hyenamd.system import Batch, InvalidSystemError, Labels, System

__version__ = "0.1.0"

__all__ = ["Batch", "InvalidSystemError", "Labels", "System", "__version__"]
