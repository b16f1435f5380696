"""Relative stability to diffeomorphisms (SPEC section 3), after Petrini et al., NeurIPS 2021.

    D_f = mean_{i, draw} ||f(tau x_i) - f(x_i)||^2    / mean_{i != j} ||f(x_i) - f(x_j)||^2
    G_f = mean_{i, draw} ||f(x_i + eta_i) - f(x_i)||^2 / mean_{i != j} ||f(x_i) - f(x_j)||^2
    R_f = D_f / G_f

tau is a maximum-entropy diffeomorphism (:mod:`bench.measures.diffeo`) of typical
displacement delta pixels at the input resolution n, and eta isotropic Gaussian noise
rescaled so that ||eta_i|| = ||tau x_i - x_i|| exactly, per image and draw, with no
clipping to [0, 1]. R_f < 1 means f is more stable to smooth deformations than to
noise of the same size. Cost: 1 + 2 x draws forward passes per image (+ 2 x draws per
extra delta of a sweep, the clean pass being shared), plus the fields and the remap.

How it is computed, and why:

- The pair mean is the closed form mean_{i != j} ||f_i - f_j||^2 = 2/(N-1) sum_i ||f_i - fbar||^2,
  accumulated batch by batch in O(N C) time and O(C) memory, so it also serves wide
  stage outputs.
- Randomness is fixed per image, not per batch: the field coefficients of every image
  and draw are drawn up front on the CPU, and the noise of image i, draw r comes from
  a generator seeded for (seed, i, r). So the values do not depend on the batch size
  (nor on the out-of-memory back-off), and the fields are the same on every device.
- A sweep over delta uses common random numbers: the same field coefficients
  (scaled by sqrt(T(delta))) and the same noise directions at every delta, which
  makes the curve smooth and its points directly comparable.

Uncertainty (SPEC section 1): a paired bootstrap over images, with each image's terms
averaged over its draws. For R_f the pair mean cancels, so the resampled statistic is
mean(d_i) / mean(g_i) over the resampled images exactly. For D_f and G_f (``extras``
``d_f_stderr``, ``d_f_ci_low``, ...) the pair mean is recomputed on each resample from
the kept (N, C) outputs; this is done for the headline output only, since stage
outputs are too wide to keep.

Choices where SPEC is silent, recorded here and in the rows:

- ``rf_median`` (the public reference code's estimator) pools images and draws: for
  each output coordinate the median over all (image, draw) of the squared difference,
  summed over coordinates; its pair-median denominator cancels in the ratio, so the
  value is that sum for tau over the same sum for eta. It is given for the headline
  output only.
- ``--sweep`` stores the curve on the headline row (``arrays``: ``delta``, ``rf``,
  ``rf_ci_low``, ``rf_ci_high``, ``d_f``, ``g_f``, ``t``) over delta in {0.5, 1, 2, 4}
  plus the headline delta; the headline value is the point at ``delta``. A point
  whose value is undefined is NaN in the arrays.
- ``--layers`` adds one row per stage output of ``ScoredModel.stages`` (then
  pre-logits and logits) at the headline delta, flattened, with ``layer`` and
  ``depth`` from :func:`bench.models.scored.relative_depths`; they come from the same
  forward passes as the headline.
- Images must be square (SPEC defines the field for n x n images).
- A function is taken as constant, and the row undefined, when the pair mean is at
  most 1e-12 times the mean squared output norm (about 10 float32 ulps in distance):
  below that, differences are rounding noise.

What it gives on real networks (500 CIFAR-10 test images, c = 3, delta = 1 px, 2 draws,
seed 0; table with intervals in ``benchmarks/README.md``, section ``rf``): the trained
CIFAR ResNet-20/32/44/56 have R_f = 0.21 / 0.21 / 0.23 / 0.19, their seed-0 random
initializations 0.54 / 0.44 / 0.16 / 2.1. Under eval-mode BatchNorm an init value
depends strongly on the seed (0.2 to 2 across seeds), far more than its interval over
images says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.harness.batching import batches, default_batch_size, run_with_backoff
from bench.measures._jacobian import function_device, require_eval_mode
from bench.measures._stats import Estimate, bootstrap, ratio_of_means
from bench.measures._types import Measurement, MeasureSpec, ScoreContext
from bench.measures.diffeo import (deform, fields_from_coefficients, sample_coefficients,
                                   square_size, t_max, temperature)
from bench.models.scored import relative_depths

VERSION = 1
NAME = "rf"
SWEEP_DELTAS = (0.5, 1.0, 2.0, 4.0)
VANISHING = 1e-12  # pair mean / mean squared norm below which outputs count as constant

Outputs = Callable[[torch.Tensor], list[tuple[str, torch.Tensor]]]


@dataclass(frozen=True)
class Protocol:
    """The protocol parameters of one rf computation (all of them are stored with its rows)."""

    cutoff: float
    deltas: tuple[float, ...]
    draws: int
    resolution: int

    def temperature(self, delta: float) -> float:
        return temperature(delta, self.resolution, self.cutoff)

    def params(self, delta: float) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "delta": delta, "draws": self.draws,
                "resolution": self.resolution, "t": self.temperature(delta)}


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows, summed in float64."""
    return (a - b).double().pow(2).sum(1)


