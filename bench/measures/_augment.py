"""Seeded image augmentations that turn one probe image into an exemplar manifold.

Without class labels, manifold analysis measures exemplar manifolds: the images one
picture gives under natural variation (SPEC section 6). Each view is a random resized
crop (area 35-100% of the image, aspect ratio 3/4-4/3, resized back to the full
size, bilinear), a horizontal flip with probability 1/2, and a brightness and a
contrast factor each in [0.8, 1.2], clipped to [0, 1]. All views are made at once by
one ``affine_grid`` / ``grid_sample`` call on the images' device; the random draws
come from a CPU generator, so a seed gives the same views everywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AREA = (0.35, 1.0)
ASPECT = (3 / 4, 4 / 3)
JITTER = 0.2


def exemplar_views(images: torch.Tensor, views: int, generator: torch.Generator) -> torch.Tensor:
    """(P, C, H, W) images -> (P * views, C, H, W), the views of image i at rows i*views..."""
    P = images.shape[0]
    n = P * views
    source = images.repeat_interleave(views, 0)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)

    area = uniform(*AREA)
    aspect = torch.exp(uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    width = (area * aspect).sqrt().clamp(max=1.0)              # crop size as a fraction of the image
    height = (area / aspect).sqrt().clamp(max=1.0)
    centre_x = (1 - width) * (2 * uniform(0, 1) - 1)            # in grid units [-1, 1]
    centre_y = (1 - height) * (2 * uniform(0, 1) - 1)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).double()
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(source.shape), align_corners=False)
    views_ = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    brightness = uniform(1 - JITTER, 1 + JITTER).to(images)[:, None, None, None]
    contrast = uniform(1 - JITTER, 1 + JITTER).to(images)[:, None, None, None]
    mean = views_.mean((1, 2, 3), keepdim=True)
    return ((views_ - mean) * contrast + mean * brightness).clamp(0, 1)
