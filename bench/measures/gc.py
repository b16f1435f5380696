"""Geometric complexity (SPEC section 2): the mean squared Frobenius norm of the input Jacobian.

    GC(f, X) = mean over x in X of ||J_f(x)||_F^2

with f the scored function of SPEC section 1 (pixel space [0, 1] to logits, or to the
penultimate features for ``gc_embedding``).

Two estimators of the per-image ||J||_F^2 = sum_c ||J^T e_c||^2:

- exact: one vector-Jacobian product per output class (default for at most 100 outputs);
- Hutchinson: k Rademacher vectors v per image, ||J^T v||^2 has expectation ||J||_F^2
  because E[v v^T] = I; the per-image estimate is the mean over its k probes.

Cost: one forward and k backward passes per batch (exact: k = number of outputs), see
:mod:`bench.measures._jacobian` for why images of a batch can share the passes (the
function must be in eval mode).

Uncertainty: a bootstrap over the per-image estimates, which folds the probe noise
in (SPEC section 1). Choices where SPEC leaves room, recorded here:

- ``draws`` is k for Hutchinson (random draws per image) and 1 for the exact estimator,
  whose C products per image are not random; ``extras["n_vjps"]`` gives the number of
  products either way.
- ``exact=None`` resolves by the number of *outputs* of the measured function, so
  ``gc_embedding`` of a 512-wide embedding is estimated, that of a 64-wide one exact.
  The resolved boolean is what the row stores.
- Outputs of any shape (N, ...) are flattened per image.
- A function whose Jacobian vanishes everywhere (a constant) has GC = 0, a valid value.
  Non-finite outputs or products make the row undefined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bench.errors import BenchError
from bench.harness.batching import batches, default_batch_size, run_with_backoff
from bench.measures._jacobian import (
    flat_outputs,
    function_device,
    per_sample_vjp,
    rademacher,
    require_eval_mode,
)
from bench.measures._stats import mean_estimate
from bench.measures._types import Measurement, MeasureSpec, ScoreContext

VERSION = 1
EXACT_MAX_OUTPUTS = 100  # SPEC: exact by default for at most 100 classes
DEFAULT_PROBES = 8
Output = Literal["logits", "embedding"]
MEASURE_OF_OUTPUT: dict[str, str] = {"logits": "gc", "embedding": "gc_embedding"}


@dataclass
class JacobianSample:
    """Per-image squared Jacobian norms and, on request, the products behind them.

    ``per_probe[i, j] = ||J(x_i)^T v_ij||^2``. For the exact estimator v_ij = e_j runs
    over the output classes (``probes`` = number of outputs) and ``per_image`` is the
    *sum* over j; for Hutchinson v_ij are Rademacher vectors and ``per_image`` is the
    *mean* over j. Either way ``per_image[i]`` estimates ||J(x_i)||_F^2 (exactly, for
    the exact one).

    ``vjps[i, j]`` (flattened input, float32, CPU) is g_ij = J(x_i)^T v_ij. The data-
    averaged geometry E_x[J^T J] of ``ag_trained`` (SPEC section 4) is

        E_x[J^T J] ~= (1/N) sum_i probe_weight * sum_j g_ij g_ij^T

    with ``probe_weight`` = 1 for the exact estimator (J^T J = sum over classes of
    J^T e_c e_c^T J) and 1/k for Hutchinson (E_v[J^T v v^T J] = J^T J). Its trace is
    then ``per_image.mean()``, i.e. GC.
    """

    per_image: torch.Tensor
    per_probe: torch.Tensor
    vjps: torch.Tensor | None
    exact: bool
    probes: int
    n_outputs: int = 0

    @property
    def probe_weight(self) -> float:
        """Weight of each g g^T in the per-image J^T J: 1 (exact) or 1/k (Hutchinson)."""
        return 1.0 if self.exact else 1.0 / self.probes


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def resolve_exact(exact: bool | None, n_outputs: int) -> bool:
    """SPEC's default: exact for at most 100 outputs, Hutchinson otherwise."""
    return n_outputs <= EXACT_MAX_OUTPUTS if exact is None else bool(exact)


