"""The scored function of SPEC section 1.

Every checkpoint-level measure acts on images in [0, 1] RGB pixel space. The
model's own mean/std normalization is therefore part of the function, so that one
input space serves all models: a Jacobian or a noise level means the same thing for
a model normalized with ImageNet statistics and one normalized with 0.5/0.5.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ScoredModel(nn.Module):
    """``f(x) = net((x - mean) / std)`` for x in [0, 1], with access to features and stages.

    ``forward`` gives the logits, ``features`` the penultimate features (timm
    ``forward_head(..., pre_logits=True)``), and ``stages`` the named stage outputs
    (timm ``forward_intermediates``) followed by the penultimate features and the
    logits, for per-layer measures.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, flattened to (N, width)."""
        feats = self.net.forward_features(self.normalize(x))
        return self.net.forward_head(feats, pre_logits=True).flatten(1)

    def stage_names(self) -> list[str]:
        """Names of the stage outputs that :meth:`stages` returns, in depth order."""
        info = getattr(self.net, "feature_info", None)
        names = [f"stage:{i['module']}" for i in info] if info else []
        return names + ["pre_logits", "logits"]

    def stages(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """(name, output) for each stage, then the penultimate features and the logits."""
        z = self.normalize(x)
        names = self.stage_names()
        if hasattr(self.net, "forward_intermediates") and len(names) > 2:
            final, inter = self.net.forward_intermediates(z)
            outs = list(zip(names[:-2], inter))
        else:
            final, outs = self.net.forward_features(z), []
        pre = self.net.forward_head(final, pre_logits=True).flatten(1)
        logits = self.net.get_classifier()(pre) if _has_plain_head(self.net) else self.net.forward_head(final)
        return outs + [("pre_logits", pre), ("logits", logits)]


def _has_plain_head(net: nn.Module) -> bool:
    """True when the classifier is a plain layer applied to the pre-logits."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    return isinstance(head, (nn.Linear, nn.Identity))


def relative_depths(n: int) -> list[float]:
    """Evenly spaced relative depths in [0, 1] for ``n`` layers (input = 0, logits = 1)."""
    return [i / (n - 1) if n > 1 else 1.0 for i in range(n)]


def prepare_for_measurement(model: nn.Module, allow_tf32: bool = False) -> nn.Module:
    """Put a model in the measurement state of SPEC section 1.

    eval() (dropout and drop-path off), float32, no gradient on parameters (the
    measures differentiate with respect to inputs only), and TF32 / reduced-precision
    matmul off unless explicitly allowed.
    """
    model.eval().float()
    for p in model.parameters():
        p.requires_grad_(False)
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("highest" if not allow_tf32 else "high")
    return model
