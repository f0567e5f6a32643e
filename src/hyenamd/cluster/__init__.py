"""Ray-scheduled rollout ensembles and sharded inference (the only subpackage that imports ray)."""
