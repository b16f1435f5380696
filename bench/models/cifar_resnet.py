"""CIFAR-10 ResNet-20/32/44/56 (He et al. 2016, section 4.2), registered with timm.

The architecture of the paper's CIFAR experiments: a 3x3 stem of 16 channels, three
stages of n basic blocks with 16, 32 and 64 channels (depth = 6n + 2), "option A"
shortcuts (stride-2 subsampling plus zero-padding of the new channels, so no
shortcut has parameters), global average pooling and a 10-way linear layer.

Parameter names follow Yerlan Idelbayev's reference implementation
(github.com/akamaster/pytorch_resnet_cifar10), so its trained checkpoints load
strictly once their ``module.`` prefix is stripped. Those checkpoints expect [0, 1]
RGB inputs normalized with the ImageNet mean and std, which the pretrained config
below records. Initialization is the reference's: Kaiming-normal conv and linear
weights, BatchNorm at (1, 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from bench.models.staged import Stage, StagedClassifier

WIDTHS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the channels from ``planes // 2`` to ``planes``."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        downsample = stride != 1 or in_planes != planes
        self.shortcut = ZeroPadShortcut(planes) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(StagedClassifier):
    """ResNet-(6n+2) for 32x32 inputs; stages: stem, layer1, layer2, layer3."""

    classifier_name = "linear"

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3,
                 img_size: int | tuple[int, int] | None = None):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2, got {depth}")
        if in_chans != 3:
            raise ValueError(f"CIFAR ResNets take RGB inputs (in_chans=3), got {in_chans}")
        del img_size  # fully convolutional: any size works, 32x32 is the trained one
        blocks = (depth - 2) // 6
        self.num_classes = num_classes
        self.num_features = WIDTHS[-1]
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.act1 = nn.ReLU()
        in_planes = WIDTHS[0]
        for i, planes in enumerate(WIDTHS):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(in_planes if b == 0 else planes, planes, stride if b == 0 else 1)
                      for b in range(blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            in_planes = planes
        self.linear = nn.Linear(WIDTHS[-1], num_classes)
        self.feature_info = [dict(num_chs=WIDTHS[0], reduction=1, module="act1")] + [
            dict(num_chs=w, reduction=2 ** i, module=f"layer{i + 1}") for i, w in enumerate(WIDTHS)]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def stages(self) -> list[Stage]:
        def stem(x: torch.Tensor) -> torch.Tensor:
            return self.act1(self.bn1(self.conv1(x)))
        return [stem, self.layer1, self.layer2, self.layer3]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _cfg(depth: int, accuracy: float) -> dict:
    return dict(
        num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0,
        interpolation="bilinear", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv="conv1", classifier="linear", license="bsd-2-clause",
        paper_ids="arXiv:1512.03385", origin_url="https://github.com/akamaster/pytorch_resnet_cifar10",
        notes=f"CIFAR-10 ResNet-{depth}; reference test accuracy {accuracy}% (best_prec1)",
    )


# Test accuracies stored with the reference checkpoints (``best_prec1``).
_ACCURACY = {20: 91.78, 32: 92.78, 44: 93.14, 56: 93.62}

default_cfgs = generate_default_cfgs(
    {f"cifar_resnet{d}.akamaster_c10": _cfg(d, acc) for d, acc in _ACCURACY.items()})


def _create(depth: int, pretrained: bool, **kwargs) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, f"cifar_resnet{depth}", pretrained, depth=depth,
                                **kwargs)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _create(20, pretrained, **kwargs)


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _create(32, pretrained, **kwargs)


@register_model
def cifar_resnet44(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _create(44, pretrained, **kwargs)


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _create(56, pretrained, **kwargs)
