"""The centre-correlation step of manifold analysis (SPEC section 6).

Class manifolds of a network layer often share a common low-rank structure: their
centres all lean the same way. Capacity is meant to measure the manifolds' own
geometry, so the reference (``fun_FA`` of ``manifold_analysis_correlation.py``)
removes the K-dimensional subspace whose removal makes the centres least
correlated, and this module does the same:

- express the P mean-subtracted centres in a (P - 1)-dimensional orthonormal basis;
- for K = 1, 2, ...: from ``n_reps`` random starts (each a random combination of
  the centres plus the previous K - 1 directions), minimize the summed squared
  correlation of the residual centres over the Stiefel manifold of K-frames by
  Riemannian conjugate gradients; keep the start whose residual keeps the largest
  minimum fraction of a centre's norm (the reference's "stability");
- score each K by the mean absolute off-diagonal correlation of the residual
  centres, stop after three consecutive increases (from K = 5 on) or at maxK (the
  number of components below 95% of the centres' variance, plus 11), and return
  the K of lowest score (at least 1, as in the reference).

Choices where the reference cannot be followed literally, documented here: K is
capped at rank - 1 of the centres (the reference divides by zero beyond it), and
with fewer than three manifolds no direction is removed (K = 0). The optimizer is
this module's own Riemannian CG (Hestenes-Stiefel with an adaptive Armijo line
search and a QR retraction, as pymanopt's defaults), run for all starts at once.
It works in float64 on the CPU: the problem is P x P, tiny, and latency-bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MAX_ITER = 1000
_GRAD_TOL = 1e-6
_MIN_STEP = 1e-10
_ARMIJO = 0.5
_BACKTRACKS = 20


@dataclass
class CenterStructure:
    """The common subspace to remove and the centres' correlation before removal."""

    basis: torch.Tensor       # (N, K) orthonormal directions in feature space
    K: int
    center_corr: float        # mean |off-diagonal correlation| of the centres


def center_structure(centers: torch.Tensor, n_reps: int, generator: torch.Generator) -> CenterStructure:
    """Find the low-rank common structure of manifold centres (P, N), float64 on the CPU."""
    P, N = centers.shape
    centred = centers - centers.mean(0, keepdim=True)
    q, _ = torch.linalg.qr(centred.T)                      # (N, min(N, P))
    q = q[:, : min(P - 1, q.shape[1])]
    X = centred @ q                                         # (P, dim)
    corr0 = _mean_abs_corr(X)
    dim = X.shape[1]
    if P < 3 or dim < 2:
        return CenterStructure(torch.zeros(N, 0, dtype=centers.dtype), 0, corr0)

    energy = torch.linalg.svdvals(centred).square()
    cumulative = torch.cumsum(energy / energy.sum(), 0)
    below = torch.nonzero(cumulative < 0.95)
    max_k = min((int(below[-1]) if len(below) else 0) + 11, dim - 1)

    frames: list[torch.Tensor] = []
    scores: list[float] = []
    previous = torch.zeros(dim, 0, dtype=X.dtype)
    for k in range(1, max_k + 1):
        starts = _starts(X, previous, n_reps, generator)
        solved = _stiefel_cg(X, starts)
        residual_norm = (X[None] - X[None] @ solved @ solved.transpose(1, 2)).norm(dim=-1)
        stability = (residual_norm / X.norm(dim=-1)).amin(-1)
        previous = solved[int(stability.argmax())]
        frames.append(previous)
        scores.append(_mean_abs_corr(X - X @ previous @ previous.T))
        if k > 4 and scores[-1] > scores[-2] > scores[-3] > scores[-4]:
            break
    best = min(range(len(scores)), key=scores.__getitem__)
    return CenterStructure(q @ frames[best], best + 1, corr0)


def _mean_abs_corr(X: torch.Tensor) -> float:
    """Mean absolute correlation (cosine) between distinct rows of X."""
    P = X.shape[0]
    unit = X / X.norm(dim=-1, keepdim=True)
    return float(((unit @ unit.T).abs().sum() - P) / (P * (P - 1)))


def _starts(X: torch.Tensor, previous: torch.Tensor, n_reps: int,
            generator: torch.Generator) -> torch.Tensor:
    """Initial K-frames: a random combination of the centres, then the previous frame."""
    weights = torch.randn(n_reps, X.shape[0], dtype=X.dtype, generator=generator)
    frames = torch.cat([(weights @ X)[:, :, None], previous.expand(n_reps, *previous.shape)], -1)
    return _orthonormal(frames)


