"""Volume element of the pulled-back feature metric and its magnification: ``volume`` (SPEC section 7).

Zavatone-Veth, Yang, Rubinfien and Pehlevan (arXiv 2301.11375) pull the Euclidean
metric of the penultimate features phi back onto input space,
g(x) = J_phi(x)^T J_phi(x) / n, and find that training magnifies areas near decision
boundaries. Input space is far too large for det g, so the measure restricts g to
planes through triplets of probe images: with an orthonormal basis U (d x 2) of the
plane, g_U = (J U)^T (J U) / n is 2 x 2 and needs two Jacobian-vector products per
point. On a G x G grid of each plane it records the log volume element
l = 1/2 log det g_U, the predicted class and the predictive entropy H (nats) of
the logits.

- Headline ``magnification``: Spearman correlation between l and H over all grid
  points of all planes (decision boundaries are where H is high).
- ``boundary_ratio``: SPEC asks for "the ratio of mean l at boundary points to
  interior points". l is a logarithm whose zero depends on the units of pixel space
  and which is often negative, so a literal quotient of mean logs has no stable
  sign or meaning. The faithful reading is the ratio of typical volume elements:
  exp(mean l_boundary - mean l_interior), the ratio of geometric-mean volume
  elements sqrt(det g_U) at boundary points (a 4-neighbour on the grid predicts
  another class) to interior points; > 1 means boundaries are magnified. The
  difference of mean l is kept too (``boundary_logvol_diff``).
- Uncertainty: planes are the independent units, so every interval is a bootstrap
  over planes (resampling whole planes, with all their grid points).
- Grid: the square (in plane coordinates) that covers the three images' bounding
  box, widened by ``margin`` times its side on every edge, G points per axis;
  grid points may leave [0, 1]^d, as in the paper's figures (pixels are not
  clipped, which would bend the plane). Point (i, j) of a map is row i (second
  basis direction), column j (first), flattened row by row.
- Triplets: three distinct images per plane drawn with the seed; with labels, of
  three different classes where the probe set has them (as in the paper).
- Undefined (SPEC section 1) when l or H varies by less than 1e-5 on every plane:
  linear features (constant metric) or a constant classifier leave no ranking to
  correlate; the maps are still stored.
- Degenerate points (det g_U <= 1e-300, e.g. all ReLUs dead) get l = 0.5 log 1e-300
  and are counted in ``degenerate_points``.

The first :data:`MAP_PLANES` planes are stored as arrays for the leaderboard's
volume map: ``plane{k}_logvol``, ``plane{k}_entropy``, ``plane{k}_pred`` (G*G
values), ``plane{k}_x`` / ``plane{k}_y`` (the G grid coordinates per axis) and
``plane{k}_triplet`` (x1, y1, x2, y2, x3, y3: the images' plane coordinates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import BenchError
from bench.harness.batching import batches, default_batch_size, run_with_backoff
from bench.measures._jacobian import function_device, require_eval_mode
from bench.measures._stats import bootstrap
from bench.measures._types import Measurement, MeasureSpec, ScoreContext

NAME = "volume"
VERSION = 1
MARGIN = 0.15
MAP_PLANES = 2
_DET_FLOOR = 1e-300           # det g_U at or below this is a degenerate point (l floored there)
_FLAT = 1e-5                  # l or H varying less than this is constant up to float32 round-off


@dataclass
class PlaneMaps:
    """Everything measured on one plane: (G*G,) maps and the plane's geometry."""

    logvol: np.ndarray
    entropy: np.ndarray
    pred: np.ndarray
    axis_x: np.ndarray
    axis_y: np.ndarray
    triplet: np.ndarray       # (3, 2) plane coordinates of the three images
    degenerate: int           # grid points whose det g_U was not positive


def volume_element(model, images: torch.Tensor, planes: int = 8, grid: int = 32, seed: int = 0, *,
                   labels: torch.Tensor | None = None, margin: float = MARGIN,
                   batch_size: int | None = None, device: torch.device | str | None = None,
                   progress: Callable | None = None) -> Measurement:
    """Magnification of the feature metric near decision boundaries (SPEC section 7).

    ``model`` is a :class:`~bench.models.scored.ScoredModel` or any module with
    ``features(x)`` (penultimate features, (N, n)) and ``model(x)`` (logits), in
    eval mode. ``images`` (N, ...) in the model's input space, N >= 3.
    """
    require_eval_mode(model)
    device = torch.device(device) if device is not None else function_device(model, torch.device("cpu"))
    if len(images) < 3:
        raise BenchError(f"the volume measure needs at least 3 probe images, got {len(images)}",
                         "use a larger probe set")
    generator = torch.Generator().manual_seed(seed)
    triplets = _triplets(len(images), planes, generator, labels)
    params = {"planes": planes, "grid": grid, "margin": margin}
    size = batch_size or default_batch_size(device)
    bar = progress(planes, "volume planes") if progress else None
    maps = []
    for triplet in triplets:
        maps.append(plane_maps(model, images[triplet].to(device), grid, margin, batch_size=size))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return _summarize(maps, params, seed)