def jacobian_sample(
    f: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    probes: int = DEFAULT_PROBES,
    exact: bool | None = None,
    seed: int = 0,
    keep_vjps: bool = False,
    batch_size: int | None = None,
    progress: Any | None = None,
    device: torch.device | str | None = None,
) -> JacobianSample:
    """Per-image ||J_f(x)||_F^2 of ``f`` at each of ``images`` (N, 3, H, W).

    ``f`` maps a batch to (N, ...) outputs, flattened to (N, C), and must treat images
    independently (eval mode; modules in training mode are refused). Images move batch
    by batch to ``device`` (default: the device of ``f``'s parameters, else of ``images``).
    The Rademacher probes of image i are row i of one (N, k, C) draw from a CPU
    generator seeded with ``seed``, so values do not depend on the device or the batch
    size. ``batch_size`` None picks the device default; either way it is halved on
    out-of-memory. ``progress`` is an optional tqdm-like bar advanced by images.
    """
    if images.dim() < 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...); got shape {tuple(images.shape)}")
    if not _is_positive_int(probes):
        raise ValueError(f"probes must be a positive integer; got {probes!r}")
    require_eval_mode(f)
    device = torch.device(device) if device is not None else function_device(f, images.device)
    n, dim = images.shape[0], images[0].numel()
    with torch.no_grad():  # one image tells the output width, which decides the estimator
        n_outputs = flat_outputs(f, images[:1].to(device, torch.float32)).shape[1]
    exact = resolve_exact(exact, n_outputs)
    k = n_outputs if exact else probes
    signs = None if exact else rademacher((n, k, n_outputs), seed)
    per_probe = torch.empty(n, k, dtype=torch.float64)
    vjps = torch.empty(n, k, dim, dtype=torch.float32) if keep_vjps else None

    def cotangent(rows: slice, j: int, like: torch.Tensor) -> torch.Tensor:
        if signs is not None:
            return signs[rows, j].to(like.device, like.dtype)
        basis = torch.zeros_like(like)
        basis[:, j] = 1
        return basis

    def work(size: int) -> None:
        if progress is not None and hasattr(progress, "reset"):
            progress.reset()  # a restart after out-of-memory redoes every batch
        for rows in batches(n, size):
            outputs, vjp = per_sample_vjp(f, images[rows].to(device, torch.float32))
            norms = torch.empty(outputs.shape[0], k, dtype=torch.float64, device=device)
            for j in range(k):
                g = vjp(cotangent(rows, j, outputs), last=j == k - 1).flatten(1)
                norms[:, j] = g.to(torch.float64).square().sum(1)
                if vjps is not None:
                    vjps[rows, j] = g.cpu()
            finite = torch.isfinite(outputs).all(1, keepdim=True)
            per_probe[rows] = torch.where(finite, norms, torch.nan).cpu()
            if progress is not None:
                progress.update(outputs.shape[0])

    run_with_backoff(work, batch_size or default_batch_size(device))
    per_image = per_probe.sum(1) if exact else per_probe.mean(1)
    return JacobianSample(per_image=per_image, per_probe=per_probe, vjps=vjps, exact=exact,
                          probes=k, n_outputs=n_outputs)


def measurement_from_sample(sample: JacobianSample, *, probes: int, seed: int,
                            output: Output = "logits") -> Measurement:
    """The ``gc`` (or ``gc_embedding``) row of a :class:`JacobianSample`.

    ``probes`` is the requested k, stored with the row even when the exact estimator
    made it moot, so that rows of one request share their parameters.
    """
    if output not in MEASURE_OF_OUTPUT:
        raise ValueError(f"output must be one of {sorted(MEASURE_OF_OUTPUT)}; got {output!r}")
    measure = MEASURE_OF_OUTPUT[output]
    n = sample.per_image.shape[0]
    params = {"probes": probes, "exact": sample.exact, "output": output}
    extras: dict[str, Any] = {"estimator": "exact" if sample.exact else "hutchinson",
                              "n_outputs": sample.n_outputs, "n_vjps": sample.probes}
    draws = 1 if sample.exact else sample.probes
    per_image = sample.per_image.numpy()
    if not np.isfinite(per_image).all():
        bad = int((~np.isfinite(per_image)).sum())
        return Measurement.undefined(
            measure, VERSION, f"non-finite outputs or Jacobian at {bad} of {n} images",
            n=n, draws=draws, params=params, extras=extras)
    estimate = mean_estimate(per_image, seed=seed)
    extras["gc_per_output"] = estimate.value / sample.n_outputs
    if not sample.exact and sample.probes > 1:
        # mean over images of the variance of one probe's estimate; divided by k it is
        # the probe-noise part of each per-image estimate's variance
        extras["probe_spread"] = float(sample.per_probe.var(dim=1).mean())
    return Measurement(measure=measure, version=VERSION, draws=draws, params=params,
                       extras=extras, **estimate.fields())