def _orthonormal(frames: torch.Tensor) -> torch.Tensor:
    """Q of the QR decomposition with a non-negative diagonal of R (a smooth retraction)."""
    q, r = torch.linalg.qr(frames)
    signs = torch.sign(torch.sign(r.diagonal(dim1=-2, dim2=-1)) + 0.5)
    return q * signs[..., None, :]


def _cost(X: torch.Tensor, V: torch.Tensor, with_grad: bool = False
          ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Half the summed squared correlations of the residual centres, one per frame.

    With ``c = X V`` the residual Gram matrix is ``R = X X^T - c c^T`` and the
    squared residual norms ``n`` its diagonal, so no residual is formed. The
    Euclidean gradient, by hand: with ``A = R / (n n^T)`` and ``b`` the row sums of
    ``R^2 / (n n^T)``, d cost / d c = 2 (b / n) c - 2 A c, and d cost / d V = X^T that.
    """
    gram = X @ X.T
    c = X[None] @ V
    residual = gram[None] - c @ c.transpose(1, 2)
    norms = gram.diagonal()[None] - c.square().sum(-1)
    outer = norms[:, :, None] * norms[:, None, :]
    squared = residual.square() / outer
    cost = 0.5 * squared.sum((1, 2))
    if not with_grad:
        return cost
    grad_c = 2 * (squared.sum(-1) / norms)[..., None] * c - 2 * (residual / outer) @ c
    return cost, X.T[None] @ grad_c


def _value_and_grad(X: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cost and Riemannian gradient (the Euclidean one projected on the tangent space)."""
    cost, egrad = _cost(X, V, with_grad=True)
    return cost, _project(V, egrad)


def _project(V: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Projection of G onto the tangent space of the Stiefel manifold at V."""
    VtG = V.transpose(1, 2) @ G
    return G - V @ (0.5 * (VtG + VtG.transpose(1, 2)))


def _inner(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return (A * B).sum((1, 2))


def _stiefel_cg(X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Minimize :func:`_cost` from each start frame in ``V`` (R, dim, K) by Riemannian CG.

    A start stops at a gradient norm below 1e-6, a step below 1e-10 or after 1000
    iterations: pymanopt's defaults, which the reference uses. Each accepted line
    search point brings its gradient along, so an iteration costs one evaluation.
    """
    R = V.shape[0]
    cost, grad = _value_and_grad(X, V)
    direction = -grad
    step = torch.ones(R, dtype=X.dtype)
    active = torch.ones(R, dtype=torch.bool)
    for _ in range(_MAX_ITER):
        active &= grad.flatten(1).norm(dim=-1) > _GRAD_TOL
        if not active.any():
            break
        slope = _inner(grad, direction)
        restart = slope >= 0                     # not a descent direction: steepest descent
        direction = torch.where(restart[:, None, None], -grad, direction)
        slope = torch.where(restart, -_inner(grad, grad), slope)
        d_norm = direction.flatten(1).norm(dim=-1)

        # adaptive Armijo backtracking, all starts at once
        trial_step = step.clone()
        accepted = ~active
        new_V, new_cost, new_egrad = V, cost, grad
        for _ in range(_BACKTRACKS):
            candidate = _orthonormal(V + trial_step[:, None, None] * direction)
            candidate_cost, candidate_egrad = _cost(X, candidate, with_grad=True)
            ok = ~accepted & (candidate_cost <= cost + _ARMIJO * trial_step * slope)
            new_V = torch.where(ok[:, None, None], candidate, new_V)
            new_cost = torch.where(ok, candidate_cost, new_cost)
            new_egrad = torch.where(ok[:, None, None], candidate_egrad, new_egrad)
            accepted |= ok
            if accepted.all():
                break
            trial_step = torch.where(accepted, trial_step, 0.5 * trial_step)
        moved = accepted & active
        active &= moved & (trial_step * d_norm > _MIN_STEP)
        step = torch.where(moved, 2 * trial_step, step)

        new_grad = _project(new_V, new_egrad)
        old_grad = _project(new_V, grad)
        old_direction = _project(new_V, direction)
        change = new_grad - old_grad
        beta = (_inner(new_grad, change) / _inner(old_direction, change)).nan_to_num(0.0).clamp(min=0)
        new_direction = -new_grad + beta[:, None, None] * old_direction
        keep = moved[:, None, None]
        V = torch.where(keep, new_V, V)
        cost = torch.where(moved, new_cost, cost)
        grad = torch.where(keep, new_grad, grad)
        direction = torch.where(keep, new_direction, direction)
    return V
