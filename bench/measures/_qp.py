"""A batched solver for the projection problems of manifold capacity (SPEC section 6).

Each problem projects a vector t onto a polyhedral cone given by the M points s_i of
one manifold:

    minimize ||v - t||^2   subject to   s_i . v <= -kappa   for every point i,

the sign convention of the reference (``cvxopt.solvers.qp(I, -t, S, -kappa)``); the
SPEC's ``v . s >= kappa`` is the same problem for -t, and t is a symmetric Gaussian.
Its dual is a non-negative quadratic program in the multipliers z (v = t - S^T z):

    minimize 1/2 z^T Q z - b^T z   subject to   z >= 0,   Q = S S^T,   b = S t + kappa.

All n_t problems of a manifold share Q, so the whole batch (P manifolds x n_t
vectors) is solved together, on the data's device, in three stages:

1. accelerated projected gradient (FISTA with adaptive restart) on the dual: each
   iteration is one batched matrix product with the shared Q, cheap on any device,
   and it finds which constraints are active;
2. an exact active-set polish (primal-dual active-set steps): solve
   ``Q_AA z_A = b_A`` on the guessed active set with one batched Cholesky per
   problem, drop negative multipliers, add violated constraints, repeat;
3. where that still leaves a KKT residual above tolerance (ill-conditioned or
   degenerate manifolds), a primal-dual interior-point method (Mehrotra
   predictor-corrector on the primal, whose Newton matrix ``I + S^T W S`` stays
   positive definite when multipliers are not unique), polished again.

Every answer is verified, not trusted: :func:`kkt_residual` measures stationarity,
feasibility and complementary slackness of each problem, and the caller refuses
results above tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_STEP_TO_BOUNDARY = 0.99
_GRADIENT_TOL = 1e-7          # dual natural residual at which stage 1 hands over
_GRADIENT_ITERS = 300
_POLISH_ROUNDS = 8
_IPM_ITERS = 100


@dataclass
class QPSolution:
    """Solutions of a batch of projection problems, shaped like ``t`` (P, n, d).

    ``v`` the projections, ``z`` (P, n, m) the multipliers (``t - v = S^T z``),
    ``residual`` (P, n) the scaled KKT residual of each problem, and ``stages`` how
    many problems each stage left unsolved (for diagnostics and benchmarks).
    """

    v: torch.Tensor
    z: torch.Tensor
    residual: torch.Tensor
    stages: dict[str, int]


def kkt_residual(S: torch.Tensor, t: torch.Tensor, v: torch.Tensor, z: torch.Tensor,
                 kappa: float) -> torch.Tensor:
    """Largest violation of the KKT conditions of each problem, made dimensionless.

    ``S`` (G, m, d) the points of G groups (manifolds); ``t``/``v`` (G, n, d) and ``z``
    (G, n, m) for n problems per group; returns (G, n). With a = 1 + ||t|| (the scale
    of v) and r = max(1, max_i ||s_i||) (of the points): stationarity
    ``|v - t + S^T z| / a``, primal feasibility ``(S v + kappa)_+ / (a r)``, dual
    feasibility ``(-z)_+ r^2 / a`` and complementary slackness ``|z_i (S v + kappa)_i| r / a^2``.
    """
    a = 1 + t.norm(dim=-1)
    r = S.norm(dim=-1).amax(-1, keepdim=True).clamp(min=1)
    slack = _times(S, v) + kappa
    station = (v - t + _at(S, z)).abs().amax(-1) / a
    primal = slack.clamp(min=0).amax(-1) / (a * r)
    dual = (-z).clamp(min=0).amax(-1) * r**2 / a
    complement = (z * slack).abs().amax(-1) * r / a**2
    return torch.stack([station, primal, dual, complement], -1).amax(-1)


def solve_projections(S: torch.Tensor, t: torch.Tensor, kappa: float = 0.0, *,
                      tol: float = 1e-10, max_elements: int = 2**23) -> QPSolution:
    """Solve min ||v - t||^2 s.t. S v <= -kappa for every t of every manifold.

    ``S`` (P, m, d): the points of P manifolds; ``t`` (P, n, d): n vectors per
    manifold. Runs in ``t``'s dtype (use float64: the tolerance is that of the
    reference's solver) and device. The per-problem matrices of stages 2 and 3 are
    built for groups of problems of at most ``max_elements`` entries, to bound memory.
    """
    P, n, d = t.shape
    m = S.shape[1]
    gram = S @ S.transpose(1, 2)
    target = _times(S, t) + kappa                                    # b, (P, n, m)
    z = _dual_gradient(gram, target)
    v = torch.empty_like(t)
    residual = torch.empty(P, n, dtype=t.dtype, device=t.device)
    for group in torch.split(torch.arange(P, device=t.device), max(1, max_elements // (n * m * m))):
        v[group], z[group], residual[group] = _polish(S[group], gram[group], t[group], z[group],
                                                      target[group], kappa, tol)
    after_polish = int((residual > tol).sum())

    for chunk in torch.split(torch.nonzero(residual > tol), max(1, max_elements // (m * max(m, d)))):
        p, k = chunk[:, 0], chunk[:, 1]
        Sh, th = S[p], t[p, k][:, None]                              # one group per problem
        vh, zh = _interior_point(Sh, th, kappa, tol)
        vh, zh, rh = _polish(Sh, Sh @ Sh.transpose(1, 2), th, zh, _times(Sh, th) + kappa, kappa, tol)
        better = rh[:, 0] < residual[p, k]
        v[p, k] = torch.where(better[:, None], vh[:, 0], v[p, k])
        z[p, k] = torch.where(better[:, None], zh[:, 0], z[p, k])
        residual[p, k] = torch.minimum(rh[:, 0], residual[p, k])
    stages = {"problems": P * n, "after_polish": after_polish, "after_interior": int((residual > tol).sum())}
    return QPSolution(v=v, z=z, residual=residual, stages=stages)


def _dual_gradient(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """FISTA with gradient restart on min 1/2 z^T Q z - b^T z, z >= 0; shared Q per manifold.

    Step 1 / lambda_max(Q). Stops when every problem's natural residual
    ``|min(z, Q z - b)|`` is below ``_GRADIENT_TOL`` times its scale, or after
    ``_GRADIENT_ITERS`` iterations: stage 1 only has to find the active set.
    """
    step = 1 / torch.linalg.eigvalsh(gram)[:, -1].clamp(min=1e-300)[:, None, None]
    scale = 1 + target.abs().amax(-1)
    z = torch.zeros_like(target)
    y, momentum = z, torch.ones_like(scale)
    for iteration in range(_GRADIENT_ITERS):
        gradient = y @ gram - target
        z_new = (y - step * gradient).clamp(min=0)
        if iteration % 10 == 0:
            natural = torch.minimum(z_new, z_new @ gram - target).abs().amax(-1)
            if (natural <= _GRADIENT_TOL * scale).all():
                return z_new
        restart = ((y - z_new) * (z_new - z)).sum(-1) > 0
        next_momentum = torch.where(restart, torch.ones_like(momentum),
                                    (1 + (1 + 4 * momentum**2).sqrt()) / 2)
        factor = torch.where(restart, torch.zeros_like(momentum), (momentum - 1) / next_momentum)
        y = z_new + factor[..., None] * (z_new - z)
        z, momentum = z_new, next_momentum
    return z


def _polish(S: torch.Tensor, gram: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
            target: torch.Tensor, kappa: float, tol: float
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact solutions on the active sets that approximate multipliers point to.

    Starting from the constraints where ``z > Q z - b`` (multiplier above slack),
    primal-dual active-set steps solve ``Q_AA z_A = b_A`` exactly, drop constraints
    whose multiplier comes out negative and add those that are violated. A problem
    keeps a new solution only where it lowers the KKT residual, so polishing never
    hurts. Shapes as :func:`kkt_residual` (``gram`` (G, m, m), ``target`` = b (G, n, m));
    returns v, z and the residual.
    """
    z = z.clamp(min=0)
    v = t - _at(S, z)
    best = kkt_residual(S, t, v, z, kappa)
    ridge = 1e-13 * gram.diagonal(dim1=-2, dim2=-1).amax(-1)[:, None, None]
    active = z > z @ gram - target
    for _ in range(_POLISH_ROUNDS):
        inside = active.to(gram.dtype)
        system = gram[:, None] * (inside[..., :, None] * inside[..., None, :])
        system.diagonal(dim1=-2, dim2=-1).add_(inside * ridge + (1 - inside))
        chol, info = torch.linalg.cholesky_ex(system)
        z_raw = torch.cholesky_solve((target * inside).unsqueeze(-1), chol).squeeze(-1)
        z_new = z_raw.clamp(min=0)
        v_new = t - _at(S, z_new)
        residual = kkt_residual(S, t, v_new, z_new, kappa)
        better = (info == 0) & (residual < best)
        v = torch.where(better[..., None], v_new, v)
        z = torch.where(better[..., None], z_new, z)
        best = torch.where(better, residual, best)
        if not (best > tol).any():
            break
        active = (active & (z_raw > 0)) | (_times(S, v_new) + kappa > 0)
    return v, z, best