def geometric_complexity(
    f: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    probes: int = DEFAULT_PROBES,
    exact: bool | None = None,
    seed: int = 0,
    *,
    output: Output = "logits",
    batch_size: int | None = None,
    progress: Any | None = None,
) -> Measurement:
    """GC(f, images) with its bootstrap stderr and 95% interval (SPEC section 2).

    ``exact`` None: exact when f has at most 100 outputs, Hutchinson with ``probes``
    Rademacher vectors per image otherwise; True/False force one. ``output`` only names
    what f returns (``"embedding"`` makes it a ``gc_embedding`` row). ``f`` must be in
    eval mode; see :func:`jacobian_sample` for devices and batching.

    >>> geometric_complexity(scored_model, images)          # doctest: +SKIP
    >>> geometric_complexity(scored_model.features, images, output="embedding")  # doctest: +SKIP
    """
    sample = jacobian_sample(f, images, probes=probes, exact=exact, seed=seed,
                             batch_size=batch_size, progress=progress)
    return measurement_from_sample(sample, probes=probes, seed=seed, output=output)


# -- bench score -----------------------------------------------------------------------

def _protocol(params: dict[str, Any]) -> tuple[int | None, bool | None]:
    """(probes, exact) from a measure's parameters; either may be absent (None)."""
    probes, exact = params.get("probes"), params.get("exact")
    if probes is not None and not _is_positive_int(probes):
        raise BenchError(f"gc parameter probes={probes!r} is not a positive integer",
                         "for example -p gc.probes=16")
    if exact is not None and not isinstance(exact, bool):
        raise BenchError(f"gc parameter exact={exact!r} is not true, false or null",
                         "use -p gc.exact=true to force the exact estimator, null for the default rule")
    return probes, exact


def _fits(sample: JacobianSample, probes: int | None, exact: bool | None, keep: bool) -> bool:
    """Whether a cached sample answers a request (absent parameters accept anything)."""
    if keep and sample.vjps is None:
        return False
    if exact is not None and resolve_exact(exact, sample.n_outputs) != sample.exact:
        return False
    return sample.exact or probes is None or probes == sample.probes


def cached_jacobian_sample(ctx: ScoreContext, output: Output = "logits") -> JacobianSample:
    """The model's :class:`JacobianSample` on the probe images, computed once per context.

    ``output`` "logits" measures ``ctx.model``, "embedding" ``ctx.model.features``.
    Probes and estimator come from ``ctx.params`` (``probes``, ``exact``; absent ones
    take the defaults, or accept what is cached, so that ``ag_trained`` reuses the
    sample of ``gc``). The products g = J^T v are kept (``.vjps``) when ``ag_trained``
    is among ``ctx.requested``; see :class:`JacobianSample` for how they form E[J^T J].
    The result is stored in ``ctx.cache[f"jacobian_sample:{output}"]``.
    """
    if ctx.model is None or ctx.images is None:
        raise ValueError("cached_jacobian_sample needs a context with a model and probe images")
    probes, exact = _protocol(ctx.params)
    keep = output == "logits" and "ag_trained" in ctx.requested
    key = f"jacobian_sample:{output}"
    cached = ctx.cache.get(key)
    if cached is not None and _fits(cached, probes, exact, keep):
        return cached
    f = ctx.model if output == "logits" else ctx.model.features
    with ctx.progress_bar(ctx.images.shape[0], MEASURE_OF_OUTPUT[output]) as bar:
        sample = jacobian_sample(f, ctx.images, probes=probes or DEFAULT_PROBES, exact=exact,
                                 seed=ctx.seed, keep_vjps=keep, batch_size=ctx.batch_size,
                                 progress=bar, device=ctx.device)
    ctx.cache[key] = sample
    return sample


def _runner(output: Output) -> Callable[[ScoreContext], list[Measurement]]:
    def run(ctx: ScoreContext) -> list[Measurement]:
        probes, _ = _protocol(ctx.params)
        sample = cached_jacobian_sample(ctx, output)
        return [measurement_from_sample(sample, probes=probes or DEFAULT_PROBES, seed=ctx.seed,
                                        output=output)]
    return run


_DEFAULTS = {"probes": DEFAULT_PROBES, "exact": None}  # exact None: exact iff <= 100 outputs

SPECS = [
    MeasureSpec(
        name="gc", version=VERSION, scope="checkpoint",
        description="Geometric complexity: mean ||J||_F^2 of the logits w.r.t. pixel-space input",
        defaults=dict(_DEFAULTS), run=_runner("logits")),
    MeasureSpec(
        name="gc_embedding", version=VERSION, scope="checkpoint",
        description="Geometric complexity of the penultimate features (pre-logits)",
        defaults=dict(_DEFAULTS), run=_runner("embedding")),
]
