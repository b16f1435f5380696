"""Geometric complexity (SPEC section 2) against cases with known answers."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

from bench.errors import BenchError
from bench.measures import ScoreContext, geometric_complexity
from bench.measures.gc import SPECS, cached_jacobian_sample, jacobian_sample
from bench.models.scored import ScoredModel, prepare_for_measurement


class Affine(nn.Module):
    """f(x) = W flatten(x) + b, whose GC is ||W||_F^2 at every input."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


class Scaled(nn.Module):
    def __init__(self, f: nn.Module, a: float):
        super().__init__()
        self.f, self.a = f, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * self.f(x)


def tiny_convnet(classes: int = 4, seed: int = 0) -> nn.Module:
    """A nonlinear net with a batch norm whose running statistics are not trivial."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Tanh(),
        nn.Conv2d(6, 8, 3, stride=2), nn.GELU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes))
    bn = net[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return prepare_for_measurement(net)


def rand_images(n: int, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def brute_force_sq_norms(f: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, C) squared norms of the Jacobian rows, one image at a time."""
    rows = []
    for x in images:
        jac = torch.autograd.functional.jacobian(lambda z: f(z[None])[0], x)  # (C, 3, H, W)
        rows.append(jac.flatten(1).double().square().sum(1))
    return torch.stack(rows)


# -- the affine case: GC = ||W||_F^2 -----------------------------------------------------

@pytest.fixture
def affine() -> Affine:
    g = torch.Generator().manual_seed(5)
    return Affine(torch.randn(20, 48, generator=g), torch.randn(20, generator=g)).eval()


def test_affine_exact_equals_frobenius_norm(affine):
    expected = affine.weight.double().square().sum().item()
    m = geometric_complexity(affine, rand_images(6, size=4))
    assert m.params == {"probes": 8, "exact": True, "output": "logits"}
    assert m.extras["estimator"] == "exact" and m.extras["n_outputs"] == 20
    assert m.value == pytest.approx(expected, rel=1e-6)
    assert m.stderr == pytest.approx(0, abs=1e-6 * expected)  # the same Jacobian at every image
    assert m.ci_low == pytest.approx(expected, rel=1e-6) and m.ci_high == pytest.approx(expected, rel=1e-6)
    assert m.extras["gc_per_output"] == pytest.approx(expected / 20, rel=1e-6)
    assert (m.n, m.draws, m.measure, m.version, m.status) == (6, 1, "gc", 1, "ok")


def test_affine_hutchinson_interval_holds_truth_and_is_tight(affine):
    n, k = 400, 8
    m = geometric_complexity(affine, rand_images(n, size=4), probes=k, exact=False, seed=3)
    expected = affine.weight.double().square().sum().item()
    assert m.params["exact"] is False and m.extras["estimator"] == "hutchinson" and m.draws == k
    assert m.ci_low <= expected <= m.ci_high
    # For an affine f all spread is probe noise: Var ||W^T v||^2 = 2 sum_{a != b} (W W^T)_ab^2,
    # so the bootstrap stderr must match sqrt(Var / (k n)) (not be absurdly wide or narrow).
    gram = affine.weight.double() @ affine.weight.double().T
    var_one_probe = 2 * (gram.square().sum() - gram.diagonal().square().sum()).item()
    assert m.stderr == pytest.approx(math.sqrt(var_one_probe / (k * n)), rel=0.2)
    assert m.extras["probe_spread"] == pytest.approx(var_one_probe, rel=0.2)
    assert m.ci_high - m.ci_low == pytest.approx(2 * 1.96 * m.stderr, rel=0.15)


def test_probes_are_rademacher_and_differ_between_images():
    # With W = [I | 0], each kept product g = W^T v shows the probe v itself.
    c, d = 6, 48
    f = Affine(torch.eye(c, d), torch.zeros(c)).eval()
    s = jacobian_sample(f, rand_images(50, size=4), probes=5, exact=False, seed=2, keep_vjps=True)
    v = s.vjps[..., :c]
    assert torch.all(s.vjps[..., c:] == 0)
    assert torch.all(v.abs() == 1)
    assert abs(v.mean().item()) < 4 / math.sqrt(v.numel())
    assert not torch.equal(v[0], v[1]) and not torch.equal(v[:, 0], v[:, 1])
    assert torch.allclose(s.per_image, torch.full((50,), float(c), dtype=torch.float64))


# -- nonlinear nets ---------------------------------------------------------------------------

def test_scaling_rule():
    f, a = tiny_convnet(), 2.5
    images = rand_images(5)
    for exact in (True, False):
        base = geometric_complexity(f, images, probes=3, exact=exact, seed=1)
        scaled = geometric_complexity(Scaled(f, a).eval(), images, probes=3, exact=exact, seed=1)
        assert scaled.value == pytest.approx(a**2 * base.value, rel=1e-5)
        assert scaled.stderr == pytest.approx(a**2 * base.stderr, rel=1e-4)
    assert base.value > 0


