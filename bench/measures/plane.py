"""Invariance under plane rotation: the ``plane`` measure (SPEC section 5, GIH's opening experiment).

A two-class problem on a plane of input space: class 0 on a circle of radius 0.25,
class 1 on a circle of radius 1.5, plus unit Gaussian noise in every other direction.
The plane is spanned by u1 = v_5 and u2(phi) = cos(phi) v_6 + sin(phi) w, with v_i the
eigenvectors of the architecture's average geometry G (section 4, descending) and w
the eigenvector at the 90th-percentile index (``int(0.9 d)``, 0-based), a direction
the geometry does not favour. The architecture is trained from scratch on each
orientation; plane_invariance = clip((acc(90) - 1/2) / (acc(0) - 1/2), 0, 1).

Choices (where SPEC or the reference ``dr-faustus/GIH`` leave them open):

* **Common random numbers.** For run j, the angles, the labels, the raw noise and the
  initialization are drawn once and shared by every phi; only the plane changes. The
  difference between orientations is then not blurred by draw-to-draw noise, and
  the seeds pair the accuracies of phi = 0 and 90 for the bootstrap.
* **Training** as the reference ``train``: train mode, SGD (momentum 0.9, no weight
  decay), lr decayed linearly per step from 0.1 to 0 (the last step has lr 0),
  gradient-norm clip 0.5, batch 128 reshuffled each epoch, cross-entropy; test
  accuracy in eval mode. The data live on the device as tensors, so no DataLoader.
* **G** comes from :func:`bench.measures.ag.average_geometry_matrix` with the ``ag``
  protocol (mean logit, 10-way head, inputs of std 1e-3), memoized, so ``plane``
  reuses the G of ``ag`` when both run with the same sample counts.
* **Uncertainty.** The headline's stderr and interval come from the paired bootstrap
  over seeds (:func:`bench.measures._stats.ratio_of_means` of acc(90) - 1/2 over
  acc(0) - 1/2), clipped to [0, 1] like the value. It is undefined when acc(0) - 1/2
  is not above twice its standard error (the larger of the seed spread and the
  binomial error of the test set).
* **Runs in a loop.** The runs are independent; on this CPU a loop uses both cores
  already (see ``benchmarks/README.md``); batching seeds with ``torch.func`` would
  need batch norm rewritten for vmap and was not done.
* **Presets.** ``full`` is SPEC's protocol. ``quick`` (fewer points, epochs, seeds and
  orientations, and a G from fewer initializations) runs on a CPU in minutes for
  small architectures; its rows say ``preset: quick``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.measures import ag
from bench.measures._stats import ratio_of_means
from bench.measures._types import Measurement, MeasureSpec, ScoreContext
from bench.models.architecture import WEIGHTS_REF, ArchitectureLike, build_architecture, no_tf32

VERSION = 1
RADII = (0.25, 1.5)  # class 0, class 1
U1_INDEX, V_INDEX, W_PERCENTILE = 5, 6, 0.9
LR, MOMENTUM, CLIP, BATCH = 0.1, 0.9, 0.5, 128


@dataclass(frozen=True)
class PlanePreset:
    n_train: int
    n_test: int
    epochs: int
    n_seeds: int
    phis: tuple[float, ...]
    g_n_inits: int
    g_n_inputs: int


PRESETS = {
    "full": PlanePreset(n_train=10_000, n_test=2_000, epochs=20, n_seeds=3, phis=(0, 30, 60, 90),
                        g_n_inits=ag.DEFAULT_N_INITS, g_n_inputs=ag.DEFAULT_N_INPUTS),
    "quick": PlanePreset(n_train=2_000, n_test=1_000, epochs=6, n_seeds=2, phis=(0, 90),
                         g_n_inits=1_024, g_n_inputs=8),
}


@dataclass
class PlaneDraw:
    """One run's randomness, shared by every orientation: angles, labels, raw noise."""

    angles: torch.Tensor  # (n,)
    labels: torch.Tensor  # (n,) int64, balanced
    noise: torch.Tensor  # (n, d), before projection


