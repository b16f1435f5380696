"""The ``plane`` measure (SPEC section 5): data on a plane of G's eigenvectors, the headline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.measures import plane_invariance
from bench.measures.plane import (
    NOISE_STD,
    PRESETS,
    RADII,
    SPECS,
    _measurement,
    draw_plane_data,
    embed_plane,
    plane_directions,
    train_and_test,
)


def _orthonormal(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q


def test_directions_follow_spec():
    v = _orthonormal(40)
    u1, u2 = plane_directions(v, 0)
    assert torch.allclose(u1, v[:, 5].float()) and torch.allclose(u2, v[:, 6].float())
    _, u2 = plane_directions(v, 90)
    assert torch.allclose(u2, v[:, 36].float(), atol=1e-7)  # int(0.9 * 40)
    u1, u2 = plane_directions(v, 30)
    assert abs(float(u1 @ u2)) < 1e-6 and float(u2 @ u2) == pytest.approx(1, abs=1e-6)
    assert float(u2 @ v[:, 6].float()) == pytest.approx(math.cos(math.radians(30)), abs=1e-6)


def test_points_lie_on_two_circles_with_noise_orthogonal_to_the_plane():
    d, n = 50, 400
    u1, u2 = plane_directions(_orthonormal(d), 60)
    draw = draw_plane_data(n, d, torch.Generator().manual_seed(0), torch.device("cpu"))
    x = embed_plane(draw, u1, u2)
    basis = torch.stack([u1, u2])
    in_plane = x @ basis.T
    radius = in_plane.norm(dim=1)
    assert torch.allclose(radius, torch.tensor(RADII)[draw.labels], atol=1e-5)
    noise = x - in_plane @ basis
    assert (noise @ basis.T).abs().max() < 1e-4
    assert noise.pow(2).sum(1).mean().item() == pytest.approx(d - 2, rel=0.05)  # unit variance
    assert int(draw.labels.sum()) == n // 2
    scaled = embed_plane(draw, u1, u2, noise_std=0.1)
    assert torch.allclose(scaled @ basis.T, in_plane, atol=1e-5)  # the circles do not scale
    assert torch.allclose(scaled - in_plane @ basis, 0.1 * noise, atol=1e-5)


def test_presets_share_the_noise_scale_and_rows_record_it():
    assert {p.noise_std for p in PRESETS.values()} == {NOISE_STD}
    acc = np.full((2, 2), 0.9)
    m = _measurement(acc, PRESETS["quick"], "quick", 0, 32, "construct")
    assert m.params["noise_std"] == NOISE_STD and m.params["preset"] == "quick"
    assert m.params["radii"] == list(RADII)


def test_rotating_the_plane_keeps_the_draw():
    """Common random numbers: the same angles, labels and raw noise for every phi."""
    d = 30
    v = _orthonormal(d)
    draw = draw_plane_data(100, d, torch.Generator().manual_seed(1), torch.device("cpu"))
    x0, x90 = (embed_plane(draw, *plane_directions(v, phi)) for phi in (0, 90))
    c0 = x0 @ torch.stack(plane_directions(v, 0)).T
    c90 = x90 @ torch.stack(plane_directions(v, 90)).T
    assert torch.allclose(c0, c90, atol=1e-5)


def test_headline_by_hand():
    p = PRESETS["full"]
    acc = np.array([[0.9, 0.92, 0.88], [0.85, 0.86, 0.84], [0.8, 0.8, 0.8], [0.7, 0.72, 0.68]])
    m = _measurement(acc, p, "full", 0, 32, "construct")
    assert m.status == "ok" and m.value == pytest.approx(0.2 / 0.4)
    assert m.ci_low <= m.value <= m.ci_high and m.stderr > 0
    assert m.arrays["phi"] == [0.0, 30.0, 60.0, 90.0]
    assert m.arrays["acc_mean"] == pytest.approx([0.9, 0.85, 0.8, 0.7])
    assert m.arrays["acc_std"][2] == pytest.approx(0.0, abs=1e-12) and m.params["preset"] == "full"
    above = _measurement(acc[::-1].copy(), p, "full", 0, 32, "construct")
    assert above.value == 1.0 and above.ci_high == 1.0  # clipped


def test_chance_at_phi_zero_is_undefined():
    acc = np.full((4, 3), 0.5) + np.array([0.01, -0.01, 0.0])
    m = _measurement(acc, PRESETS["full"], "full", 0, 32, "construct")
    assert m.status == "undefined" and m.value is None and "chance" in m.reason
    assert m.arrays["acc_mean"]  # the curve is kept with the reason


def test_training_learns_a_task_the_model_can_solve():
    """The training loop itself: a linear model on linearly separable points learns it."""
    torch.manual_seed(0)
    x = torch.randn(600, 3, 2, 2)
    y = (x.flatten(1)[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    acc = train_and_test(model, x[:500], y[:500], x[500:], y[500:], 5, torch.Generator().manual_seed(0))
    assert acc > 0.9


def test_unknown_preset_is_a_user_error():
    with pytest.raises(BenchError):
        plane_invariance("gih_mlp", preset="medium")
    with pytest.raises(BenchError):
        plane_invariance("gih_mlp", preset="quick", noise_std=-1.0)


def test_spec_is_architecture_scope():
    [spec] = SPECS
    assert spec.scope == "architecture" and not spec.needs_images
    assert spec.defaults["preset"] == "full" and "noise_std" in spec.defaults


# -- the GIH checks, on the quick preset (CPU, minutes) --------------------------------

def _quick_curve(arch: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Accuracies at phi = 0 and 90 per seed (paired: common random numbers), and n_test."""
    m = plane_invariance(arch, preset="quick", seed=0)
    assert m.params["preset"] == "quick"
    phis = m.arrays["phi"]
    runs = np.array(m.arrays["acc_runs"]).reshape(len(phis), -1)
    print(f"{arch}: phi {phis} acc_mean {np.round(m.arrays['acc_mean'], 3).tolist()} "
          f"acc_std {np.round(m.arrays['acc_std'], 3).tolist()} value {m.value}")
    return runs[phis.index(0.0)], runs[phis.index(90.0)], m.n


