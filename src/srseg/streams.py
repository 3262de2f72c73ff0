"""Seeded, independent random streams: one seed, one numpy Generator per named purpose.

A generator (phantom, simulate) draws e.g. its geometry, its tissue and each acquisition's
noise from separate streams, so changing a noise level leaves the geometry unchanged and
the same parameters give the same bytes. The streams are the children of
``SeedSequence(seed).spawn(len(names))`` in the order of `names`: appending a name keeps
the existing streams' draws, reordering or removing names changes them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np


def named_streams(seed: int, names: Sequence[str]) -> dict[str, np.random.Generator]:
    """name -> independent Generator; stream i is child i of SeedSequence(seed), i in the order of `names`."""
    if len(set(names)) != len(names):
        raise ValueError(f"stream names must be unique, got {list(names)}")
    children = np.random.SeedSequence(int(seed)).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def signed_draw(rng: np.random.Generator, max_abs: float) -> float:
    """A value of magnitude in [0.3, 1] * max_abs with a random sign: a perturbation that is never trivially zero.

    Two draws from `rng`, in this order: the sign (rng.choice), then the magnitude (rng.uniform).
    """
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * max_abs)


def derive_seed(seed: int, *names: str) -> int:
    """A stable seed per name tuple (e.g. recipe, specimen): zlib.crc32 of the names mixed with the config seed.

    Python's hash() is salted per process, so it cannot be used here.
    """
    ss = np.random.SeedSequence([int(seed)] + [zlib.crc32(str(n).encode()) for n in names])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
