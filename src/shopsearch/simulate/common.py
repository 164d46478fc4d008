"""Shared helpers of the simulator: array type aliases, seeded random streams, id formats."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]
I8 = npt.NDArray[np.int8]
Bool = npt.NDArray[np.bool_]

#: Microseconds per second and per day (timestamps are integer UTC microseconds).
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S

# Stream names: each part of the generative story draws from its own stream, so changing one
# part (say, the number of sessions) leaves every other part's draws unchanged.
WORLD = 1
SESSIONS = 2
BEHAVIOUR = 3
REPLAY = 4
POLICY = 5


def stream(seed: int, *keys: int) -> np.random.Generator:
    """An independent random generator for ``seed`` and a path of integer keys."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def format_ids(prefix: str, numbers: npt.NDArray[np.integer], width: int) -> list[str]:
    """``prefix`` + zero-padded numbers, e.g. ``p00042``."""
    return [f"{prefix}{n:0{width}d}" for n in numbers.tolist()]


def id_width(count: int, minimum: int = 5) -> int:
    """Digits needed to number ``count`` things from 0, at least ``minimum``."""
    return max(minimum, len(str(max(count - 1, 0))))
