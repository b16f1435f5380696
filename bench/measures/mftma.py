"""Manifold capacity, radius and dimension per layer: the ``mftma`` measure (SPEC section 6).

Mean-field theoretic manifold analysis (Chung, Lee, Sompolinsky, PRX 2018; Cohen et
al., Nat. Commun. 2020) asks how many object manifolds per feature dimension a
linear readout can separate; used layer by layer it shows how a network untangles
classes with depth (Stephenson et al., ICLR 2021).

:func:`manifold_capacity` follows the reference ``manifold_analysis_corr``
(schung039/neural_manifolds_replicaMFT) step by step:

1. subtract the global mean of all points;
2. remove the common low-rank structure of the manifold centres
   (:mod:`bench.measures._center_corr`), whose before-removal correlation is
   ``center_corr`` and whose rank is ``K``;
3. normalize each manifold by its centre's norm, express its centred points in an
   orthonormal basis of their span (D = min(N, M) coordinates, from a QR
   decomposition as in the reference) and append the centre as a last coordinate 1;
4. for each manifold draw n_t Gaussian vectors t in D + 1 dimensions; where
   max_s t.s + kappa < 0 the anchor is the maximizing point, elsewhere solve
   min ||v - t||^2 s.t. v.s <= -kappa (the reference's sign; SPEC's v.s >= kappa is
   the same problem for -t) and take the anchor s~ = (t - v) / sum(multipliers);
5. per manifold: capacity 1 / mean((t.s~ + kappa)_+^2 / ||s~||^2), radius
   sqrt(mean ||s~ - mean s~||^2) over the first D coordinates, dimension
   D * mean(t^ . s~^)^2 (PRX 2018 eqs. 16-17, 28, 29); over manifolds, capacity is
   the harmonic mean, radius and dimension the plain means.

The per-vector problems are solved all at once on the device by
:func:`bench.measures._qp.solve_projections`, an interior-point method with an
active-set polish whose KKT residual is checked; a result above tolerance makes the
value undefined rather than wrong. Intervals: bootstrap over manifolds (each
manifold's estimate already averages its own n_t draws, SPEC section 1).

:func:`manifold_capacity_profile` runs it over the layers of a scored model: the
input, each stage, the penultimate features and the logits, each flattened, and
above ``max_features`` projected by :class:`~bench.measures._projection.RandomProjection`.
Class manifolds come from a labelled probe set; without labels each image under
``per_class`` random augmentations (:mod:`bench.measures._augment`) is an exemplar
manifold. The headline row is the capacity of the penultimate features (the
representation a linear readout sees); its arrays hold the whole profile over depth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from bench.errors import BenchError
from bench.harness.batching import batches, default_batch_size
from bench.measures._augment import exemplar_views
from bench.measures._center_corr import center_structure
from bench.measures._projection import RandomProjection
from bench.measures._qp import solve_projections
from bench.measures._stats import bootstrap
from bench.measures._types import Measurement, MeasureSpec, ScoreContext
from bench.models.scored import relative_depths

NAME = "mftma"
VERSION = 1
CENTER_REPS = 10          # random restarts per K in the centre-correlation step (reference default)
KKT_TOL = 1e-8            # largest scaled KKT residual accepted from the solver
INTERIOR_EPS = 1e-8       # ||v - t|| below this counts as t itself (reference's eps)
HEADLINE_LAYER = "pre_logits"


def manifold_capacity(manifolds: Sequence[torch.Tensor], kappa: float = 0.0, n_t: int = 200,
                      seed: int = 0, *, device: torch.device | str | None = None,
                      n_reps: int = CENTER_REPS) -> Measurement:
    """Capacity (value), radius, dimension and centre correlation of P manifolds.

    ``manifolds`` holds one (M_i, N) tensor per manifold: M_i points of N features.
    Runs in float64 on ``device`` (default: that of the first manifold). The same
    seed on the same device gives the same values.
    """
    params = {"kappa": kappa, "n_t": n_t}
    if len(manifolds) < 2:
        raise BenchError(f"manifold capacity needs at least 2 manifolds, got {len(manifolds)}",
                         "use a probe set with more classes or images")
    device = torch.device(device) if device is not None else manifolds[0].device
    points = [m.detach().to(device=device, dtype=torch.float64).flatten(1) for m in manifolds]
    if any(p.shape[0] < 2 for p in points) or len({p.shape[1] for p in points}) != 1:
        raise BenchError("every manifold needs at least 2 points with the same number of features",
                         "check the manifolds passed to manifold_capacity")
    generator = torch.Generator().manual_seed(seed)

    origin = torch.cat(points).mean(0)
    centers = torch.stack([p.mean(0) for p in points])
    structure = center_structure(centers.cpu(), n_reps, generator)
    basis = structure.basis.to(device)
    normalized = []
    for p in points:
        p = p - origin
        p = p - (p @ basis) @ basis.T
        center = p.mean(0)
        normalized.append((p - center) / center.norm())

    per_manifold = np.zeros((len(points), 3))
    worst = 0.0
    for size in sorted({p.shape[0] for p in points}):
        group = [i for i, p in enumerate(points) if p.shape[0] == size]
        anchors = _anchor_problems(torch.stack([normalized[i] for i in group]), n_t, generator)
        stats, residual = _solve_anchors(*anchors, kappa)
        per_manifold[group] = stats
        worst = max(worst, residual)
    extras = {"center_corr": structure.center_corr, "K": structure.K, "n_manifolds": len(points),
              "points_per_manifold": int(np.median([p.shape[0] for p in points])),
              "n_features": points[0].shape[1], "kkt_residual": worst}
    if worst > KKT_TOL or not np.isfinite(per_manifold).all() or (per_manifold[:, 0] <= 0).any():
        return Measurement.undefined(NAME, VERSION, f"solver did not converge (KKT residual {worst:.1e})",
                                     params=params, extras=extras)
    return _summarize(per_manifold, params, extras, n_t, seed)


def _anchor_problems(manifolds: torch.Tensor, n_t: int, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Points with the centre coordinate, (P, M, D + 1), and the Gaussian t, (P, n_t, D + 1).

    Centred manifolds (P, M, N) are expressed in an orthonormal basis of their span
    when N > M (D = M, as the reference's economic QR), else kept (D = N). The t are
    drawn on the CPU so that a seed gives the same vectors on every device.
    """
    P, M, N = manifolds.shape
    coords = torch.linalg.qr(manifolds.transpose(1, 2)).R.transpose(1, 2) if N > M else manifolds
    D = coords.shape[-1]
    S = torch.cat([coords, torch.ones(P, M, 1, dtype=coords.dtype, device=coords.device)], -1)
    t = torch.randn(P, n_t, D + 1, dtype=torch.float64, generator=generator).to(coords.device)
    return S, t, D


