"""Pictures for model pages: volume-element maps with decision boundaries, deformed images.

PNG files are written next to the pages (no data URIs), so pages stay small and
images are shared between models that need the same picture.
"""

from __future__ import annotations

import functools
import io
import math
import warnings

import numpy as np
from PIL import Image

# viridis at 6 stops: a perceptually ordered map that survives grey-scale printing
_VIRIDIS = np.array([[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81],
                     [253, 231, 37]], dtype=float)
_DISPLAY = 192


def _png(rgb: np.ndarray, size: int = _DISPLAY) -> bytes:
    image = Image.fromarray(rgb.astype(np.uint8))
    if image.width < size:
        image = image.resize((size, size * image.height // image.width), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def colormap(values: np.ndarray) -> np.ndarray:
    """(..., 3) viridis colours of values scaled to their finite min..max (non-finite: grey)."""
    finite = np.isfinite(values)
    lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 1.0)
    t = np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    t = np.where(finite, t, 0.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(t.astype(int), len(_VIRIDIS) - 2)
    frac = (t - i)[..., None]
    rgb = _VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac
    rgb[~finite] = 128
    return rgb


def square(values: list[float]) -> np.ndarray | None:
    """A flattened G x G map back as a G x G array (None when the length is not a square)."""
    g = math.isqrt(len(values))
    if g * g != len(values) or g == 0:
        return None
    return np.array([np.nan if v is None else v for v in values], dtype=float).reshape(g, g)


def map_png(values: np.ndarray, pred: np.ndarray | None = None) -> bytes:
    """A map in viridis, upscaled, with white lines between cells of different predicted class."""
    scale = max(1, _DISPLAY // values.shape[1])
    rgb = np.repeat(np.repeat(colormap(values), scale, axis=0), scale, axis=1)
    if pred is not None and pred.shape == values.shape and scale > 1:
        for i, j in zip(*np.nonzero(pred[1:, :] != pred[:-1, :])):  # edge below cell (i, j)
            rgb[(i + 1) * scale - 1:(i + 1) * scale + 1, j * scale:(j + 1) * scale] = 255
        for i, j in zip(*np.nonzero(pred[:, 1:] != pred[:, :-1])):  # edge right of cell (i, j)
            rgb[i * scale:(i + 1) * scale, (j + 1) * scale - 1:(j + 1) * scale + 1] = 255
    return _png(rgb)


def probe_image(n: int) -> np.ndarray:
    """A natural CC0 photograph (scikit-image's 'chelsea') as an (n, n, 3) float image in [0, 1]."""
    from skimage import data

    photo = data.chelsea()
    side = min(photo.shape[:2])
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((n, n), Image.BICUBIC)
    return np.asarray(crop, dtype=float) / 255.0


@functools.lru_cache(maxsize=8)
def diffeo_examples(n: int, cutoff: float, deltas: tuple[float, ...],
                    seed: int = 0) -> list[tuple[float, bytes]] | None:
    """The probe photograph deformed at each delta (px) with ``bench.measures.diffeo``.

    None when the diffeomorphism module is not available, so the page leaves the
    section out instead of failing.
    """
    try:
        import torch

        from bench.measures.diffeo import DiffeoWarning, random_diffeo
    except ImportError:
        return None
    image = torch.from_numpy(probe_image(n)).permute(2, 0, 1)[None].float()
    out = [(0.0, _png(probe_image(n) * 255, size=max(_DISPLAY, n)))]
    for delta in deltas:
        generator = torch.Generator().manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiffeoWarning)
            deformed = random_diffeo(image, cutoff=cutoff, delta=delta, generator=generator)
        rgb = deformed[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255
        out.append((delta, _png(rgb, size=max(_DISPLAY, n))))
    return out
