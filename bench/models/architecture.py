"""Bare architectures at initialization, for the architecture-level measures (SPEC 4 and 5).

``ag`` and ``plane`` measure an architecture, not a checkpoint: a timm model created
with ``pretrained=False`` at a common resolution, in its own input space (no
normalization wrapper), with timm's default initialization exactly as users get it
(timm ResNets zero the last norm of each residual block, so their branches start
switched off; the rows record this as ``weights_ref="timm-default-init"``).

Choices, following the reference code of GIH (``dr-faustus/GIH``, ``compute_G``):

* **Mode.** :func:`build_architecture` returns the model in ``eval()`` mode. At
  initialization the running statistics of batch norm are (0, 1), so eval-mode batch
  norm is the affine map of its initial weights, and the images of a batch stay
  independent, which makes a batched backward give exact per-image gradients. The
  reference builds its models with ``.eval()`` before computing G, and trains them in
  train mode (``plane`` does the same).
* **Resolution.** ``img_size=resolution`` is passed to every timm constructor that
  accepts it (ViT, DeiT, Swin, Mixer, ResMLP, ...): the constructor is tried with it
  and, if it rejects the keyword, without it. Convolutional models need no change.
* **Many initializations.** :func:`reinitialize` re-draws a model's parameters in place
  with its own initialization: ``reset_parameters()`` of every submodule (PyTorch's
  default init; batch-norm running statistics back to (0, 1)), then the model's
  ``init_weights()`` when it has one (timm's convention for its model-specific init:
  ResNet's kaiming-normal convs and zeroed last norms, ViT's truncated-normal
  weights and position embedding). A family whose init lives elsewhere (ConvNeXt
  applies a module-level function in its constructor) is not reproduced by that
  recipe, so :func:`initializer` checks the recipe once against a fresh construction
  (:func:`same_init_distribution`) and falls back to constructing each draw anew.
  In-place re-drawing avoids rebuilding the module tree and, on a GPU, the transfer
  of every draw from the host; on this 2-core CPU it measured about 1.2x (ResNet-18)
  to 2.5x (ConvNeXt-atto) cheaper than construction (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

import torch
from torch import nn

from bench.errors import BenchError

WEIGHTS_REF = "timm-default-init"

ArchitectureLike = Union[str, Callable[[], nn.Module], Any]  # registry id, timm name, entry, factory


@dataclass(frozen=True)
class Architecture:
    """A named way to build fresh instances of one architecture at one resolution."""

    name: str
    factory: Callable[[], nn.Module]
    timm_name: str | None = None


def resolve_architecture(arch: ArchitectureLike, resolution: int = 32,
                         num_classes: int = 10) -> Architecture:
    """Turn a registry entry, registry id, timm name or zero-argument callable into a factory."""
    if callable(arch) and not isinstance(arch, str):
        name = getattr(arch, "__name__", type(arch).__name__)
        return Architecture(name=name, factory=arch)
    timm_name = _timm_name(arch)
    return Architecture(
        name=timm_name, timm_name=timm_name,
        factory=lambda: _create_timm(timm_name, resolution, num_classes))


def build_architecture(arch: ArchitectureLike, resolution: int = 32, num_classes: int = 10,
                       seed: int = 0) -> nn.Module:
    """A fresh instance of ``arch`` at ``resolution``, drawn with ``seed``, in eval mode, float32."""
    factory = resolve_architecture(arch, resolution, num_classes).factory
    with seeded(seed, None):
        model = factory()
    return model.float().eval()


def _timm_name(arch: Any) -> str:
    if hasattr(arch, "timm_name"):  # a RegistryEntry
        return arch.timm_name
    if not isinstance(arch, str):
        raise BenchError(f"cannot build an architecture from {type(arch).__name__}",
                         "pass a registry id, a timm model name, or a callable returning a module")
    import bench.models  # noqa: F401  registers the project's custom timm architectures
    try:
        from bench.registry import resolve
        return resolve(arch).timm_name
    except (ImportError, AttributeError, BenchError):
        pass
    import timm
    if timm.is_model(arch):
        return arch
    raise BenchError(f"unknown architecture {arch!r}",
                     "use a registry id (`bench registry list`) or a timm model name")


def _create_timm(timm_name: str, resolution: int, num_classes: int) -> nn.Module:
    import timm
    kwargs = dict(pretrained=False, num_classes=num_classes)
    try:
        return timm.create_model(timm_name, img_size=resolution, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return timm.create_model(timm_name, **kwargs)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None) -> Iterator[None]:
    """Run a block with the CPU generator (and ``device``'s, if CUDA) seeded, restoring them after.

    Module initializers draw from the global generators, so this is how one seed
    drives an initialization without disturbing the caller's random state. It seeds
    only the generators it forks: ``torch.manual_seed`` would also queue a seed for
    every lazy accelerator backend, recording a stack trace each time (~4 ms a call).
    """
    cuda = device is not None and torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Full float32 matmuls and convolutions inside the block (SPEC section 1: no TF32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@torch.no_grad()
def reinitialize(model: nn.Module, generator: torch.Generator) -> None:
    """Re-draw ``model``'s parameters in place with its own initialization recipe.

    The recipe is ``reset_parameters()`` on every submodule, then ``model.init_weights()``
    if the model defines it. Use :func:`initializer` rather than calling this
    directly: it checks that the recipe reproduces the architecture's construction.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with seeded(seed, _device_of(model)):
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        init_weights = getattr(model, "init_weights", None)
        if callable(init_weights):
            init_weights()


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def same_init_distribution(a: nn.Module, b: nn.Module, *, z: float = 6.0) -> list[str]:
    """Names of tensors whose initial distributions differ between two independent draws.

    Per tensor: a constant tensor must be the same constant; otherwise the median, the
    interquartile range and the tail ratio (q90 - q10) / (q75 - q25) (1.90 for a
    Gaussian, 1.60 for a uniform) must agree within ``z`` sampling standard errors.
    Quantiles rather than moments, because initializers have rare far outliers
    (timm's ``trunc_normal_`` clamps to +-2 absolute, so one draw in ~1e5 lands at 100
    sigma for std 0.02) that make moment checks fail between two fresh draws. Tensors
    with fewer than 16 entries are only checked for constancy. An empty list means the
    two draws are consistent with one initialization scheme.
    """
    mismatches = []
    tensors_b = dict(_named_tensors(b))
    for name, ta in _named_tensors(a):
        tb = tensors_b.get(name)
        if tb is None or tb.shape != ta.shape:
            mismatches.append(name)
            continue
        ta, tb = _flat_sample(ta), _flat_sample(tb)
        const_a, const_b = bool((ta == ta[0]).all()), bool((tb == tb[0]).all())
        if const_a or const_b:
            if not (const_a and const_b and ta[0] == tb[0]):
                mismatches.append(name)
            continue
        n = ta.numel()
        if n < 16:
            continue
        qa, qb = _quantiles(ta), _quantiles(tb)  # q10, q25, q50, q75, q90
        iqr_a, iqr_b = qa[3] - qa[1], qb[3] - qb[1]
        if iqr_a <= 0 or iqr_b <= 0:  # mostly-constant tensors (sparse inits): compare exactly
            if (iqr_a <= 0) != (iqr_b <= 0):
                mismatches.append(name)
            continue
        tol = z / n ** 0.5
        if (abs(torch.log(iqr_a / iqr_b)) > 2.0 * tol
                or abs(qa[2] - qb[2]) > 1.3 * tol * (iqr_a + iqr_b) / 2
                or abs((qa[4] - qa[0]) / iqr_a - (qb[4] - qb[0]) / iqr_b) > 4.0 * tol):
            mismatches.append(name)
    return mismatches


def _flat_sample(t: torch.Tensor, limit: int = 1 << 20) -> torch.Tensor:
    """The tensor's entries as float64 on the CPU, strided down to at most ``limit``."""
    flat = t.detach().flatten()
    step = max(1, flat.numel() // limit)
    return flat[::step].double().cpu()


def _quantiles(t: torch.Tensor) -> torch.Tensor:
    """q10, q25, q50, q75, q90 (nearest rank; one sort is much cheaper than torch.quantile)."""
    ranks = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]) * (t.numel() - 1)
    return t.sort().values[ranks.round().long()]


