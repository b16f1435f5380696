"""A batched solver for the projection problems of manifold capacity (SPEC section 6).

Each problem projects a vector t onto a polyhedral cone given by the points s_i of
one manifold:

    minimize ||v - t||^2   subject to   s_i . v <= -kappa   for every point i,

the sign convention of the reference (``cvxopt.solvers.qp(I, -t, S, -kappa)``); the
SPEC's ``v . s >= kappa`` is the same problem for -t, and t is a symmetric Gaussian.
Millions of such problems (P manifolds x n_t vectors) have only d = D + 1 <= M + 1
unknowns each, so they are solved all at once with a primal-dual interior-point
method (Mehrotra predictor-corrector), one batched Cholesky factorization of a d x d
matrix per problem and iteration. Why an interior-point method: it converges to
1e-10 in about 20 iterations whatever the conditioning of the manifold, and every
problem of a batch takes the same number of iterations, which suits a GPU; and why
the primal form: its Newton matrix ``I + S^T W S`` is positive definite even when
the multipliers are not unique (manifolds shrunk to points, fewer features than
points), where the dual's ``S S^T`` is singular.

The result is verified, not trusted: :func:`kkt_residual` measures stationarity,
primal feasibility and complementary slackness of every solution, and the caller
refuses results above tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_STEP_TO_BOUNDARY = 0.99


@dataclass
class QPSolution:
    """Solutions of a batch of projection problems.

    ``v`` (B, d) the projections, ``z`` (B, m) the multipliers of the constraints
    (``t - v = S^T z``), ``iterations`` how many the batch needed, and
    ``residual`` (B,) the scaled KKT residual of each problem.
    """

    v: torch.Tensor
    z: torch.Tensor
    iterations: int
    residual: torch.Tensor


def kkt_residual(S: torch.Tensor, t: torch.Tensor, v: torch.Tensor, z: torch.Tensor,
                 kappa: float) -> torch.Tensor:
    """Largest violation of the KKT conditions of each problem, scaled by its size.

    Stationarity ``v - t + S^T z = 0``, primal feasibility ``S v + kappa <= 0``, dual
    feasibility ``z >= 0`` and complementary slackness ``z_i (S v + kappa)_i = 0``,
    each divided by ``1 + ||t||_inf`` (the scale of v and of S v for unit-norm points).
    """
    scale = 1 + t.abs().amax(-1)
    slack = _times(S, v) + kappa
    station = (v - t + _at(S, z)).abs().amax(-1)
    primal = slack.clamp(min=0).amax(-1)
    dual = (-z).clamp(min=0).amax(-1)
    complement = (z * slack).abs().amax(-1)
    return torch.stack([station, primal, dual, complement / scale], -1).amax(-1) / scale


def solve_projections(S: torch.Tensor, t: torch.Tensor, kappa: float = 0.0, *,
                      tol: float = 1e-10, max_iter: int = 100) -> QPSolution:
    """Solve min ||v - t||^2 s.t. S v <= -kappa for a batch of problems.

    ``S`` (B, m, d) holds the m constraint points of each problem (an expanded view
    is fine: problems of one manifold share it), ``t`` (B, d). Runs in ``t``'s
    dtype and device; use float64 for the tolerance of the reference (1e-10).
    A problem stops moving once it has converged (or its Newton matrix stopped being
    numerically positive definite, which its residual then shows); the batch is
    compacted to the moving problems whenever a quarter of them has stopped. The
    interior-point answer is finally polished on its active set (:func:`_polish`).
    """
    B, m, d = S.shape
    v = t.clone()
    y = (-(_times(S, t) + kappa)).abs().clamp(min=1.0)  # slack: S v + y = -kappa
    z = torch.ones(B, m, dtype=t.dtype, device=t.device)
    eye = torch.eye(d, dtype=t.dtype, device=t.device).expand(B, d, d)
    scale = 1 + t.abs().amax(-1)
    live = torch.arange(B, device=t.device)
    Sl, tl, scale_l = S, t, scale
    vl, yl, zl = v, y, z
    iterations = 0
    for iterations in range(1, max_iter + 1):
        r1 = vl - tl + _at(Sl, zl)                       # stationarity
        r2 = _times(Sl, vl) + yl + kappa                 # primal equality
        mu = (yl * zl).mean(-1)
        moving = (torch.maximum(r1.abs().amax(-1), r2.abs().amax(-1)) > tol * scale_l) | (
            mu > tol * scale_l)
        w = zl / yl
        normal = torch.baddbmm(eye[: len(live)], (Sl * w[..., None]).transpose(1, 2), Sl)
        chol, info = torch.linalg.cholesky_ex(normal)
        moving &= info == 0
        if not moving.any():
            break

        def newton(r3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """Direction for the complementarity target ``z dy + y dz = r3``."""
            rhs = -r1 - _at(Sl, w * r2 + r3 / yl)
            dv = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
            dz = w * (_times(Sl, dv) + r2) + r3 / yl
            dy = (r3 - yl * dz) / zl
            return dv, dy, dz

        dv, dy, dz = newton(-yl * zl)
        step = _max_step(yl, dy, zl, dz, 1.0)
        mu_aff = ((yl + step[:, None] * dy) * (zl + step[:, None] * dz)).mean(-1)
        sigma = (mu_aff / mu).clamp(max=1.0) ** 3
        dv, dy, dz = newton(-yl * zl - dy * dz + (sigma * mu)[:, None])
        step = (_max_step(yl, dy, zl, dz, _STEP_TO_BOUNDARY) * moving)[:, None]
        vl, yl, zl = vl + step * dv, yl + step * dy, zl + step * dz
        if moving.sum() < 0.75 * len(live):
            v[live], y[live], z[live] = vl, yl, zl
            live = live[moving]
            Sl, tl, scale_l = S[live], t[live], scale[live]
            vl, yl, zl = v[live], y[live], z[live]
    v[live], y[live], z[live] = vl, yl, zl
    v, z = _polish(S, t, v, z, y, kappa, tol)
    return QPSolution(v=v, z=z, iterations=iterations, residual=kkt_residual(S, t, v, z, kappa))


def _polish(S: torch.Tensor, t: torch.Tensor, v: torch.Tensor, z: torch.Tensor,
            y: torch.Tensor, kappa: float, tol: float,
            rounds: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact solutions on the active sets that the interior-point iterates point to.

    An interior-point iterate is accurate only to about sqrt(mu) where a constraint
    is weakly active. Starting from the constraints whose multiplier exceeds their
    slack, a few primal-dual active-set steps (drop constraints whose multiplier
    comes out negative, add those that are violated) solve the equality-constrained
    projection ``S_A S_A^T z_A = S_A t + kappa`` exactly; a problem keeps the new
    solution only where it lowers the KKT residual, so polishing never hurts.
    """
    z = z.clamp(min=0)
    best = kkt_residual(S, t, v, z, kappa)
    gram = S @ S.transpose(1, 2)
    ridge = 1e-13 * gram.diagonal(dim1=1, dim2=2).amax(-1, keepdim=True)
    target = _times(S, t) + kappa
    active = z > y
    for _ in range(rounds):
        pair = active[:, :, None] & active[:, None, :]
        system = torch.where(pair, gram, torch.zeros_like(gram)) + torch.diag_embed(
            torch.where(active, ridge, torch.ones_like(z)))
        chol, info = torch.linalg.cholesky_ex(system)
        z_raw = torch.cholesky_solve(torch.where(active, target, torch.zeros_like(z)).unsqueeze(-1),
                                     chol).squeeze(-1)
        z_new = z_raw.clamp(min=0)
        v_new = t - _at(S, z_new)
        residual = kkt_residual(S, t, v_new, z_new, kappa)
        better = (info == 0) & (residual < best)
        v = torch.where(better[:, None], v_new, v)
        z = torch.where(better[:, None], z_new, z)
        best = torch.where(better, residual, best)
        if not (best > tol).any():
            break
        active = (active & (z_raw > 0)) | (_times(S, v_new) + kappa > 0)
    return v, z


def _times(S: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """S v per problem: (B, m, d), (B, d) -> (B, m)."""
    return (S @ v.unsqueeze(-1)).squeeze(-1)


def _at(S: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """S^T z per problem: (B, m, d), (B, m) -> (B, d)."""
    return (z.unsqueeze(1) @ S).squeeze(1)


def _max_step(y: torch.Tensor, dy: torch.Tensor, z: torch.Tensor, dz: torch.Tensor,
              fraction: float) -> torch.Tensor:
    """Largest step in [0, 1] that keeps y and z positive, times ``fraction``."""
    value, change = torch.cat([y, z], -1), torch.cat([dy, dz], -1)
    ratios = torch.where(change < 0, -value / change, torch.full_like(value, float("inf")))
    return (fraction * ratios.amin(-1)).clamp(max=1.0)
