"""R_f on a real trained network: the CIFAR-10 ResNet-20 against its random initialization.

Petrini et al. (2021) find R_f of order 1 at initialization and much smaller after
training. On the 20 lossless CIFAR-10 test images of the assets, the trained network's
95% interval must lie entirely below the initialization's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.measures import relative_stability
from bench.models.loading import load_model, scored_model
from bench.registry import resolve

pytestmark = pytest.mark.assets


def _cifar10_images(assets) -> torch.Tensor:
    files = sorted((assets / "images" / "foolbox_samples").glob("cifar10_*.png"))
    assert len(files) == 20
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255


def test_trained_resnet20_is_much_more_stable_to_diffeos_than_at_init(assets):
    entry = resolve("cifar_resnet20.akamaster_c10")
    (weights,) = (assets / "weights" / "akamaster_resnet_cifar10").glob("resnet20-*.th")
    images = _cifar10_images(assets)
    trained = relative_stability(scored_model(entry, load_model(entry, str(weights))), images)
    init = relative_stability(scored_model(entry, load_model(entry, "random", seed=0)), images)
    assert trained.status == init.status == "ok"
    assert trained.ci_high < init.ci_low
    assert init.value > 0.3        # of order 1 at initialization
    assert trained.value < 0.3     # the paper's CIFAR-10 ResNets: R_f ~ (error / 0.2)^2 ~ 0.2
    assert not trained.extras["exceeds_t_max"]


def test_identity_median_estimator_is_below_one_on_natural_images(assets):
    # The mean estimator gives exactly 1 for the identity; the reference's median
    # estimator gives less on natural images, whose deformation differences are sparse
    # across pixels while the matched noise is spread evenly (SPEC: "about 0.7").
    m = relative_stability(lambda x: x.flatten(1), _cifar10_images(assets))
    assert m.value == pytest.approx(1.0, abs=1e-5)
    assert 0.2 < m.extras["rf_median"] < 0.9