@dataclass
class OutputTerms:
    """Per-image terms of one output (the logits, or one stage) over every delta and draw.

    ``d[i, k, r] = ||f(tau x_i) - f(x_i)||^2`` and ``g[i, k, r] = ||f(x_i + eta_i) - f(x_i)||^2``
    for delta index k and draw r. ``sum_f`` and ``sum_sq`` (of f(x_i) and ||f(x_i)||^2)
    give the pair mean in closed form. The headline output also keeps its clean
    outputs (N, C) and the per-coordinate squared differences (N, K, draws, C) for
    the bootstrap of D_f, G_f and for ``rf_median``.
    """

    d: np.ndarray
    g: np.ndarray
    sum_f: torch.Tensor
    sum_sq: float = 0.0
    outputs: np.ndarray | None = None
    d_coord: np.ndarray | None = None
    g_coord: np.ndarray | None = None

    @classmethod
    def empty(cls, n_images: int, shape: tuple[int, int], width: int, keep: bool,
              device: torch.device) -> OutputTerms:
        """Zeroed terms for ``n_images`` images, ``shape`` = (deltas, draws), ``width`` outputs."""
        return cls(d=np.zeros((n_images, *shape)), g=np.zeros((n_images, *shape)),
                   sum_f=torch.zeros(width, dtype=torch.float64, device=device),
                   outputs=np.zeros((n_images, width)) if keep else None,
                   d_coord=np.zeros((n_images, *shape, width), np.float32) if keep else None,
                   g_coord=np.zeros((n_images, *shape, width), np.float32) if keep else None)

    def add_clean(self, rows: slice, out: torch.Tensor) -> None:
        """Record the clean outputs f(x_i) of the images ``rows``."""
        self.sum_f += out.double().sum(0)
        self.sum_sq += float(out.double().pow(2).sum())
        if self.outputs is not None:
            self.outputs[rows] = out.double().cpu().numpy()

    def add_perturbed(self, rows: slice, k: int, r: int, out: torch.Tensor,
                      deformed: torch.Tensor, noisy: torch.Tensor) -> None:
        """Record f(tau x_i) and f(x_i + eta_i) of the images ``rows`` at delta k, draw r."""
        self.d[rows, k, r] = _sq_dist(deformed, out).cpu().numpy()
        self.g[rows, k, r] = _sq_dist(noisy, out).cpu().numpy()
        if self.d_coord is not None:
            self.d_coord[rows, k, r] = (deformed - out).pow(2).cpu().numpy()
            self.g_coord[rows, k, r] = (noisy - out).pow(2).cpu().numpy()

    @property
    def n(self) -> int:
        return self.d.shape[0]

    def mean_sq_norm(self) -> float:
        return self.sum_sq / self.n

    def pair_mean(self) -> float:
        """mean_{i != j} ||f_i - f_j||^2 = 2/(N-1) (sum_i ||f_i||^2 - ||sum_i f_i||^2 / N)."""
        n = self.n
        return 2.0 / (n - 1) * (self.sum_sq - float(self.sum_f.pow(2).sum()) / n)


