"""Counter-based randomness for the sandbox world.

Every random quantity is a pure function of (seed, device index, day, purpose tag, slot): a
splitmix64 chain turns those integers into 64 well-mixed bits. Nothing depends on call order or
on global state, so any device-day can be generated on demand, in any order, in any process, and
a vectorised computation over a thousand days gives exactly the values a one-day computation
gives. Bulk per-day plans use the vectorised hashes directly; detailed generation of one
device-day seeds a numpy Generator from the same kind of key.
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np

MASK64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_TWO_POW_M53 = 1.0 / (1 << 53)


def mix64(z: int) -> int:
    """splitmix64 finaliser on a Python int (the scalar twin of `mix64_array`)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def mix64_array(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array; numpy array arithmetic wraps modulo 2**64."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(_M1)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@cache
def tag_id(tag: str) -> int:
    """Stable 64-bit id of a purpose tag (Python's hash() is salted per process, so not that)."""
    return int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "little")


def key(seed: int, *parts: int | str) -> int:
    """64-bit key of (seed, parts...); strings are purpose tags."""
    h = mix64(seed + _GOLDEN)
    for part in parts:
        value = tag_id(part) if isinstance(part, str) else int(part)
        h = mix64((h ^ (value & MASK64)) + _GOLDEN)
    return h


def keys(seed: int, *parts: int | str | np.ndarray) -> np.ndarray:
    """Vectorised `key`: any part may be an integer array; the result broadcasts over them.

    keys(s, a, b)[i] == key(s, a[i], b) for every i, which is what makes bulk and one-off
    computations agree.
    """
    # Scalar parts before the first array are mixed in plain Python (cheap for one-day calls).
    n_scalar = next((j for j, p in enumerate(parts) if isinstance(p, np.ndarray)), len(parts))
    h_int = key(seed, *parts[:n_scalar])
    h = np.array([h_int], dtype=np.uint64)
    golden = np.uint64(_GOLDEN)
    for part in parts[n_scalar:]:
        if isinstance(part, str):
            value = np.uint64(tag_id(part))
        elif isinstance(part, np.ndarray):
            value = part.astype(np.int64).astype(np.uint64)
        else:
            value = np.uint64(int(part) & MASK64)
        h = mix64_array((h ^ value) + golden)
    return h


def uniform(seed: int, *parts: int | str | np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from the top 53 bits of `keys(seed, *parts)`."""
    return (keys(seed, *parts) >> np.uint64(11)).astype(np.float64) * _TWO_POW_M53


def generator(seed: int, *parts: int | str) -> np.random.Generator:
    """A numpy Generator owned by one (device, day, purpose): independent of every other."""
    return np.random.Generator(np.random.PCG64(key(seed, *parts)))
