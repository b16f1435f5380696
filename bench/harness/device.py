"""Device choice, seeding and peak-memory accounting for a measurement."""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from bench.errors import BenchError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when a GPU is present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda was asked for but no CUDA device is available",
                         "use --device cpu or --device auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise BenchError(f"unknown device {name!r}", "use auto, cpu or cuda") from exc


def device_label(device: torch.device) -> str:
    """A human-readable device name for provenance (the GPU model, or 'cpu')."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def _cpu_peak_mb() -> float:
    # ru_maxrss is in KiB on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class Usage:
    wall_time_s: float = 0.0
    peak_memory_mb: float = 0.0


@contextmanager
def track_usage(device: torch.device) -> Iterator[Usage]:
    """Wall time and peak memory of the enclosed work.

    On CUDA the peak is the device's allocated high-water mark for this block. On
    the CPU it is the process's resident high-water mark (the OS cannot reset it
    per block), which bounds the block's own peak from above.
    """
    usage = Usage()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield usage
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            usage.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            usage.peak_memory_mb = _cpu_peak_mb()
        usage.wall_time_s = time.perf_counter() - start