@dataclass
class StabilitySample:
    """Everything measured on the probe images: :class:`OutputTerms` by output name."""

    protocol: Protocol
    terms: dict[str, OutputTerms] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


# -- randomness -------------------------------------------------------------------------

def _seeds(seed: int, stream: int, count: int) -> np.ndarray:
    return np.random.SeedSequence([seed, stream]).generate_state(count, dtype=np.uint64)


def _noise_directions(seeds: np.ndarray, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(draws, b, *shape) standard normal noise, image i and draw r from ``seeds[i, r]``.

    The loop only re-seeds one generator per (image, draw), so that each image's noise
    does not depend on which batch it falls in; the draws themselves are tensor ops.
    """
    b, draws = seeds.shape
    out = torch.empty((draws, b, *shape), device=device)
    generator = torch.Generator(device=device)
    for i in range(b):
        for r in range(draws):
            generator.manual_seed(int(seeds[i, r]))
            torch.randn(shape, generator=generator, device=device, out=out[r, i])
    return out


# -- the forward passes -----------------------------------------------------------------

def _flat(outputs: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    return [(name, t.reshape(t.shape[0], -1)) for name, t in outputs]


def _perturb(x: torch.Tensor, fields: torch.Tensor, directions: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tau x, x + eta) with ||eta|| = ||tau x - x|| per image: ``directions`` scaled to that norm."""
    deformed = deform(x, fields)
    size = torch.linalg.vector_norm((deformed - x).flatten(1), dim=1, dtype=torch.float64)
    norm = torch.linalg.vector_norm(directions.flatten(1), dim=1, dtype=torch.float64)
    scale = (size / norm).to(x.dtype)
    return deformed, x + directions * scale.view(-1, *([1] * (x.dim() - 1)))


def stability_sample(outputs: Outputs, images: torch.Tensor, protocol: Protocol, seed: int, *,
                     keep: Sequence[str] = (), batch_size: int | None = None,
                     device: torch.device | None = None, progress: Any | None = None
                     ) -> StabilitySample:
    """Run the forward passes of rf and collect per-image terms for every output.

    ``outputs(x)`` returns named outputs [(name, (b, ...))]; each is flattened per image.
    ``keep`` names the outputs whose clean values and per-coordinate differences are
    kept (see :class:`OutputTerms`). Images (N, C, n, n) may live on the CPU; batches
    are moved to ``device``. ``progress`` is a tqdm-like bar advanced per image.
    """
    n_images, p = images.shape[0], protocol
    device = device or images.device
    generator = torch.Generator().manual_seed(int(_seeds(seed, 0, 1)[0]))
    coefficients = sample_coefficients(n_images * p.draws, p.cutoff, generator)
    coefficients = coefficients.reshape(n_images, p.draws, *coefficients.shape[1:])
    noise_seeds = _seeds(seed, 1, n_images * p.draws).reshape(n_images, p.draws)

    def work(size: int) -> StabilitySample:
        sample = StabilitySample(p)
        for rows in batches(n_images, size):
            x = images[rows].to(device)
            b = x.shape[0]
            clean = _flat(outputs(x))
            if not sample.terms:
                sample.names = [name for name, _ in clean]
                sample.terms = {name: OutputTerms.empty(n_images, (len(p.deltas), p.draws),
                                                        out.shape[1], name in keep, device)
                                for name, out in clean}
            for name, out in clean:
                sample.terms[name].add_clean(rows, out)

            # draws are stacked along the batch: index r * b + i is image i, draw r
            x_rep = x.expand(p.draws, *x.shape).reshape(p.draws * b, *x.shape[1:])
            directions = _noise_directions(noise_seeds[rows], tuple(x.shape[1:]), device)
            coeffs = coefficients[rows].transpose(0, 1).reshape(p.draws * b, *coefficients.shape[2:])
            for k, delta in enumerate(p.deltas):
                fields = fields_from_coefficients(coeffs, p.resolution, p.temperature(delta),
                                                  device=device)
                deformed, noisy = _perturb(x_rep, fields, directions.view_as(x_rep))
                for r in range(p.draws):
                    part = slice(r * b, (r + 1) * b)
                    for (name, out), (_, out_d), (_, out_q) in zip(
                            clean, _flat(outputs(deformed[part])), _flat(outputs(noisy[part]))):
                        sample.terms[name].add_perturbed(rows, k, r, out, out_d, out_q)
            if progress is not None:
                progress.update(b)
        for terms in sample.terms.values():
            terms.sum_f = terms.sum_f.cpu()
        return sample

    with torch.no_grad():
        return run_with_backoff(work, batch_size or default_batch_size(device))


# -- rows -------------------------------------------------------------------------------

def _undefined_reason(terms: OutputTerms, k: int) -> str | None:
    """Why R_f has no value for this output at delta index k, or None when it has one."""
    pair, scale = terms.pair_mean(), terms.mean_sq_norm()
    if not (np.isfinite(terms.d[:, k]).all() and np.isfinite(terms.g[:, k]).all()
            and math.isfinite(pair)):
        return "non-finite outputs"
    if pair <= VANISHING * scale:
        return ("constant outputs: mean_{i != j} ||f(x_i) - f(x_j)||^2 vanishes over the "
                "probe images")
    if terms.g[:, k].mean() <= VANISHING * scale:
        return "the outputs do not move under the noise: G_f vanishes"
    return None


def _pair_statistic(terms: OutputTerms, column: int) -> Callable[[np.ndarray], np.ndarray]:
    """Bootstrap statistic for D_f (column 0) or G_f (column 1) on rows (d_i, g_i, i).

    The pair mean is recomputed on each resample from the kept outputs, over pairs of
    distinct images (a resampled duplicate is the same image, not a pair at distance 0,
    which would bias the resampled pair mean low by (N-1)/N). With w the resample
    counts, F the outputs centred on their mean and q_i = ||F_i||^2:
    sum_{i,j} w_i w_j ||F_i - F_j||^2 = 2 N w.q - 2 ||w F||^2 over N^2 - ||w||^2 pairs.
    """
    centred = terms.outputs - terms.outputs.mean(0)
    sq_norms = (centred**2).sum(1)
    n = terms.n

    def statistic(x: np.ndarray) -> np.ndarray:
        index = x[..., 2].astype(np.int64)
        b = index.shape[0]
        counts = np.bincount((np.arange(b)[:, None] * n + index).ravel(),
                             minlength=b * n).reshape(b, n).astype(np.float64)
        pair_sum = 2.0 * n * (counts @ sq_norms) - 2.0 * ((counts @ centred) ** 2).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):  # all draws one image: no pair
            return x[..., column].mean(1) * (n * n - (counts**2).sum(1)) / pair_sum

    return statistic


