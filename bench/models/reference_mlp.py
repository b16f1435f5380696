"""The reference MLP of SPEC section 5 (GIH's control), registered with timm as ``gih_mlp``.

flatten(3 x 32 x 32) -> Linear(3072, 100) -> GELU -> Linear(100, 100) -> GELU ->
Linear(100, num_classes).

The first layer's weights are i.i.d. N(0, 1/fan_in) (std 1/sqrt(3072) at 32 px) and
its bias is zero. Any zero-mean i.i.d. Gaussian first layer makes the architecture's
law invariant under rotations of input space (W1 R has the law of W1 for orthogonal
R), which is why its average geometry is proportional to the identity (SPEC
section 4) and its plane-rotation curve is flat (SPEC section 5); the 1/fan_in
variance keeps the pre-activations O(1) for unit-variance inputs. The other layers
keep PyTorch's default initialization.

It has no trained checkpoint: its registry entry (``gih_mlp.init``) is the
architecture-level control, in its own input space (mean 0, std 1).

Stages are the two hidden layers (after each GELU); the second is also the
penultimate feature, as with timm models whose last stage output is
``forward_features``.
"""

from __future__ import annotations

import math

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from bench.models.staged import Stage, StagedClassifier, single_size

WIDTH = 100


class ReferenceMLP(StagedClassifier):
    """Two GELU hidden layers of width 100 on the flattened image."""

    def __init__(self, num_classes: int = 10, img_size: int | tuple[int, int] | None = None,
                 in_chans: int = 3, width: int = WIDTH):
        super().__init__()
        size = single_size(img_size, 32)
        in_features = in_chans * size * size
        self.num_classes = num_classes
        self.num_features = width
        self.fc1 = nn.Linear(in_features, width)
        self.act1 = nn.GELU()
        self.fc2 = nn.Linear(width, width)
        self.act2 = nn.GELU()
        self.head = nn.Linear(width, num_classes)
        self.feature_info = [dict(num_chs=width, reduction=1, module="act1"),
                             dict(num_chs=width, reduction=1, module="act2")]
        nn.init.normal_(self.fc1.weight, mean=0.0, std=1.0 / math.sqrt(in_features))
        nn.init.zeros_(self.fc1.bias)

    def stages(self) -> list[Stage]:
        return [lambda x: self.act1(self.fc1(x.flatten(1))),
                lambda x: self.act2(self.fc2(x))]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x


default_cfgs = generate_default_cfgs({
    "gih_mlp.init": dict(
        num_classes=10, input_size=(3, 32, 32), fixed_input_size=True, crop_pct=1.0,
        interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        first_conv="fc1", classifier="head", license="apache-2.0",
        paper_ids="arXiv:2410.12025",
        notes="architecture-level control of SPEC section 5; no trained weights",
    ),
})


@register_model
def gih_mlp(pretrained: bool = False, **kwargs) -> ReferenceMLP:
    return build_model_with_cfg(ReferenceMLP, "gih_mlp", pretrained, **kwargs)
