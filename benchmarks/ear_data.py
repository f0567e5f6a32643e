"""Equivariant associative recall (EAR) data, from the SE(3)-Hyena paper's description.

A vocabulary is V (key, value) pairs of 3D vectors: key directions isotropic, key magnitudes
U[1, V], and each value is its key turned by its own random rotation (so a bigram's vectors are
related by a rotation). A sequence of ``n_context`` tokens holds ``n_context / 2`` bigrams
``k_a, v_a`` drawn uniformly from the vocabulary, then one query token: a key that appeared in
the context. The answer is that key's value. Rotating the whole sequence by R rotates the answer
by R and changes nothing else (the invariant inputs, positional encodings, do not depend on the
vectors).

Variants: ``fixed`` — one vocabulary for the whole data set (from ``vocab_seed``), each sequence
turned by its own random rotation; ``random`` — a new vocabulary for every sequence (the model
must read the mapping from the context).

Pure numpy, seeded; :func:`recall_oracle` answers a sequence by lookup (the test oracle).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ear_dataset", "make_vocab", "random_rotations", "recall_oracle"]


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, 3, 3]`` Haar-random proper rotations (QR of Gaussian matrices, sign-fixed, det +1)."""
    a = rng.normal(size=(n, 3, 3))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1.0
    return q


def make_vocab(rng: np.random.Generator, n: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """n vocabularies: keys, values ``[n, V, 3]`` (values = keys turned by per-pair random rotations)."""
    d = rng.normal(size=(n, vocab_size, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    keys = d * rng.uniform(1.0, vocab_size, size=(n, vocab_size, 1))
    rot = random_rotations(rng, n * vocab_size).reshape(n, vocab_size, 3, 3)
    values = np.einsum("nvij,nvj->nvi", rot, keys)
    return keys, values


def ear_dataset(
    n_seq: int,
    n_context: int,
    *,
    variant: str,
    vocab_size: int = 4,
    seed: int = 0,
    vocab_seed: int = 12345,
    rotate: bool = True,
) -> dict[str, np.ndarray]:
    """``{"tokens": [S, n_context + 1, 3], "target": [S, 3]}``; n_context even (bigrams), ≥ 2."""
    if variant not in ("fixed", "random"):
        raise ValueError(f"EAR variant must be 'fixed' or 'random', got {variant!r}")
    if n_context < 2 or n_context % 2:
        raise ValueError(f"n_context must be even and >= 2, got {n_context}")
    rng = np.random.default_rng(seed)
    if variant == "fixed":
        k1, v1 = make_vocab(np.random.default_rng(vocab_seed), 1, vocab_size)
        keys, values = np.repeat(k1, n_seq, 0), np.repeat(v1, n_seq, 0)
    else:
        keys, values = make_vocab(rng, n_seq, vocab_size)
    n_pairs = n_context // 2
    rows = np.arange(n_seq)[:, None]
    idx = rng.integers(vocab_size, size=(n_seq, n_pairs))
    query = idx[np.arange(n_seq), rng.integers(n_pairs, size=n_seq)]
    tokens = np.empty((n_seq, n_context + 1, 3))
    tokens[:, 0:n_context:2] = keys[rows, idx]
    tokens[:, 1:n_context:2] = values[rows, idx]
    tokens[:, -1] = keys[np.arange(n_seq), query]
    target = values[np.arange(n_seq), query]
    if rotate:
        rot = random_rotations(rng, n_seq)
        tokens = np.einsum("nij,ntj->nti", rot, tokens)
        target = np.einsum("nij,nj->ni", rot, target)
    return {"tokens": tokens, "target": target}


def recall_oracle(tokens: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """Answer each sequence ``[S, n + 1, 3]`` by lookup: the token after the first key equal to the query."""
    out = np.empty((tokens.shape[0], 3))
    for s, seq in enumerate(tokens):
        keys = seq[:-1:2]
        hit = np.flatnonzero(np.abs(keys - seq[-1]).max(-1) <= atol)
        if hit.size == 0:
            raise ValueError(f"sequence {s}: the query key does not appear in the context")
        out[s] = seq[2 * hit[0] + 1]
    return out
