"""Maximum-entropy random diffeomorphisms of images (SPEC section 3).

The displacement field of Petrini et al. (NeurIPS 2021): each of its two components
is an independent random field on the grid u, v in linspace(0, 1, n),

    tau(u, v) = sqrt(T) * n * sum_{i, j >= 1, sqrt(i^2 + j^2) < c + 0.5} C_ij sin(i pi u) sin(j pi v),
    C_ij ~ N(0, 1 / (i^2 + j^2)),

in pixels. It vanishes on the border, its smoothness is set by the cut-off c and its
size by the temperature T, itself set from the typical displacement delta in pixels.
The remap is bilinear and clamped at the border: the output pixel at (row y, column x)
samples the input at (x - tau_x, y - tau_y).

Everything is batched: one call draws and applies many fields at once on any device,
with no Python loop over images or pixels. Drawing the coefficients
(:func:`sample_coefficients`) is separate from synthesising the fields
(:func:`fields_from_coefficients`), so that a caller can draw every coefficient of a
run up front (tiny, on the CPU) and get the same fields whatever its batch size.

Choices where SPEC is silent:

- Images must be square (n x n), as SPEC states the field and the temperature for
  an n x n image; a non-square input raises ``ValueError``. timm eval inputs are square.
- ``fields[:, 0]`` is the horizontal displacement tau_x (along columns, u) and
  ``fields[:, 1]`` the vertical one tau_y (along rows, v).
- The sign: SPEC and the current reference code (``pcsl-epfl/diffeomorphism``,
  ``diff.py``) sample at ``x - tau``; early versions of that file used ``x + tau``.
  The field's law is symmetric under tau -> -tau, so both give the same distribution.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

__all__ = [
    "DiffeoWarning", "temperature", "t_min", "t_max", "exceeds_t_max", "mode_variances",
    "sample_coefficients", "fields_from_coefficients", "sample_fields", "deform", "square_size",
    "random_diffeo",
]


class DiffeoWarning(UserWarning):
    """A diffeomorphism drawn above T_max, where the field may fold over."""


def _check_cutoff(cutoff: float) -> None:
    # T(delta) divides by ln c, so c must exceed 1 (c > 1 also keeps the (1, 1) mode).
    if not cutoff > 1:
        raise ValueError(f"cutoff must be > 1 (the temperature divides by ln c), got {cutoff}")


def temperature(delta: float, n: int, cutoff: float) -> float:
    """T(delta) = 4 delta^2 / (pi n^2 ln c): the temperature whose typical displacement is delta px."""
    _check_cutoff(cutoff)
    if delta < 0:
        raise ValueError(f"delta must be >= 0 pixels, got {delta}")
    return 4.0 * delta**2 / (math.pi * n**2 * math.log(cutoff))


def t_min(n: int, cutoff: float) -> float:
    """T_min = 1 / (pi n^2 ln c), the temperature of a typical displacement of half a pixel."""
    return temperature(0.5, n, cutoff)


def t_max(cutoff: float) -> float:
    """T_max = 4 / (pi^3 c^2 ln c), the largest temperature with no fold-over.

    It does not depend on the resolution: in pixels it is a typical displacement of
    n / (pi c), e.g. 3.4 px at n = 32 and c = 3.
    """
    _check_cutoff(cutoff)
    return 4.0 / (math.pi**3 * cutoff**2 * math.log(cutoff))


def exceeds_t_max(delta: float, n: int, cutoff: float) -> bool:
    """Whether displacements of typical size ``delta`` px at resolution n need T > T_max."""
    return temperature(delta, n, cutoff) > t_max(cutoff)


def _n_modes(cutoff: float) -> int:
    # i, j range over 1..m with m the largest i that sqrt(i^2 + 1) < c + 0.5 can allow.
    return math.floor(cutoff + 0.5)


def mode_variances(cutoff: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(m, m) variances of C_ij: 1 / (i^2 + j^2) inside the disc sqrt(i^2 + j^2) < c + 0.5, else 0."""
    _check_cutoff(cutoff)
    k = torch.arange(1, _n_modes(cutoff) + 1, dtype=dtype)
    r2 = k[:, None] ** 2 + k[None, :] ** 2
    return torch.where(r2.sqrt() < cutoff + 0.5, 1.0 / r2, torch.zeros_like(r2))