def test_exact_matches_brute_force_jacobian():
    f = tiny_convnet(classes=4)
    images = rand_images(5)
    reference = brute_force_sq_norms(f, images)
    s = jacobian_sample(f, images, exact=None)
    assert s.exact and s.probes == 4 and s.n_outputs == 4
    torch.testing.assert_close(s.per_probe, reference, rtol=1e-5, atol=0)
    torch.testing.assert_close(s.per_image, reference.sum(1), rtol=1e-5, atol=0)


def test_batched_products_equal_one_image_at_a_time():
    """Per-image independence in eval mode: the batch trick changes nothing."""
    f = tiny_convnet()
    images = rand_images(7)
    for exact in (True, False):
        together = jacobian_sample(f, images, probes=3, exact=exact, batch_size=7)
        alone = jacobian_sample(f, images, probes=3, exact=exact, batch_size=1)
        torch.testing.assert_close(together.per_probe, alone.per_probe, rtol=1e-5, atol=0)


def test_training_mode_is_refused():
    f = tiny_convnet().train()
    with pytest.raises(BenchError, match="training mode"):
        geometric_complexity(f, rand_images(2))


def test_hutchinson_is_unbiased_per_image():
    f = tiny_convnet(classes=6)
    images = rand_images(3)
    exact = jacobian_sample(f, images, exact=True).per_image
    # Each image repeated r times gets r * k independent probes, in one batch.
    r, k = 400, 5
    hutch = jacobian_sample(f, images.repeat_interleave(r, 0), probes=k, exact=False, seed=9,
                            batch_size=3 * r)
    draws = hutch.per_probe.reshape(3, r * k)
    estimate, stderr = draws.mean(1), draws.std(1) / math.sqrt(r * k)
    assert torch.all((estimate - exact).abs() < 4 * stderr), (estimate, exact, stderr)
    # the probe noise is real (so the agreement is not trivial) and the bound is tight
    assert torch.all(draws.std(1) > 0.05 * exact) and torch.all(stderr < 0.05 * exact)


def test_same_seed_same_values_other_seed_other_values():
    f, images = tiny_convnet(classes=6), rand_images(4)
    a = jacobian_sample(f, images, probes=4, exact=False, seed=11)
    b = jacobian_sample(f, images, probes=4, exact=False, seed=11)
    c = jacobian_sample(f, images, probes=4, exact=False, seed=12)
    assert torch.equal(a.per_probe, b.per_probe)
    assert not torch.allclose(a.per_image, c.per_image)
    assert geometric_complexity(f, images, probes=4, exact=False, seed=11).value == \
        geometric_complexity(f, images, probes=4, exact=False, seed=11).value
    e1 = jacobian_sample(f, images, exact=True, seed=11)
    e2 = jacobian_sample(f, images, exact=True, seed=12)
    assert torch.equal(e1.per_image, e2.per_image)  # nothing random in the exact estimator


@pytest.mark.parametrize("exact", [True, False])
def test_kept_products_give_the_same_trace(exact):
    f, images = tiny_convnet(classes=5), rand_images(3)
    s = jacobian_sample(f, images, probes=4, exact=exact, seed=4, keep_vjps=True)
    k = 5 if exact else 4
    assert s.vjps.shape == (3, k, 3 * 8 * 8) and s.vjps.dtype == torch.float32
    assert s.per_probe.shape == (3, k) and s.per_image.dtype == torch.float64
    # E_x[J^T J] ~ mean_i probe_weight * sum_j g g^T has trace GC (what ag_trained uses)
    trace = s.probe_weight * s.vjps.double().square().sum(-1).sum(1)
    torch.testing.assert_close(trace, s.per_image, rtol=1e-6, atol=0)
    if not exact:
        torch.testing.assert_close(s.vjps.double().square().sum(-1).mean(1), s.per_image,
                                   rtol=1e-6, atol=0)
    assert jacobian_sample(f, images, probes=4, exact=exact).vjps is None


def test_exact_products_are_the_jacobian_rows():
    f, images = tiny_convnet(classes=3), rand_images(2)
    s = jacobian_sample(f, images, exact=True, keep_vjps=True)
    jac = torch.autograd.functional.jacobian(lambda z: f(z[None])[0], images[1]).flatten(1)
    torch.testing.assert_close(s.vjps[1], jac, rtol=1e-5, atol=1e-7)


# -- undefined and degenerate cases -----------------------------------------------------------

class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * x.flatten(1)[:, :3] + 1


class Exploding(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3] / 0


def test_constant_function_has_zero_gc():
    m = geometric_complexity(Constant().eval(), rand_images(4), probes=2, exact=False)
    assert (m.status, m.value, m.stderr) == ("ok", 0.0, 0.0)


def test_non_finite_outputs_make_an_undefined_row():
    m = geometric_complexity(Exploding().eval(), rand_images(4))
    assert m.status == "undefined" and m.value is None
    assert "non-finite" in m.reason and "4 of 4" in m.reason


