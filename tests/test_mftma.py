"""The ``mftma`` measure (SPEC section 6): solver, centre step, formulas, reference example, layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _cifar import cifar10_probe, resnet20
from scipy.optimize import nnls

from bench.errors import BenchError
from bench.measures import ScoreContext, manifold_capacity
from bench.measures._center_corr import center_structure
from bench.measures._projection import RandomProjection
from bench.measures._qp import _interior_point, kkt_residual, solve_projections
from bench.measures.mftma import (
    SPECS,
    _anchor_problems,
    _solve_anchors,
    manifold_capacity_profile,
)


def reference_projection(S: np.ndarray, t: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """min ||v - t|| s.t. S v <= -kappa by Lawson-Hanson NNLS on the dual, one problem at a time.

    The last coordinate of every point is 1, so v' = v + kappa e_last turns the margin
    into kappa = 0: min ||S^T z - t'|| over z >= 0 with t' = t + kappa e_last.
    """
    shift = np.zeros_like(t)
    shift[-1] = kappa
    z, _ = nnls(S.T, t + shift, maxiter=50 * S.shape[0])
    return t - S.T @ z, z


def manifold_points(P: int, M: int, d: int, seed: int, scales: tuple[float, ...] = (0.3, 3.0)) -> torch.Tensor:
    """(P, M, d) points with a last coordinate 1 and anisotropic spreads, float64."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.logspace(np.log10(scales[0]), np.log10(scales[1]), d - 1, dtype=torch.float64)
    u = torch.randn(P, M, d - 1, generator=g, dtype=torch.float64) * spread
    return torch.cat([u, torch.ones(P, M, 1, dtype=torch.float64)], -1)


# -- the batched solver against a per-problem active-set reference --------------------------------