def _difference_noise(acc0: np.ndarray, acc90: np.ndarray, n_test: int) -> float:
    """Standard error of mean(acc0) - mean(acc90) over seeds: the paired seed spread,
    floored by the binomial error of the test sets (which two seeds can underestimate)."""
    k = len(acc0)
    seed_se = np.std(acc0 - acc90, ddof=1) / math.sqrt(k)
    p = (acc0.mean() + acc90.mean()) / 2
    return max(seed_se, math.sqrt(2 * p * (1 - p) / (n_test * k)), 1 / n_test)


@pytest.mark.slow
def test_reference_mlp_curve_is_flat_within_seed_noise():
    """GIH: the MLP's law is rotation invariant, so it solves the plane at any orientation."""
    acc0, acc90 = _quick_curve("gih_mlp")[:2]
    n_test = PRESETS["quick"].n_test
    assert acc0.mean() > 0.8 and acc90.mean() > 0.8  # it learned, at both orientations
    # The seed spread of each orientation, pooled: what "flat within seed noise" is judged by.
    pooled = np.sqrt((np.var(acc0, ddof=1) + np.var(acc90, ddof=1)) / 2)
    se = max(pooled * math.sqrt(2 / len(acc0)), _difference_noise(acc0, acc90, n_test))
    assert abs(acc0.mean() - acc90.mean()) <= 3 * se


@pytest.mark.slow
def test_resnet20_curve_falls_with_phi():
    """GIH: a ResNet learns the plane best in the directions its average geometry favours."""
    acc0, acc90, n_test = _quick_curve("cifar_resnet20")
    assert acc0.mean() > 0.8  # the aligned plane is learned
    assert acc0.mean() - acc90.mean() > 3 * _difference_noise(acc0, acc90, n_test)


def test_batched_training_follows_the_loop():
    """All runs in one vmapped step give each run the accuracy its own loop gives."""
    from bench.measures.plane import train_and_test, train_and_test_batched

    d, n, n_test, runs, epochs = 24, 384, 400, 3, 4

    def mlp(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.GELU(), torch.nn.Linear(32, 2))

    gen = torch.Generator().manual_seed(0)
    x, x_test = torch.randn(runs, n, d, generator=gen), torch.randn(runs, n_test, d, generator=gen)
    label = lambda z: (z[..., 0] + 0.5 * z[..., 1] > 0).long()  # noqa: E731
    looped = [train_and_test(mlp(r), x[r], label(x[r]), x_test[r], label(x_test[r]), epochs,
                             torch.Generator().manual_seed(r)) for r in range(runs)]
    batched = train_and_test_batched([mlp(r) for r in range(runs)], x, label(x), x_test,
                                     label(x_test), epochs,
                                     [torch.Generator().manual_seed(r) for r in range(runs)])
    assert len(set(looped)) > 1 and 0.6 < min(looped) and max(looped) < 1  # learned, and differ
    assert batched == pytest.approx(looped, abs=1.5 / n_test)  # at most one prediction apart


def test_only_buffer_free_architectures_train_batched():
    import bench.models  # noqa: F401
    from bench.measures.plane import batchable
    from bench.models.architecture import build_architecture

    assert batchable(build_architecture("gih_mlp", 32, num_classes=2))
    assert not batchable(build_architecture("cifar_resnet20", 32, num_classes=2))