def plane_maps(model, triplet: torch.Tensor, grid: int, margin: float = MARGIN, *,
               batch_size: int = 64) -> PlaneMaps:
    """Log volume element, entropy and prediction on the grid of the plane through 3 images."""
    shape = triplet.shape[1:]
    x = triplet.flatten(1).double()
    origin = x.mean(0)
    basis = _plane_basis(x)
    coords = (x - origin) @ basis                                     # (3, 2)
    axis_x, axis_y = _grid_axes(coords, grid, margin)
    yy, xx = torch.meshgrid(axis_y, axis_x, indexing="ij")
    points = origin + xx.reshape(-1, 1) * basis[:, 0] + yy.reshape(-1, 1) * basis[:, 1]
    points = points.float().reshape(-1, *shape)
    directions = basis.T.float().reshape(2, *shape)

    def evaluate(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = [_metric_and_logits(model, points[index], directions) for index in batches(len(points), size)]
        return tuple(torch.cat(parts) for parts in zip(*outs))

    metric, log_probs = run_with_backoff(evaluate, batch_size)
    det = metric[:, 0, 0] * metric[:, 1, 1] - metric[:, 0, 1] ** 2
    logvol = 0.5 * det.clamp(min=_DET_FLOOR).log()
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return PlaneMaps(logvol=logvol.cpu().numpy(), entropy=entropy.cpu().numpy(),
                     pred=log_probs.argmax(-1).cpu().numpy(), axis_x=axis_x.cpu().numpy(),
                     axis_y=axis_y.cpu().numpy(), triplet=coords.cpu().numpy(),
                     degenerate=int((det <= _DET_FLOOR).sum()))


def _plane_basis(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (d, 2) of span(x2 - x1, x3 - (x1 + x2) / 2), by Gram-Schmidt."""
    first = x[1] - x[0]
    second = x[2] - (x[0] + x[1]) / 2
    if first.norm() == 0:
        raise BenchError("two images of a volume triplet are identical", "use a probe set without duplicates")
    first = first / first.norm()
    second = second - (second @ first) * first
    if second.norm() <= 1e-9 * x.norm():
        raise BenchError("three images of a volume triplet lie on one line",
                         "use a probe set without duplicate or collinear images")
    return torch.stack([first, second / second.norm()], 1)


def _grid_axes(coords: torch.Tensor, grid: int, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """G coordinates per axis of the square covering the triplet with a margin on each side."""
    low, high = coords.amin(0), coords.amax(0)
    centre = (low + high) / 2
    half = (high - low).amax() * (0.5 + margin)
    steps = torch.linspace(-1, 1, grid, dtype=coords.dtype, device=coords.device)
    return centre[0] + half * steps, centre[1] + half * steps


def _metric_and_logits(model, x: torch.Tensor, directions: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """g_U (B, 2, 2) in float64 and log-probabilities (B, C) at the points ``x``.

    J U comes from forward-mode products of the features along both basis
    directions (:func:`_push_forward`); the logits from a plain forward.
    """
    pushed = _push_forward(model.features, x, directions).flatten(2).double()   # (2, B, n)
    ju = pushed.transpose(0, 1)                                                 # (B, 2, n)
    metric = ju @ ju.transpose(1, 2) / ju.shape[-1]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(x).double(), -1)
    return metric, log_probs


def _push_forward(f: Callable, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """J_f(x_b) u_k for every point b and direction k: (K, B, ...) for K directions.

    Forward-mode AD vectorized over the directions (``vmap`` of ``jvp``) computes the
    primal pass once for all of them: 1.1-1.3x faster on CPU than a batch holding
    every point once per direction (``benchmarks/bench_volume.py``). Attention runs on the
    math kernel, which has forward-mode derivatives on every device (fused kernels do not
    on CPU). Where a layer has no
    forward-mode or batching rule, the double-backward trick gives the same products
    from reverse passes: J u = d/dw <J^T w, u>, exact because J^T w is linear in w.
    """
    def along(u: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(f, (x,), (u.expand_as(x),))[1]

    try:
        with _math_attention():
            return torch.func.vmap(along)(directions)
    except (NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not any(
                word in str(exc).lower() for word in ("forward", "vmap", "batching")):
            raise
        K, B = len(directions), len(x)
        tangents = directions.repeat_interleave(B, 0)
        _, pushed = _jvp_double_backward(f, x.repeat(K, *[1] * (x.dim() - 1)), tangents)
        return pushed.reshape(K, B, *pushed.shape[1:])


def _jvp_double_backward(f: Callable, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), J_f(x) u) per sample from two reverse-mode passes (see :func:`_push_forward`)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = f(x)
        w = torch.zeros_like(out, requires_grad=True)
        (vjp,) = torch.autograd.grad(out, x, grad_outputs=w, create_graph=True)
        (pushed,) = torch.autograd.grad(vjp, w, grad_outputs=u)
    return out.detach(), pushed.detach()


def _math_attention():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: fused kernels cannot be switched off here
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def _triplets(n_images: int, planes: int, generator: torch.Generator,
              labels: torch.Tensor | None) -> list[torch.Tensor]:
    """Index triplets of distinct images, of three distinct classes when labels allow."""
    if labels is not None:
        labels = torch.as_tensor(labels).cpu()
        classes = torch.unique(labels)
        if len(classes) >= 3:
            out = []
            for _ in range(planes):
                chosen = classes[torch.randperm(len(classes), generator=generator)[:3]]
                out.append(torch.stack([_pick(torch.nonzero(labels == c).flatten(), generator)
                                        for c in chosen]))
            return out
    return [torch.randperm(n_images, generator=generator)[:3] for _ in range(planes)]


def _pick(members: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return members[torch.randint(len(members), (1,), generator=generator)[0]]


def boundary_mask(pred: np.ndarray, grid: int) -> np.ndarray:
    """Grid points with a 4-neighbour of another predicted class, (G*G,) booleans."""
    p = pred.reshape(grid, grid)
    edge = np.zeros_like(p, dtype=bool)
    vertical = p[1:] != p[:-1]
    horizontal = p[:, 1:] != p[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge.reshape(-1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2).astype(float))[inverse]


def _summarize(maps: list[PlaneMaps], params: dict, seed: int) -> Measurement:
    """Statistics pooled over planes, bootstrapped over planes, and the maps of the first planes."""
    grid = len(maps[0].axis_x)
    logvol = np.stack([m.logvol for m in maps])
    entropy = np.stack([m.entropy for m in maps])
    boundary = np.stack([boundary_mask(m.pred, grid) for m in maps])
    plane_ids = np.arange(len(maps), dtype=float)

    def magnification(resampled: np.ndarray) -> np.ndarray:
        rows = resampled.astype(int)
        return np.array([spearman(logvol[r].ravel(), entropy[r].ravel()) for r in rows])

    sums = np.stack([(logvol * boundary).sum(1), boundary.sum(1),
                     (logvol * ~boundary).sum(1), (~boundary).sum(1)], 1)

    def log_ratio(resampled: np.ndarray) -> np.ndarray:
        total = resampled.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total[:, 0] / total[:, 1] - total[:, 2] / total[:, 3]

    extras: dict = {"degenerate_points": int(sum(m.degenerate for m in maps)),
                    "boundary_fraction": float(boundary.mean())}
    mean_l = bootstrap(logvol.mean(1), seed=seed).fields()
    extras |= {"mean_logvol": mean_l["value"], "mean_logvol_ci_low": mean_l["ci_low"],
               "mean_logvol_ci_high": mean_l["ci_high"]}
    if boundary.any() and (~boundary).any():
        diff = bootstrap(sums, log_ratio, seed=seed)
        extras |= {"boundary_logvol_diff": diff.value, "boundary_ratio": float(np.exp(diff.value)),
                   "boundary_ratio_ci_low": _exp_or_none(diff.ci_low),
                   "boundary_ratio_ci_high": _exp_or_none(diff.ci_high)}
    arrays = _map_arrays(maps[:MAP_PLANES])
    n = {"n": len(maps), "draws": grid * grid}
    if np.ptp(logvol, axis=1).max() <= _FLAT or np.ptp(entropy, axis=1).max() <= _FLAT:
        return Measurement.undefined(NAME, VERSION, "log volume or entropy is constant on every plane",
                                     params=params, extras=extras, arrays=arrays, **n)
    estimate = bootstrap(plane_ids, magnification, seed=seed)
    return Measurement(NAME, VERSION, params=params, extras=extras, arrays=arrays,
                       **{**estimate.fields(), "draws": grid * grid})


def _exp_or_none(x: float) -> float | None:
    return float(np.exp(x)) if np.isfinite(x) else None


def _map_arrays(maps: list[PlaneMaps]) -> dict[str, list[float]]:
    arrays: dict[str, list[float]] = {}
    for k, m in enumerate(maps):
        arrays |= {f"plane{k}_logvol": m.logvol.tolist(), f"plane{k}_entropy": m.entropy.tolist(),
                   f"plane{k}_pred": m.pred.astype(float).tolist(), f"plane{k}_x": m.axis_x.tolist(),
                   f"plane{k}_y": m.axis_y.tolist(), f"plane{k}_triplet": m.triplet.ravel().tolist()}
    return arrays


def _run(ctx: ScoreContext) -> list[Measurement]:
    p = ctx.params
    return [volume_element(ctx.model, ctx.images, planes=int(p["planes"]), grid=int(p["grid"]),
                           seed=ctx.seed, labels=ctx.labels, margin=float(p["margin"]),
                           batch_size=ctx.batch_size, device=ctx.device, progress=ctx.progress)]


SPECS = [
    MeasureSpec(
        name=NAME, version=VERSION, scope="checkpoint",
        description="Spearman correlation between the log volume element of the pulled-back "
                    "feature metric and the predictive entropy on planes through image triplets.",
        defaults={"planes": 8, "grid": 32, "margin": MARGIN}, run=_run),
]