def test_bad_arguments():
    f = tiny_convnet()
    with pytest.raises(ValueError, match="probes"):
        geometric_complexity(f, rand_images(2), probes=0, exact=False)
    with pytest.raises(ValueError, match="non-empty"):
        geometric_complexity(f, rand_images(0))
    with pytest.raises(ValueError, match="one output per image"):
        geometric_complexity(lambda x: x.sum(), rand_images(2))


# -- timm models, ScoredModel and the bench score adapter ------------------------------------

@pytest.fixture(scope="module")
def scored_timm() -> ScoredModel:
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    return prepare_for_measurement(ScoredModel(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))


def test_gc_embedding_of_a_timm_model(scored_timm):
    images = rand_images(3, size=32)
    m = geometric_complexity(scored_timm.features, images, probes=4, exact=False, output="embedding")
    assert m.measure == "gc_embedding" and m.status == "ok"
    assert m.params == {"probes": 4, "exact": False, "output": "embedding"}
    assert m.extras["n_outputs"] == scored_timm.net.num_features
    assert math.isfinite(m.value) and m.value > 0


class Bar:
    def __init__(self, total=None, desc=None):
        self.total, self.desc, self.count, self.closed = total, desc, 0, False

    def update(self, n):
        self.count += n

    def close(self):
        self.closed = True


class Calls(nn.Module):
    """Counts forward passes of a wrapped scored model."""

    def __init__(self, model: ScoredModel):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)

    def features(self, x):
        self.calls += 1
        return self.model.features(x)


def make_context(model, images, *, params=None, requested=("gc",), seed=0):
    bars = []

    def progress(total=None, desc=None):
        bars.append(Bar(total, desc))
        return bars[-1]

    ctx = ScoreContext(entry=SimpleNamespace(id="test_resnet.random"), device=torch.device("cpu"),
                       seed=seed, params=dict(params or {}), model=model, images=images,
                       batch_size=2, requested=requested, progress=progress)
    return ctx, bars


def test_measure_specs_run_from_the_cached_sample(scored_timm):
    specs = {s.name: s for s in SPECS}
    assert set(specs) == {"gc", "gc_embedding"}
    assert specs["gc"].defaults == {"probes": 8, "exact": None}
    images = rand_images(3, size=32)
    model = Calls(scored_timm).eval()
    ctx, bars = make_context(model, images, params=specs["gc"].defaults, seed=7)

    [row] = specs["gc"].run(ctx)
    direct = geometric_complexity(scored_timm, images, seed=7)
    assert row.value == pytest.approx(direct.value, rel=1e-6)
    assert row.params == {"probes": 8, "exact": True, "output": "logits"}  # 10 classes: exact
    assert ctx.cache["jacobian_sample:logits"].vjps is None  # no ag_trained requested
    assert bars[0].total == 3 and bars[0].count == 3 and bars[0].closed

    calls = model.calls
    assert specs["gc"].run(ctx)[0].value == row.value
    assert model.calls == calls  # reused, not recomputed

    ctx.params = {"probes": 2, "exact": False}
    [row_embedding] = specs["gc_embedding"].run(ctx)
    assert row_embedding.measure == "gc_embedding" and row_embedding.params["exact"] is False
    assert row_embedding.value > 0 and "jacobian_sample:embedding" in ctx.cache


def test_vjps_are_kept_for_ag_trained_and_reused(scored_timm):
    images = rand_images(2, size=32)
    model = Calls(scored_timm).eval()
    ctx, _ = make_context(model, images, params={"probes": 3, "exact": False},
                          requested=("gc", "ag_trained"))
    SPECS[0].run(ctx)
    calls = model.calls
    ctx.params = {}  # ag_trained's own parameters do not name the estimator
    sample = cached_jacobian_sample(ctx)
    assert model.calls == calls
    assert sample.vjps.shape == (2, 3, 3 * 32 * 32)
    ctx.params = {"probes": 5, "exact": False}  # a different request is computed anew
    assert cached_jacobian_sample(ctx).probes == 5


@pytest.mark.parametrize("params", [{"probes": 0}, {"probes": "many"}, {"exact": "yes"}])
def test_bad_protocol_parameters(scored_timm, params):
    ctx, _ = make_context(scored_timm, rand_images(1, size=32), params=params)
    with pytest.raises(BenchError):
        SPECS[0].run(ctx)


@pytest.mark.gpu
def test_cuda_matches_cpu(scored_timm):
    images = rand_images(3, size=32)
    cpu = jacobian_sample(scored_timm, images, probes=4, exact=False, seed=1)
    cuda = jacobian_sample(copy.deepcopy(scored_timm).to("cuda"), images, probes=4, exact=False,
                           seed=1)
    torch.testing.assert_close(cuda.per_probe, cpu.per_probe, rtol=1e-3, atol=0)
