"""Wall-clock timing shared by the benchmark scripts.

Works are timed in interleaved rounds after one warm-up each, so that load from
other processes (the machine may be shared) falls on all of them alike and their
ratios, which is what the scripts report, stay meaningful.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    median: float
    best: float


def _once(work: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def timed(works: dict[str, Callable[[], object]], device: torch.device | str = "cpu",
          repeats: int = 5) -> dict[str, Timing]:
    """Median and best wall time of each work over ``repeats`` interleaved rounds."""
    device = torch.device(device)
    for work in works.values():
        _once(work, device)
    samples: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            samples[name].append(_once(work, device))
    return {name: Timing(statistics.median(s), min(s)) for name, s in samples.items()}
