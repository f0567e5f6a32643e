"""The G-Hyena surrogate model: kernels, layers, heads, ordering, checkpoints, training."""
