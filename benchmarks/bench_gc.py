"""Cost of geometric complexity per image, as a ratio to the model's own forward+backward.

Everything is timed in one run on the same images: the plain forward, the plain
forward+backward (one input gradient, parameters frozen as while measuring), ``gc``
with Hutchinson and with the exact estimator, two batched alternatives to the
backward loop (``autograd.grad(is_grads_batched=True)`` and ``torch.func.vmap`` of a
VJP), and naive implementations (one image at a time). The ideal ratio of k products
is (F + k B) / (F + B), with F and B the forward and backward times measured here.

    python benchmarks/bench_gc.py --model resnet18 --images 8 --resolution 128 --device cpu
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import timm
import torch

from bench.harness.device import resolve_device
from bench.measures._jacobian import per_sample_vjp, rademacher
from bench.measures.gc import jacobian_sample
from bench.models.scored import ScoredModel, prepare_for_measurement
from _timing import timed  # benchmarks/_timing.py, beside this script

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def scored(name: str, num_classes: int | None, device: torch.device) -> ScoredModel:
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    net = timm.create_model(name, pretrained=False, **kwargs)
    return prepare_for_measurement(ScoredModel(net, IMAGENET_MEAN, IMAGENET_STD)).to(device)


# -- the plain costs --------------------------------------------------------------------------

def forward(model, x):
    with torch.no_grad():
        return model(x)


def forward_backward(model, x):
    outputs, vjp = per_sample_vjp(model, x)
    return vjp(torch.ones_like(outputs), last=True)


# -- alternatives to the retain_graph loop of bench.measures._jacobian -----------------------

def grads_batched(model, x, cotangents):
    """All k products in one vmapped backward: cotangents (k, N, C)."""
    x = x.detach().requires_grad_(True)
    outputs = model(x)
    return torch.autograd.grad(outputs, x, grad_outputs=cotangents, is_grads_batched=True)[0]


def func_vmap(model, x, cotangents):
    _, vjp_fn = torch.func.vjp(model, x)
    return torch.func.vmap(vjp_fn)(cotangents)[0]


# -- naive implementations --------------------------------------------------------------------

def naive_hutchinson(model, x, cotangents):
    """One image and one probe at a time, a fresh forward for each product."""
    total = 0.0
    for i in range(x.shape[0]):
        for v in cotangents[:, i]:
            xi = x[i:i + 1].detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[0] @ v, xi)
            total += g.square().sum().item()
    return total


def naive_exact(model, x):
    """The full Jacobian of each image with torch.autograd.functional.jacobian."""
    return sum(torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi).square().sum().item()
               for xi in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="timm architecture (random weights)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--probes", type=int, default=8, help="Hutchinson probes k")
    parser.add_argument("--classes", type=int, default=10, help="classes of the model for exact gc")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 is least disturbed by other load")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive versions")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = scored(args.model, None, device)
    small = scored(args.model, args.classes, device)
    x = torch.rand(args.images, 3, args.resolution, args.resolution,
                   generator=torch.Generator().manual_seed(0)).to(device)
    n, k = args.images, args.probes
    n_outputs = forward(model, x[:1]).shape[1]
    cotangents = rademacher((k, n, n_outputs), seed=0).to(device, torch.float32)

    c = args.classes
    # name -> (work, model it runs, products per image; None: a plain pass, no ratio)
    plan: dict[str, tuple[Callable[[], object], ScoredModel, int | None]] = {
        "forward": (lambda: forward(model, x), model, None),
        "forward+backward": (lambda: forward_backward(model, x), model, 1),
        f"gc hutchinson k={k} (retain_graph loop, used)": (
            lambda: jacobian_sample(model, x, probes=k, exact=False, batch_size=n), model, k),
        "  same k, autograd.grad is_grads_batched": (
            lambda: grads_batched(model, x, cotangents), model, k),
        "  same k, torch.func.vmap(vjp)": (lambda: func_vmap(model, x, cotangents), model, k),
        f"forward, {c} classes": (lambda: forward(small, x), small, None),
        f"forward+backward, {c} classes": (lambda: forward_backward(small, x), small, 1),
        f"gc exact, {c} classes (retain_graph loop, used)": (
            lambda: jacobian_sample(small, x, exact=True, batch_size=n), small, c),
    }
    if not args.skip_naive:
        plan[f"naive hutchinson k={k}: per image, per probe"] = (
            lambda: naive_hutchinson(model, x, cotangents), model, k)
        plan[f"naive exact, {c} classes: autograd jacobian per image"] = (
            lambda: naive_exact(small, x), small, c)
    times = timed({name: work for name, (work, *_) in plan.items()}, device, args.repeats)
    per_image = {name: (t.median / n, t.best / n) for name, t in times.items()}

    # forward F and backward B per image of each model, from the median times
    passes = {}
    for net, fwd_name, fb_name in ((model, "forward", "forward+backward"),
                                   (small, f"forward, {c} classes", f"forward+backward, {c} classes")):
        f_, fb_ = per_image[fwd_name][0], per_image[fb_name][0]
        passes[id(net)] = (f_, fb_ - f_)

    print(f"{args.model} at {args.resolution}px, {n} images in one batch, device {device}, "
          f"{torch.get_num_threads()} threads, median (min) of {args.repeats} interleaved "
          "rounds after warm-up; ratios are to the same model's forward+backward")
    print(f"{'':52} {'ms/image':>9} {'(min)':>8} {'ratio':>7} {'ideal':>7}")
    for name, (_, net, products) in plan.items():
        median, low = per_image[name]
        ratio = ideal = ""
        if products is not None:
            f_, b_ = passes[id(net)]
            ratio = f"{median / (f_ + b_):.2f}"
            ideal = f"{(f_ + products * b_) / (f_ + b_):.2f}"
        print(f"{name:52} {median * 1e3:9.1f} {low * 1e3:8.1f} {ratio:>7} {ideal:>7}")
    for net, label in ((model, "model"), (small, f"{c}-class model")):
        f_, b_ = passes[id(net)]
        print(f"{label}: F = {f_ * 1e3:.1f} ms, B = {b_ * 1e3:.1f} ms per image")
    print("ideal = (F + k B) / (F + B): one forward and k backward passes per image")


if __name__ == "__main__":
    main()
