"""Batched vector-Jacobian products of a per-image function, shared by the Jacobian measures.

A measure of input-space geometry needs products g_i = J_f(x_i)^T v_i for many
images x_i and output vectors v_i. In eval mode a classifier treats the images of a
batch independently (batch norm uses its running statistics, nothing mixes samples),
so the Jacobian of f over a batch is block diagonal and one backward pass of the
scalar ``sum_i v_i . f(x_i)`` returns every g_i of the batch at once. With the
graph kept between passes, k products per image cost one forward and k backward
passes of the batch: the lower bound for reverse-mode products.

That independence is what makes the batch trick exact, so it must hold: a module in
training mode (batch norm with batch statistics, dropout) breaks it, and
:func:`require_eval_mode` refuses such modules. Plain callables cannot be checked;
the caller vouches for them.

Why a Python loop over backward passes rather than ``vmap``: on CPU (resnet18, 128 px,
batch 8, one thread) the loop with ``retain_graph`` ran at the ideal one forward plus
k backward passes, while ``autograd.grad(..., is_grads_batched=True)`` took 9% and
``torch.func.vmap(vjp)`` 31% longer (``benchmarks/bench_gc.py``, figures in
``benchmarks/README.md``); and the loop holds one product at a time, not k.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bench.errors import BenchError

VJP = Callable[..., torch.Tensor]


def owning_module(f: Callable) -> nn.Module | None:
    """The module behind ``f``: ``f`` itself, or the module of a bound method (``model.features``)."""
    if isinstance(f, nn.Module):
        return f
    owner = getattr(f, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def require_eval_mode(f: Callable) -> None:
    """Refuse a module with any part in training mode, where samples of a batch are not independent."""
    module = owning_module(f)
    if module is None:
        return
    training = [name or type(module).__name__ for name, m in module.named_modules() if m.training]
    if training:
        raise BenchError(
            f"the function to measure is in training mode ({training[0]}"
            f"{f' and {len(training) - 1} more modules' if len(training) > 1 else ''}), so batch "
            "norm and dropout would mix or randomize images",
            "call model.eval() first (bench.models.scored.prepare_for_measurement does it)")


def function_device(f: Callable, fallback: torch.device) -> torch.device:
    """The device of ``f``'s first parameter or buffer, else ``fallback``."""
    module = owning_module(f)
    if module is not None:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device
    return fallback


def flat_outputs(f: Callable, x: torch.Tensor) -> torch.Tensor:
    """f(x) as an (N, C) matrix: any output of shape (N, ...) is one vector per image."""
    out = f(x)
    if out.dim() < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(f"f must map a batch of {x.shape[0]} images to one output per image; "
                         f"got shape {tuple(out.shape)}")
    return out.reshape(out.shape[0], -1)


def per_sample_vjp(f: Callable, x: torch.Tensor) -> tuple[torch.Tensor, VJP]:
    """One forward of the batch ``x``; returns the (N, C) outputs and ``vjp(v, last=False)``.

    ``vjp(v)`` with ``v`` of shape (N, C) returns, for every image i at once, the row i
    of shape ``x.shape[1:]`` equal to J_f(x_i)^T v_i. Call it any number of times;
    pass ``last=True`` on the final call to free the graph. Requires per-image
    independence (see the module docstring).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        outputs = flat_outputs(f, x)

    def vjp(v: torch.Tensor, last: bool = False) -> torch.Tensor:
        (grad,) = torch.autograd.grad(outputs, x, grad_outputs=v, retain_graph=not last)
        return grad

    return outputs.detach(), vjp


def rademacher(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random signs +-1 (int8, CPU) from a generator seeded with ``seed``.

    Drawn on the CPU so that the same seed gives the same probes on every device;
    the caller moves them where the products are computed.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    signs = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8)
    return signs.mul_(2).sub_(1)