def _solve_anchors(S: torch.Tensor, t: torch.Tensor, D: int, kappa: float) -> tuple[np.ndarray, float]:
    """Per-manifold (capacity, radius, dimension) and the worst KKT residual."""
    P, n_t, d = t.shape
    projections = t[..., :D] @ S[..., :D].transpose(1, 2)           # (P, n_t, M)
    best = projections.argmax(-1)
    s0 = torch.gather(S, 1, best[..., None].expand(P, n_t, d))        # max-projection points
    feasible = (t * s0).sum(-1) + kappa < 0                           # t itself satisfies all constraints
    solution = solve_projections(S, t, kappa, max_elements=_element_budget(S.device))
    moved = ~feasible & ((solution.v - t).norm(dim=-1) >= INTERIOR_EPS)
    anchor = (t - solution.v) / solution.z.sum(-1, keepdim=True).clamp(min=1e-300)
    anchors = torch.where(moved[..., None], anchor, s0)
    worst = float(solution.residual.max())

    field = ((t * anchors).sum(-1) + kappa).clamp(min=0)
    norm_sq = anchors.square().sum(-1)
    inverse_capacity = torch.where(norm_sq > 0, field.square() / norm_sq, torch.zeros_like(field)).mean(-1)
    capacity = 1 / inverse_capacity
    spread = anchors - anchors.mean(1, keepdim=True)
    radius = (spread[..., :D] / anchors[..., D:]).square().sum(-1).mean(-1).sqrt()
    t_hat = t[..., :D] / t[..., :D].norm(dim=-1, keepdim=True)
    s_hat = anchors[..., :D] / (anchors[..., :D].square().sum(-1, keepdim=True) + 1e-12).sqrt()
    dimension = D * (t_hat * s_hat).sum(-1).mean(-1).square()
    stats = torch.stack([capacity, radius, dimension], -1).cpu().numpy()
    return stats, worst


