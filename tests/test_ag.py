"""The ``ag`` and ``ag_trained`` measures (SPEC section 4) against cases with known answers."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.measures import Measurement, average_geometry
from bench.measures.ag import (SPECS, average_geometry_matrix, spectrum_statistics,
                               trained_geometry)

SIGMA = 2.0


class LinearScalar(nn.Module):
    """s(x) = w^T x with w ~ N(0, sigma^2 I): G = sigma^2 I exactly (SPEC section 4)."""

    def __init__(self, resolution: int = 8):
        super().__init__()
        self.w = nn.Linear(3 * resolution * resolution, 1, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """The model-specific init, by timm's convention, so draws re-initialize in place."""
        nn.init.normal_(self.w.weight, std=SIGMA)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w(x.flatten(1))


def linear(resolution: int) -> functools.partial:
    """A fresh-model factory for the linear scalar model at ``resolution``."""
    return functools.partial(LinearScalar, resolution)


# -- statistics of hand-computed spectra ------------------------------------------------------

@pytest.mark.parametrize("k", [1, 7, 50])
def test_uniform_spectrum_has_erank_and_participation_ratio_k(k):
    d = 64
    stats = spectrum_statistics(np.r_[np.full(k, 3.0), np.zeros(d - k)], d)
    assert stats["erank"] == pytest.approx(k)
    assert stats["participation_ratio"] == pytest.approx(k)
    assert stats["k90"] == math.ceil(0.9 * k - 1e-9)
    assert stats["k99"] == math.ceil(0.99 * k - 1e-9)
    assert stats["erank_d"] == pytest.approx(k / d)


def test_two_level_spectrum_by_hand():
    stats = spectrum_statistics(np.array([1.0, 3.0]), 2)  # unsorted on purpose
    assert stats["erank"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert stats["participation_ratio"] == pytest.approx(16 / 10)
    # 80% + 10% + 10%: the first two hold exactly 90%, all three are needed for 99%
    exact = spectrum_statistics(np.array([8.0, 1.0, 1.0]), 3)
    assert (exact["k90"], exact["k99"]) == (2, 3)


def test_round_off_negative_eigenvalues_count_as_zero():
    stats = spectrum_statistics(np.array([2.0, 2.0, -1e-15]), 3)
    assert stats["erank"] == pytest.approx(2.0)


def test_zero_spectrum_is_refused():
    with pytest.raises(ValueError):
        spectrum_statistics(np.zeros(4), 4)


# -- ag on models with known G ----------------------------------------------------------------

def test_linear_scalar_model_has_g_equal_sigma_squared_identity():
    n = 1024
    geometry = average_geometry_matrix(linear(4), resolution=4, n_inits=n, n_inputs=1)
    g = geometry.matrix()
    d = g.shape[0]
    # each entry of G is a mean of n products w_i w_j: sd sigma^2/sqrt(n) off the
    # diagonal, sigma^2 sqrt(2/n) on it
    assert torch.diagonal(g).mean().item() == pytest.approx(SIGMA ** 2, rel=4 * math.sqrt(2 / (n * d)))
    off = g - torch.diag(torch.diagonal(g))
    assert off.abs().max().item() < 5.5 * SIGMA ** 2 / math.sqrt(n)


def test_linear_scalar_model_ag_rank_approaches_one_as_samples_grow():
    small = average_geometry(linear(4), resolution=4, n_inits=32, n_inputs=1)
    large = average_geometry(linear(4), resolution=4, n_inits=1024, n_inputs=1)
    assert small.value < large.value
    # Marchenko-Pastur: erank/d ~ 1 - d / (2 n) for n samples of an isotropic vector
    assert large.value == pytest.approx(1 - 48 / (2 * 1024), abs=0.015)
    assert small.value < 0.67  # 32 samples span at most 32 of 48 dimensions
    # more samples per init cannot help: a linear model's gradient is the same everywhere
    assert small.extras["ag_rank_half1"] < small.value


def test_gaussian_mlp_ag_rank_near_one():
    m = average_geometry("gih_mlp", resolution=4, n_inits=512, n_inputs=1)  # d = 48
    assert m.status == "ok" and m.value > 0.9
    halves = (m.extras["ag_rank_half1"], m.extras["ag_rank_half2"])
    assert all(0.85 < h < m.value for h in halves)  # half the samples: lower, twice the bias
    assert m.extras["ag_rank_extrapolated"] > m.value
    assert m.extras["init_method"] in ("reinitialize", "construct")


def test_row_fields_and_spectrum():
    m = average_geometry(linear(4), resolution=4, n_inits=512, n_inputs=1, seed=3)
    assert isinstance(m, Measurement) and m.measure == "ag" and m.version == 1
    assert m.n == 512 and m.draws == 512 and m.extras["n_samples"] == 512
    spectrum = m.arrays["spectrum"]
    assert len(spectrum) == 48 and spectrum[0] == 1.0 and all(np.diff(spectrum) <= 0)
    assert m.ci_low <= m.value <= m.ci_high and m.stderr > 0
    for key in ("ag_erank", "ag_participation_ratio_d", "ag_k90_d", "ag_k99", "d", "trace"):
        assert key in m.extras
    assert m.params["input_std"] == 1e-3 and m.params["weights_ref"] == "timm-default-init"


def test_same_seed_same_values_and_seed_changes_them():
    a = average_geometry(linear(4), resolution=4, n_inits=64, n_inputs=2, seed=11)
    average_geometry_matrix.__globals__["_GEOMETRY_CACHE"].clear()  # recompute, not recall
    b = average_geometry(linear(4), resolution=4, n_inits=64, n_inputs=2, seed=11)
    c = average_geometry(linear(4), resolution=4, n_inits=64, n_inputs=2, seed=12)
    assert a.arrays["spectrum"] == b.arrays["spectrum"]
    assert a.value != c.value


def test_constant_model_is_undefined():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.ones(10))

        def forward(self, x):
            return self.b.expand(x.shape[0], 10) + 0 * x.flatten(1)[:, :1]

    m = average_geometry(Constant, resolution=4, n_inits=8, n_inputs=2)
    assert m.status == "undefined" and m.value is None and "does not depend" in m.reason