@pytest.mark.parametrize("kappa", [0.0, 0.5])
@pytest.mark.parametrize("scales", [(0.3, 3.0), (1e-3, 10.0)])
def test_solver_matches_per_problem_active_set_solver(kappa, scales):
    S = manifold_points(3, 12, 9, seed=1, scales=scales)
    t = torch.randn(3, 40, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    solution = solve_projections(S, t, kappa)
    assert solution.residual.max() < 1e-9                  # round-off of Q with condition number 1e8
    for p in range(3):
        for k in range(40):
            v, _ = reference_projection(S[p].numpy(), t[p, k].numpy(), kappa)
            np.testing.assert_allclose(solution.v[p, k].numpy(), v, atol=1e-9)


def test_solver_handles_duplicate_points_and_fewer_features_than_points():
    S = manifold_points(2, 20, 4, seed=3)
    S[:, 10:] = S[:, :10]                                   # every point twice; d = 4 < M = 20
    t = torch.randn(2, 30, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    solution = solve_projections(S, t)
    assert solution.residual.max() < 1e-10
    for p in range(2):
        for k in range(30):
            v, _ = reference_projection(S[p].numpy(), t[p, k].numpy(), 0.0)
            np.testing.assert_allclose(solution.v[p, k].numpy(), v, atol=1e-9)


def test_interior_point_fallback_alone_reaches_the_reference_solution():
    S = manifold_points(1, 15, 10, seed=5, scales=(1e-2, 5.0))[0].expand(25, 15, 10)
    t = torch.randn(25, 1, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    v, z = _interior_point(S, t, 0.2, 1e-10)
    assert kkt_residual(S, t, v, z, 0.2).max() < 1e-7       # before the active-set polish
    for k in range(25):
        v_ref, _ = reference_projection(S[k].numpy(), t[k, 0].numpy(), 0.2)
        np.testing.assert_allclose(v[k, 0].numpy(), v_ref, atol=1e-6)


def test_kkt_residual_flags_a_wrong_solution():
    S = manifold_points(1, 8, 5, seed=7)
    t = torch.randn(1, 6, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    good = solve_projections(S, t)
    assert kkt_residual(S, t, good.v, good.z, 0.0).max() < 1e-10
    assert kkt_residual(S, t, t, torch.zeros(1, 6, 8, dtype=torch.float64), 0.0).max() > 1e-3


def test_hard_problems_fall_back_to_the_interior_point_method():
    """Spreads over four decades (Q's condition number ~1e8): gradient steps miss some active sets."""
    S = manifold_points(3, 12, 9, seed=1, scales=(1e-3, 10.0))
    t = torch.randn(3, 40, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    solution = solve_projections(S, t)
    assert solution.stages["after_polish"] > 0                # the fallback really ran
    assert solution.residual.max() < 1e-9
    for p in range(3):
        for k in range(40):
            v, _ = reference_projection(S[p].numpy(), t[p, k].numpy(), 0.0)
            np.testing.assert_allclose(solution.v[p, k].numpy(), v, atol=1e-9)


# -- capacity, radius, dimension formulas against a straightforward per-problem implementation -----

def naive_anchor_statistics(S: np.ndarray, t: np.ndarray, D: int, kappa: float) -> np.ndarray:
    """PRX 2018 eqs. 16-17, 28, 29 for one manifold, one t at a time (the reference's loop)."""
    anchors = []
    for tk in t:
        s0 = S[np.argmax(S[:, :D] @ tk[:D])]
        if tk @ s0 + kappa < 0:
            anchors.append(s0)
            continue
        v, z = reference_projection(S, tk, kappa)
        anchors.append(s0 if np.linalg.norm(v - tk) < 1e-8 else (tk - v) / z.sum())
    s = np.array(anchors)
    field = np.maximum(np.sum(t * s, 1) + kappa, 0)
    capacity = 1 / np.mean(field**2 / np.sum(s**2, 1))
    ds = (s - s.mean(0))[:, :D] / s[:, D:]
    radius = np.sqrt(np.mean(np.sum(ds**2, 1)))
    t_hat = t[:, :D] / np.linalg.norm(t[:, :D], axis=1, keepdims=True)
    s_hat = s[:, :D] / np.sqrt(np.sum(s[:, :D] ** 2, 1, keepdims=True) + 1e-12)
    dimension = D * np.mean(np.sum(t_hat * s_hat, 1)) ** 2
    return np.array([capacity, radius, dimension])


@pytest.mark.parametrize("kappa", [0.0, 0.3])
def test_anchor_statistics_match_the_per_problem_loop(kappa):
    g = torch.Generator().manual_seed(9)
    manifolds = torch.randn(5, 10, 30, generator=g, dtype=torch.float64) * 0.4
    manifolds -= manifolds.mean(1, keepdim=True)
    S, t, D = _anchor_problems(manifolds, 60, g)
    assert D == 10 and S.shape == (5, 10, 11)
    stats, worst = _solve_anchors(S, t, D, kappa)
    assert worst < 1e-10
    for p in range(5):
        np.testing.assert_allclose(stats[p], naive_anchor_statistics(S[p].numpy(), t[p].numpy(), D, kappa),
                                   rtol=1e-8)


# -- the published example and the limits --------------------------------------------------------

@pytest.mark.slow
def test_reference_example_matches_the_published_values():
    """README of schung039/neural_manifolds_replicaMFT: 100 x 50 points of 5000 N(0, 1) features."""
    g = torch.Generator().manual_seed(0)
    manifolds = [torch.randn(50, 5000, generator=g) for _ in range(100)]
    m = manifold_capacity(manifolds, kappa=0.0, n_t=200, seed=0)
    assert m.status == "ok" and m.extras["K"] == 1
    assert m.value == pytest.approx(0.0396, rel=0.03)
    assert m.extras["radius"] == pytest.approx(1.473, rel=0.03)
    assert m.extras["dimension"] == pytest.approx(36.18, rel=0.03)
    assert m.extras["center_corr"] == pytest.approx(0.014, abs=0.002)
    assert m.ci_low <= m.value <= m.ci_high and m.n == 100 and m.draws == 200


def test_manifolds_shrunk_to_points_have_capacity_two():
    """Points: the anchor is the centre, capacity 1 / E[(t_0)_+^2] = 2 (Cover / Gardner)."""
    g = torch.Generator().manual_seed(10)
    centres = torch.randn(10, 1, 200, generator=g)
    rows = []
    for radius in (1e-1, 1e-5):
        manifolds = list(centres + radius * torch.randn(10, 8, 200, generator=g))
        rows.append(manifold_capacity(manifolds, n_t=1500, seed=0))
    far, near = rows
    assert near.value == pytest.approx(2.0, rel=0.04)        # 15000 draws: 1.0% standard error
    assert near.extras["radius"] < 1e-3
    assert abs(far.value - 2.0) > abs(near.value - 2.0) and far.value < near.value


def test_same_seed_same_values_and_seed_matters():
    g = torch.Generator().manual_seed(11)
    manifolds = list(torch.randn(6, 10, 40, generator=g))
    a, b = manifold_capacity(manifolds, n_t=50, seed=3), manifold_capacity(manifolds, n_t=50, seed=3)
    c = manifold_capacity(manifolds, n_t=50, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.value != c.value


def test_orientation_is_points_by_features():
    """(M, N): ten 2-point manifolds of 100 features, not 100-point manifolds of 2 features."""
    g = torch.Generator().manual_seed(12)
    m = manifold_capacity(list(torch.randn(10, 2, 100, generator=g)), n_t=20)
    assert m.extras["n_features"] == 100 and m.extras["points_per_manifold"] == 2


def test_bad_inputs_raise_bench_errors():
    with pytest.raises(BenchError):
        manifold_capacity([torch.randn(5, 10)])
    with pytest.raises(BenchError):
        manifold_capacity([torch.randn(5, 10), torch.randn(5, 11)])
    with pytest.raises(BenchError):
        manifold_capacity([torch.randn(1, 10), torch.randn(5, 10)])


# -- centre-correlation step ----------------------------------------------------------------------

def test_center_structure_finds_a_planted_common_direction():
    g = torch.Generator().manual_seed(13)
    direction = torch.randn(100, generator=g, dtype=torch.float64)
    direction /= direction.norm()
    loadings = 5 * torch.randn(10, 1, generator=g, dtype=torch.float64)
    centers = torch.randn(10, 100, generator=g, dtype=torch.float64) * 0.1 + loadings * direction
    found = center_structure(centers, n_reps=2, generator=torch.Generator().manual_seed(0))
    assert found.K >= 1 and found.center_corr > 0.5
    assert found.basis.T @ found.basis == pytest.approx(torch.eye(found.K, dtype=torch.float64), abs=1e-10)
    assert (found.basis.T @ direction).norm() > 0.95          # the planted direction is removed


def test_center_structure_with_two_manifolds_removes_nothing():
    found = center_structure(torch.randn(2, 50, dtype=torch.float64), 2, torch.Generator().manual_seed(0))
    assert found.K == 0 and found.basis.shape == (50, 0)


# -- random projection of wide layers ---------------------------------------------------------------

def test_projection_is_seeded_and_preserves_inner_products_on_average():
    g = torch.Generator().manual_seed(14)
    x = torch.relu(torch.randn(2, 20000, generator=g))       # sparse, non-negative, like a ReLU map
    exact = float(x[0] @ x[1])
    first = RandomProjection(20000, 1000, seed=0)
    assert torch.equal(first(x), RandomProjection(20000, 1000, seed=0)(x))
    assert not torch.equal(first(x), RandomProjection(20000, 1000, seed=0, stream=1)(x))
    estimates = [float(p[0] @ p[1]) for p in (RandomProjection(20000, 1000, seed=s)(x) for s in range(30))]
    assert np.mean(estimates) == pytest.approx(exact, rel=0.01)
    assert float(first(x)[0].norm()) == pytest.approx(float(x[0].norm()), rel=0.1)


# -- per-layer profile of a model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    import timm

    import bench.models  # noqa: F401  registers cifar_resnet20 with timm
    from bench.models.scored import ScoredModel, prepare_for_measurement

    torch.manual_seed(0)
    net = timm.create_model("cifar_resnet20", pretrained=False, num_classes=10)
    return prepare_for_measurement(ScoredModel(net, (0.5,) * 3, (0.25,) * 3))


tiny_model_stages = ["stage:act1", "stage:layer1", "stage:layer2", "stage:layer3"]


def check_profile(rows, kind):
    head, layers = rows[0], rows[1:]
    assert head.layer is None and head.extras["layer"] == "pre_logits" and head.extras["manifolds"] == kind
    names = [r.layer for r in layers]
    assert names == ["input", *tiny_model_stages, "pre_logits", "logits"]
    assert [r.depth for r in layers] == sorted(r.depth for r in layers)
    assert layers[0].depth == 0 and layers[-1].depth == 1
    assert head.value == next(r.value for r in layers if r.layer == "pre_logits")
    assert head.arrays["depth"] == [r.depth for r in layers]
    assert all(len(head.arrays[k]) == len(names) for k in ("capacity", "radius", "dimension", "center_corr"))
    assert layers[0].extras["layer_features"] == 3 * 32 * 32
    assert layers[0].extras["n_features"] == 1000              # projected above max_features


def test_class_manifold_profile(tiny_model):
    g = torch.Generator().manual_seed(15)
    images = torch.rand(20, 3, 32, 32, generator=g)
    labels = torch.tensor([0] * 6 + [1] * 5 + [2] * 7 + [3] * 2)
    rows = manifold_capacity_profile(tiny_model, images, labels, n_classes=3, per_class=5, n_t=20,
                                     max_features=1000)
    check_profile(rows, "class")
    assert rows[1].extras["n_manifolds"] == 3 and rows[1].extras["points_per_manifold"] == 5
    assert all(r.status == "ok" for r in rows)


def test_exemplar_manifold_profile_through_the_spec(tiny_model):
    g = torch.Generator().manual_seed(16)
    images = torch.rand(5, 3, 32, 32, generator=g)
    (spec,) = SPECS
    params = dict(spec.defaults, n_classes=4, per_class=3, n_t=20, max_features=1000)
    ctx = ScoreContext(entry=None, device=torch.device("cpu"), seed=0, params=params, model=tiny_model,
                       images=images)
    rows = spec.run(ctx)
    check_profile(rows, "exemplar")
    assert rows[1].extras["n_manifolds"] == 4 and rows[1].extras["points_per_manifold"] == 3
    assert rows[0].params == params and spec.needs_labels is False


def test_class_manifolds_need_two_classes(tiny_model):
    with pytest.raises(BenchError):
        manifold_capacity_profile(tiny_model, torch.rand(4, 3, 32, 32), torch.tensor([0, 0, 0, 1]))


# -- real networks (offline assets) -----------------------------------------------------------------

@pytest.mark.assets
@pytest.mark.slow
def test_trained_resnet20_untangles_classes_with_depth(assets, tmp_path):
    """Cohen et al. 2020: class manifolds become separable with depth in trained networks only.

    On CIFAR-10 (10 classes x 20 images) the trained ResNet-20's capacity grows from
    the input to the penultimate features several-fold (0.05 -> 0.28 with 50 images
    per class, see the closing report), while at initialization it stays near the
    input's. Both networks see the same images, so their input rows are identical.
    """
    probe = cifar10_probe(assets, tmp_path, per_class=20)
    profiles = {}
    for name in ("trained", "init"):
        rows = manifold_capacity_profile(resnet20(assets, trained=name == "trained"), probe.images, probe.labels,
                                         n_classes=10, per_class=20, n_t=100, seed=0)
        assert all(r.status == "ok" for r in rows)
        profiles[name] = {r.layer: r for r in rows[1:]}
    trained, init = profiles["trained"], profiles["init"]
    assert trained["input"].value == init["input"].value
    assert trained["pre_logits"].ci_low > 2 * trained["input"].ci_high
    assert trained["pre_logits"].ci_low > init["pre_logits"].ci_high
    assert trained["pre_logits"].extras["radius"] < init["pre_logits"].extras["radius"]