def sample_coefficients(batch: int, cutoff: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """C_ij for ``batch`` fields of two components: (batch, 2, m, m), float64.

    Drawn on the generator's device (the CPU by default); modes outside the disc are 0.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    std = mode_variances(cutoff).sqrt().to(device)
    noise = torch.randn((batch, 2, *std.shape), generator=generator, device=device,
                        dtype=torch.float64)
    return noise * std


def _sine_basis(n: int, m: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n, m) matrix sin(k pi u) for u in linspace(0, 1, n) and k = 1..m."""
    u = torch.linspace(0, 1, n, dtype=torch.float64)
    k = torch.arange(1, m + 1, dtype=torch.float64)
    return torch.sin(math.pi * u[:, None] * k[None, :]).to(device=device, dtype=dtype)


def fields_from_coefficients(coefficients: torch.Tensor, n: int, temperature: float, *,
                             device: torch.device | str | None = None,
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Displacement fields in pixels, (batch, 2, n, n), from coefficients (batch, 2, m, m).

    ``tau[b, k, y, x] = sqrt(T) n sum_ij C[b, k, i, j] sin(i pi u_x) sin(j pi v_y)``:
    index i runs along columns (u), j along rows (v).
    """
    device = torch.device(device) if device is not None else coefficients.device
    m = coefficients.shape[-1]
    basis = _sine_basis(n, m, device, dtype)
    scale = math.sqrt(temperature) * n
    c = coefficients.to(device=device, dtype=dtype)
    return scale * torch.einsum("bkij,xi,yj->bkyx", c, basis, basis)


def sample_fields(batch: int, n: int, cutoff: float, temperature: float,
                  generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """``batch`` independent displacement fields in pixels for n x n images: (batch, 2, n, n).

    Channel 0 is tau_x (horizontal), channel 1 tau_y (vertical). Coefficients come
    from ``generator`` (the global CPU generator when None) and the fields are built
    on ``device`` (the generator's device when None).
    """
    coefficients = sample_coefficients(batch, cutoff, generator)
    return fields_from_coefficients(coefficients, n, temperature, device=device)


def deform(images: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """Remap images (B, C, n, n) by fields (B, 2, n, n) in pixels, bilinear, clamped at the border.

    The output pixel at (row y, column x) samples the input at (x - tau_x, y - tau_y).
    With ``align_corners=True`` the normalised coordinate -1 is the centre of pixel 0
    and +1 the centre of pixel n - 1, so pixel positions map linearly to [-1, 1];
    ``padding_mode="border"`` clamps source positions into the image, as the
    reference remap does. One field serves all channels of its image.
    """
    b, _, h, w = images.shape
    if fields.shape != (b, 2, h, w):
        raise ValueError(f"fields must have shape {(b, 2, h, w)}, got {tuple(fields.shape)}")
    ys = torch.arange(h, device=images.device, dtype=images.dtype).view(1, h, 1)
    xs = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, w)
    tau = fields.to(device=images.device, dtype=images.dtype)
    src_x = xs - tau[:, 0]
    src_y = ys - tau[:, 1]
    grid = torch.stack([2 * src_x / max(w - 1, 1) - 1, 2 * src_y / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def square_size(images: torch.Tensor) -> int:
    """The side n of square images (..., n, n); a ValueError for non-square ones."""
    h, w = images.shape[-2:]
    if h != w:
        raise ValueError(f"diffeomorphisms are defined for square n x n images, got {h} x {w}")
    return int(h)


def random_diffeo(images: torch.Tensor, cutoff: float = 3, delta: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (B, C, n, n) deformed by its own random diffeomorphism of typical size delta px.

    For looking at deformed images. Warns with :class:`DiffeoWarning` when the
    temperature exceeds T_max (the field may fold over).
    """
    n = square_size(images)
    t = temperature(delta, n, cutoff)
    if t > t_max(cutoff):
        warnings.warn(f"delta={delta} px at n={n}, c={cutoff} gives T={t:.3g} > T_max="
                      f"{t_max(cutoff):.3g}: the deformation may fold over", DiffeoWarning,
                      stacklevel=2)
    fields = sample_fields(images.shape[0], n, cutoff, t, generator, device=images.device)
    return deform(images, fields)
