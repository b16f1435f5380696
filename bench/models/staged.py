"""The timm model interface for the project's own architectures.

``ScoredModel`` and the per-layer measures talk to every network through timm's
interface (``forward_features``, ``forward_head``, ``forward_intermediates``,
``feature_info``, ``get_classifier``). The architectures that timm lacks (CIFAR
ResNets, the reference MLP) are written as a list of stages, a pooling and a linear
classifier; this base class derives that whole interface from those three pieces,
so each architecture only says what its stages are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Stage = Callable[[torch.Tensor], torch.Tensor]


class StagedClassifier(nn.Module):
    """Stages, then ``pool`` to (N, num_features), then a linear classifier.

    Subclasses set ``num_classes``, ``num_features``, ``feature_info`` (one dict per
    stage: ``module``, ``num_chs``, ``reduction``), the classifier as the attribute
    named by ``classifier_name``, and implement :meth:`stages` and :meth:`pool`.
    """

    classifier_name = "head"
    num_classes: int
    num_features: int
    feature_info: list[dict[str, Any]]

    def stages(self) -> list[Stage]:
        """The stage functions in order; stage i's output is intermediate i."""
        raise NotImplementedError

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Last stage output -> (N, num_features) pre-logits."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages():
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's contract: (final features, [selected stage outputs]).

        ``indices``: all stages if None, the last n if an int, else the listed ones.
        ``norm`` is accepted for compatibility; these models have no final norm.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        stages = self.stages()
        take = take_indices(len(stages), indices)
        if stop_early:
            stages = stages[: max(take) + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh linear classifier for ``num_classes`` outputs (Identity when 0)."""
        self.num_classes = num_classes
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        setattr(self, self.classifier_name, head)


def take_indices(n: int, indices: int | list[int] | None) -> list[int]:
    """Absolute stage indices as timm selects them: all, the last n, or a list (negatives from the end)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"last-n ({indices}) is out of range (1 to {n})")
        return list(range(n - indices, n))
    absolute = [i + n if i < 0 else i for i in indices]
    if any(not 0 <= i < n for i in absolute):
        raise ValueError(f"indices {list(indices)} out of range for {n} stages")
    return absolute


def single_size(img_size: int | tuple[int, int] | None, default: int) -> int:
    """timm passes ``img_size`` as an int or an (H, W) pair; these models need H == W."""
    if img_size is None:
        return default
    if isinstance(img_size, int):
        return img_size
    h, w = img_size
    if h != w:
        raise ValueError(f"square inputs only, got img_size={img_size}")
    return int(h)