def _element_budget(device: torch.device) -> int:
    """float64 elements per solver chunk: ~64 MB of problem data on a CPU, ~1 GB on a GPU."""
    return 2**27 if device.type == "cuda" else 2**23


def _summarize(per_manifold: np.ndarray, params: dict, extras: dict, n_t: int, seed: int) -> Measurement:
    """Harmonic-mean capacity, mean radius and dimension, bootstrapped over manifolds."""
    capacity = bootstrap(per_manifold[:, 0], lambda x: 1 / (1 / x).mean(axis=1), seed=seed)
    radius = bootstrap(per_manifold[:, 1], seed=seed)
    dimension = bootstrap(per_manifold[:, 2], seed=seed)
    for name, estimate in (("radius", radius), ("dimension", dimension)):
        fields = estimate.fields()
        extras |= {name: fields["value"], f"{name}_stderr": fields["stderr"],
                   f"{name}_ci_low": fields["ci_low"], f"{name}_ci_high": fields["ci_high"]}
    return Measurement(NAME, VERSION, draws=n_t, params=params, extras=extras, **capacity.fields())


def manifold_capacity_profile(model, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                              n_classes: int = 50, per_class: int = 50, n_t: int = 200,
                              kappa: float = 0.0, max_features: int = 5000, seed: int = 0,
                              device: torch.device | str | None = None, batch_size: int | None = None,
                              progress: Callable | None = None) -> list[Measurement]:
    """Manifold capacity at every layer of a :class:`~bench.models.scored.ScoredModel`.

    Returns one row per layer (``layer``, ``depth`` set) and first a headline row
    (``layer`` None) with the penultimate capacity as its value and the profile over
    depth as arrays (``depth``, ``capacity``, ``radius``, ``dimension``,
    ``center_corr``; layer names in ``extras['layers']``).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    inputs, kind, P, M = _manifold_inputs(images, labels, n_classes, per_class, generator)
    features = _layer_features(model, inputs, max_features, seed, device,
                               batch_size or default_batch_size(device))
    depths = relative_depths(len(features))
    params = {"n_classes": n_classes, "per_class": per_class, "n_t": n_t, "kappa": kappa,
              "max_features": max_features}
    bar = progress(len(features), "mftma layers") if progress else None
    rows = []
    for (name, (feats, n_features)), depth in zip(features.items(), depths):
        manifolds = list(feats.to(device).reshape(P, M, -1))
        row = manifold_capacity(manifolds, kappa=kappa, n_t=n_t, seed=seed, device=device)
        row.params = params
        row.layer, row.depth = name, depth
        row.extras |= {"manifolds": kind, "layer_features": n_features}
        rows.append(row)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return [_headline(rows, params, kind), *rows]


def _headline(rows: list[Measurement], params: dict, kind: str) -> Measurement:
    """The penultimate layer's capacity, carrying the whole profile for the picture."""
    head = next(r for r in rows if r.layer == HEADLINE_LAYER)
    arrays = {"depth": [r.depth for r in rows]}
    for key in ("capacity", "radius", "dimension", "center_corr"):
        values = [r.value if key == "capacity" else r.extras.get(key) for r in rows]
        arrays[key] = [float("nan") if v is None else float(v) for v in values]
    extras = dict(head.extras, layer=HEADLINE_LAYER, layers=[r.layer for r in rows], manifolds=kind)
    if head.status != "ok":
        return Measurement.undefined(NAME, VERSION, head.reason or "undefined", params=params,
                                     extras=extras, arrays=arrays)
    return Measurement(NAME, VERSION, value=head.value, stderr=head.stderr, ci_low=head.ci_low,
                       ci_high=head.ci_high, n=head.n, draws=head.draws, params=params,
                       extras=extras, arrays=arrays)