def _median_ratio(terms: OutputTerms, k: int) -> float | None:
    """The reference code's median estimator of R_f (see the module docstring)."""
    width = terms.d_coord.shape[-1]
    d = float(np.median(terms.d_coord[:, k].reshape(-1, width), axis=0).sum())
    g = float(np.median(terms.g_coord[:, k].reshape(-1, width), axis=0).sum())
    return d / g if g > 0 else None


def _estimate_extras(label: str, estimate: Estimate) -> dict[str, float | None]:
    f = estimate.fields()
    return {label: f["value"], f"{label}_stderr": f["stderr"],
            f"{label}_ci_low": f["ci_low"], f"{label}_ci_high": f["ci_high"]}


def _row(sample: StabilitySample, name: str, k: int, seed: int, *,
         layer: str | None = None, depth: float | None = None) -> Measurement:
    """The rf row of output ``name`` at the protocol's delta number k."""
    p = sample.protocol
    terms = sample.terms[name]
    t, t_limit = p.temperature(p.deltas[k]), t_max(p.cutoff)
    extras: dict[str, Any] = {"t": t, "t_max": t_limit, "exceeds_t_max": t > t_limit}
    common = dict(draws=p.draws, params=p.params(p.deltas[k]), layer=layer, depth=depth)
    reason = _undefined_reason(terms, k)
    if reason is not None:
        return Measurement.undefined(NAME, VERSION, reason, n=terms.n, extras=extras, **common)
    d_i, g_i = terms.d[:, k].mean(1), terms.g[:, k].mean(1)
    pair = terms.pair_mean()
    extras.update(d_f=float(d_i.mean() / pair), g_f=float(g_i.mean() / pair))
    if terms.outputs is not None:
        rows = np.stack([d_i, g_i, np.arange(terms.n)], axis=1)
        for label, column in (("d_f", 0), ("g_f", 1)):
            extras.update(_estimate_extras(label, bootstrap(rows, _pair_statistic(terms, column),
                                                            seed=seed)))
        extras["rf_median"] = _median_ratio(terms, k)
    return Measurement(NAME, VERSION, extras=extras, **ratio_of_means(d_i, g_i, seed=seed).fields(),
                       **common)


