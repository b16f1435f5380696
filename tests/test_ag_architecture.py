"""Bare architectures at initialization: building at 32 px, and re-drawing parameters in place."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.errors import BenchError
from bench.models.architecture import (build_architecture, initializer, reinitialize,
                                       resolve_architecture, same_init_distribution)


def test_vit_is_built_at_32px_and_convnets_take_32px_as_they_are():
    vit = build_architecture("vit_tiny_patch16_224", resolution=32)
    assert tuple(vit.patch_embed.img_size) == (32, 32)
    resnet = build_architecture("resnet18", resolution=32)
    for model in (vit, resnet):
        assert not model.training
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_same_seed_same_weights():
    a, b = (build_architecture("resnet18", seed=5) for _ in range(2))
    c = build_architecture("resnet18", seed=6)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_timm_default_init_zeroes_the_last_norm_of_resnet_blocks():
    model = build_architecture("resnet18")
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(BenchError):
        build_architecture("no_such_net_xyz")


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224"])
def test_reinitialize_reproduces_a_fresh_construction(name):
    """initializer() compares a re-drawn instance with a fresh one, tensor by tensor."""
    draws = initializer(resolve_architecture(name, 32), torch.device("cpu"))
    assert draws.method == "reinitialize"
    gen = torch.Generator().manual_seed(2)
    first = [p.clone() for p in draws.draw(gen).parameters()]
    second = list(draws.draw(gen).parameters())
    changed = [not torch.equal(a, b) for a, b in zip(first, second) if a.std() > 0]
    assert all(changed)


def test_a_family_the_recipe_misses_falls_back_to_construction():
    # ConvNeXt initializes in its constructor with a module-level function (truncated
    # normal, std 0.02), which reset_parameters() does not reproduce
    arch = resolve_architecture("convnext_atto", 32)
    assert initializer(arch, torch.device("cpu")).method == "construct"


def test_distribution_check_detects_scale_and_shape_changes():
    def pair(init):
        a, b = nn.Linear(200, 100), nn.Linear(200, 100)
        nn.init.normal_(a.weight, std=0.05)
        init(b.weight)
        nn.init.zeros_(a.bias), nn.init.zeros_(b.bias)
        return same_init_distribution(a, b)

    assert pair(lambda w: nn.init.normal_(w, std=0.05)) == []
    assert pair(lambda w: nn.init.normal_(w, std=0.06)) == ["weight"]
    half_width = 0.05 * 3 ** 0.5  # a uniform with the same std
    assert pair(lambda w: nn.init.uniform_(w, -half_width, half_width)) == ["weight"]


def test_reinitialize_is_deterministic_in_its_generator():
    model = build_architecture("resnet18")
    reinitialize(model, torch.Generator().manual_seed(9))
    first = model.conv1.weight.clone()
    reinitialize(model, torch.Generator().manual_seed(9))
    assert torch.equal(first, model.conv1.weight)
