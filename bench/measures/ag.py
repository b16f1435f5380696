"""Average geometry and its rank: the ``ag`` and ``ag_trained`` measures (SPEC section 4).

``ag`` (architecture level): G = E_theta E_x [grad_x s grad_x s^T], s the mean of the
logits, theta fresh initializations of the bare architecture (timm default init,
``pretrained=False``, eval mode; see :mod:`bench.models.architecture`), x ~ N(0,
input_std^2 I) in the architecture's own input space at 3 x R x R (d = 3 R^2 = 3072 at
32 px). G is formed exactly and eigendecomposed in float64.

How it is computed, and why:

* **Per-image gradients from one backward.** The model is in eval mode (as in the
  reference ``compute_G``), so the images of a batch are independent and the gradient
  of sum_i s(x_i) with respect to the batch is the stack of per-image gradients.
* **Accumulation.** Gradients are buffered into chunks of up to ``GRAM_CHUNK`` rows;
  each chunk's g^T g is one float32 matrix product (so a GEMM, not many rank-1
  updates) added into float64 running sums on the device. The float32 error of one
  chunk is ~1e-6 of its entries, far below the sampling noise of any statistic.
* **Groups.** The initializations are split into ``N_GROUPS`` = 4 contiguous groups,
  each with its own running sum. Halves (groups 1-2 and 3-4) give the split-half
  values SPEC asks for; leaving one group out at a time gives a grouped jackknife
  over initializations, the standard error (3 degrees of freedom, Student-t
  interval). The random draws of SPEC section 1 are the initializations, and they
  are what is resampled; a bootstrap over initializations would need a G per
  resample. Finite sampling also *biases* erank downward (a sample covariance of n
  draws of an isotropic d-dimensional vector has a Marchenko-Pastur spectrum, erank/d
  ~ 1 - d/(2n)); the split-half values show it: half the samples, about twice the
  bias. ``ag_rank_extrapolated`` = 2 full - mean(halves) removes its 1/n term.
* **Statistics** (:func:`spectrum_statistics`): erank = exp(entropy of lambda / sum),
  participation ratio, k90 and k99, each also / d; the headline is erank / d; the
  normalized spectrum lambda / lambda_1 is stored as ``arrays["spectrum"]``.

``ag_trained`` (checkpoint level): E_x[J^T J] of the scored model on the probe
images, from the vector-Jacobian products g = J^T v that ``gc`` computes
(:func:`bench.measures.gc.cached_jacobian_sample`, computed once when both run). Its
nonzero eigenvalues are those of the Gram matrix of the M = N k kept vectors, scaled
by the estimator's weight / N, so it is never formed at d ~ 150,000. Its rank, and so
every statistic, is capped by M, which the row records (``n_vectors``); the /d
versions divide by d = 3 H W all the same. Groups are groups of images.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np
import torch

from bench.errors import BenchError
from bench.harness.batching import batches, default_batch_size
from bench.measures._jacobian import require_eval_mode
from bench.measures._types import Measurement, MeasureSpec, ScoreContext
from bench.models.architecture import (WEIGHTS_REF, ArchitectureLike, initializer, no_tf32,
                                       resolve_architecture)

VERSION = 1
N_GROUPS = 4
T_975_3DOF = 3.182446305284263  # Student t quantile for the 4-group jackknife
GRAM_CHUNK = 1024

DEFAULT_RESOLUTION = 32
DEFAULT_N_INITS = 16384
DEFAULT_N_INPUTS = 8
DEFAULT_INPUT_STD = 1e-3
DEFAULT_NUM_CLASSES = 10  # s is the mean logit; its law does not depend on the head's width


# -- statistics of a spectrum -------------------------------------------------------------

def spectrum_statistics(eigenvalues: np.ndarray | torch.Tensor, d: int) -> dict[str, float]:
    """erank, participation ratio, k90, k99 of a PSD spectrum, each also divided by ``d``.

    Negative eigenvalues (float round-off of a PSD matrix) count as zero. k90 is the
    smallest number of leading eigenvalues holding at least 90% of the trace.
    """
    lam = _descending(eigenvalues)
    total = lam.sum()
    if not total > 0:
        raise ValueError("the spectrum is zero: the geometry is undefined")
    p = lam / total
    nz = p[p > 0]
    stats = {
        "erank": float(np.exp(-(nz * np.log(nz)).sum())),
        "participation_ratio": float(total ** 2 / (lam ** 2).sum()),
        "k90": float(_leading_count(p, 0.90)),
        "k99": float(_leading_count(p, 0.99)),
    }
    stats.update({f"{name}_d": value / d for name, value in list(stats.items())})
    return stats


def _descending(eigenvalues: np.ndarray | torch.Tensor) -> np.ndarray:
    """The spectrum in float64, negative round-off clipped to zero, largest first."""
    return np.sort(np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None))[::-1]


def _leading_count(p: np.ndarray, share: float) -> int:
    cumulative = np.cumsum(p)
    return int(np.searchsorted(cumulative, share * (1 - 1e-12))) + 1


# -- grouped estimate of a geometry -------------------------------------------------------

@dataclass
class GroupedSpectra:
    """Eigenvalues of one geometry estimated from all groups, each half, and each leave-one-out."""

    full: np.ndarray
    halves: tuple[np.ndarray, np.ndarray]
    leave_one_out: list[np.ndarray]


def grouped_spectra(eigenvalues_of: Callable[[list[int]], np.ndarray]) -> GroupedSpectra:
    """Evaluate ``eigenvalues_of(groups)`` on the subsets that the estimate and its error need."""
    groups = list(range(N_GROUPS))
    half = N_GROUPS // 2
    return GroupedSpectra(
        full=eigenvalues_of(groups),
        halves=(eigenvalues_of(groups[:half]), eigenvalues_of(groups[half:])),
        leave_one_out=[eigenvalues_of([g for g in groups if g != k]) for k in groups])


def measurement_from_spectra(measure: str, spectra: GroupedSpectra, d: int, *,
                             params: dict[str, Any], n: int, draws: int,
                             extras: dict[str, Any]) -> Measurement:
    """A row: erank / d with jackknife error, statistics and split halves in extras."""
    full = spectrum_statistics(spectra.full, d)
    halves = [spectrum_statistics(h, d) for h in spectra.halves]
    loo = np.array([spectrum_statistics(s, d)["erank_d"] for s in spectra.leave_one_out])
    k = len(loo)
    stderr = float(math.sqrt((k - 1) / k * ((loo - loo.mean()) ** 2).sum()))
    value = full["erank_d"]
    lam = _descending(spectra.full)
    row_extras = {**{f"ag_{name}": v for name, v in full.items()},
                  "ag_rank_half1": halves[0]["erank_d"], "ag_rank_half2": halves[1]["erank_d"],
                  "ag_rank_extrapolated": 2 * value - (halves[0]["erank_d"] + halves[1]["erank_d"]) / 2,
                  **{f"ag_{name}_half{i + 1}": h[name] for i, h in enumerate(halves)
                     for name in ("participation_ratio_d", "k90_d", "k99_d")},
                  "d": d, "trace": float(lam.sum()), **extras}
    return Measurement(
        measure=measure, version=VERSION, value=value, stderr=stderr,
        ci_low=max(value - T_975_3DOF * stderr, 0.0), ci_high=min(value + T_975_3DOF * stderr, 1.0),
        n=n, draws=draws, params=params, extras=row_extras,
        arrays={"spectrum": (lam / lam[0]).tolist()})


# -- ag: accumulate G over initializations ------------------------------------------------

@dataclass
class AverageGeometry:
    """G's running sums, one per group of initializations, on the device (float64)."""

    group_sums: torch.Tensor  # (N_GROUPS, d, d)
    group_counts: list[int]
    input_shape: tuple[int, int, int]
    init_method: str
    architecture: str

    @property
    def d(self) -> int:
        return self.group_sums.shape[-1]

    @property
    def n_samples(self) -> int:
        return sum(self.group_counts)

    def matrix(self, groups: list[int] | None = None) -> torch.Tensor:
        """G estimated from ``groups`` (default all): their summed g g^T over their sample count."""
        groups = list(range(len(self.group_counts))) if groups is None else groups
        count = sum(self.group_counts[g] for g in groups)
        return self.group_sums[groups].sum(0) / count


