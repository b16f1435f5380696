"""The probe preprocessing of SPEC section 1: timm's eval transform without the normalization.

Measures act on [0, 1] pixel space and the model's mean/std normalization lives
inside the scored function (:class:`bench.models.scored.ScoredModel`), so the
probe images go through exactly what timm would do at evaluation (resize, centre
crop, interpolation, at the model's eval ``input_size``) except the final
``Normalize``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

from bench.registry.schema import DataConfig

ImageTransform = Callable[[Image.Image], torch.Tensor]


def timm_data_config(data_config: DataConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """A registry ``DataConfig`` or a timm-style dict as keyword arguments for timm.

    None means timm's defaults (224 px, bicubic, crop 0.875, ImageNet mean/std).
    """
    from timm.data import resolve_data_config

    if data_config is None:
        return resolve_data_config(pretrained_cfg={"input_size": (3, 224, 224)})
    if isinstance(data_config, DataConfig):
        return data_config.to_timm()
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return {k: data_config[k] for k in keys if k in data_config}


def eval_transform(data_config: DataConfig | Mapping[str, Any] | None) -> ImageTransform:
    """PIL RGB image -> float32 (3, H, W) in [0, 1], as timm's eval transform before Normalize."""
    from timm.data import create_transform

    full = create_transform(**timm_data_config(data_config), is_training=False)
    steps = list(full.transforms)
    if not steps or not isinstance(steps[-1], T.Normalize) or any(
            isinstance(s, T.Normalize) for s in steps[:-1]):
        raise RuntimeError(f"unexpected timm eval transform (expected one final Normalize): {full}")
    return T.Compose(steps[:-1])
