"""Cost of the volume measure per grid point, as a ratio to one plain forward pass.

At every grid point the measure needs J U (two Jacobian-vector products of the
penultimate features) and the logits. Timed in one run on the same points: the plain
forward, the measure's per-point work (``vmap`` of ``jvp`` over the two directions,
sharing one primal pass, plus a forward for the logits), the naive forward-mode route
(``jvp`` of a batch holding every point once per direction), and the double-backward
route that the measure falls back to when a layer has no forward-mode formula.

    python benchmarks/bench_volume.py --model cifar_resnet20 --resolution 32 --points 64
    python benchmarks/bench_volume.py --model resnet18 --resolution 128 --points 16
"""

from __future__ import annotations

import argparse

import timm
import torch

import bench.models  # noqa: F401  (registers the CIFAR ResNets with timm)
from bench.measures.volume import _jvp_double_backward, _metric_and_logits
from bench.models.scored import ScoredModel, prepare_for_measurement
from _timing import timed  # benchmarks/_timing.py, beside this script

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--points", type=int, default=64, help="grid points per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    net = timm.create_model(args.model, pretrained=False)
    model = prepare_for_measurement(ScoredModel(net, IMAGENET_MEAN, IMAGENET_STD)).to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.points, 3, args.resolution, args.resolution, generator=generator).to(device)
    directions = torch.linalg.qr(torch.randn(x[0].numel(), 2, generator=generator)).Q.T
    directions = directions.reshape(2, *x.shape[1:]).to(device)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    doubled, tangents = torch.cat([x, x]), directions.repeat_interleave(len(x), 0)

    def jvp_doubled_batch() -> None:
        torch.func.jvp(model.features, (doubled,), (tangents,))
        forward()

    def double_backward() -> None:
        _jvp_double_backward(model.features, doubled, tangents)
        forward()

    times = timed({"forward": forward, "measure (vmap jvp)": lambda: _metric_and_logits(model, x, directions),
                   "jvp doubled batch": jvp_doubled_batch, "double backward": double_backward},
                  device, args.repeats)
    times = {name: t.median for name, t in times.items()}
    base = times["forward"] / args.points
    print(f"{args.model} at {args.resolution}px, {args.points} points per batch, device {device}, "
          f"{torch.get_num_threads()} threads")
    for name, seconds in times.items():
        per_point = seconds / args.points
        print(f"  {name:19s} {1e3 * per_point:9.3f} ms/point   {per_point / base:6.2f} x forward")
    grid_points = 8 * 32 * 32
    print(f"  default protocol (8 planes x 32 x 32 = {grid_points} points): "
          f"{grid_points * times['measure (vmap jvp)'] / args.points:.1f} s")


if __name__ == "__main__":
    main()
