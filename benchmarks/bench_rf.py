"""Cost of the rf measure against the model's plain forward and against a per-image implementation.

rf needs 1 + 2 x draws forward passes per image (clean, deformed, noisy per draw),
plus drawing the fields and the noise and remapping the images. This script prints,
measured in one run on the same images:

- rf time / plain forward time over the same images (the limit is 1 + 2 x draws);
- the share of rf's time spent drawing fields and noise and remapping;
- a straightforward implementation (a loop over images: one field, one noise draw and
  batch-of-one forwards per image, the pair mean by a loop over pairs) against
  ``relative_stability``.

    .venv/bin/python benchmarks/bench_rf.py --model resnet18 --resolution 224 --images 16
    .venv/bin/python benchmarks/bench_rf.py --model cifar_resnet20 --resolution 32 --images 64
"""

from __future__ import annotations

import argparse
import itertools

import timm
import torch

import bench.models  # noqa: F401  (registers cifar_resnet20/32/44/56)
from bench.harness.batching import batches, default_batch_size
from bench.measures.diffeo import deform, fields_from_coefficients, sample_coefficients, temperature
from bench.measures.rf import relative_stability
from bench.models.scored import ScoredModel, prepare_for_measurement
from _timing import timed  # benchmarks/_timing.py, beside this script


def plain_forward(f: ScoredModel, images: torch.Tensor, batch_size: int, device: torch.device) -> None:
    with torch.no_grad():
        for rows in batches(images.shape[0], batch_size):
            f(images[rows].to(device))


def sampler_only(images: torch.Tensor, draws: int, batch_size: int, device: torch.device) -> None:
    """What rf spends outside the network: coefficients, fields, remap, noise and its scaling."""
    n = images.shape[-1]
    t = temperature(1.0, n, 3)
    generator = torch.Generator().manual_seed(0)
    noise_gen = torch.Generator(device=device)
    for rows in batches(images.shape[0], batch_size):
        x = images[rows].to(device)
        x_rep = x.repeat(draws, 1, 1, 1)
        coeffs = sample_coefficients(x_rep.shape[0], 3, generator)
        deformed = deform(x_rep, fields_from_coefficients(coeffs, n, t, device=device))
        eta = torch.empty_like(x_rep)
        for i in range(x_rep.shape[0]):  # rf seeds one generator per image and draw
            noise_gen.manual_seed(i)
            torch.randn(x.shape[1:], generator=noise_gen, device=device, out=eta[i])
        scale = (deformed - x_rep).flatten(1).norm(dim=1) / eta.flatten(1).norm(dim=1)
        _ = x_rep + eta * scale.view(-1, 1, 1, 1)


def naive_relative_stability(f: ScoredModel, images: torch.Tensor, draws: int,
                             device: torch.device) -> float:
    """R_f the straightforward way: everything per image, batch-of-one forwards."""
    n = images.shape[-1]
    t = temperature(1.0, n, 3)
    generator = torch.Generator().manual_seed(0)
    d_sum = g_sum = 0.0
    clean = []
    with torch.no_grad():
        for x in images:
            x = x[None].to(device)
            out = f(x)
            clean.append(out)
            for _ in range(draws):
                field = fields_from_coefficients(sample_coefficients(1, 3, generator), n, t,
                                                 device=device)
                deformed = deform(x, field)
                eta = torch.randn(x.shape, generator=generator).to(device)
                eta = eta * (deformed - x).norm() / eta.norm()
                d_sum += float((f(deformed) - out).pow(2).sum())
                g_sum += float((f(x + eta) - out).pow(2).sum())
        pairs = [float((a - b).pow(2).sum()) for a, b in itertools.permutations(clean, 2)]
    pair_mean = sum(pairs) / len(pairs)
    return (d_sum / pair_mean) / (g_sum / pair_mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="timm architecture (random init)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="skip the per-image implementation")
    args = parser.parse_args()

    device = torch.device(args.device)
    batch_size = args.batch_size or default_batch_size(device)
    torch.manual_seed(0)
    net = timm.create_model(args.model, pretrained=False)
    cfg = net.pretrained_cfg
    f = prepare_for_measurement(ScoredModel(net, cfg.get("mean", (0.5,) * 3),
                                            cfg.get("std", (0.5,) * 3))).to(device)
    images = torch.rand(args.images, 3, args.resolution, args.resolution)

    fns = {
        "forward": lambda: plain_forward(f, images, batch_size, device),
        "rf": lambda: relative_stability(f, images, draws=args.draws, batch_size=batch_size,
                                         device=device),
        "sampler": lambda: sampler_only(images, args.draws, batch_size, device),
    }
    if not args.skip_naive:
        fns["naive"] = lambda: naive_relative_stability(f, images, args.draws, device)
    times = {name: t.best for name, t in timed(fns, device, args.repeats).items()}
    t_forward, t_rf, t_sampler = times["forward"], times["rf"], times["sampler"]
    limit = 1 + 2 * args.draws
    print(f"model {args.model} at {args.resolution} px, {args.images} images, draws {args.draws}, "
          f"batch {batch_size}, device {device}")
    print(f"plain forward        {1e3 * t_forward / args.images:9.2f} ms/image")
    print(f"rf                   {1e3 * t_rf / args.images:9.2f} ms/image  "
          f"= {t_rf / t_forward:.2f} x forward (limit {limit}; {t_rf / t_forward / limit:.2f} x limit)")
    print(f"fields+noise+remap   {1e3 * t_sampler / args.images:9.2f} ms/image  "
          f"= {100 * t_sampler / t_rf:.1f}% of rf")
    if not args.skip_naive:
        print(f"per-image naive      {1e3 * times['naive'] / args.images:9.2f} ms/image  "
              f"= {times['naive'] / t_rf:.2f} x rf")

if __name__ == "__main__":
    main()
