"""The ``volume`` measure (SPEC section 7) against metrics known exactly, and on real networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _cifar import cifar10_probe, resnet20
from scipy.stats import spearmanr
from torch import nn

from bench.errors import BenchError
from bench.measures import ScoreContext, volume_element
from bench.measures.volume import (
    SPECS,
    _jvp_double_backward,
    _plane_basis,
    _push_forward,
    boundary_mask,
    plane_maps,
    spearman,
)


class OneLayer(nn.Module):
    """phi(x) = W x (+ b, ReLU) with W_ij ~ N(0, sigma_w^2), and a random linear head."""

    def __init__(self, d: int, width: int, relu: bool, sigma_w: float = 1.0, classes: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", sigma_w * torch.randn(width, d, generator=g))
        self.register_buffer("b", torch.randn(width, generator=g))
        self.register_buffer("head", 3 * torch.randn(classes, width, generator=g) / width**0.5)
        self.relu = relu

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1) @ self.W.T
        return torch.relu(h + self.b) if self.relu else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.head.T


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


# -- exact metrics --------------------------------------------------------------------------------

def test_linear_features_give_the_constant_volume_of_w_t_w():
    model = OneLayer(16, 64, relu=False).eval()
    triplet = images(3)
    maps = plane_maps(model, triplet, grid=6)
    # any orthonormal basis of the plane gives the same determinant
    U = torch.linalg.qr(torch.stack([triplet[1] - triplet[0], triplet[2] - triplet[0]]).flatten(1).T.double()).Q
    W = model.W.double()
    expected = 0.5 * torch.logdet(U.T @ W.T @ W @ U / 64).item()
    np.testing.assert_allclose(maps.logvol, expected, atol=1e-5)


def test_linear_features_make_magnification_undefined():
    m = volume_element(OneLayer(16, 64, relu=False).eval(), images(6), planes=2, grid=5)
    assert m.status == "undefined" and "constant" in m.reason
    assert len(m.arrays["plane0_logvol"]) == 25


def test_wide_random_relu_layer_gives_a_flat_metric_sigma_w_squared_over_two():
    sigma_w = 2.0
    triplet = images(3, seed=2)
    spreads, means = [], []
    for width in (256, 16384):
        maps = plane_maps(OneLayer(16, width, relu=True, sigma_w=sigma_w).eval(), triplet, grid=8)
        spreads.append(maps.logvol.std())
        means.append(maps.logvol.mean())
    # g -> (sigma_w^2 / 2) I, so l = 1/2 log det -> log(sigma_w^2 / 2); fluctuations ~ 1/sqrt(width)
    assert means[1] == pytest.approx(math.log(sigma_w**2 / 2), abs=0.02)
    assert spreads[1] < spreads[0] / 4


# -- pieces ------------------------------------------------------------------------------------------

def test_plane_basis_is_orthonormal_and_contains_the_triplet():
    x = images(3, seed=3).flatten(1).double()
    U = _plane_basis(x)
    assert U.T @ U == pytest.approx(torch.eye(2, dtype=torch.float64), abs=1e-12)
    origin = x.mean(0)
    back = origin + ((x - origin) @ U) @ U.T
    assert back == pytest.approx(x, abs=1e-12)


def test_grid_covers_the_triplet_with_the_margin():
    maps = plane_maps(OneLayer(16, 32, relu=True).eval(), images(3, seed=4), grid=9, margin=0.2)
    lo = np.array([maps.axis_x[0], maps.axis_y[0]])
    hi = np.array([maps.axis_x[-1], maps.axis_y[-1]])
    side = hi - lo
    assert side[0] == pytest.approx(side[1])                      # square grid
    spread = maps.triplet.max(0) - maps.triplet.min(0)
    assert side[0] == pytest.approx(spread.max() * 1.4)           # widened by 0.2 on each edge
    assert (maps.triplet >= lo).all() and (maps.triplet <= hi).all()


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 200).astype(float)
    b = a + rng.normal(size=200)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_boundary_points_have_a_four_neighbour_of_another_class():
    pred = np.array([[0, 0, 0],
                     [0, 0, 1],
                     [0, 0, 0]])
    expected = np.array([[0, 0, 1],
                         [0, 1, 1],
                         [0, 0, 1]], dtype=bool)
    assert (boundary_mask(pred.ravel(), 3) == expected.ravel()).all()


def test_double_backward_fallback_equals_forward_mode_on_a_convnet():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten()).eval()
    x, u = torch.rand(4, 3, 8, 8), torch.randn(2, 3, 8, 8)
    forward_mode = _push_forward(net, x, u)
    for k in range(2):
        out, reverse_twice = _jvp_double_backward(net, x, u[k].expand_as(x))
        assert torch.allclose(out, net(x))
        assert torch.allclose(forward_mode[k], reverse_twice, atol=1e-5)


def test_push_forward_falls_back_where_forward_mode_is_missing():
    class NoForwardMode(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    x, u = torch.rand(3, 5), torch.randn(2, 5)
    pushed = _push_forward(NoForwardMode.apply, x, u)
    assert torch.allclose(pushed, 2 * u[:, None].expand(2, 3, 5))


# -- the measure ----------------------------------------------------------------------------------------

def test_volume_element_rows_maps_and_seed():
    model = OneLayer(16, 128, relu=True).eval()
    probe = images(9, seed=5)
    m = volume_element(model, probe, planes=3, grid=6, seed=1)
    assert m.status == "ok" and -1 <= m.value <= 1 and m.ci_low <= m.value <= m.ci_high
    assert m.n == 3 and m.draws == 36 and m.params == {"planes": 3, "grid": 6, "margin": 0.15}
    assert {f"plane{k}_{a}" for k in (0, 1) for a in ("logvol", "entropy", "pred", "x", "y", "triplet")} \
        == set(m.arrays)
    assert len(m.arrays["plane1_pred"]) == 36 and len(m.arrays["plane0_triplet"]) == 6
    assert m.to_dict() == volume_element(model, probe, planes=3, grid=6, seed=1).to_dict()
    assert m.value != volume_element(model, probe, planes=3, grid=6, seed=2).value


def test_spec_runs_with_labels_and_picks_three_classes():
    model = OneLayer(16, 64, relu=True).eval()
    probe, labels = images(12, seed=6), torch.arange(12) % 4
    (spec,) = SPECS
    ctx = ScoreContext(entry=None, device=torch.device("cpu"), seed=0,
                       params=dict(spec.defaults, planes=2, grid=4), model=model, images=probe, labels=labels)
    (row,) = spec.run(ctx)
    assert row.measure == "volume" and row.params["planes"] == 2
    triplet = np.array(row.arrays["plane0_triplet"]).reshape(3, 2)
    assert len({tuple(p) for p in triplet.round(6)}) == 3


def test_too_few_or_duplicate_images_raise_bench_errors():
    model = OneLayer(16, 8, relu=True).eval()
    with pytest.raises(BenchError):
        volume_element(model, images(2))
    with pytest.raises(BenchError):
        volume_element(model, images(1).repeat(3, 1, 1, 1), planes=1, grid=3)


def test_training_mode_is_refused():
    with pytest.raises(BenchError):
        volume_element(nn.Sequential(nn.BatchNorm1d(3)).train(), torch.rand(3, 3), planes=1, grid=2)


# -- real networks (offline assets) ---------------------------------------------------------------------

@pytest.fixture
def cifar_probe(assets, tmp_path):
    return cifar10_probe(assets, tmp_path, per_class=10)


@pytest.mark.assets
@pytest.mark.slow
def test_training_magnifies_the_metric_near_decision_boundaries(assets, cifar_probe):
    """Zavatone-Veth et al.: training magnifies areas near decision boundaries.

    At initialization l falls where the entropy rises (Spearman about -0.6); after
    training the correlation is far higher but not reliably positive (about 0 on these 8
    coarse planes; on 300 images +0.22 [0.08, 0.35] with 8 planes of 32 x 32 and +0.02
    [-0.12, 0.18] with 16 planes of 24 x 24 and another seed). What training does
    robustly is magnify the boundaries: the geometric-mean volume element at boundary
    points is 1.5-1.8x that at interior points (intervals above 1), against 0.6-0.8x at init.
    """
    rows = {name: volume_element(resnet20(assets, trained=name == "trained"), cifar_probe.images, planes=8,
                                 grid=12, seed=0, labels=cifar_probe.labels)
            for name in ("trained", "init")}
    trained, init = rows["trained"], rows["init"]
    assert trained.status == init.status == "ok"
    assert trained.ci_low > init.ci_high                      # training raises l where H is high
    assert trained.extras["boundary_ratio_ci_low"] > 1        # boundary points are magnified
