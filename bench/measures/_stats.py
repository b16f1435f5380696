"""Uncertainty shared by all measures (SPEC section 1).

Every scalar gets a standard error and a 95% interval. Over images it is a
bootstrap over images; a ratio of two image means is bootstrapped *paired*, so the
numerator and the denominator are resampled with the same image indices. Random
draws (probes, diffeomorphisms) are folded in by first averaging them per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

DEFAULT_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int

    def fields(self) -> dict:
        """The keyword arguments of a :class:`~bench.measures.Measurement`."""
        return dict(value=finite_or_none(self.value), stderr=finite_or_none(self.stderr),
                    ci_low=finite_or_none(self.ci_low), ci_high=finite_or_none(self.ci_high),
                    n=self.n)


def _generator(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0xB007]))


def bootstrap(
    per_image: np.ndarray | list,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> Estimate:
    """Bootstrap over the first axis of ``per_image``.

    ``per_image`` has one row per image (a vector when there is one quantity, an
    (N, K) array when a statistic combines K paired quantities). ``statistic`` maps
    an array of shape (B, N, ...) of resampled rows to B values; by default the mean
    over images. The point value is the statistic on the data itself; the interval
    is the percentile interval of the bootstrap distribution.
    """
    data = np.asarray(per_image, dtype=np.float64)
    n = data.shape[0]
    if n == 0:
        raise ValueError("bootstrap needs at least one image")
    if statistic is None:
        statistic = lambda x: x.mean(axis=1)  # noqa: E731
    value = float(statistic(data[None])[0])
    if n == 1:
        return Estimate(value, float("nan"), float("nan"), float("nan"), 1)
    rng = _generator(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    dist = np.asarray(statistic(data[idx]), dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    lo, hi = np.percentile(dist, [2.5, 97.5])
    return Estimate(value, float(dist.std(ddof=1)), float(lo), float(hi), n)


def mean_estimate(per_image: np.ndarray | list, *, seed: int = 0) -> Estimate:
    """Mean over images with bootstrap stderr and interval."""
    return bootstrap(per_image, seed=seed)


def ratio_of_means(numer: np.ndarray, denom: np.ndarray, *, seed: int = 0) -> Estimate:
    """mean(numer) / mean(denom) with a paired bootstrap over images."""
    pair = np.stack([np.asarray(numer, float), np.asarray(denom, float)], axis=1)

    def stat(x: np.ndarray) -> np.ndarray:
        m = x.mean(axis=1)
        return m[..., 0] / m[..., 1]

    return bootstrap(pair, stat, seed=seed)


def finite_or_none(x: float) -> float | None:
    """None for NaN/inf, so that a single image gives no fake interval."""
    return float(x) if np.isfinite(x) else None