class _GramAccumulator:
    """Adds g^T g of buffered gradient rows into per-group float64 sums."""

    def __init__(self, d: int, device: torch.device):
        self.sums = torch.zeros(N_GROUPS, d, d, dtype=torch.float64, device=device)
        self.counts = [0] * N_GROUPS
        self._rows: list[torch.Tensor] = []
        self._group = 0

    def add(self, group: int, grads: torch.Tensor) -> None:
        if group != self._group or sum(r.shape[0] for r in self._rows) >= GRAM_CHUNK:
            self.flush()
        self._group = group
        self._rows.append(grads)

    def flush(self) -> None:
        if not self._rows:
            return
        rows = torch.cat(self._rows)
        self.sums[self._group] += (rows.T @ rows).double()
        self.counts[self._group] += rows.shape[0]
        self._rows = []


def mean_logit_gradients(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-image grad_x of the mean logit, (B, d), from one backward (eval mode: images independent)."""
    require_eval_mode(model)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grads,) = torch.autograd.grad(logits.reshape(x.shape[0], -1).mean(1).sum(), x)
    return grads.reshape(x.shape[0], -1)


_GEOMETRY_CACHE: OrderedDict[Hashable, AverageGeometry] = OrderedDict()
_CACHE_SIZE = 2  # a G at d = 3072 with its group sums is ~300 MB


def average_geometry_matrix(
    arch: ArchitectureLike,
    resolution: int = DEFAULT_RESOLUTION,
    n_inits: int = DEFAULT_N_INITS,
    n_inputs: int = DEFAULT_N_INPUTS,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    progress: Any = None,
    input_std: float = DEFAULT_INPUT_STD,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> AverageGeometry:
    """Accumulate G of ``arch`` over ``n_inits`` initializations x ``n_inputs`` inputs each.

    Memoized in memory (the last two results), so that ``plane`` reuses the G that
    ``ag`` computed with the same arguments. ``progress`` is a tqdm-like bar advanced
    by initializations.
    """
    _check_counts(n_inits, n_inputs, resolution, input_std)
    device = torch.device(device) if device is not None else torch.device("cpu")
    architecture = resolve_architecture(arch, resolution, num_classes)
    key = (arch if callable(arch) and not isinstance(arch, str) else architecture.name,
           resolution, n_inits, n_inputs, seed, input_std, num_classes, str(device))
    if key in _GEOMETRY_CACHE:
        _GEOMETRY_CACHE.move_to_end(key)
        return _GEOMETRY_CACHE[key]

    shape = (3, resolution, resolution)
    d = math.prod(shape)
    batch = batch_size or max(default_batch_size(device), n_inputs)
    draws = initializer(architecture, device, seed)
    init_gen = torch.Generator().manual_seed(seed)
    input_gen = torch.Generator(device=device).manual_seed(seed + 1)
    acc = _GramAccumulator(d, device)
    with no_tf32():
        for i in range(n_inits):
            model = draws.draw(init_gen)
            x = input_std * torch.randn((n_inputs, *shape), generator=input_gen, device=device)
            acc.add(i * N_GROUPS // n_inits, torch.cat(
                [mean_logit_gradients(model, x[rows]) for rows in batches(n_inputs, batch)]))
            if progress is not None:
                progress.update(1)
    acc.flush()
    geometry = AverageGeometry(acc.sums, acc.counts, shape, draws.method, architecture.name)
    _GEOMETRY_CACHE[key] = geometry
    while len(_GEOMETRY_CACHE) > _CACHE_SIZE:
        _GEOMETRY_CACHE.popitem(last=False)
    return geometry


def _check_counts(n_inits: int, n_inputs: int, resolution: int, input_std: float) -> None:
    if not (isinstance(n_inits, int) and n_inits >= N_GROUPS):
        raise BenchError(f"ag parameter n_inits={n_inits!r} must be an integer >= {N_GROUPS}",
                         "the initializations are split into 4 groups for the split halves and the error")
    for name, value in (("n_inputs", n_inputs), ("resolution", resolution)):
        if not (isinstance(value, int) and value >= 1):
            raise BenchError(f"ag parameter {name}={value!r} must be a positive integer",
                             f"for example -p ag.{name}=8")
    if not input_std > 0:
        raise BenchError(f"ag parameter input_std={input_std!r} must be positive", "the default is 1e-3")


def ag_eigendecomposition(geometry: AverageGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues, eigenvectors) of G, descending; eigenvectors are the columns (float64)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(geometry.matrix())
    return eigenvalues.flip(0), eigenvectors.flip(1)


def _eigvalsh(matrix: torch.Tensor) -> np.ndarray:
    return torch.linalg.eigvalsh(matrix).cpu().numpy()


def average_geometry(
    arch: ArchitectureLike,
    resolution: int = DEFAULT_RESOLUTION,
    n_inits: int = DEFAULT_N_INITS,
    n_inputs: int = DEFAULT_N_INPUTS,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    progress: Any = None,
    input_std: float = DEFAULT_INPUT_STD,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> Measurement:
    """ag_rank = erank(G) / d of an architecture at initialization (SPEC section 4).

    ``arch`` is a registry id or entry, a timm name, or a zero-argument callable that
    builds a fresh model taking (B, 3, resolution, resolution) inputs.

    >>> average_geometry("cifar_resnet20.akamaster_c10", n_inits=256)  # doctest: +SKIP
    """
    geometry = average_geometry_matrix(
        arch, resolution, n_inits, n_inputs, seed, device=device, batch_size=batch_size,
        progress=progress, input_std=input_std, num_classes=num_classes)
    params = dict(resolution=resolution, n_inits=n_inits, n_inputs=n_inputs,
                  input_std=input_std, num_classes=num_classes, output="mean_logit",
                  weights_ref=WEIGHTS_REF)
    if not torch.isfinite(geometry.group_sums).all() or geometry.matrix().trace() <= 0:
        return Measurement.undefined(
            "ag", VERSION, "the mean logit does not depend on the input at initialization "
            "(zero or non-finite input gradients)", params=params, n=geometry.n_samples)
    spectra = grouped_spectra(lambda groups: _eigvalsh(geometry.matrix(groups)))
    return measurement_from_spectra(
        "ag", spectra, geometry.d, params=params, n=geometry.n_samples, draws=n_inits,
        extras={"n_samples": geometry.n_samples, "init_method": geometry.init_method,
                "architecture": geometry.architecture})


# -- ag_trained: the data-averaged geometry of a checkpoint -------------------------------

def trained_geometry(vjps: torch.Tensor, weight: float, *, seed: int = 0,
                     device: torch.device | str | None = None) -> tuple[GroupedSpectra, int]:
    """Spectra of E_x[J^T J] ~= weight / N sum_ij g_ij g_ij^T from ``vjps`` (N, k, d).

    ``weight`` is 1 for exact Jacobian rows, 1/k for Hutchinson products. Returns the
    grouped spectra (groups of images, assigned in a seeded random order) and d.
    """
    n, k, d = vjps.shape
    device = torch.device(device) if device is not None else torch.device("cpu")
    gram = _gram(vjps.reshape(n * k, d), device)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    image_group = torch.empty(n, dtype=torch.long)
    image_group[order] = torch.arange(n) * N_GROUPS // n

    def eigenvalues_of(groups: list[int]) -> np.ndarray:
        images = torch.nonzero(torch.isin(image_group, torch.tensor(groups))).flatten()
        rows = (images[:, None] * k + torch.arange(k)).flatten().to(gram.device)
        return _eigvalsh(gram[rows][:, rows] * (weight / images.numel()))

    return grouped_spectra(eigenvalues_of), d


def _gram(vectors: torch.Tensor, device: torch.device) -> torch.Tensor:
    """V V^T as one float32 GEMM (TF32 off), returned in float64 for the eigensolver.

    The inner dimension is d; float32 accumulation errs by ~1e-5 of an entry, far below
    the sampling noise of the statistics, and keeps the M x d products in their own
    precision rather than a float64 copy twice their size.
    """
    v = vectors.to(device)
    with no_tf32():
        return (v @ v.T).double()


def _run_ag(ctx: ScoreContext) -> list[Measurement]:
    p = ctx.params
    with ctx.progress_bar(p["n_inits"], "ag") as bar:
        return [average_geometry(
            ctx.entry, p["resolution"], p["n_inits"], p["n_inputs"], ctx.seed, device=ctx.device,
            batch_size=ctx.batch_size, progress=bar, input_std=p["input_std"],
            num_classes=p["num_classes"])]


def _run_ag_trained(ctx: ScoreContext) -> list[Measurement]:
    from bench.measures.gc import cached_jacobian_sample
    sample = cached_jacobian_sample(ctx)
    if sample.vjps is None:
        raise RuntimeError("ag_trained needs the kept products; 'ag_trained' must be in ctx.requested")
    n, k, _ = sample.vjps.shape
    params = dict(probes=sample.probes, exact=sample.exact, n_vectors=n * k,
                  output="logits")
    if not sample.per_image.sum() > 0:
        return [Measurement.undefined("ag_trained", VERSION, "the logits are constant on the "
                                      "probe images (zero Jacobian)", params=params, n=n)]
    spectra, d = trained_geometry(sample.vjps, sample.probe_weight, seed=ctx.seed, device=ctx.device)
    return [measurement_from_spectra(
        "ag_trained", spectra, d, params=params, n=n, draws=k,
        extras={"n_vectors": n * k, "rank_cap_d": n * k / d, "gc": float(sample.per_image.mean())})]


SPECS = [
    MeasureSpec(
        name="ag", version=VERSION, scope="architecture", needs_images=False,
        description="Average geometry at initialization: erank(G)/d of E_theta E_x[grad s grad s^T]",
        defaults=dict(resolution=DEFAULT_RESOLUTION, n_inits=DEFAULT_N_INITS,
                      n_inputs=DEFAULT_N_INPUTS, input_std=DEFAULT_INPUT_STD,
                      num_classes=DEFAULT_NUM_CLASSES),
        run=_run_ag),
    MeasureSpec(
        name="ag_trained", version=VERSION, scope="checkpoint",
        description="Data-averaged geometry E_x[J^T J] of a checkpoint: erank/d from the GC products "
                    "(capped by their number)",
        defaults={}, run=_run_ag_trained),
]
