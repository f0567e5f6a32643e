"""The G-Hyena surrogate model: kernels, layers, heads, ordering, checkpoints, training.

``from hyenamd.surrogate import GHyenaConfig, GHyena, load_model, save_model, compute_forces``.
Imports only surrogate modules and the root modules (never engine/io/cluster, ray/openmm/zarr/h5py).
"""

from hyenamd.surrogate.checkpoint import CheckpointError, describe_checkpoint, load_model, save_model
from hyenamd.surrogate.forces import compute_forces
from hyenamd.surrogate.model import GHyena, GHyenaConfig

__all__ = [
    "CheckpointError",
    "GHyena",
    "GHyenaConfig",
    "compute_forces",
    "describe_checkpoint",
    "load_model",
    "save_model",
]