def _manifold_inputs(images: torch.Tensor, labels: torch.Tensor | None, n_classes: int,
                     per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, str, int, int]:
    """Images ordered manifold by manifold, (P * M, C, H, W), and which kind, P, M.

    With labels: P = min(n_classes, classes with at least 2 images), the classes with
    the most images first, ties (a balanced probe set) drawn at random; M =
    min(per_class, the smallest of their counts), each class's M images drawn at random.
    Without labels: P = min(n_classes, images) exemplar images, each under M = per_class
    random augmentations.
    """
    if labels is None:
        P = min(n_classes, len(images))
        chosen = images[torch.randperm(len(images), generator=generator)[:P]]
        return exemplar_views(chosen, per_class, generator), "exemplar", P, per_class
    labels = torch.as_tensor(labels).cpu()
    classes, counts = torch.unique(labels, return_counts=True)
    enough = counts >= 2
    classes, counts = classes[enough], counts[enough]
    if len(classes) < 2:
        raise BenchError("class manifolds need at least 2 classes with 2 images each",
                         "use a labelled probe set with more images per class, or drop the labels")
    shuffled = torch.randperm(len(classes), generator=generator)
    by_size = shuffled[torch.argsort(counts[shuffled], descending=True, stable=True)]
    chosen = by_size[: min(n_classes, len(classes))]
    classes = classes[chosen]
    M = min(per_class, int(counts[chosen].min()))
    order = []
    for c in classes:
        members = torch.nonzero(labels == c).flatten()
        order.append(members[torch.randperm(len(members), generator=generator)[:M]])
    return images[torch.cat(order)], "class", len(classes), M


@torch.no_grad()
def _layer_features(model, inputs: torch.Tensor, max_features: int, seed: int,
                    device: torch.device, batch_size: int) -> dict[str, tuple[torch.Tensor, int]]:
    """Flattened (and, above ``max_features``, projected) features of every layer, on the CPU.

    Layers: ``input``, then ``model.stages`` (stage outputs, ``pre_logits``,
    ``logits``). Each layer has its own projection, seeded from ``seed`` and its
    position, applied batch by batch so no layer is ever held at full width.
    """
    collected: dict[str, list[torch.Tensor]] = {}
    projections: dict[str, RandomProjection | None] = {}
    widths: dict[str, int] = {}
    for index in batches(len(inputs), batch_size):
        x = inputs[index].to(device)
        layers = [("input", x), *model.stages(x)]
        for position, (name, out) in enumerate(layers):
            flat = out.flatten(1).float()
            if name not in projections:
                widths[name] = flat.shape[1]
                projections[name] = (RandomProjection(flat.shape[1], max_features, seed=seed, stream=position,
                                                      device=device)
                                     if flat.shape[1] > max_features else None)
            projection = projections[name]
            collected.setdefault(name, []).append((projection(flat) if projection else flat).cpu())
    return {name: (torch.cat(parts), widths[name]) for name, parts in collected.items()}


def _run(ctx: ScoreContext) -> list[Measurement]:
    p = ctx.params
    return manifold_capacity_profile(
        ctx.model, ctx.images, ctx.labels, n_classes=int(p["n_classes"]), per_class=int(p["per_class"]),
        n_t=int(p["n_t"]), kappa=float(p["kappa"]), max_features=int(p["max_features"]), seed=ctx.seed,
        device=ctx.device, batch_size=ctx.batch_size, progress=ctx.progress)


SPECS = [
    MeasureSpec(
        name=NAME, version=VERSION, scope="checkpoint",
        description="Mean-field manifold capacity, radius and dimension of class (or exemplar) "
                    "manifolds at every layer; headline: capacity of the penultimate features.",
        defaults={"n_classes": 50, "per_class": 50, "n_t": 200, "kappa": 0.0, "max_features": 5000},
        run=_run, needs_labels=False),
]