def headline_row(sample: StabilitySample, name: str, delta: float, seed: int) -> Measurement:
    """The row of output ``name`` at ``delta``, with the curve over every delta of the sample."""
    deltas = sample.protocol.deltas
    row = _row(sample, name, deltas.index(delta), seed)
    if len(deltas) == 1 or row.status != "ok":
        return row
    curve = [_row(sample, name, k, seed) for k in range(len(deltas))]
    nan = float("nan")
    row.arrays = {
        "delta": list(deltas),
        "rf": [c.value if c.status == "ok" else nan for c in curve],
        "rf_ci_low": [c.ci_low if c.ci_low is not None else nan for c in curve],
        "rf_ci_high": [c.ci_high if c.ci_high is not None else nan for c in curve],
        "d_f": [c.extras.get("d_f", nan) for c in curve],
        "g_f": [c.extras.get("g_f", nan) for c in curve],
        "t": [c.extras["t"] for c in curve],
    }
    row.params["sweep_deltas"] = list(deltas)
    return row


def layer_rows(sample: StabilitySample, delta: float, seed: int) -> list[Measurement]:
    """One row per output of the sample, in depth order, with ``layer`` and ``depth`` set."""
    k = sample.protocol.deltas.index(delta)
    depths = relative_depths(len(sample.names))
    return [_row(sample, name, k, seed, layer=name, depth=depth)
            for name, depth in zip(sample.names, depths)]


# -- public API -------------------------------------------------------------------------

LOGITS = "logits"