def _interior_point(S: torch.Tensor, t: torch.Tensor, kappa: float, tol: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Primal-dual interior point (Mehrotra) for B problems: S (B, m, d), t (B, 1, d); returns v, z.

    Slack y with S v + y = -kappa. A problem stops moving once converged (or when
    its Newton matrix stops being numerically positive definite, which its residual
    then shows); the batch is compacted whenever a quarter of it has stopped.
    """
    B, m, d = S.shape
    v = t.clone()
    y = (-(_times(S, t) + kappa)).abs().clamp(min=1.0)
    z = torch.ones(B, 1, m, dtype=t.dtype, device=t.device)
    eye = torch.eye(d, dtype=t.dtype, device=t.device).expand(B, d, d)
    scale = 1 + t.abs().amax(-1)                                      # (B, 1)
    live = torch.arange(B, device=t.device)
    Sl, tl, scale_l, vl, yl, zl = S, t, scale, v, y, z
    for _ in range(_IPM_ITERS):
        r1 = vl - tl + _at(Sl, zl)                       # stationarity
        r2 = _times(Sl, vl) + yl + kappa                 # primal equality
        mu = (yl * zl).mean(-1)
        moving = (torch.maximum(r1.abs().amax(-1), r2.abs().amax(-1)) > tol * scale_l) | (
            mu > tol * scale_l)
        w = zl / yl
        normal = torch.baddbmm(eye[: len(live)], (Sl * w.transpose(1, 2)).transpose(1, 2), Sl)
        chol, info = torch.linalg.cholesky_ex(normal)
        moving &= (info == 0)[:, None]
        if not moving.any():
            break

        state = (Sl, chol, w, r1, r2, yl, zl)
        dv, dy, dz = _newton(state, -yl * zl)
        step = _max_step(yl, dy, zl, dz, 1.0)[..., None]
        mu_aff = ((yl + step * dy) * (zl + step * dz)).mean(-1)
        sigma = (mu_aff / mu).clamp(max=1.0) ** 3
        dv, dy, dz = _newton(state, -yl * zl - dy * dz + (sigma * mu)[..., None])
        step = (_max_step(yl, dy, zl, dz, _STEP_TO_BOUNDARY) * moving)[..., None]
        vl, yl, zl = vl + step * dv, yl + step * dy, zl + step * dz
        if moving.sum() < 0.75 * len(live):
            v, y, z = v.index_put((live,), vl), y.index_put((live,), yl), z.index_put((live,), zl)
            keep = moving[:, 0]
            live = live[keep]
            Sl, tl, scale_l = S[live], t[live], scale[live]
            vl, yl, zl = v[live], y[live], z[live]
    return v.index_put((live,), vl), z.index_put((live,), zl)


def _newton(state: tuple[torch.Tensor, ...], r3: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton direction (dv, dy, dz) for the complementarity target ``z dy + y dz = r3``.

    ``state`` = (S, Cholesky factor of I + S^T W S, W = z / y, stationarity and
    primal residuals, y, z) of the current iterate.
    """
    S, chol, w, r1, r2, y, z = state
    rhs = -r1 - _at(S, w * r2 + r3 / y)
    dv = torch.cholesky_solve(rhs.transpose(1, 2), chol).transpose(1, 2)
    dz = w * (_times(S, dv) + r2) + r3 / y
    dy = (r3 - y * dz) / z
    return dv, dy, dz


def _max_step(y: torch.Tensor, dy: torch.Tensor, z: torch.Tensor, dz: torch.Tensor,
              fraction: float) -> torch.Tensor:
    """Largest step in [0, 1] that keeps y and z positive, times ``fraction``."""
    value, change = torch.cat([y, z], -1), torch.cat([dy, dz], -1)
    ratios = torch.where(change < 0, -value / change, torch.full_like(value, float("inf")))
    return (fraction * ratios.amin(-1)).clamp(max=1.0)


def _times(S: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """s_i . v for every problem: S (G, m, d), v (G, n, d) -> (G, n, m)."""
    return v @ S.transpose(1, 2)


def _at(S: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """S^T z for every problem: S (G, m, d), z (G, n, m) -> (G, n, d)."""
    return z @ S