def test_bad_counts_are_user_errors():
    from bench.errors import BenchError
    with pytest.raises(BenchError):
        average_geometry(linear(32), n_inits=2)
    with pytest.raises(BenchError):
        average_geometry(linear(32), n_inputs=0, n_inits=8)


@pytest.mark.slow
def test_resnet20_geometry_is_anisotropic_and_the_mlps_isotropic_at_32px():
    """GIH: the ResNet's average geometry favours a few directions, the MLP's none.

    At sample counts a CPU test affords, erank itself is capped by the sample count
    (the MLP gives one direction per initialization), so the check is on the shape of
    the leading spectrum: the MLP's top eigenvalues are level (isotropic law, only
    sampling spread), the ResNet's fall steeply (measured: 1, 0.88, 0.69, 0.39 at 4096
    samples). The converged values are in docs/gih.md.
    """
    def leading_spectrum(arch: str) -> np.ndarray:
        g = average_geometry_matrix(arch, resolution=32, n_inits=64, n_inputs=8).matrix()
        lam = torch.linalg.eigvalsh(g).flip(0)[:10].numpy()
        return lam / lam[0]

    assert leading_spectrum("gih_mlp")[9] > 0.8
    assert leading_spectrum("cifar_resnet20")[3] < 0.6


# -- ag_trained ---------------------------------------------------------------------------

def _jacobian_rows(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, C, d) exact Jacobians, one image at a time (the naive reference)."""
    return torch.stack([torch.autograd.functional.jacobian(
        lambda x: model(x[None])[0], img).reshape(-1, img.numel()) for img in images])


def test_ag_trained_trace_is_gc_and_spectrum_is_that_of_the_formed_matrix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    images = torch.rand(40, 3, 3, 3)
    jac = _jacobian_rows(model, images)  # exact rows: weight 1
    spectra, d = trained_geometry(jac, 1.0)
    gc = (jac ** 2).sum((1, 2)).mean().item()
    assert d == 27
    assert spectra.full.sum() == pytest.approx(gc, rel=1e-5)
    formed = torch.einsum("ncd,nce->de", jac.double(), jac.double()) / 40
    expected = np.sort(torch.linalg.eigvalsh(formed).numpy())[::-1]
    top = np.sort(spectra.full)[::-1][:d]
    assert np.allclose(top, expected, rtol=1e-4, atol=1e-6 * expected[0])


def test_ag_trained_hutchinson_weight_reproduces_the_per_image_estimate():
    vjps = torch.randn(12, 4, 30)
    spectra, _ = trained_geometry(vjps, 1 / 4)
    per_image = (vjps.double() ** 2).sum(-1).mean(1)  # Hutchinson per-image ||J||_F^2
    assert spectra.full.sum() == pytest.approx(per_image.mean().item(), rel=1e-5)


def test_ag_trained_uses_the_gc_products():
    gc = pytest.importorskip("bench.measures.gc")
    from bench.measures._types import ScoreContext
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.GELU(), nn.Linear(8, 3)).eval()
    ctx = ScoreContext(entry=None, device=torch.device("cpu"), seed=0, params={}, model=model,
                       images=torch.rand(24, 3, 4, 4), requested=("gc", "ag_trained"))
    spec = {s.name: s for s in SPECS}["ag_trained"]
    [row] = spec.run(ctx)
    [gc_row] = {s.name: s for s in gc.SPECS}["gc"].run(ctx)
    assert row.extras["trace"] == pytest.approx(gc_row.value, rel=1e-5)
    assert row.extras["gc"] == pytest.approx(gc_row.value, rel=1e-9)
    assert row.params["n_vectors"] == 24 * 3 and row.params["exact"] is True
    assert 0 < row.value <= 24 * 3 / 48