def _named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


@dataclass
class Initializer:
    """Draws initializations of one architecture on one device: ``draw(generator) -> model``.

    ``method`` is ``"reinitialize"`` (one instance, re-drawn in place each time) or
    ``"construct"`` (a fresh instance per draw), whichever reproduces the architecture's
    construction; the rows record it.
    """

    architecture: Architecture
    device: torch.device
    method: str
    _model: nn.Module | None = None

    def draw(self, generator: torch.Generator) -> nn.Module:
        if self.method == "reinitialize" and self._model is not None:
            reinitialize(self._model, generator)
            return self._model
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with seeded(seed, self.device), torch.device(self.device):
            model = self.architecture.factory()
        model = model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if self.method == "reinitialize":
            self._model = model
        return model


def initializer(architecture: Architecture, device: torch.device, seed: int = 0) -> Initializer:
    """An :class:`Initializer`, re-drawing in place when that reproduces fresh construction."""
    check = Initializer(architecture, device, "construct")
    gen = torch.Generator().manual_seed(seed ^ 0x5EED)
    fresh, redrawn = check.draw(gen), check.draw(gen)
    reinitialize(redrawn, gen)
    method = "reinitialize" if not same_init_distribution(fresh, redrawn) else "construct"
    return Initializer(architecture, device, method, redrawn if method == "reinitialize" else None)
