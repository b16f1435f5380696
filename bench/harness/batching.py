"""Batch sizes that fit: automatic choice with back-off on out-of-memory.

Measures process images in batches. The right size depends on the model, the
resolution and the device, so it is found at run time: start from a guess and
halve on a CUDA out-of-memory error (or a CPU allocation failure) until the work
fits. Measures call :func:`run_with_backoff` around the per-batch work.
"""

from __future__ import annotations

import gc as _gc
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")

DEFAULT_CPU_BATCH = 16
DEFAULT_CUDA_BATCH = 64


def default_batch_size(device: torch.device | str) -> int:
    return DEFAULT_CUDA_BATCH if torch.device(device).type == "cuda" else DEFAULT_CPU_BATCH


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and (
        "out of memory" in str(exc) or "DefaultCPUAllocator: can't allocate" in str(exc))


def run_with_backoff(work: Callable[[int], T], batch_size: int, minimum: int = 1) -> T:
    """Call ``work(batch_size)``, halving the batch size after each out-of-memory error.

    ``work`` must be restartable (it redoes all its batches with the new size).
    """
    size = max(batch_size, minimum)
    while True:
        try:
            return work(size)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not _is_oom(exc) or size <= minimum:
                raise
            size = max(size // 2, minimum)
            _gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
