"""Manifold capacity on the reference's published example: time, values, and per-problem solvers.

The example of schung039/neural_manifolds_replicaMFT: 100 manifolds of 50 points
with 5000 i.i.d. N(0, 1) features, kappa = 0, n_t = 200, which the reference reports
as capacity 0.0396, radius 1.473, dimension 36.18, centre correlation 0.014, K = 1
(about 3 minutes on a 2-core machine, SPEC section 6). This script times
``manifold_capacity`` end to end and its stages (centre step, batched solver), then
solves the same 20000 projection problems one at a time with straightforward
per-problem solvers, timed on a subset and extrapolated (said so in the output):

- cvxopt's ``solvers.qp`` with the reference's tolerances (1e-12), as the reference
  calls it, when cvxopt is installed;
- scipy's Lawson-Hanson NNLS on the dual (an exact active-set method, kappa = 0 only).

    python benchmarks/bench_mftma.py [--device cuda] [--subset 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.measures import manifold_capacity
from bench.measures._center_corr import center_structure
from bench.measures._qp import solve_projections
from bench.measures.mftma import _anchor_problems

PUBLISHED = {"capacity": 0.0396, "radius": 1.473, "dimension": 36.18, "center_corr": 0.014, "K": 1}
REFERENCE_SECONDS = 180.0


def example(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(50, 5000, generator=g) for _ in range(100)]


def anchor_problems(manifolds: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (S, t) the measure solves, built as ``manifold_capacity`` builds them."""
    points = torch.stack(manifolds).double().to(device)
    points = points - points.reshape(-1, points.shape[-1]).mean(0)
    centres = points.mean(1, keepdim=True)
    S, t, _ = _anchor_problems((points - centres) / centres.norm(dim=-1, keepdim=True), 200,
                               torch.Generator().manual_seed(0))
    return S, t


def per_problem(solve, S: np.ndarray, t: np.ndarray, subset: int) -> float:
    """Seconds for ``subset`` problems spread over all manifolds, one at a time."""
    P, n = t.shape[:2]
    picks = [(i % P, (i * 7) % n) for i in range(subset)]
    start = time.perf_counter()
    for p, k in picks:
        solve(S[p], t[p, k])
    return time.perf_counter() - start


def cvxopt_solver():
    try:
        from cvxopt import matrix, solvers
    except ImportError:
        return None
    solvers.options.update(show_progress=False, abstol=1e-12, reltol=1e-12, feastol=1e-12, maxiters=1000)

    def solve(S: np.ndarray, t: np.ndarray) -> np.ndarray:
        d = len(t)
        out = solvers.qp(matrix(np.eye(d)), matrix(-t), matrix(S), matrix(np.zeros(len(S))))
        return np.array(out["x"]).ravel()

    return solve


def nnls_solver(S: np.ndarray, t: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    z, _ = nnls(S.T, t, maxiter=50 * len(S))
    return t - S.T @ z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--subset", type=int, default=500, help="problems timed per per-problem solver")
    args = parser.parse_args()
    device = torch.device(args.device)
    manifolds = example()
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    start = time.perf_counter()
    row = manifold_capacity(manifolds, kappa=0.0, n_t=200, seed=0, device=device)
    total = time.perf_counter() - start
    got = {"capacity": row.value, "radius": row.extras["radius"], "dimension": row.extras["dimension"],
               "center_corr": row.extras["center_corr"], "K": row.extras["K"]}
    print(f"manifold_capacity end to end: {total:.1f} s  "
          f"({REFERENCE_SECONDS / total:.1f}x faster than the reference's ~{REFERENCE_SECONDS:.0f} s)")
    for key, published in PUBLISHED.items():
        print(f"  {key:12s} {got[key]:10.4f}   published {published:8.4f}   "
              f"({100 * (got[key] - published) / published:+.1f}%)")
    print(f"  95% interval of the capacity over manifolds: [{row.ci_low:.4f}, {row.ci_high:.4f}]; "
          f"worst KKT residual {row.extras['kkt_residual']:.1e}")

    centres = torch.stack([m.double().mean(0) for m in manifolds])
    start = time.perf_counter()
    center_structure(centres, 10, torch.Generator().manual_seed(0))
    print(f"  of which the centre-correlation step: {time.perf_counter() - start:.1f} s")

    S, t = anchor_problems(manifolds, device)
    start = time.perf_counter()
    solution = solve_projections(S, t)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    batched = time.perf_counter() - start
    problems = t.shape[0] * t.shape[1]
    print(f"batched solver: {problems} problems in {batched:.2f} s "
          f"({1e3 * batched / problems:.3f} ms/problem); stages {solution.stages}")

    S_np, t_np = S.cpu().numpy(), t.cpu().numpy()
    for name, solve in (("cvxopt qp (reference's solver)", cvxopt_solver()), ("scipy nnls (dual)", nnls_solver)):
        if solve is None:
            print(f"{name}: not installed, skipped")
            continue
        seconds = per_problem(solve, S_np, t_np, args.subset)
        estimate = seconds / args.subset * problems
        print(f"{name}: {args.subset} problems in {seconds:.2f} s, extrapolated to all {problems}: "
              f"{estimate:.0f} s  (batched solver {estimate / batched:.0f}x faster)")


if __name__ == "__main__":
    main()
