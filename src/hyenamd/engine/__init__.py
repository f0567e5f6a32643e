"""Integrators, the simulation driver, reporters and the ASE/OpenMM adapters."""
