"""Relative stability R_f (SPEC section 3) on functions whose answer is known exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch

import bench.models  # noqa: F401  (registers cifar_resnet20)
from bench.errors import BenchError
from bench.measures import ScoreContext, measure_specs, relative_stability
from bench.measures.rf import (LOGITS, SWEEP_DELTAS, _pair_statistic, make_protocol,
                               relative_stability_by_layer, stability_sample)
from bench.models.scored import ScoredModel, prepare_for_measurement


def _images(n: int = 10, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (noise blurred by upsampling), so diffeos move them."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


def _tiny_resnet(seed: int = 0) -> ScoredModel:
    torch.manual_seed(seed)
    net = timm.create_model("cifar_resnet20")
    return prepare_for_measurement(ScoredModel(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))


# -- known exactly ----------------------------------------------------------------------

def test_identity_has_rf_one_because_noise_norm_matches_the_deformation():
    images = _images()
    m = relative_stability(identity, images, seed=3)
    assert m.status == "ok" and m.measure == "rf" and m.n == 10 and m.draws == 2
    # ||tau x - x||^2 = ||eta||^2 per image and draw, so D_f = G_f up to float32 rounding
    assert m.value == pytest.approx(1.0, abs=1e-5)
    assert m.ci_low <= 1.0 <= m.ci_high and m.ci_high - m.ci_low < 1e-4
    assert m.extras["d_f"] == pytest.approx(m.extras["g_f"], rel=1e-5)
    sample = stability_sample(lambda x: [("id", identity(x))], images,
                              make_protocol(images, 3, 1.0, 2), seed=3)
    terms = sample.terms["id"]
    np.testing.assert_allclose(terms.d, terms.g, rtol=1e-5)
    assert (terms.d > 0).all()


def test_affine_map_of_outputs_leaves_everything_unchanged():
    images = _images()
    w = torch.randn(3 * 16 * 16, 7, generator=torch.Generator().manual_seed(1))

    def f(x):
        return x.flatten(1) @ w

    def g(x):
        return -2.5 * f(x) + 4.0

    a, b = relative_stability(f, images, seed=5), relative_stability(g, images, seed=5)
    for key in ("value", "ci_low", "ci_high", "stderr"):
        assert getattr(b, key) == pytest.approx(getattr(a, key), rel=1e-4)
    for key in ("d_f", "g_f", "d_f_ci_low", "g_f_ci_high", "rf_median"):
        assert b.extras[key] == pytest.approx(a.extras[key], rel=1e-4)


@pytest.mark.parametrize("value", [0.0, 3.7])
def test_constant_model_gives_an_undefined_row(value):
    m = relative_stability(lambda x: torch.full((x.shape[0], 5), value), _images())
    assert m.status == "undefined" and m.value is None
    assert "constant" in m.reason
    assert m.params["cutoff"] == 3 and m.n == 10


def test_pair_mean_is_the_closed_form_of_the_mean_over_distinct_pairs():
    images = _images(7)
    w = torch.randn(3 * 16 * 16, 4, generator=torch.Generator().manual_seed(2))
    sample = stability_sample(lambda x: [("o", x.flatten(1) @ w + 100.0)], images,
                              make_protocol(images, 3, 1.0, 1), seed=0, keep=("o",),
                              batch_size=3)
    terms = sample.terms["o"]
    out = torch.from_numpy(terms.outputs)
    brute = np.mean([float((out[i] - out[j]).pow(2).sum())
                     for i, j in itertools.permutations(range(7), 2)])
    assert terms.pair_mean() == pytest.approx(brute, rel=1e-9)

    # on a resample with duplicates, the statistic averages over pairs of distinct images
    d_i = terms.d[:, 0].mean(1)
    rows = np.stack([d_i, terms.g[:, 0].mean(1), np.arange(7)], axis=1)
    pick = np.array([0, 0, 3, 5, 5, 5, 6])
    pairs = [(i, j) for i, j in itertools.product(pick, pick) if i != j]
    pair = np.mean([float((out[i] - out[j]).pow(2).sum()) for i, j in pairs])
    stat = _pair_statistic(terms, 0)(rows[pick][None])[0]
    assert stat == pytest.approx(d_i[pick].mean() / pair, rel=1e-9)
    assert _pair_statistic(terms, 0)(rows[None])[0] == pytest.approx(d_i.mean() / brute, rel=1e-9)


# -- randomness -------------------------------------------------------------------------

def test_same_seed_same_values_whatever_the_batch_size():
    images = _images(9)
    f = _tiny_resnet()
    a = relative_stability(f, images, seed=11, batch_size=2)
    b = relative_stability(f, images, seed=11, batch_size=9)
    assert a.value == pytest.approx(b.value, rel=1e-6)
    assert a.extras["d_f"] == pytest.approx(b.extras["d_f"], rel=1e-6)
    c = relative_stability(f, images, seed=12, batch_size=9)
    assert c.value != pytest.approx(a.value, rel=1e-3)


# -- sweep, layers, bench score ------------------------------------------------------------

def test_sweep_stores_the_curve_and_flags_t_max():
    images = _images(6)
    f = _tiny_resnet()
    m = relative_stability(f, images, sweep=SWEEP_DELTAS, seed=1)
    assert m.arrays["delta"] == [0.5, 1.0, 2.0, 4.0]
    assert m.arrays["rf"][1] == m.value  # the headline is the point at delta = 1
    assert m.arrays["rf_ci_low"][1] == m.ci_low
    assert m.params["sweep_deltas"] == [0.5, 1.0, 2.0, 4.0]
    single = relative_stability(f, images, delta=4.0, seed=1)
    # common random numbers: the sweep's point at 4 is the single run at 4
    assert m.arrays["rf"][3] == pytest.approx(single.value, rel=1e-9)
    # at n = 16, c = 3, T_max is reached at n / (pi c) = 1.70 px
    assert single.extras["exceeds_t_max"] and not m.extras["exceeds_t_max"]
    t = m.arrays["t"]
    assert t[3] / t[0] == pytest.approx(64.0)


def test_layers_give_one_row_per_stage_and_the_logits_row_is_the_headline():
    images = _images(5, size=32)
    model = _tiny_resnet()
    rows = relative_stability_by_layer(model, images, draws=1, seed=2)
    names = [r.layer for r in rows]
    assert names == model.stage_names()
    depths = [r.depth for r in rows]
    assert depths[0] == 0.0 and depths[-1] == 1.0 and depths == sorted(depths)
    headline = relative_stability(model, images, draws=1, seed=2)
    assert rows[-1].value == pytest.approx(headline.value, rel=1e-6)
    assert all(r.status == "ok" and r.value > 0 for r in rows)


def test_bench_score_spec_runs_headline_sweep_and_layers():
    spec = measure_specs()["rf"]
    assert spec.defaults == {"cutoff": 3, "delta": 1.0, "draws": 2, "sweep": False, "layers": False}
    model = _tiny_resnet()
    params = {**spec.defaults, "sweep": True, "layers": True, "draws": 1}
    ctx = ScoreContext(entry=None, device=torch.device("cpu"), seed=4, params=params,
                       model=model, images=_images(4, size=32))
    rows = spec.run(ctx)
    head, layers = rows[0], rows[1:]
    assert head.layer is None and head.arrays["delta"] == list(SWEEP_DELTAS)
    assert [r.layer for r in layers] == model.stage_names()
    for key in ("cutoff", "delta", "draws", "resolution", "t"):
        assert key in head.params
    assert head.params["resolution"] == 32
    assert head.value == pytest.approx(layers[-1].value, rel=1e-9)
    assert "rf_median" in head.extras and LOGITS == layers[-1].layer


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"cutoff": 1}, "cutoff"), ({"delta": 0.0}, "delta"), ({"draws": 0}, "draws"),
])
def test_bad_parameters_are_bench_errors(kwargs, match):
    with pytest.raises(BenchError, match=match):
        relative_stability(identity, _images(3), **kwargs)


def test_bad_images_and_training_mode_are_bench_errors():
    with pytest.raises(BenchError, match="at least 2"):
        relative_stability(identity, _images(1))
    with pytest.raises(BenchError, match="square"):
        relative_stability(identity, torch.rand(3, 3, 16, 20))
    with pytest.raises(BenchError, match="training mode"):
        relative_stability(_tiny_resnet().train(), _images(3, size=32))


@pytest.mark.gpu
def test_runs_on_cuda_deterministically():
    images = _images(6)
    model = _tiny_resnet().cuda()
    a = relative_stability(model, images, seed=3)
    b = relative_stability(model, images, seed=3, batch_size=4)
    assert a.value == pytest.approx(b.value, rel=1e-5)
    assert relative_stability(identity, images.cuda(), seed=3).value == pytest.approx(1.0, abs=1e-5)