def make_protocol(images: torch.Tensor, cutoff: float, delta: float, draws: int,
                  sweep: Sequence[float] | None = None) -> Protocol:
    """Check the parameters against SPEC and the images; the deltas are ``delta`` plus ``sweep``."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not cutoff > 1:
        raise BenchError(f"rf parameter cutoff={cutoff!r} must be a number > 1",
                         "SPEC's default is 3, e.g. -p rf.cutoff=3")
    deltas = sorted({float(delta), *(float(d) for d in (sweep or ()))})
    if not all(math.isfinite(d) and d > 0 for d in deltas):
        raise BenchError(f"rf displacement delta must be > 0 pixels, got {deltas}",
                         "SPEC's default is 1, e.g. -p rf.delta=1")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise BenchError(f"rf parameter draws={draws!r} must be a positive integer",
                         "SPEC's default is 2, e.g. -p rf.draws=2")
    if images.dim() != 4 or images.shape[0] < 2:
        raise BenchError(f"rf needs a batch of at least 2 images (N, C, n, n), got shape "
                         f"{tuple(images.shape)}", "its denominator is a mean over pairs of images")
    try:
        n = square_size(images)
    except ValueError as exc:
        raise BenchError(str(exc), "use square probe images (timm eval inputs are square)") from exc
    return Protocol(cutoff=cutoff, deltas=tuple(deltas), draws=draws, resolution=n)


def relative_stability(
    f: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    cutoff: float = 3,
    delta: float = 1.0,
    draws: int = 2,
    seed: int = 0,
    *,
    sweep: Sequence[float] | None = None,
    batch_size: int | None = None,
    device: torch.device | None = None,
    progress: Any | None = None,
) -> Measurement:
    """R_f of ``f`` on square images in [0, 1] (SPEC section 3), with D_f, G_f and rf_median.

    ``f`` maps (N, 3, n, n) to (N, ...) outputs (flattened per image) and must be in
    eval mode. ``sweep`` (e.g. :data:`SWEEP_DELTAS`) adds the curve over those deltas
    to ``arrays``. Images may be on the CPU; batches go to ``device`` (by default
    ``f``'s device). ``progress`` is a tqdm-like bar advanced per image.

    >>> relative_stability(scored_model, images).extras["d_f"]   # doctest: +SKIP
    """
    protocol = make_protocol(images, cutoff, delta, draws, sweep)
    require_eval_mode(f)
    sample = stability_sample(lambda x: [(LOGITS, f(x))], images, protocol, seed, keep=(LOGITS,),
                              batch_size=batch_size, progress=progress,
                              device=device or function_device(f, images.device))
    return headline_row(sample, LOGITS, float(delta), seed)


def relative_stability_by_layer(
    model: Any,
    images: torch.Tensor,
    cutoff: float = 3,
    delta: float = 1.0,
    draws: int = 2,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    progress: Any | None = None,
) -> list[Measurement]:
    """R_f on every output of ``model.stages`` (a :class:`~bench.models.scored.ScoredModel`).

    One row per stage output, then the pre-logits and the logits, each flattened,
    with ``layer`` and ``depth`` set.
    """
    protocol = make_protocol(images, cutoff, delta, draws)
    require_eval_mode(model)
    sample = stability_sample(model.stages, images, protocol, seed, keep=(LOGITS,),
                              batch_size=batch_size, progress=progress,
                              device=device or function_device(model, images.device))
    return layer_rows(sample, float(delta), seed)


# -- bench score ------------------------------------------------------------------------

def _run(ctx: ScoreContext) -> list[Measurement]:
    """The headline row (with the curve under ``sweep``), then the per-layer rows under ``layers``."""
    params = ctx.params
    if ctx.model is None or ctx.images is None:
        raise ValueError("rf needs a context with a model and probe images")
    delta = float(params["delta"])
    protocol = make_protocol(ctx.images, params["cutoff"], delta, params["draws"],
                             SWEEP_DELTAS if params["sweep"] else None)
    require_eval_mode(ctx.model)
    layers = bool(params["layers"])
    outputs = ctx.model.stages if layers else (lambda x: [(LOGITS, ctx.model(x))])
    with ctx.progress_bar(ctx.images.shape[0], NAME) as bar:
        sample = stability_sample(outputs, ctx.images, protocol, ctx.seed, keep=(LOGITS,),
                                  batch_size=ctx.batch_size, device=ctx.device, progress=bar)
    rows = [headline_row(sample, LOGITS, delta, ctx.seed)]
    if layers:
        rows += layer_rows(sample, delta, ctx.seed)
    return rows


SPECS = [
    MeasureSpec(
        name=NAME, version=VERSION, scope="checkpoint",
        description="Relative stability to diffeomorphisms R_f = D_f / G_f (Petrini et al. 2021)",
        defaults={"cutoff": 3, "delta": 1.0, "draws": 2, "sweep": False, "layers": False},
        run=_run),
]