def draw_plane_data(n: int, d: int, generator: torch.Generator,
                    device: torch.device) -> PlaneDraw:
    """Balanced labels (first ceil(n/2) class 0), uniform angles, N(0, I) noise."""
    labels = (torch.arange(n, device=device) >= (n + 1) // 2).long()
    angles = 2 * math.pi * torch.rand(n, generator=generator, device=device)
    noise = torch.randn(n, d, generator=generator, device=device)
    return PlaneDraw(angles, labels, noise)


def embed_plane(draw: PlaneDraw, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """x = r (cos a u1 + sin a u2) + z, with z's component in span(u1, u2) removed; (n, d)."""
    basis = torch.stack([u1, u2])  # orthonormal rows
    z = draw.noise - (draw.noise @ basis.T) @ basis
    radius = torch.tensor(RADII, device=z.device, dtype=z.dtype)[draw.labels]
    coords = torch.stack([torch.cos(draw.angles), torch.sin(draw.angles)], 1) * radius[:, None]
    return coords @ basis + z


def plane_directions(eigenvectors: torch.Tensor, phi_degrees: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(u1, u2(phi)) from G's eigenvectors (columns, descending), float32."""
    d = eigenvectors.shape[0]
    v5, v6, w = (eigenvectors[:, i].float() for i in (U1_INDEX, V_INDEX, int(W_PERCENTILE * d)))
    phi = math.radians(phi_degrees)
    return v5, math.cos(phi) * v6 + math.sin(phi) * w


def train_and_test(model: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                   x_test: torch.Tensor, y_test: torch.Tensor, epochs: int,
                   generator: torch.Generator) -> float:
    """Train ``model`` with the protocol of SPEC section 5 and return its test accuracy."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / BATCH)
    total, step = epochs * steps_per_epoch, 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(x_train.device)
        for start in range(0, n, BATCH):
            step += 1
            for group in opt.param_groups:
                group["lr"] = LR * (1 - step / total)
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            opt.step()
    return test_accuracy(model, x_test, y_test)


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(int((model(x[s:s + 1024]).argmax(1) == y[s:s + 1024]).sum())
                  for s in range(0, x.shape[0], 1024))
    return correct / x.shape[0]


def plane_invariance(
    arch: ArchitectureLike,
    preset: str = "full",
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    progress: Any = None,
    resolution: int = ag.DEFAULT_RESOLUTION,
) -> Measurement:
    """Accuracy over plane orientations and the headline plane_invariance (SPEC section 5).

    ``arch``: a registry id or entry, a timm name, or a zero-argument callable building
    a fresh 2-class model on (B, 3, resolution, resolution) inputs. ``progress``: a
    tqdm-like bar advanced once per training run.

    >>> plane_invariance("gih_mlp.init", preset="quick")  # doctest: +SKIP
    """
    if preset not in PRESETS:
        raise BenchError(f"unknown plane preset {preset!r}", f"use one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    device = torch.device(device) if device is not None else torch.device("cpu")
    geometry = ag.average_geometry_matrix(arch, resolution, p.g_n_inits, p.g_n_inputs, seed,
                                          device=device)
    _, eigenvectors = ag.ag_eigendecomposition(geometry)
    d = geometry.d
    shape = geometry.input_shape
    accuracy = np.zeros((len(p.phis), p.n_seeds))
    for j in range(p.n_seeds):
        run_seed = seed * 1_000 + j + 1
        gen = torch.Generator(device=device).manual_seed(run_seed)
        train, test = (draw_plane_data(n, d, gen, device) for n in (p.n_train, p.n_test))
        for i, phi in enumerate(p.phis):
            u1, u2 = plane_directions(eigenvectors, phi)
            model = _two_class_model(arch, resolution, run_seed, device)
            with no_tf32():
                accuracy[i, j] = train_and_test(
                    model, embed_plane(train, u1, u2).reshape(-1, *shape), train.labels,
                    embed_plane(test, u1, u2).reshape(-1, *shape), test.labels, p.epochs,
                    torch.Generator().manual_seed(run_seed))
            if progress is not None:
                progress.update(1)
    return _measurement(accuracy, p, preset, seed, resolution, geometry.init_method)


def _two_class_model(arch: ArchitectureLike, resolution: int, seed: int,
                     device: torch.device) -> torch.nn.Module:
    model = build_architecture(arch, resolution, num_classes=2, seed=seed).to(device)
    with torch.no_grad():
        width = model(torch.zeros(1, 3, resolution, resolution, device=device)).shape[-1]
    if width != 2:
        raise BenchError(f"the plane task needs a 2-class model; the architecture gives {width} outputs",
                         "a callable architecture must build a model with num_classes=2")
    return model


def _measurement(accuracy: np.ndarray, p: PlanePreset, preset: str, seed: int,
                 resolution: int, init_method: str) -> Measurement:
    phis = list(p.phis)
    params = dict(preset=preset, resolution=resolution, radii=list(RADII), lr=LR,
                  momentum=MOMENTUM, grad_clip=CLIP, batch_size=BATCH, weights_ref=WEIGHTS_REF,
                  input_std=ag.DEFAULT_INPUT_STD, **{k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in asdict(p).items()})
    acc0, acc90 = accuracy[phis.index(0)], accuracy[phis.index(90)]
    common = dict(params=params, n=p.n_test, draws=p.n_seeds * len(phis),
                  arrays={"phi": [float(x) for x in phis],
                          "acc_mean": accuracy.mean(1).tolist(),
                          "acc_std": accuracy.std(1, ddof=1).tolist() if p.n_seeds > 1
                          else [0.0] * len(phis),
                          "acc_runs": accuracy.flatten().tolist()},
                  extras={"acc0": float(acc0.mean()), "acc90": float(acc90.mean()),
                          "g_init_method": init_method})
    se0 = max(acc0.std(ddof=1) / math.sqrt(len(acc0)) if len(acc0) > 1 else 0.0,
              math.sqrt(0.25 / (p.n_test * len(acc0))))
    if acc0.mean() - 0.5 <= 2 * se0:
        return Measurement.undefined(
            "plane", VERSION, f"accuracy at phi=0 ({acc0.mean():.3f}) is within noise of chance, so "
            "the architecture did not learn the aligned task", **common)
    est = ratio_of_means(acc90 - 0.5, acc0 - 0.5, seed=seed)
    clip = lambda x: None if x is None else min(max(x, 0.0), 1.0)  # noqa: E731
    fields = est.fields()
    return Measurement(
        measure="plane", version=VERSION, value=clip(fields["value"]), stderr=fields["stderr"],
        ci_low=clip(fields["ci_low"]), ci_high=clip(fields["ci_high"]), **common)


def _run(ctx: ScoreContext) -> list[Measurement]:
    preset = ctx.params.get("preset", "full")
    n_runs = PRESETS[preset].n_seeds * len(PRESETS[preset].phis) if preset in PRESETS else 0
    bar = ctx.progress(total=n_runs, desc="plane") if ctx.progress else None
    try:
        return [plane_invariance(ctx.entry, preset, ctx.seed, device=ctx.device, progress=bar,
                                 resolution=ctx.params.get("resolution", ag.DEFAULT_RESOLUTION))]
    finally:
        if bar is not None:
            bar.close()


SPECS = [
    MeasureSpec(
        name="plane", version=VERSION, scope="architecture", needs_images=False,
        description="Invariance under plane rotation: accuracy at phi=90 over phi=0, trained from "
                    "scratch on a circle task in G's eigen-directions",
        defaults={"preset": "full", "resolution": ag.DEFAULT_RESOLUTION},
        run=_run),
]
